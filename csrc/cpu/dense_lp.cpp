// dense_lp.cpp — Dense forward and backward of 16-bit layers (bf16, f16), torch's contract
// (half.h): 16-bit x, W, b, dy, z / y; products of the 16-bit values summed in float32
// (gemm_lp); every output rounded once, round-to-nearest-even.
//
//   forward:  acc = x W (float32, a tile of rows at a time)
//             z = narrow(acc + b)          (when wanted: the saved pre-activation)
//             y = narrow(act(acc + b))     (one rounding: the activation reads acc + b, not z)
//   backward: g = dy * act'(z or y), float32 from the 16-bit dy and z / y, never rounded
//             (except into the optional 16-bit g output)
//             in row blocks: g's block in float32 (db's sums in double from it), then
//             dx = g W or g W^T ((float, T) products) and dW += g^T x or x^T g (over the
//             blocks, in float32); without dx, dW is one product over all rows whose
//             packing makes g (b_rows: g never stored);
//             each rounded once into its 16-bit output.
// float32 scratch (no float32 copy of any whole input):
//   forward:  one tile of accumulators, max(4 MiB, 256 rows x n);
//   backward: dW's accumulator, weight-sized (the products' output is float32 and dW is
//             rounded once, at the end); for dx / db / g, a block of g and one of dx
//             (max(4 MiB, 256 rows) each); per thread, 2 x 64 KiB of widened dy / z rows.
// The bias and activation are the float32 kernels' own (bias_act_rows, act_grad_rows on
// float blocks), so a 16-bit layer's activation is the float32 one, rounded once.
#include <algorithm>
#include <vector>

#include "dense_lp.h"
#include "kernels.h"
#include "parallel.h"

namespace fastnn {
namespace {

constexpr int64_t kTileBytes = 4 << 20;  // float32 accumulators per product call (as dense.cpp's kBlockBytes)
constexpr int64_t kMinTileRows = 256;    // rows per product call at least: each call re-packs W
constexpr int64_t kSubBytes = 64 << 10;  // widened dy / z rows at a time (L2), as dense.cpp's g chunks

// Rows of a float32 tile of `cols` columns.
int64_t tile_rows(int64_t cols) {
  return std::max<int64_t>(kMinTileRows, kTileBytes / (std::max<int64_t>(cols, 1) * int64_t(sizeof(float))));
}

// dst (cols, rows) = narrow(src (rows, cols)^T): dW of a W stored (n, k) from its float32
// accumulator (k, n). 64 x 64 tiles, transposed in float32 on the stack (L1).
template <class T> void narrow_transposed(const float* src, T* dst, int64_t rows, int64_t cols) {
  constexpr int64_t B = 64;
  parallel_for((cols + B - 1) / B, 1, [&](int64_t t0, int64_t t1) {
    float tile[B * B];
    for (int64_t j0 = t0 * B; j0 < std::min(cols, t1 * B); j0 += B) {
      const int64_t jn = std::min(B, cols - j0);
      for (int64_t i0 = 0; i0 < rows; i0 += B) {
        const int64_t in = std::min(B, rows - i0);
        for (int64_t i = 0; i < in; ++i)
          for (int64_t j = 0; j < jn; ++j) tile[j * in + i] = src[(i0 + i) * cols + j0 + j];
        for (int64_t j = 0; j < jn; ++j) narrow_block(tile + j * in, dst + (j0 + j) * rows + i0, in);
      }
    }
  });
}

// g (rows, n) = dy * act'(zy) in float32 from 16-bit rows (linear: g = dy, zy unused);
// part (double, n) += the column sums of g when not null. Serial; widens <= 64 KiB of
// rows of dy and zy at a time into this thread's buffers.
template <class T> void grad_rows(Act a, const ActParams& p, bool from_y, const T* zy, const T* dy, float* g,
                                  double* part, int64_t rows, int64_t n) {
  if (a == Act::linear) {
    widen_block(dy, g, rows * n);
    if (part) sum_rows(g, rows, n, part);
    return;
  }
  const int64_t sub = std::max<int64_t>(1, kSubBytes / (std::max<int64_t>(n, 1) * int64_t(sizeof(float))));
  thread_local std::vector<float> buf;
  if (buf.size() < size_t(2 * std::min(sub, rows) * n)) buf.resize(size_t(2 * std::min(sub, rows) * n));
  for (int64_t r = 0; r < rows; r += sub) {
    const int64_t rs = std::min(sub, rows - r);
    float *dyf = buf.data(), *zyf = dyf + rs * n;
    widen_block(dy + r * n, dyf, rs * n);
    widen_block(zy + r * n, zyf, rs * n);
    act_grad_rows<float>(a, p, from_y, zyf, dyf, g + r * n, part, rs, n);
  }
}

}  // namespace

template <class T> void dense_forward_lp(Act a, const ActParams& p, const T* x, const T* w, bool w_oi, const T* b,
                                         T* y, T* z, int64_t m, int64_t k, int64_t n) {
  if (m == 0 || n == 0) return;
  std::vector<float> bf(b ? n : 0);  // the bias, widened once
  if (b) widen_block(b, bf.data(), n);
  const float* bp = b ? bf.data() : nullptr;
  const int64_t block = std::min(m, tile_rows(n));
  Scratch<float> tile(block * n);
  float* acc = tile.get();
  const int64_t grain = std::max<int64_t>(1, kSubBytes / (n * int64_t(sizeof(float))));
  // Rows [s, e) of the tile holding rows [r0, ...) of the layer: bias and activation in
  // float32, each output rounded once. Parallel over ~64 KiB parts (serial when the
  // product calls it from its own threads: nested parallel_for runs in the caller).
  const auto finish = [&](int64_t r0, int64_t s, int64_t e) {
    parallel_for(e - s, grain, [&](int64_t s2, int64_t e2) {
      float* t = acc + (s + s2) * n;
      const int64_t rows = e2 - s2, o = (r0 + s + s2) * n;
      if (z) {
        bias_act_rows<float>(Act::linear, p, t, t, bp, rows, n);
        narrow_block(t, z + o, rows * n);
        bias_act_rows<float>(a, p, t, t, nullptr, rows, n);
      } else {
        bias_act_rows<float>(a, p, t, t, bp, rows, n);
      }
      narrow_block(t, y + o, rows * n);
    });
  };
  for (int64_t r0 = 0; r0 < m; r0 += block) {
    const int64_t rows = std::min(block, m - r0);
    if (k == 0) {
      std::fill(acc, acc + rows * n, 0.0f);
      finish(r0, 0, rows);
      continue;
    }
    const RowsDone done = [&](int64_t s, int64_t e) { finish(r0, s, e); };
    gemm_lp<T, T>(false, w_oi, rows, n, k, 1.0f, x + r0 * k, k, w, w_oi ? k : n, 0.0f, acc, n, &done);
  }
}

template <class T> void dense_backward_lp(Act a, const ActParams& p, bool from_y, const T* dy, const T* x,
                                          const T* w, bool w_oi, const T* zy, T* dx, T* dw, T* db, T* g_out,
                                          int64_t m, int64_t k, int64_t n) {
  if (!dx && !dw && !db) return;
  const bool linear = a == Act::linear;
  if (linear) g_out = nullptr;  // dy is the pre-activation's gradient
  // db's partial sums (double) per fixed group of `group` rows (~1 MiB of float32 g), in
  // group order: the same bits whatever the threads (dense.cpp's dchunk).
  const int64_t nn = std::max<int64_t>(n, 1);
  const int64_t sub = std::max<int64_t>(1, kSubBytes / (nn * int64_t(sizeof(float))));
  const int64_t group = sub * std::max<int64_t>(1, (1 << 20) / (sub * nn * int64_t(sizeof(float))));
  std::vector<double> dbp(db ? ((m + group - 1) / group) * n : 0, 0.0);
  const bool want_dx = dx && m > 0 && k > 0, want_dw = dw && n > 0 && k > 0;
  if (want_dx && n == 0) std::fill(dx, dx + m * k, T{0});
  if (want_dw && m == 0) std::fill(dw, dw + n * k, T{0});
  // The row-block pass (g in float32 blocks) runs for dx, the g output or db; a non-linear
  // layer's dW then sums over its blocks too (g made once). Otherwise dW is one product
  // over all rows, of dy (linear) or of g made as the product packs it (with db).
  const bool blocks = m > 0 && n > 0 && (want_dx || g_out || (db && (linear || !want_dw)));
  const bool dw_blocks = want_dw && m > 0 && !linear && blocks;
  Scratch<float> dwacc(want_dw && m > 0 ? n * k : 0);  // dW's float32 accumulator, dW's layout
  float* acc = dwacc.get();
  if (want_dw && m > 0 && !dw_blocks) {
    if (linear) {
      if (w_oi) gemm_lp<T, T>(true, false, n, k, m, 1.0f, dy, n, x, k, 0.0f, acc, k);  // dW (n, k) = dy^T x
      else gemm_lp<T, T>(true, false, k, n, m, 1.0f, x, k, dy, n, 0.0f, acc, n);       // dW (k, n) = x^T dy
    } else {  // (k, n) = x^T g, g's rows made (and summed into db) as the product packs them
      const BRows rows{group, [&](int64_t r0, int64_t r1, float* out) {
                         double* part = db ? dbp.data() + (r0 / group) * n : nullptr;
                         grad_rows(a, p, from_y, zy + r0 * n, dy + r0 * n, out, part, r1 - r0, n);
                       }};
      gemm_lp<T, float>(true, false, k, n, m, 1.0f, x, k, nullptr, n, 0.0f, acc, n, nullptr, &rows);
    }
    if (w_oi && !linear) narrow_transposed(acc, dw, k, n);
    else narrow_par(acc, dw, n * k);
  }
  if (blocks) {
    // Row blocks of whole db groups, >= 256 rows, <= 4 MiB of g and of dx where that allows.
    int64_t R = group * std::max<int64_t>(1, kTileBytes / (group * std::max(nn, k) * int64_t(sizeof(float))));
    R = std::max(R, (kMinTileRows + group - 1) / group * group);
    R = std::min(R, (m + group - 1) / group * group);
    const bool need_g = !linear || db;  // linear: the products read dy itself; g only for db
    Scratch<float> gt(need_g ? R * n : 0), dxt(want_dx ? R * k : 0);
    for (int64_t r0 = 0; r0 < m; r0 += R) {
      const int64_t rows = std::min(R, m - r0);
      const T* xb = x + r0 * k;
      if (need_g) {
        parallel_for(rows, group, [&](int64_t s, int64_t e) {
          for (int64_t d = s; d < e; d += group) {
            const int64_t rd = std::min(group, e - d), o = (r0 + d) * n;
            double* part = db ? dbp.data() + ((r0 + d) / group) * n : nullptr;
            grad_rows(a, p, from_y, linear ? nullptr : zy + o, dy + o, gt.get() + d * n, part, rd, n);
            if (g_out) narrow_block(gt.get() + d * n, g_out + o, rd * n);
          }
        });
      }
      if (dw_blocks) {  // dW (n, k) += g^T x or (k, n) += x^T g over this block's rows
        const float beta = r0 == 0 ? 0.0f : 1.0f;
        if (w_oi) gemm_lp<float, T>(true, false, n, k, rows, 1.0f, gt.get(), n, xb, k, beta, acc, k);
        else gemm_lp<T, float>(true, false, k, n, rows, 1.0f, xb, k, gt.get(), n, beta, acc, n);
      }
      if (!want_dx) continue;
      // dx (rows, k) = g W (W (n, k)) or g W^T (W (k, n)), rounded as rows are done
      const RowsDone done = [&](int64_t s, int64_t e) { narrow_par(dxt.get() + s * k, dx + (r0 + s) * k, (e - s) * k); };
      if (linear)
        gemm_lp<T, T>(false, !w_oi, rows, k, n, 1.0f, dy + r0 * n, n, w, w_oi ? k : n, 0.0f, dxt.get(), k, &done);
      else
        gemm_lp<float, T>(false, !w_oi, rows, k, n, 1.0f, gt.get(), n, w, w_oi ? k : n, 0.0f, dxt.get(), k, &done);
    }
    if (dw_blocks) narrow_par(acc, dw, n * k);
  }
  if (db) {
    const int64_t groups = (m + group - 1) / group;
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t c = 0; c < groups; ++c) s += dbp[c * n + j];
      db[j] = narrow_sum<T>(s);
    }
  }
}

#define FASTNN_DENSE_LP(T)                                                                                          \
  template void dense_forward_lp<T>(Act, const ActParams&, const T*, const T*, bool, const T*, T*, T*, int64_t,     \
                                    int64_t, int64_t);                                                              \
  template void dense_backward_lp<T>(Act, const ActParams&, bool, const T*, const T*, const T*, bool, const T*, T*, \
                                     T*, T*, T*, int64_t, int64_t, int64_t);
FASTNN_DENSE_LP(bf16)
FASTNN_DENSE_LP(f16)
#undef FASTNN_DENSE_LP

}  // namespace fastnn
