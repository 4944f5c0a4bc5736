// dense.cpp — Dense (fully connected) forward and backward around OpenBLAS gemm (float32,
// float64; the 16-bit layers: dense_lp.cpp).
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
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "blas.h"
#include "dense_lp.h"  // Scratch, the 16-bit paths
#include "kernels.h"
#include "parallel.h"
#include "isa.h"

namespace fastnn {
namespace {

// Output block per gemm call: 4 MiB stays in a server CPU's L3 (32 MiB on Zen 4) for the epilogue
// and keeps the repacking of W (one per call) a few % of the product at k, n = 1024.
constexpr int64_t kBlockBytes = 4 << 20;
constexpr int64_t kMinBlockRows = 256;

using blas::bi;  // 32-bit BLAS sizes, checked

// ---- matrix-vector products, fastnn's own -------------------------------------------
// For the degenerate products below, not OpenBLAS: its sgemm packs for ~10x the work
// there, and its threaded gemv, called from two threads at once (TensorFlow runs
// independent ops concurrently), busy-waits on its shared thread server (both measured:
// docs/performance.md, "Dense and sgemm"). These run on fastnn's pool (serially when it is busy).
// Each output element is one thread's sum in a fixed order: the bits never depend on
// the thread count.
//   dot:  y[i] = alpha sum_j A[i, j] x[j] + beta y[i],   i in [r0, r1)
//   axpy: y[j] = alpha sum_i x[i] A[i, j] + beta y[j],   j in [c0, c1), i over all rows
template <class T> FASTNN_INLINE void gemv_dot_serial(const T* a, int64_t lda, const T* x, T* y, int64_t r0,
                                                      int64_t r1, int64_t cols, T alpha, T beta) {
  for (int64_t i = r0; i < r1; ++i) {
    const T* ai = a + i * lda;
    T s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < cols; ++j) s += ai[j] * x[j];
    y[i] = beta == T(0) ? alpha * s : alpha * s + beta * y[i];
  }
}
template <class T> FASTNN_INLINE void gemv_axpy_serial(const T* a, int64_t lda, const T* x, T* y, int64_t rows,
                                                       int64_t c0, int64_t c1, T alpha, T beta) {
  if (beta == T(0)) std::fill(y + c0, y + c1, T(0));
  else if (beta != T(1)) for (int64_t j = c0; j < c1; ++j) y[j] *= beta;
  int64_t i = 0;
  for (; i + 4 <= rows; i += 4) {  // four rows per pass over y: one load and store of y per 4 FMAs
    const T x0 = alpha * x[i], x1 = alpha * x[i + 1], x2 = alpha * x[i + 2], x3 = alpha * x[i + 3];
    const T *a0 = a + i * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
#pragma omp simd
    for (int64_t j = c0; j < c1; ++j) y[j] += ((x0 * a0[j] + x1 * a1[j]) + x2 * a2[j]) + x3 * a3[j];
  }
  for (; i < rows; ++i) {
    const T xi = alpha * x[i];
    const T* ai = a + i * lda;
#pragma omp simd
    for (int64_t j = c0; j < c1; ++j) y[j] += xi * ai[j];
  }
}
#define P_DOT(T) const T* a, int64_t lda, const T* x, T* y, int64_t r0, int64_t r1, int64_t cols, T alpha, T beta
// compiled for each ISA level (isa.h)
#define A_DOT (a, lda, x, y, r0, r1, cols, alpha, beta)
FASTNN_ISA_FN(void, gemv_dot_isa, (P_DOT(float)), A_DOT, gemv_dot_serial<float> A_DOT)
FASTNN_ISA_FN(void, gemv_dot_isa, (P_DOT(double)), A_DOT, gemv_dot_serial<double> A_DOT)
#define P_AXPY(T) const T* a, int64_t lda, const T* x, T* y, int64_t rows, int64_t c0, int64_t c1, T alpha, T beta
#define A_AXPY (a, lda, x, y, rows, c0, c1, alpha, beta)
FASTNN_ISA_FN(void, gemv_axpy_isa, (P_AXPY(float)), A_AXPY, gemv_axpy_serial<float> A_AXPY)
FASTNN_ISA_FN(void, gemv_axpy_isa, (P_AXPY(double)), A_AXPY, gemv_axpy_serial<double> A_AXPY)

// Parts of >= 2M multiply-adds (~0.1 ms on one core, from L3): below that, waking the
// pool's other thread costs more than the second core saves (a 1024 x 1024 gemv is
// faster on one thread; docs/performance.md).
constexpr int64_t kGemvGrain = int64_t(1) << 21;
template <class T> void gemv_dot(const T* a, int64_t lda, const T* x, T* y, int64_t rows, int64_t cols, T alpha, T beta) {
  parallel_for(rows, std::max<int64_t>(1, kGemvGrain / std::max<int64_t>(cols, 1)),
               [&](int64_t r0, int64_t r1) { gemv_dot_isa(a, lda, x, y, r0, r1, cols, alpha, beta); });
}
template <class T> void gemv_axpy(const T* a, int64_t lda, const T* x, T* y, int64_t rows, int64_t cols, T alpha, T beta) {
  // column parts of whole 64-byte lines
  const int64_t grain = std::max<int64_t>(64, (kGemvGrain / std::max<int64_t>(rows, 1) + 63) / 64 * 64);
  parallel_for(cols, grain, [&](int64_t c0, int64_t c1) { gemv_axpy_isa(a, lda, x, y, rows, c0, c1, alpha, beta); });
}

// C (m, n) = alpha op(A) (m, k) op(B) (k, n) + beta C, row-major. Degenerate shapes skip
// sgemm (see above): one output column or row -> a matrix-vector product; k = 1 -> an
// outer product, memory-bound, over fastnn's threads.
template <class T> void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k, T alpha,
                             const T* a, int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  const bool at = ta == CblasTrans, bt = tb == CblasTrans;
  if (n == 1 && ldc == 1 && (bt || ldb == 1) && k > 1) {  // c = op(A) b, b contiguous
    if (at) gemv_axpy(a, lda, b, c, k, m, alpha, beta);  // A stored (k, m)
    else gemv_dot(a, lda, b, c, m, k, alpha, beta);      // A stored (m, k)
    return;
  }
  if (m == 1 && (!at || lda == 1) && k > 1) {  // c = a op(B), a contiguous
    if (bt) gemv_dot(b, ldb, a, c, n, k, alpha, beta);  // B stored (n, k)
    else gemv_axpy(b, ldb, a, c, k, n, alpha, beta);    // B stored (k, n)
    return;
  }
  if (k == 1) {  // c[i, j] = alpha a_i b_j + beta c[i, j]
    const int64_t sa = at ? 1 : lda, sb = bt ? ldb : 1;
    parallel_for(m, std::max<int64_t>(1, (256 << 10) / std::max<int64_t>(n * int64_t(sizeof(T)), 1)),
                 [&](int64_t r0, int64_t r1) {
                   for (int64_t i = r0; i < r1; ++i) {
                     const T ai = alpha * a[i * sa];
                     T* ci = c + i * ldc;
                     if (beta == T(0)) {
                       if (sb == 1) for (int64_t j = 0; j < n; ++j) ci[j] = ai * b[j];
                       else for (int64_t j = 0; j < n; ++j) ci[j] = ai * b[j * sb];
                     } else {
                       for (int64_t j = 0; j < n; ++j) ci[j] = ai * b[j * sb] + beta * ci[j];
                     }
                   }
                 });
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    if (own_sgemm(m, n, k)) return sgemm_own(at, bt, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
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

template <class T> void dense_forward_f(Act a, const ActParams& p, const T* x, const T* w, bool w_oi, const T* b,
                                        T* y, T* z, int64_t m, int64_t k, int64_t n) {
  if (m == 0 || n == 0) return;
  T* out = z ? z : y;  // the gemm writes the pre-activation here
  // On fastnn's sgemm (not through gemm() below): one call for all rows, whose bias +
  // activation run per finished unit of rows on the thread that computed it, instead of
  // the blocks and the separate parallel epilogue that OpenBLAS's products need.
  // (Degenerate shapes stay with gemm()'s matrix-vector paths.)
  if constexpr (std::is_same_v<T, float>) {
    if (k > 1 && n > 1 && m > 1 && own_sgemm(m, n, k)) {
      const RowsDone done = [&](int64_t r0, int64_t r1) {
        bias_act_rows(a, p, out + r0 * n, y + r0 * n, b, r1 - r0, n);
      };
      sgemm_own(false, w_oi, m, n, k, 1.0f, x, k, w, w_oi ? k : n, 0.0f, out, n, &done);
      return;
    }
  }
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

template <class T> void dense_backward_f(Act a, const ActParams& p, bool from_y, const T* dy, const T* x, const T* w,
                                         bool w_oi, const T* zy, T* dx, T* dw, T* db, T* g_out, int64_t m, int64_t k,
                                         int64_t n) {
  if (!dx && !dw && !db) return;
  // g = dy * act'(.) and db, in one pass over blocks of `chunk` rows (~64 KiB of g). db's
  // partial sums (double) are per fixed group of `dchunk` rows (~1 MiB of g), in group
  // order: deterministic sums, a few partial rows (per-block partials, 64 rows of 8 KiB for
  // a 1024 x 1024 g, cost more than the sum itself).
  const T* g = dy;
  std::optional<Scratch<T>> gbuf;
  const int64_t chunk = std::max<int64_t>(1, (64 << 10) / (std::max<int64_t>(n, 1) * int64_t(sizeof(T))));
  const int64_t dchunk = chunk * std::max<int64_t>(1, (1 << 20) / (chunk * std::max<int64_t>(n, 1) * int64_t(sizeof(T))));
  const int64_t nchunks = (m + dchunk - 1) / dchunk;
  std::vector<double> dbp(db ? nchunks * n : 0, 0.0);
  const bool need_g = a != Act::linear;
  auto finish_db = [&] {
    if (!db) return;
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t c = 0; c < nchunks; ++c) s += dbp[c * n + j];
      db[j] = static_cast<T>(s);
    }
  };
  if constexpr (std::is_same_v<T, float>) {
    // Only dW (and db) wanted, W stored (k, n), on fastnn's sgemm: g is made inside the
    // product's packing of it, a group of rows at a time, and never written out (one
    // write and one read of g less). No 2^31 slices here: fastnn's sgemm takes 64-bit sizes.
    if (dw && !dx && !g_out && need_g && !w_oi && m > 1 && n > 1 && k > 1 && own_sgemm(k, n, m)) {
      const BRows rows{dchunk, [&](int64_t r0, int64_t r1, float* out) {
                         double* part = db ? dbp.data() + (r0 / dchunk) * n : nullptr;
                         act_grad_rows(a, p, from_y, zy + r0 * n, dy + r0 * n, out, part, r1 - r0, n);
                       }};
      sgemm_own(true, false, k, n, m, 1.0f, x, k, nullptr, n, 0.0f, dw, n, nullptr, &rows);  // dW = x^T g
      finish_db();
      return;
    }
  }
  T* gw = nullptr;  // where g is written
  if (need_g) {
    gw = g_out ? g_out : gbuf.emplace(m * n).get();
    g = gw;
  }
  if (need_g || db) {
    parallel_for(m, dchunk, [&](int64_t b0, int64_t e0) {
      for (int64_t d = b0; d < e0; d += dchunk) {
        double* part = db ? dbp.data() + (d / dchunk) * n : nullptr;
        for (int64_t c = d; c < std::min(e0, d + dchunk); c += chunk) {
          const int64_t rows = std::min({chunk, e0 - c, d + dchunk - c});
          if (need_g) act_grad_rows(a, p, from_y, zy + c * n, dy + c * n, gw + c * n, part, rows, n);
          else sum_rows(dy + c * n, rows, n, part);
        }
      }
    });
  }
  finish_db();
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
    if (m == 0) { std::fill(dw, dw + n * k, T(0)); return; }
    // Sum over the batch in slices of < 2^31 rows (32-bit BLAS): the first overwrites dW
    // (beta 0: no zero fill, no read of dW), the others accumulate (beta 1).
    const int64_t slice = INT_MAX / 2;
    for (int64_t r0 = 0; r0 < m; r0 += slice) {
      const int64_t rows = std::min(slice, m - r0);
      const T beta = r0 == 0 ? T(0) : T(1);
      if (w_oi)  // dW (n, k) = g^T x
        gemm(CblasTrans, CblasNoTrans, n, k, rows, T(1), g + r0 * n, n, x + r0 * k, k, beta, dw, k);
      else  // dW (k, n) = x^T g
        gemm(CblasTrans, CblasNoTrans, k, n, rows, T(1), x + r0 * k, k, g + r0 * n, n, beta, dw, n);
    }
  }
}

}  // namespace

// float32 / float64: the bodies above; bf16 / f16: dense_lp.cpp (float32 products and
// epilogues on blocks, each output rounded once).
template <class T> void dense_forward(Act a, const ActParams& p, const T* x, const T* w, bool w_oi, const T* b,
                                      T* y, T* z, int64_t m, int64_t k, int64_t n) {
  if constexpr (is_half_v<T>) dense_forward_lp(a, p, x, w, w_oi, b, y, z, m, k, n);
  else dense_forward_f(a, p, x, w, w_oi, b, y, z, m, k, n);
}
template <class T> void dense_backward(Act a, const ActParams& p, bool from_y, const T* dy, const T* x, const T* w,
                                       bool w_oi, const T* zy, T* dx, T* dw, T* db, T* g, int64_t m, int64_t k,
                                       int64_t n) {
  if constexpr (is_half_v<T>) dense_backward_lp(a, p, from_y, dy, x, w, w_oi, zy, dx, dw, db, g, m, k, n);
  else dense_backward_f(a, p, from_y, dy, x, w, w_oi, zy, dx, dw, db, g, m, k, n);
}

#define FASTNN_DENSE(T)                                                                                            \
  template void dense_forward<T>(Act, const ActParams&, const T*, const T*, bool, const T*, T*, T*, int64_t,       \
                                 int64_t, int64_t);                                                                \
  template void dense_backward<T>(Act, const ActParams&, bool, const T*, const T*, const T*, bool, const T*, T*,   \
                                  T*, T*, T*, int64_t, int64_t, int64_t);
FASTNN_DENSE(float)
FASTNN_DENSE(double)
FASTNN_DENSE(bf16)
FASTNN_DENSE(f16)
#undef FASTNN_DENSE

}  // namespace fastnn
