// dense_ce.cpp — fused Dense + softmax cross-entropy, forward and all gradients in one
// chunked pass: the (n, c) logits are never held, only a (rows, c) chunk of them.
//
//   per chunk of rows:  L = x_k W^T + b                       (gemm, rows x c)
//                       lse_i = log sum_j e^(L_ij);  loss_i = (1 - ls)(lse_i - L_iy) + ls (lse_i - mean_j L_ij)
//                       G_ij = g_i (p_ij - (1 - ls) [j == y_i] - ls / c)   written over L
//                       dx_k = G W,  dW += G^T x_k,  db += G^T 1   (gemm, gemm, gemv)
// g_i is the upstream gradient of row i's loss (grad[i], or grad_scalar); ignored rows
// (target == ignore_index) have loss 0 and G = 0.
#include <algorithm>
#include <climits>
#include <cmath>
#include <memory>
#include <stdexcept>
#include <vector>

#include "vecmath.h"  // first: SIMD declarations of libm functions
#include "blas.h"
#include "kernels.h"
#include "parallel.h"

namespace fastnn {
namespace {

using blas::bi;  // 32-bit BLAS sizes, checked

// One row of logits L (bias not yet added): returns the row's loss; when g_row != 0 and
// grads are wanted, overwrites L with G (else leaves logits + bias in L).
template <class T> FASTNN_INLINE double ce_row(T* L, const T* b, int64_t c, int64_t y, T ls, T g_row, bool grads) {
  if (b) for (int64_t j = 0; j < c; ++j) L[j] += b[j];
  T mx = -INFINITY;
#pragma omp simd reduction(max : mx)
  for (int64_t j = 0; j < c; ++j) mx = L[j] > mx ? L[j] : mx;
  if (!(mx > -INFINITY)) mx = 0;
  T s = 0, sum_l = 0;
#pragma omp simd reduction(+ : s, sum_l)
  for (int64_t j = 0; j < c; ++j) { s += sm::exp(L[j] - mx); sum_l += L[j]; }
  const T lse = mx + std::log(s);
  const double loss = (T(1) - ls) * (lse - L[y]) + ls * (lse - sum_l / T(c));
  if (grads) {
    const T u = ls / T(c), py = sm::exp(L[y] - lse);
    for (int64_t j = 0; j < c; ++j) L[j] = g_row * (sm::exp(L[j] - lse) - u);
    L[y] = g_row * ((py - u) - (T(1) - ls));  // exactly 0 where p_y = 1 (one class)
  }
  return loss;
}

template <class T> FASTNN_INLINE void ce_rows_serial(T* L, const T* b, const int64_t* t, const T* grad, T gs,
                                                     int64_t ignore, T ls, bool grads, T* loss, int64_t rows,
                                                     int64_t c) {
  for (int64_t r = 0; r < rows; ++r) {
    T* row = L + r * c;
    const int64_t y = t[r];
    if (y == ignore || y < 0 || y >= c) {  // out-of-range targets are refused in Python
      loss[r] = y == ignore ? T(0) : T(NAN);
      if (grads) std::fill(row, row + c, T(0));
      continue;
    }
    loss[r] = static_cast<T>(ce_row(row, b, c, y, ls, grad ? grad[r] : gs, grads));
  }
}

FASTNN_CLONES void ce_rows_isa(float* L, const float* b, const int64_t* t, const float* g, float gs, int64_t ig,
                               float ls, bool grads, float* loss, int64_t rows, int64_t c) {
  ce_rows_serial(L, b, t, g, gs, ig, ls, grads, loss, rows, c);
}
FASTNN_CLONES void ce_rows_isa(double* L, const double* b, const int64_t* t, const double* g, double gs, int64_t ig,
                               double ls, bool grads, double* loss, int64_t rows, int64_t c) {
  ce_rows_serial(L, b, t, g, gs, ig, ls, grads, loss, rows, c);
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
                                              int64_t chunk) {
  const bool grads = dx || dw || db;
  if (dw) std::fill(dw, dw + c * h, T(0));
  if (db) std::fill(db, db + c, T(0));
  if (n == 0) return 0.0;
  if (c == 0) throw std::invalid_argument("fastnn: dense_cross_entropy needs at least one class");
  chunk = std::max<int64_t>(1, std::min(chunk, n));
  std::unique_ptr<T[]> L(new T[chunk * c]);
  std::unique_ptr<T[]> rowloss(new T[chunk]);
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
    T* lk = loss_rows ? loss_rows + r0 : rowloss.get();
    const int64_t grain = std::max<int64_t>(1, 16384 / c);
    parallel_for(rows, grain, [&](int64_t s, int64_t e) {
      ce_rows_isa(Lp + s * c, b, target + r0 + s, gk ? gk + s : nullptr, T(grad_scalar), ignore_index, T(ls), grads,
                  lk + s, e - s, c);
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

template double dense_cross_entropy<float>(const float*, const float*, bool, const float*, const int64_t*, int64_t,
                                           int64_t, int64_t, int64_t, double, const float*, double, float*, float*,
                                           float*, float*, int64_t);
template double dense_cross_entropy<double>(const double*, const double*, bool, const double*, const int64_t*,
                                            int64_t, int64_t, int64_t, int64_t, double, const double*, double, double*,
                                            double*, double*, double*, int64_t);

}  // namespace fastnn
