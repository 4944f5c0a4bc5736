// dense.cpp — Dense (fully connected) forward and backward around OpenBLAS gemm.
//
//   forward:  z = x W + b (x (m, k); W (n, k) "oi" or (k, n) "io"); y = act(z)
//   backward: g = dy * act'(z)  (or from y), db = sum_rows g    -- one fused pass
//             dx = g W^T-ish (m, k),  dW = g^T x or x^T g       -- two gemms
//
// The forward runs the product in row blocks and applies bias + activation to each
// block right after its gemm, while the block is still in cache (no separate pass over
// the output). Blocks are large (see kBlockBytes) because every gemm call re-packs W.
#include <algorithm>
#include <climits>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#include "blas.h"
#include "kernels.h"
#include "parallel.h"

namespace fastnn {
namespace {

// Output block per gemm call: 4 MiB stays in this machine's 32 MiB L3 for the epilogue
// and keeps the repacking of W (one per call) a few % of the product at k, n = 1024.
constexpr int64_t kBlockBytes = 4 << 20;
constexpr int64_t kMinBlockRows = 256;

using blas::bi;  // 32-bit BLAS sizes, checked

template <class T> void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k, T alpha,
                             const T* a, int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  blas::gemm(ta, tb, bi(m), bi(n), bi(k), alpha, a, bi(lda), b, bi(ldb), beta, c, bi(ldc));
}

// Epilogue of rows [r0, r1): parallel over row sub-blocks of ~64 KiB.
template <class T> void epilogue(Act a, const ActParams& p, T* z, T* y, const T* b, int64_t r0, int64_t r1,
                                 int64_t n) {
  const int64_t grain = std::max<int64_t>(1, (64 << 10) / (n * int64_t(sizeof(T))));
  parallel_for(r1 - r0, grain, [&](int64_t s, int64_t e) {
    bias_act_rows(a, p, z + (r0 + s) * n, y + (r0 + s) * n, b, e - s, n);
  });
}

}  // namespace

template <class T> void dense_forward(Act a, const ActParams& p, const T* x, const T* w, bool w_oi, const T* b,
                                      T* y, T* z, int64_t m, int64_t k, int64_t n) {
  if (m == 0 || n == 0) return;
  T* out = z ? z : y;  // the gemm writes the pre-activation here
  const int64_t block = std::max<int64_t>(kMinBlockRows, kBlockBytes / (n * int64_t(sizeof(T))));
  for (int64_t r0 = 0; r0 < m; r0 += block) {
    const int64_t rows = std::min(block, m - r0);
    if (k == 0) {
      std::fill(out + r0 * n, out + (r0 + rows) * n, T(0));
    } else if (w_oi) {  // z = x W^T, W (n, k)
      gemm(CblasNoTrans, CblasTrans, rows, n, k, T(1), x + r0 * k, k, w, k, T(0), out + r0 * n, n);
    } else {  // z = x W, W (k, n)
      gemm(CblasNoTrans, CblasNoTrans, rows, n, k, T(1), x + r0 * k, k, w, n, T(0), out + r0 * n, n);
    }
    epilogue(a, p, out, y, b, r0, r0 + rows, n);
  }
}

template <class T> void dense_backward(Act a, const ActParams& p, bool from_y, const T* dy, const T* x, const T* w,
                                       bool w_oi, const T* zy, T* dx, T* dw, T* db, int64_t m, int64_t k, int64_t n) {
  if (!dx && !dw && !db) return;
  // g = dy * act'(.) and db, in one pass over fixed row chunks (deterministic sums).
  const T* g = dy;
  std::unique_ptr<T[]> gbuf;
  const int64_t chunk = std::max<int64_t>(1, (64 << 10) / (std::max<int64_t>(n, 1) * int64_t(sizeof(T))));
  const int64_t nchunks = (m + chunk - 1) / chunk;
  std::vector<double> dbp(db ? nchunks * n : 0, 0.0);
  const bool need_g = a != Act::linear;
  if (need_g) {
    gbuf.reset(new T[m * n]);
    g = gbuf.get();
  }
  if (need_g || db) {
    parallel_for(m, chunk, [&](int64_t b0, int64_t e0) {
      for (int64_t c = b0; c < e0; c += chunk) {
        const int64_t rows = std::min(chunk, e0 - c);
        double* part = db ? dbp.data() + (c / chunk) * n : nullptr;
        if (need_g) {
          act_grad_rows(a, p, from_y, zy + c * n, dy + c * n, gbuf.get() + c * n, part, rows, n);
        } else {
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t j = 0; j < n; ++j) part[j] += static_cast<double>(dy[(c + r) * n + j]);
        }
      }
    });
  }
  if (db) {
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t c = 0; c < nchunks; ++c) s += dbp[c * n + j];
      db[j] = static_cast<T>(s);
    }
  }
  if (dx) {
    if (m == 0 || k == 0) {
    } else if (n == 0) {
      std::fill(dx, dx + m * k, T(0));
    } else if (w_oi) {  // dx = g W, W (n, k)
      gemm(CblasNoTrans, CblasNoTrans, m, k, n, T(1), g, n, w, k, T(0), dx, k);
    } else {  // dx = g W^T, W (k, n)
      gemm(CblasNoTrans, CblasTrans, m, k, n, T(1), g, n, w, n, T(0), dx, k);
    }
  }
  if (dw) {
    if (n == 0 || k == 0) return;
    std::fill(dw, dw + n * k, T(0));
    // Sum over the batch in slices of < 2^31 rows (32-bit BLAS), accumulating (beta 1).
    const int64_t slice = INT_MAX / 2;
    for (int64_t r0 = 0; r0 < m; r0 += slice) {
      const int64_t rows = std::min(slice, m - r0);
      if (w_oi)  // dW (n, k) = g^T x
        gemm(CblasTrans, CblasNoTrans, n, k, rows, T(1), g + r0 * n, n, x + r0 * k, k, T(1), dw, k);
      else  // dW (k, n) = x^T g
        gemm(CblasTrans, CblasNoTrans, k, n, rows, T(1), x + r0 * k, k, g + r0 * n, n, T(1), dw, n);
    }
  }
}

template void dense_forward<float>(Act, const ActParams&, const float*, const float*, bool, const float*, float*,
                                   float*, int64_t, int64_t, int64_t);
template void dense_forward<double>(Act, const ActParams&, const double*, const double*, bool, const double*,
                                    double*, double*, int64_t, int64_t, int64_t);
template void dense_backward<float>(Act, const ActParams&, bool, const float*, const float*, const float*, bool,
                                    const float*, float*, float*, float*, int64_t, int64_t, int64_t);
template void dense_backward<double>(Act, const ActParams&, bool, const double*, const double*, const double*, bool,
                                     const double*, double*, double*, double*, int64_t, int64_t, int64_t);

}  // namespace fastnn
