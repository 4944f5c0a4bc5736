// dense_ce.cpp — fused Dense + softmax cross-entropy, forward and all gradients in one
// chunked pass: the (n, c) logits are never held, only a (rows, c) chunk of them.
//
//   per chunk of rows:  L = x_k W^T + b                       (gemm, rows x c)
//                       L <- cap tanh(L / cap)                    (soft cap, when cap > 0)
//                       lse_i = log sum_j e^(L_ij)
//                       loss_i = rw_i [ (1 - ls) w_y (lse_i - L_iy) + (ls / c) sum_j w_j (lse_i - L_ij) + zs lse_i^2 ]
//                       G_ij = g_i rw_i (A_i p_ij - (ls / c) w_j - (1 - ls) w_y [j == y_i]) (1 - (L_ij / cap)^2)
//                              A_i = (1 - ls) w_y + (ls / c) sum_j w_j + 2 zs lse_i     written over L
//                       dx_k = G W,  dW += G^T x_k,  db += G^T 1   (gemm, gemm, gemv)
// w_j: class weights (1 without), rw_i: row weights (1 without), zs: the z-loss scale,
// y = y_i. This is torch's cross_entropy with weight and label_smoothing (its "none"
// rows) plus the z-loss, scaled per row. g_i is the upstream gradient of row i's loss
// (grad[i], or grad_scalar); ignored rows (target == ignore_index) have loss 0 and G = 0,
// but their lse is computed (it is an output).
#include <algorithm>
#include <climits>
#include <cmath>
#include <memory>
#include <optional>
#include <stdexcept>
#include <vector>

#include "vecmath.h"  // first: SIMD declarations of libm functions
#include "blas.h"
#include "dense_lp.h"  // Scratch, narrow_par
#include "kernels.h"
#include "parallel.h"
#include "isa.h"
#include "simd_dispatch.h"  // exp_row_sum: the rows' exponentials

namespace fastnn {
namespace {

using blas::bi;  // 32-bit BLAS sizes, checked

// The per-call constants of the row loss (the formula at the top of the file).
template <class T> struct CeRow {
  const T* b;     // bias (c) or null
  const T* cw;    // class weights (c) or null (all 1)
  T wsum;         // sum_j cw_j (c without class weights)
  T ls, cap, zs;  // label smoothing; soft cap (0: off); z-loss scale
  bool grads;
  bool want_lse;  // the lse of ignored rows is wanted (else they cost nothing)
};

// One row of logits L (bias not yet added) with target y (y < 0: an ignored row, loss 0
// and G = 0). Writes the row's log-sum-exp to *lse_out and returns the row's loss times
// rw; when grads, overwrites L with G (else leaves the capped logits in L).
template <class T>
FASTNN_INLINE double ce_row(T* L, const CeRow<T>& k, int64_t c, int64_t y, T rw, T g_row, T* lse_out) {
  if (k.b) for (int64_t j = 0; j < c; ++j) L[j] += k.b[j];
  if (k.cap > 0) {
    const T cap = k.cap, inv = T(1) / k.cap;
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) L[j] = cap * std::tanh(L[j] * inv);
  }
  T mx = -INFINITY;
#pragma omp simd reduction(max : mx)
  for (int64_t j = 0; j < c; ++j) mx = L[j] > mx ? L[j] : mx;
  if (!(mx > -INFINITY)) mx = 0;
  const T lse = mx + std::log(exp_row_sum<T>(L, nullptr, c, mx));  // the vector kernel where one runs
  *lse_out = lse;
  if (y < 0) {
    if (k.grads) std::fill(L, L + c, T(0));
    return 0.0;
  }
  T sum_l = 0;  // sum_j cw_j L_j, for the smoothing term
  if (k.ls != T(0)) {
    if (k.cw) {
#pragma omp simd reduction(+ : sum_l)
      for (int64_t j = 0; j < c; ++j) sum_l += k.cw[j] * L[j];
    } else {
#pragma omp simd reduction(+ : sum_l)
      for (int64_t j = 0; j < c; ++j) sum_l += L[j];
    }
  }
  const T wy = k.cw ? k.cw[y] : T(1), hard = (T(1) - k.ls) * wy, us = k.ls / T(c);
  const double loss = static_cast<double>(rw) * (static_cast<double>(hard) * (lse - L[y]) +
                                                 static_cast<double>(us) * (k.wsum * lse - sum_l) +
                                                 static_cast<double>(k.zs) * lse * lse);
  if (k.grads) {
    const T g = g_row * rw, A = hard + us * k.wsum + T(2) * k.zs * lse, py = sm::exp(L[y] - lse);
    T gy = g * ((A * py - us * wy) - hard);  // exactly 0 where p_y = 1 (one class, no z-loss)
    if (k.cap > 0) {
      const T inv = T(1) / k.cap, ty = L[y] * inv;
      gy *= T(1) - ty * ty;
      if (k.cw) {
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) {
          const T t = L[j] * inv;
          L[j] = g * (A * sm::exp(L[j] - lse) - us * k.cw[j]) * (T(1) - t * t);
        }
      } else {
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) {
          const T t = L[j] * inv;
          L[j] = g * (A * sm::exp(L[j] - lse) - us) * (T(1) - t * t);
        }
      }
    } else if (k.cw) {
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) L[j] = g * (A * sm::exp(L[j] - lse) - us * k.cw[j]);
    } else {
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) L[j] = g * (A * sm::exp(L[j] - lse) - us);
    }
    L[y] = gy;
  }
  return loss;
}

// Rows [0, rows) of a chunk: t the targets, g the per-row upstream gradients (or null:
// gs), rw the row weights (or null: 1); loss and lse receive one value per row.
template <class T>
FASTNN_INLINE void ce_rows_serial(T* L, const CeRow<T>& k, const int64_t* t, const T* g, T gs, const T* rw,
                                  int64_t ignore, T* loss, T* lse, int64_t rows, int64_t c) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t y = t[r];
    if (y != ignore && (y < 0 || y >= c)) {  // out-of-range targets are refused in Python
      loss[r] = lse[r] = T(NAN);
      if (k.grads) std::fill(L + r * c, L + r * c + c, T(0));
      continue;
    }
    if (y == ignore && !k.want_lse) {
      loss[r] = T(0);
      lse[r] = T(NAN);
      if (k.grads) std::fill(L + r * c, L + r * c + c, T(0));
      continue;
    }
    loss[r] = static_cast<T>(ce_row(L + r * c, k, c, y == ignore ? -1 : y, rw ? rw[r] : T(1), g ? g[r] : gs,
                                    lse + r));
  }
}

// Each copy compiled per ISA level and dispatched on isa() (isa.h), so FASTNN_ISA caps it.
#define P_CE(T) T* L, const CeRow<T>& k, const int64_t* t, const T* g, T gs, const T* rw, int64_t ig, T* loss, \
                T* lse, int64_t rows, int64_t c
FASTNN_ISA_FN(void, ce_rows_isa, (P_CE(float)), (L, k, t, g, gs, rw, ig, loss, lse, rows, c),
              ce_rows_serial(L, k, t, g, gs, rw, ig, loss, lse, rows, c))
FASTNN_ISA_FN(void, ce_rows_isa, (P_CE(double)), (L, k, t, g, gs, rw, ig, loss, lse, rows, c),
              ce_rows_serial(L, k, t, g, gs, rw, ig, loss, lse, rows, c))
#undef P_CE

// float32 / float64 layers.
template <class T> double dense_ce_f(const T* x, const T* w, bool w_oi, const T* b, const int64_t* target, int64_t n,
                                     int64_t h, int64_t c, int64_t ignore_index, double ls, const T* grad,
                                     double grad_scalar, T* loss_rows, T* dx, T* dw, T* db, int64_t chunk,
                                     const DenseCeExtras<T>& ex) {
  const bool grads = dx || dw || db;
  if (dw) std::fill(dw, dw + c * h, T(0));
  if (db) std::fill(db, db + c, T(0));
  if (n == 0) return 0.0;
  if (c == 0) throw std::invalid_argument("fastnn: dense_cross_entropy needs at least one class");
  chunk = std::max<int64_t>(1, std::min(chunk, n));
  double wsum = static_cast<double>(c);
  if (ex.class_weight) {
    wsum = 0;
    for (int64_t j = 0; j < c; ++j) wsum += static_cast<double>(ex.class_weight[j]);
  }
  const CeRow<T> k{b, ex.class_weight, static_cast<T>(wsum), static_cast<T>(ls), static_cast<T>(ex.softcap),
                   static_cast<T>(ex.z_scale), grads, ex.lse != nullptr};
  std::unique_ptr<T[]> L(new T[chunk * c]);
  std::unique_ptr<T[]> rowloss(new T[chunk]);
  std::unique_ptr<T[]> rowlse(ex.lse ? nullptr : new T[chunk]);
  std::vector<T> ones(grads && db ? chunk : 0, T(1));
  double total = 0;
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int64_t rows = std::min(chunk, n - r0);
    const T* xk = x + r0 * h;
    T* Lp = L.get();
    if (h == 0) std::fill(Lp, Lp + rows * c, T(0));
    else if (w_oi) blas::gemm(CblasNoTrans, CblasTrans, bi(rows), bi(c), bi(h), T(1), xk, bi(h), w, bi(h), T(0), Lp, bi(c));
    else blas::gemm(CblasNoTrans, CblasNoTrans, bi(rows), bi(c), bi(h), T(1), xk, bi(h), w, bi(c), T(0), Lp, bi(c));
    const T* gk = grad ? grad + r0 : nullptr;
    const T* rwk = ex.row_weight ? ex.row_weight + r0 : nullptr;
    T* lk = loss_rows ? loss_rows + r0 : rowloss.get();
    T* ek = ex.lse ? ex.lse + r0 : rowlse.get();
    const int64_t grain = std::max<int64_t>(1, 16384 / c);
    parallel_for(rows, grain, [&](int64_t s, int64_t e) {
      ce_rows_isa(Lp + s * c, k, target + r0 + s, gk ? gk + s : nullptr, T(grad_scalar), rwk ? rwk + s : nullptr,
                  ignore_index, lk + s, ek + s, e - s, c);
    });
    for (int64_t r = 0; r < rows; ++r) total += static_cast<double>(lk[r]);
    if (!grads) continue;
    if (dx && h > 0) {
      if (w_oi) blas::gemm(CblasNoTrans, CblasNoTrans, bi(rows), bi(h), bi(c), T(1), Lp, bi(c), w, bi(h), T(0), dx + r0 * h, bi(h));
      else blas::gemm(CblasNoTrans, CblasTrans, bi(rows), bi(h), bi(c), T(1), Lp, bi(c), w, bi(c), T(0), dx + r0 * h, bi(h));
    }
    if (dw && h > 0) {
      if (w_oi) blas::gemm(CblasTrans, CblasNoTrans, bi(c), bi(h), bi(rows), T(1), Lp, bi(c), xk, bi(h), T(1), dw, bi(h));
      else blas::gemm(CblasTrans, CblasNoTrans, bi(h), bi(c), bi(rows), T(1), xk, bi(h), Lp, bi(c), T(1), dw, bi(c));
    }
    if (db) blas::gemv(CblasTrans, bi(rows), bi(c), T(1), Lp, bi(c), ones.data(), T(1), db);
  }
  return total;
}

// 16-bit layers (bf16, f16): the same pass with the logits chunk, its log-sum-exp and G in
// float32 (gemm_lp's float32 sums of the 16-bit x and W; the float32 row kernel above on
// the widened bias, class and row weights and upstream gradients), each output rounded
// once: loss rows and lse from float32, dx from its float32 product, dW and db from
// float32 accumulators over all chunks; the total, as for every dtype, a double sum.
// float32 scratch: the logits chunk (as the float32 path), a chunk of dx (chunk x h),
// dW's accumulator (weight-sized, c x h), vectors of c (bias, class weights, db) and of
// the chunk (row weights, upstream gradients, loss, lse).
template <class T> double dense_ce_lp(const T* x, const T* w, bool w_oi, const T* b, const int64_t* target,
                                      int64_t n, int64_t h, int64_t c, int64_t ignore_index, double ls, const T* grad,
                                      double grad_scalar, T* loss_rows, T* dx, T* dw, T* db, int64_t chunk,
                                      const DenseCeExtras<T>& ex) {
  const bool grads = dx || dw || db;
  if (dw) std::fill(dw, dw + c * h, T{0});
  if (db) std::fill(db, db + c, T{0});
  if (n == 0) return 0.0;
  if (c == 0) throw std::invalid_argument("fastnn: dense_cross_entropy needs at least one class");
  chunk = std::max<int64_t>(1, std::min(chunk, n));
  const auto widened = [](const T* v, int64_t len) {
    std::vector<float> out(v ? len : 0);
    if (v) widen_block(v, out.data(), len);
    return out;
  };
  const std::vector<float> bf = widened(b, c), cwf = widened(ex.class_weight, c);
  double wsum = static_cast<double>(c);
  if (ex.class_weight) {
    wsum = 0;
    for (int64_t j = 0; j < c; ++j) wsum += static_cast<double>(cwf[j]);
  }
  const CeRow<float> k{b ? bf.data() : nullptr, ex.class_weight ? cwf.data() : nullptr, static_cast<float>(wsum),
                       static_cast<float>(ls), static_cast<float>(ex.softcap), static_cast<float>(ex.z_scale),
                       grads, ex.lse != nullptr};
  Scratch<float> L(chunk * c);
  std::vector<float> rowloss(chunk), rowlse(chunk), gk(grad ? chunk : 0), rwk(ex.row_weight ? chunk : 0);
  std::vector<float> dbf(db ? c : 0, 0.0f), ones(db ? chunk : 0, 1.0f);
  std::optional<Scratch<float>> dxt, dwacc;
  if (dx && h > 0) dxt.emplace(chunk * h);
  if (dw && h > 0) dwacc.emplace(c * h);
  double total = 0;
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int64_t rows = std::min(chunk, n - r0);
    const T* xk = x + r0 * h;
    float* Lp = L.get();
    if (h == 0) std::fill(Lp, Lp + rows * c, 0.0f);
    else gemm_lp<T, T>(false, w_oi, rows, c, h, 1.0f, xk, h, w, w_oi ? h : c, 0.0f, Lp, c);
    if (grad) widen_block(grad + r0, gk.data(), rows);
    if (ex.row_weight) widen_block(ex.row_weight + r0, rwk.data(), rows);
    const int64_t grain = std::max<int64_t>(1, 16384 / c);
    parallel_for(rows, grain, [&](int64_t s, int64_t e) {
      ce_rows_isa(Lp + s * c, k, target + r0 + s, grad ? gk.data() + s : nullptr, static_cast<float>(grad_scalar),
                  ex.row_weight ? rwk.data() + s : nullptr, ignore_index, rowloss.data() + s, rowlse.data() + s,
                  e - s, c);
    });
    for (int64_t r = 0; r < rows; ++r) total += static_cast<double>(rowloss[r]);
    if (loss_rows) narrow_block(rowloss.data(), loss_rows + r0, rows);
    if (ex.lse) narrow_block(rowlse.data(), ex.lse + r0, rows);
    if (!grads) continue;
    if (dxt) {  // dx = G W (W (c, h)) or G W^T (W (h, c))
      gemm_lp<float, T>(false, !w_oi, rows, h, c, 1.0f, Lp, c, w, w_oi ? h : c, 0.0f, dxt->get(), h);
      narrow_par(dxt->get(), dx + r0 * h, rows * h);
    }
    if (dwacc) {  // dW += G^T x_k (W (c, h)) or x_k^T G (W (h, c)); the first chunk overwrites
      const float beta = r0 == 0 ? 0.0f : 1.0f;
      if (w_oi) gemm_lp<float, T>(true, false, c, h, rows, 1.0f, Lp, c, xk, h, beta, dwacc->get(), h);
      else gemm_lp<T, float>(true, false, h, c, rows, 1.0f, xk, h, Lp, c, beta, dwacc->get(), c);
    }
    if (db) blas::gemv(CblasTrans, bi(rows), bi(c), 1.0f, Lp, bi(c), ones.data(), 1.0f, dbf.data());
  }
  if (dwacc) narrow_par(dwacc->get(), dw, c * h);
  if (db) narrow_block(dbf.data(), db, c);
  return total;
}

}  // namespace

// Rows per chunk: about 256 MiB of logits, at least 512 rows, at most n. Each chunk's
// three products re-read (and re-pack) all of W and dW, so chunks must be large (smaller
// ones lost to torch's unchunked products at LM-head sizes: docs/performance.md); the
// logits of 512 rows of 128256 classes (263 MB) are still under a tenth of torch's (N, C) buffers.
int64_t dense_ce_chunk(int64_t n, int64_t c, int64_t itemsize) {
  const int64_t rows = (256ll << 20) / std::max<int64_t>(c * itemsize, 1);
  return std::max<int64_t>(1, std::min(n, std::max<int64_t>(rows, 512)));
}

template <class T> double dense_cross_entropy(const T* x, const T* w, bool w_oi, const T* b, const int64_t* target,
                                              int64_t n, int64_t h, int64_t c, int64_t ignore_index, double ls,
                                              const T* grad, double grad_scalar, T* loss_rows, T* dx, T* dw, T* db,
                                              int64_t chunk, const DenseCeExtras<T>& ex) {
  if constexpr (is_half_v<T>)
    return dense_ce_lp(x, w, w_oi, b, target, n, h, c, ignore_index, ls, grad, grad_scalar, loss_rows, dx, dw, db,
                       chunk, ex);
  else
    return dense_ce_f(x, w, w_oi, b, target, n, h, c, ignore_index, ls, grad, grad_scalar, loss_rows, dx, dw, db,
                      chunk, ex);
}

#define FASTNN_DENSE_CE(T)                                                                                     \
  template double dense_cross_entropy<T>(const T*, const T*, bool, const T*, const int64_t*, int64_t, int64_t, \
                                         int64_t, int64_t, double, const T*, double, T*, T*, T*, T*, int64_t,   \
                                         const DenseCeExtras<T>&);
FASTNN_DENSE_CE(float)
FASTNN_DENSE_CE(double)
FASTNN_DENSE_CE(bf16)
FASTNN_DENSE_CE(f16)
#undef FASTNN_DENSE_CE

}  // namespace fastnn
