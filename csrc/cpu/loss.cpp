// loss.cpp — elementwise losses and the cross-entropy family (class axis last).
//
// Kernels compute per-element (or per-row) values and their plain sum; the "mean" and
// "batchmean" denominators and the upstream grad scaling are applied by the Python
// layer (fastnn/_kernels.py), identically for every backend. Sums are chunked
// (chunked_sum) so they are bit-identical whatever the thread count.
#include <algorithm>
#include <cmath>
#include <vector>

#include "vecmath.h"  // first: SIMD declarations of libm functions
#include "kernels.h"
#include "parallel.h"
#include "isa.h"
#include "simd_dispatch.h"  // exp_row_sum: the rows' exponentials

namespace fastnn {
namespace {

constexpr int64_t kChunk = 16384;  // elements per reduction chunk (fixed: it decides the sums' bits)
// Elements per thread's part: a part must pay for waking the pool's other thread
// (activation.cpp, elementwise_grain); the losses cost about what the exp-class
// activations do per element.
constexpr int64_t kPart = int64_t(1) << 19;
constexpr int64_t kRowPart = int64_t(1) << 16;

// GEN(value, dpred, dtarget) expands to each loss's loop, with p = pred[i], t = target[i]
// and PW = the pos_weight of element i in scope. One case per entry of the generated
// FASTNN_ELEMENTWISE_LOSSES (op_table.h), with scalar_math.h's uniform forms
// sm::<name>_loss_*(p, t, ls, pw); a loss reading pos_weight also gets a loop for the
// common case without one (pw = 1).
#define FASTNN_LOSS_CASE(l)                                                                            \
  case Loss::l:                                                                                        \
    if (!sm::l##_loss_uses_pw || !pw) {                                                                \
      GEN(sm::l##_loss_val(p, t, ls, T(1)), sm::l##_loss_dpred(p, t, ls, T(1)),                        \
          sm::l##_loss_dtarget(p, t, ls, T(1)))                                                        \
    }                                                                                                  \
    GEN(sm::l##_loss_val(p, t, ls, PW), sm::l##_loss_dpred(p, t, ls, PW), sm::l##_loss_dtarget(p, t, ls, PW))
#define FASTNN_LOSS_SWITCH(a, GEN)                  \
  switch (a.kind) {                                 \
    FASTNN_ELEMENTWISE_LOSSES(FASTNN_LOSS_CASE)     \
    default: break;                                 \
  }

// pos_weight of element i. The loop without pos_weight is a separate one (above): the
// modulo here cannot be if-converted, and kept that loop scalar (14 ns per element).
#define PW (pw ? pw[(off + i) % pwl] : T(1))

template <class T> FASTNN_INLINE double loss_fwd_serial(const LossArgs<T>& args, const T* pred, const T* target, T* out,
                                                        int64_t off, int64_t n) {
  const LossArgs<T> a = args;  // a local copy: stores to out cannot alias it, its flags are loop-invariant
  const sm::LossScalars<T> ls{T(a.delta), T(a.beta), T(a.eps), a.log_target, a.log_input, a.full};
  const T* const pw = a.pos_weight;
  const int64_t pwl = a.pw_len;
// Two loops (with and without per-element output) so each vectorizes.
#define GEN(VAL, DP, DT)                                             \
  {                                                                  \
    double s = 0;                                                    \
    if (out) {                                                       \
      _Pragma("omp simd reduction(+ : s)")                           \
      for (int64_t i = 0; i < n; ++i) {                              \
        const T p = pred[i], t = target[i];                          \
        out[i] = VAL;                                                \
        s += static_cast<double>(out[i]);                            \
      }                                                              \
    } else {                                                         \
      _Pragma("omp simd reduction(+ : s)")                           \
      for (int64_t i = 0; i < n; ++i) {                              \
        const T p = pred[i], t = target[i];                          \
        s += static_cast<double>(VAL);                               \
      }                                                              \
    }                                                                \
    return s;                                                        \
  }
  FASTNN_LOSS_SWITCH(a, GEN)
#undef GEN
  return 0.0;
}

template <class T> FASTNN_INLINE void loss_bwd_serial(const LossArgs<T>& args, const T* pred, const T* target,
                                                      const T* grad, T gs, T* dpred, T* dtarget, int64_t off,
                                                      int64_t n) {
  const LossArgs<T> a = args;
  const sm::LossScalars<T> ls{T(a.delta), T(a.beta), T(a.eps), a.log_target, a.log_input, a.full};
  const T* const pw = a.pos_weight;
  const int64_t pwl = a.pw_len;
// Separate loops with and without dtarget / a per-element grad, so the common one (no
// dtarget, a scalar grad) has no test inside and vectorizes.
#define GEN(VAL, DP, DT)                                             \
  if (dtarget) {                                                     \
    for (int64_t i = 0; i < n; ++i) {                                \
      const T p = pred[i], t = target[i], g = grad ? grad[i] : gs;   \
      dpred[i] = g * (DP);                                           \
      dtarget[i] = g * (DT);                                         \
    }                                                                \
  } else if (grad) {                                                 \
    for (int64_t i = 0; i < n; ++i) {                                \
      const T p = pred[i], t = target[i];                            \
      dpred[i] = grad[i] * (DP);                                     \
    }                                                                \
  } else {                                                           \
    for (int64_t i = 0; i < n; ++i) {                                \
      const T p = pred[i], t = target[i];                            \
      dpred[i] = gs * (DP);                                          \
    }                                                                \
  }                                                                  \
  return;
  FASTNN_LOSS_SWITCH(a, GEN)
#undef GEN
}
#undef PW

// One entry point per dtype, compiled for each ISA level (isa.h).
#define P_LF(T) const LossArgs<T>& a, const T* p, const T* t, T* o, int64_t off, int64_t n
FASTNN_ISA_FN(double, loss_fwd_isa, (P_LF(float)), (a, p, t, o, off, n), loss_fwd_serial(a, p, t, o, off, n))
FASTNN_ISA_FN(double, loss_fwd_isa, (P_LF(double)), (a, p, t, o, off, n), loss_fwd_serial(a, p, t, o, off, n))
#define P_LB(T) const LossArgs<T>& a, const T* p, const T* t, const T* g, T gs, T* dp, T* dt, int64_t off, int64_t n
FASTNN_ISA_FN(void, loss_bwd_isa, (P_LB(float)), (a, p, t, g, gs, dp, dt, off, n), loss_bwd_serial(a, p, t, g, gs, dp, dt, off, n))
FASTNN_ISA_FN(void, loss_bwd_isa, (P_LB(double)), (a, p, t, g, gs, dp, dt, off, n), loss_bwd_serial(a, p, t, g, gs, dp, dt, off, n))

// ---- cross-entropy rows ------------------------------------------------------------
// log-sum-exp of one row, stable: max + log(sum e^(x - max)).
// The row's max, or 0 when every entry is -inf (then e^(x - max) are all 0 and the
// caller's log 0 / 0 / 0 gives -inf or NaN, as torch).
template <class T> FASTNN_INLINE T row_max(const T* x, int64_t c) {
  T mx = -INFINITY;
#pragma omp simd reduction(max : mx)
  for (int64_t j = 0; j < c; ++j) mx = x[j] > mx ? x[j] : mx;
  return mx > -INFINITY ? mx : T(0);
}

template <class T> FASTNN_INLINE T row_lse(const T* x, int64_t c) {
  const T mx = row_max(x, c);
  return mx + sm::log(exp_row_sum<T>(x, nullptr, c, mx));
}

// e_j = e^(x_j - max) for one row, written to e; returns sum_j e_j.
template <class T> FASTNN_INLINE T row_exp(const T* x, T* e, int64_t c) {
  return exp_row_sum<T>(x, e, c, row_max(x, c));
}

// Index target y of one row (log_probs: nll; else cross_entropy with label smoothing ls):
//   nll:  -w_y x_y
//   ce:   (1 - ls) w_y (lse - x_y) + (ls / C) sum_c w_c (lse - x_c)
template <class T> FASTNN_INLINE T class_row_loss(const ClassArgs& a, const T* x, int64_t y, const T* w, int64_t c) {
  const T wy = w ? w[y] : T(1);
  if (a.log_probs) return -wy * x[y];
  const T lse = row_lse(x, c), ls = T(a.label_smoothing);
  T v = (T(1) - ls) * wy * (lse - x[y]);
  if (ls != T(0)) {
    T s = 0;
    for (int64_t j = 0; j < c; ++j) s += (w ? w[j] : T(1)) * (lse - x[j]);
    v += ls / T(c) * s;
  }
  return v;
}

// d(loss)/dx of one row times g:
//   nll: -g w_y at y, 0 elsewhere
//   ce:  g [(1 - ls) w_y (p_c - [c == y]) + (ls / C) (W p_c - w_c)],  W = sum_c w_c
template <class T> FASTNN_INLINE void class_row_grad(const ClassArgs& a, const T* x, int64_t y, const T* w, T wsum, T g, T* dx,
                                       int64_t c) {
  const T wy = w ? w[y] : T(1);
  if (a.log_probs) {
    for (int64_t j = 0; j < c; ++j) dx[j] = T(0);
    dx[y] = -g * wy;
    return;
  }
  // p_c = e_c / s with e_c = e^(x_c - max) kept in dx: one exp per element (exp(x_c - lse)
  // recomputed them all, and the exps were most of the backward's time)
  const T inv = T(1) / row_exp(x, dx, c), ls = T(a.label_smoothing);
  const T k1 = g * (T(1) - ls) * wy, k2 = g * ls / T(c);
  if (w) {
    for (int64_t j = 0; j < c; ++j) {
      const T pj = dx[j] * inv;
      dx[j] = k1 * pj + k2 * (wsum * pj - w[j]);
    }
  } else {  // a separate loop: a conditional load would keep it from vectorizing
    for (int64_t j = 0; j < c; ++j) {
      const T pj = dx[j] * inv;
      dx[j] = k1 * pj + k2 * (wsum * pj - T(1));  // this order: exactly 0 at y when p_y = 1
    }
  }
  dx[y] -= k1;
}

bool valid_class(int64_t y, int64_t c) { return y >= 0 && y < c; }
int64_t row_grain(int64_t cols) { return std::max<int64_t>(1, kChunk / std::max<int64_t>(cols, 1)); }
// Rows per thread's part: a whole number of row_grain(cols) chunks of >= kRowPart elements.
int64_t row_part(int64_t cols) {
  const int64_t g = row_grain(cols);
  return g * std::max<int64_t>(1, kRowPart / (g * std::max<int64_t>(cols, 1)));
}


// ---- row ranges [b, e) of the class losses (inlined into each ISA clone below) ----------
template <class T> FASTNN_INLINE double class_fwd_serial(const ClassArgs& a, const T* pred, const int64_t* target,
                                                         const T* weight, T* out, int64_t b, int64_t e, int64_t cols) {
  double s = 0;
  for (int64_t r = b; r < e; ++r) {
    const int64_t y = target[r];
    T v = T(0);
    if (y != a.ignore_index) v = valid_class(y, cols) ? class_row_loss(a, pred + r * cols, y, weight, cols) : T(NAN);
    if (out) out[r] = v;
    s += v;
  }
  return s;
}

template <class T> FASTNN_INLINE void class_bwd_serial(const ClassArgs& a, const T* pred, const int64_t* target,
                                                       const T* weight, T wsum, const T* grad, T gs, T* dpred,
                                                       int64_t b, int64_t e, int64_t cols) {
  for (int64_t r = b; r < e; ++r) {
    const int64_t y = target[r];
    T* dx = dpred + r * cols;
    if (y == a.ignore_index || !valid_class(y, cols)) {
      for (int64_t j = 0; j < cols; ++j) dx[j] = T(0);
      continue;
    }
    class_row_grad(a, pred + r * cols, y, weight, wsum, grad ? grad[r] : gs, dx, cols);
  }
}

// Probability targets t (rows, cols), smoothed t' = (1 - ls) t + ls / C:
//   loss = -sum_c w_c t'_c (x_c - lse);  dx_c = g (p_c sum_k w_k t'_k - w_c t'_c);
//   dt_c = -g (1 - ls) w_c (x_c - lse).
template <class T> FASTNN_INLINE double soft_fwd_serial(const ClassArgs& a, const T* pred, const T* target,
                                                        const T* weight, T* out, int64_t b, int64_t e, int64_t cols) {
  const T ls = T(a.label_smoothing), u = ls / T(cols > 0 ? cols : 1);
  double s = 0;
  for (int64_t r = b; r < e; ++r) {
    const T *x = pred + r * cols, *t = target + r * cols;
    const T lse = row_lse(x, cols);
    T v = 0;
    for (int64_t j = 0; j < cols; ++j) v -= (weight ? weight[j] : T(1)) * ((T(1) - ls) * t[j] + u) * (x[j] - lse);
    if (out) out[r] = v;
    s += v;
  }
  return s;
}

template <class T> FASTNN_INLINE void soft_bwd_serial(const ClassArgs& a, const T* pred, const T* target,
                                                      const T* weight, const T* grad, T gs, T* dpred, T* dtarget,
                                                      int64_t b, int64_t e, int64_t cols) {
  const T ls = T(a.label_smoothing), u = ls / T(cols > 0 ? cols : 1);
  for (int64_t r = b; r < e; ++r) {
    const T *x = pred + r * cols, *t = target + r * cols;
    const T g = grad ? grad[r] : gs, lse = row_lse(x, cols);
    T wt = 0;
    for (int64_t j = 0; j < cols; ++j) wt += (weight ? weight[j] : T(1)) * ((T(1) - ls) * t[j] + u);
    T* dx = dpred + r * cols;
    for (int64_t j = 0; j < cols; ++j) {
      const T wj = weight ? weight[j] : T(1);
      dx[j] = g * (sm::exp(x[j] - lse) * wt - wj * ((T(1) - ls) * t[j] + u));
      if (dtarget) dtarget[r * cols + j] = -g * (T(1) - ls) * wj * (x[j] - lse);
    }
  }
}

// One entry point per (body, dtype), compiled for each ISA level (isa.h).
#define FASTNN_CLONE_PAIR(name, ret, body, params, args)                                \
  FASTNN_ISA_FN(ret, name, (float, params(float)), FASTNN_TAG_F args, body<float> args)  \
  FASTNN_ISA_FN(ret, name, (double, params(double)), FASTNN_TAG_D args, body<double> args)
#define P_CF(T) const ClassArgs& a, const T* p, const int64_t* t, const T* w, T* o, int64_t b, int64_t e, int64_t c
FASTNN_CLONE_PAIR(class_fwd_isa, double, class_fwd_serial, P_CF, (a, p, t, w, o, b, e, c))
#define P_CB(T) const ClassArgs& a, const T* p, const int64_t* t, const T* w, T ws, const T* g, T gs, T* d, \
                int64_t b, int64_t e, int64_t c
FASTNN_CLONE_PAIR(class_bwd_isa, void, class_bwd_serial, P_CB, (a, p, t, w, ws, g, gs, d, b, e, c))
#define P_SF(T) const ClassArgs& a, const T* p, const T* t, const T* w, T* o, int64_t b, int64_t e, int64_t c
FASTNN_CLONE_PAIR(soft_fwd_isa, double, soft_fwd_serial, P_SF, (a, p, t, w, o, b, e, c))
#define P_SB(T) const ClassArgs& a, const T* p, const T* t, const T* w, const T* g, T gs, T* d, T* dt, int64_t b, \
                int64_t e, int64_t c
FASTNN_CLONE_PAIR(soft_bwd_isa, void, soft_bwd_serial, P_SB, (a, p, t, w, g, gs, d, dt, b, e, c))

// ---- 16-bit storage (half.h): the float32 kernels on blocks widened in L1 ----------------
// Inputs are widened (exactly) a block at a time into float32 buffers, the float32 kernel
// of the current ISA level runs on them, and each output is narrowed once (RNE); the sums
// are the float32 kernels' (double) sums of the unrounded values. The reduction chunks are
// the float32 path's (kChunk elements, row_grain rows), so sums do not depend on threads.
constexpr int64_t kLpBlock = 2048;  // elements per block: a few 8 KB buffers, in L1

template <class T> LossArgs<float> float_args(const LossArgs<T>& a) {
  return LossArgs<float>{a.kind, a.delta, a.beta, a.eps, a.log_target, a.log_input, a.full, nullptr, 0};
}
// pos_weight of elements [i, i + m), widened into pw (the kernel then reads pw[j % m]).
template <class T> void gather_pw(const LossArgs<T>& a, int64_t i, int64_t m, float* pw, LossArgs<float>* fa) {
  if (!a.pos_weight) return;
  for (int64_t j = 0; j < m; ++j) pw[j] = widen(a.pos_weight[(i + j) % a.pw_len]);
  fa->pos_weight = pw;
  fa->pw_len = m;
}

template <class T> double lp_loss_forward(const LossArgs<T>& a, const T* pred, const T* target, T* out, int64_t n) {
  return chunked_sum(
      n, kChunk,
      [&](int64_t b, int64_t e) {
        alignas(64) float fp[kLpBlock], ft[kLpBlock], fo[kLpBlock], fw[kLpBlock];
        LossArgs<float> fa = float_args(a);
        double s = 0;
        for (int64_t i = b; i < e; i += kLpBlock) {
          const int64_t m = std::min(kLpBlock, e - i);
          widen_block(pred + i, fp, m);
          widen_block(target + i, ft, m);
          gather_pw(a, i, m, fw, &fa);
          s += loss_fwd_isa(fa, fp, ft, out ? fo : nullptr, 0, m);
          if (out) narrow_block(fo, out + i, m);
        }
        return s;
      },
      kPart);
}

template <class T> void lp_loss_backward(const LossArgs<T>& a, const T* pred, const T* target, const T* grad,
                                         double grad_scalar, T* dpred, T* dtarget, int64_t n) {
  parallel_for(n, kPart, [&](int64_t b, int64_t e) {
    alignas(64) float fp[kLpBlock], ft[kLpBlock], fg[kLpBlock], fw[kLpBlock], fdp[kLpBlock], fdt[kLpBlock];
    LossArgs<float> fa = float_args(a);
    for (int64_t i = b; i < e; i += kLpBlock) {
      const int64_t m = std::min(kLpBlock, e - i);
      widen_block(pred + i, fp, m);
      widen_block(target + i, ft, m);
      if (grad) widen_block(grad + i, fg, m);
      gather_pw(a, i, m, fw, &fa);
      loss_bwd_isa(fa, fp, ft, grad ? fg : nullptr, float(grad_scalar), fdp, dtarget ? fdt : nullptr, 0, m);
      narrow_block(fdp, dpred + i, m);
      if (dtarget) narrow_block(fdt, dtarget + i, m);
    }
  });
}

// Class weights (cols values, a parameter, not a tensor of the batch) widened once.
template <class T> std::vector<float> widened(const T* w, int64_t n) {
  std::vector<float> v;
  if (w) v.resize(static_cast<size_t>(n)), widen_block(w, v.data(), n);
  return v;
}
inline const float* data_or_null(const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); }

// Row blocks [r, r + m) of at most max(1, kLpBlock / cols) rows within [b, e): the
// buffers bufs[k] hold one block of cols-element rows each, per_row[k] one value per row.
struct RowBlocks {
  int64_t blk, cols;
  std::vector<float> mem;
  RowBlocks(int64_t cols_, int nbuf, int nrow) : blk(std::max<int64_t>(1, kLpBlock / std::max<int64_t>(cols_, 1))), cols(cols_) {
    mem.resize(static_cast<size_t>(blk * (nbuf * cols + nrow)));
  }
  float* buf(int k) { return mem.data() + k * blk * cols; }
  float* row_buf(int nbuf, int k) { return mem.data() + nbuf * blk * cols + k * blk; }
};

template <class T> double lp_class_forward(const ClassArgs& a, const T* pred, const int64_t* target, const T* weight,
                                           T* out, int64_t rows, int64_t cols) {
  const std::vector<float> w = widened(weight, cols);
  return chunked_sum(
      rows, row_grain(cols),
      [&](int64_t b, int64_t e) {
        RowBlocks rb(cols, 1, 1);
        float *fp = rb.buf(0), *fo = rb.row_buf(1, 0);
        double s = 0;
        for (int64_t r = b; r < e; r += rb.blk) {
          const int64_t m = std::min(rb.blk, e - r);
          widen_block(pred + r * cols, fp, m * cols);
          s += class_fwd_isa(0.0f, a, fp, target + r, data_or_null(w), out ? fo : nullptr, 0, m, cols);
          if (out) narrow_block(fo, out + r, m);
        }
        return s;
      },
      row_part(cols));
}

template <class T> void lp_class_backward(const ClassArgs& a, const T* pred, const int64_t* target, const T* weight,
                                          const T* grad, double grad_scalar, T* dpred, int64_t rows, int64_t cols) {
  const std::vector<float> w = widened(weight, cols);
  float wsum = float(cols);
  if (weight) { wsum = 0; for (float v : w) wsum += v; }  // as the float32 path
  parallel_for(rows, row_part(cols), [&](int64_t b, int64_t e) {
    RowBlocks rb(cols, 2, 1);
    float *fp = rb.buf(0), *fd = rb.buf(1), *fg = rb.row_buf(2, 0);
    for (int64_t r = b; r < e; r += rb.blk) {
      const int64_t m = std::min(rb.blk, e - r);
      widen_block(pred + r * cols, fp, m * cols);
      if (grad) widen_block(grad + r, fg, m);
      class_bwd_isa(0.0f, a, fp, target + r, data_or_null(w), wsum, grad ? fg : nullptr, float(grad_scalar), fd, 0, m,
                    cols);
      narrow_block(fd, dpred + r * cols, m * cols);
    }
  });
}

template <class T> double lp_soft_forward(const ClassArgs& a, const T* pred, const T* target, const T* weight, T* out,
                                          int64_t rows, int64_t cols) {
  const std::vector<float> w = widened(weight, cols);
  return chunked_sum(
      rows, row_grain(cols),
      [&](int64_t b, int64_t e) {
        RowBlocks rb(cols, 2, 1);
        float *fp = rb.buf(0), *ft = rb.buf(1), *fo = rb.row_buf(2, 0);
        double s = 0;
        for (int64_t r = b; r < e; r += rb.blk) {
          const int64_t m = std::min(rb.blk, e - r);
          widen_block(pred + r * cols, fp, m * cols);
          widen_block(target + r * cols, ft, m * cols);
          s += soft_fwd_isa(0.0f, a, fp, ft, data_or_null(w), out ? fo : nullptr, 0, m, cols);
          if (out) narrow_block(fo, out + r, m);
        }
        return s;
      },
      row_part(cols));
}

template <class T> void lp_soft_backward(const ClassArgs& a, const T* pred, const T* target, const T* weight,
                                         const T* grad, double grad_scalar, T* dpred, T* dtarget, int64_t rows,
                                         int64_t cols) {
  const std::vector<float> w = widened(weight, cols);
  parallel_for(rows, row_part(cols), [&](int64_t b, int64_t e) {
    RowBlocks rb(cols, 4, 1);
    float *fp = rb.buf(0), *ft = rb.buf(1), *fd = rb.buf(2), *fdt = rb.buf(3), *fg = rb.row_buf(4, 0);
    for (int64_t r = b; r < e; r += rb.blk) {
      const int64_t m = std::min(rb.blk, e - r), o = r * cols;
      widen_block(pred + o, fp, m * cols);
      widen_block(target + o, ft, m * cols);
      if (grad) widen_block(grad + r, fg, m);
      soft_bwd_isa(0.0f, a, fp, ft, data_or_null(w), grad ? fg : nullptr, float(grad_scalar), fd,
                   dtarget ? fdt : nullptr, 0, m, cols);
      narrow_block(fd, dpred + o, m * cols);
      if (dtarget) narrow_block(fdt, dtarget + o, m * cols);
    }
  });
}

}  // namespace

template <class T> double loss_forward(const LossArgs<T>& a, const T* pred, const T* target, T* out, int64_t n) {
  return chunked_sum(
      n, kChunk,
      [&](int64_t b, int64_t e) { return loss_fwd_isa(a, pred + b, target + b, out ? out + b : nullptr, b, e - b); },
      kPart);
}

template <class T> void loss_backward(const LossArgs<T>& a, const T* pred, const T* target, const T* grad,
                                      double grad_scalar, T* dpred, T* dtarget, int64_t n) {
  parallel_for(n, kPart, [&](int64_t b, int64_t e) {
    loss_bwd_isa(a, pred + b, target + b, grad ? grad + b : nullptr, T(grad_scalar), dpred + b,
                 dtarget ? dtarget + b : nullptr, b, e - b);
  });
}

template <class T> double class_forward(const ClassArgs& a, const T* pred, const int64_t* target, const T* weight,
                                        T* out, int64_t rows, int64_t cols) {
  return chunked_sum(
      rows, row_grain(cols),
      [&](int64_t b, int64_t e) { return class_fwd_isa(T(), a, pred, target, weight, out, b, e, cols); },
      row_part(cols));
}

template <class T> void class_backward(const ClassArgs& a, const T* pred, const int64_t* target, const T* weight,
                                       const T* grad, double grad_scalar, T* dpred, int64_t rows, int64_t cols) {
  T wsum = T(cols);
  if (weight) { wsum = 0; for (int64_t j = 0; j < cols; ++j) wsum += weight[j]; }
  parallel_for(rows, row_part(cols), [&](int64_t b, int64_t e) {
    class_bwd_isa(T(), a, pred, target, weight, wsum, grad, T(grad_scalar), dpred, b, e, cols);
  });
}

template <class T> double soft_class_forward(const ClassArgs& a, const T* pred, const T* target, const T* weight,
                                             T* out, int64_t rows, int64_t cols) {
  return chunked_sum(
      rows, row_grain(cols),
      [&](int64_t b, int64_t e) { return soft_fwd_isa(T(), a, pred, target, weight, out, b, e, cols); },
      row_part(cols));
}

template <class T> void soft_class_backward(const ClassArgs& a, const T* pred, const T* target, const T* weight,
                                            const T* grad, double grad_scalar, T* dpred, T* dtarget, int64_t rows,
                                            int64_t cols) {
  parallel_for(rows, row_part(cols), [&](int64_t b, int64_t e) {
    soft_bwd_isa(T(), a, pred, target, weight, grad, T(grad_scalar), dpred, dtarget, b, e, cols);
  });
}

#define FASTNN_INSTANTIATE(T)                                                                                  \
  template double loss_forward<T>(const LossArgs<T>&, const T*, const T*, T*, int64_t);                       \
  template void loss_backward<T>(const LossArgs<T>&, const T*, const T*, const T*, double, T*, T*, int64_t);  \
  template double class_forward<T>(const ClassArgs&, const T*, const int64_t*, const T*, T*, int64_t, int64_t); \
  template void class_backward<T>(const ClassArgs&, const T*, const int64_t*, const T*, const T*, double, T*,  \
                                  int64_t, int64_t);                                                           \
  template double soft_class_forward<T>(const ClassArgs&, const T*, const T*, const T*, T*, int64_t, int64_t); \
  template void soft_class_backward<T>(const ClassArgs&, const T*, const T*, const T*, const T*, double, T*,   \
                                       T*, int64_t, int64_t);
FASTNN_INSTANTIATE(float)
FASTNN_INSTANTIATE(double)

// 16-bit storage: the float32 kernels on widened blocks (above).
#define FASTNN_SPECIALIZE_LP(T)                                                                                \
  template <> double loss_forward<T>(const LossArgs<T>& a, const T* p, const T* t, T* o, int64_t n) {          \
    return lp_loss_forward(a, p, t, o, n);                                                                     \
  }                                                                                                            \
  template <> void loss_backward<T>(const LossArgs<T>& a, const T* p, const T* t, const T* g, double gs, T* dp, \
                                    T* dt, int64_t n) {                                                        \
    lp_loss_backward(a, p, t, g, gs, dp, dt, n);                                                               \
  }                                                                                                            \
  template <> double class_forward<T>(const ClassArgs& a, const T* p, const int64_t* t, const T* w, T* o,      \
                                      int64_t rows, int64_t cols) {                                            \
    return lp_class_forward(a, p, t, w, o, rows, cols);                                                        \
  }                                                                                                            \
  template <> void class_backward<T>(const ClassArgs& a, const T* p, const int64_t* t, const T* w, const T* g, \
                                     double gs, T* dp, int64_t rows, int64_t cols) {                           \
    lp_class_backward(a, p, t, w, g, gs, dp, rows, cols);                                                      \
  }                                                                                                            \
  template <> double soft_class_forward<T>(const ClassArgs& a, const T* p, const T* t, const T* w, T* o,       \
                                           int64_t rows, int64_t cols) {                                       \
    return lp_soft_forward(a, p, t, w, o, rows, cols);                                                         \
  }                                                                                                            \
  template <> void soft_class_backward<T>(const ClassArgs& a, const T* p, const T* t, const T* w, const T* g,  \
                                          double gs, T* dp, T* dt, int64_t rows, int64_t cols) {               \
    lp_soft_backward(a, p, t, w, g, gs, dp, dt, rows, cols);                                                   \
  }
FASTNN_SPECIALIZE_LP(bf16)
FASTNN_SPECIALIZE_LP(f16)

}  // namespace fastnn
