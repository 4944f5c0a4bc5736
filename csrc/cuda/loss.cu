// loss.cu — elementwise losses and the cross-entropy family (one block per row).
// Part of the one NVRTC program kernels.cu assembles (conventions: kernels.cu).
#pragma once
#include "common.cuh"

namespace fk {

// ---- elementwise losses --------------------------------------------------------------

// One case per entry of the generated FASTNN_ELEMENTWISE_LOSSES, with scalar_math.h's
// uniform forms sm::<name>_loss_val / _dpred / _dtarget(p, t, a, pw).
using sm::LossScalars;
#define FK_LOSS_DISPATCH(form)                                                    \
  switch (static_cast<Loss>(k)) {                                                  \
    FASTNN_ELEMENTWISE_LOSSES(FK_LOSS_CASE_##form)                                 \
    default: return T(0);                                                          \
  }
#define FK_LOSS_CASE_val(l) case Loss::l: return sm::l##_loss_val<T>(p, t, a, pw);
#define FK_LOSS_CASE_dpred(l) case Loss::l: return sm::l##_loss_dpred<T>(p, t, a, pw);
#define FK_LOSS_CASE_dtarget(l) case Loss::l: return sm::l##_loss_dtarget<T>(p, t, a, pw);
template <class T> __device__ __forceinline__ T loss_val(int k, T p, T t, const LossScalars<T>& a, T pw) {
  FK_LOSS_DISPATCH(val)
}
template <class T> __device__ __forceinline__ T loss_dpred(int k, T p, T t, const LossScalars<T>& a, T pw) {
  FK_LOSS_DISPATCH(dpred)
}
template <class T> __device__ __forceinline__ T loss_dtarget(int k, T p, T t, const LossScalars<T>& a, T pw) {
  FK_LOSS_DISPATCH(dtarget)
}

#define FK_LOSS_DECL int code, double delta, double beta, double eps, int log_target, int log_input, int full, \
                     const T* pw, long long pwl
#define FK_LOSS_PARAMS LossScalars<C>{C(delta), C(beta), C(eps), log_target != 0, log_input != 0, full != 0}

// Per-element values to out (may be null) and partial[blockIdx.x] = this block's sum in
// double; the caller sums the partials with sum_all (fixed grid for a given n: the
// result is the same run to run). Values are computed in C = acc_t<T>; out gets them
// rounded once to T, the sum adds the unrounded values (the sum is its own output).
template <class T> __global__ void loss_forward(const T* pred, const T* target, T* out, long long n, FK_LOSS_DECL,
                                                   double* partial) {
  using C = acc_t<T>;
  __shared__ double sh[1024];
  const LossScalars<C> a = FK_LOSS_PARAMS;
  double s = 0.0;
  const long long st = gstride();
  long long i = gtid();
  for (; i + 3 * st < n; i += 4 * st) {  // four elements' loads in flight, summed in order
    C p[4], t[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      p[u] = ld(pred[i + u * st]);
      t[u] = ld(target[i + u * st]);
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const long long k = i + u * st;
      const C v = loss_val<C>(code, p[u], t[u], a, pw ? (C)ld(pw[k % pwl]) : C(1));
      if (out) out[k] = fk::st<T>(v);
      s += (double)v;
    }
  }
  for (; i < n; i += st) {
    const C v = loss_val<C>(code, ld(pred[i]), ld(target[i]), a, pw ? (C)ld(pw[i % pwl]) : C(1));
    if (out) out[i] = fk::st<T>(v);
    s += (double)v;
  }
  s = block_sum(s, sh);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// dpred = g * dloss/dpred, dtarget (may be null) = g * dloss/dtarget; g = grad[i] or gs.
template <class T> __global__ void loss_backward(const T* pred, const T* target, const T* grad, double gs, T* dpred,
                                                    T* dtarget, long long n, FK_LOSS_DECL) {
  using C = acc_t<T>;
  const LossScalars<C> a = FK_LOSS_PARAMS;
  const C gsc = C(gs);
  const long long st = gstride();
  long long i = gtid();
  for (; i + 3 * st < n; i += 4 * st) {  // four elements' loads in flight
    C p[4], t[4], g[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      p[u] = ld(pred[i + u * st]);
      t[u] = ld(target[i + u * st]);
      g[u] = grad ? (C)ld(grad[i + u * st]) : gsc;
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const long long k = i + u * st;
      const C w = pw ? (C)ld(pw[k % pwl]) : C(1);
      dpred[k] = fk::st<T>(g[u] * loss_dpred<C>(code, p[u], t[u], a, w));
      if (dtarget) dtarget[k] = fk::st<T>(g[u] * loss_dtarget<C>(code, p[u], t[u], a, w));
    }
  }
  for (; i < n; i += st) {
    const C w = pw ? (C)ld(pw[i % pwl]) : C(1);
    const C p = ld(pred[i]), t = ld(target[i]), g = grad ? (C)ld(grad[i]) : gsc;
    dpred[i] = fk::st<T>(g * loss_dpred<C>(code, p, t, a, w));
    if (dtarget) dtarget[i] = fk::st<T>(g * loss_dtarget<C>(code, p, t, a, w));
  }
}

// ---- cross_entropy / nll with class indices (one block per row) ----------------------
// Row r of x (rows, cols), target y = target[r]:
//   nll:  loss = -w_y x_y;                     dx = -g w_y at y, 0 elsewhere
//   ce:   loss = (1 - ls) w_y (lse - x_y) + (ls / C) sum_c w_c (lse - x_c)
//         dx_c = g [(1 - ls) w_y (p_c - [c == y]) + (ls / C) (W p_c - w_c)],  W = sum_c w_c
// An ignored row has loss 0 and dx 0. loss (rows) and dx may be null; dx may be x (the
// fused dense + cross-entropy writes the logits' gradient over the logits).
template <class T> __global__ void class_rows(const T* x, const long long* target, const T* w, const T* grad,
                                                 double gs, T* loss, T* dx, long long rows, long long cols, int nll,
                                                 long long ignore_index, double label_smoothing) {
  using C = acc_t<T>;  // every row statistic in C; loss and dx rounded once to T
  __shared__ C sh[1024];
  __shared__ C sh2[1024];
  const C ls = C(label_smoothing);
  for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    T* dr = dx ? dx + r * cols : (T*)0;
    const long long y = target[r];
    const bool valid = y >= 0 && y < cols;
    const C g = grad ? (C)ld(grad[r]) : C(gs);
    if (y == ignore_index || !valid) {  // uniform over the block
      if (loss && threadIdx.x == 0) loss[r] = st<T>(y == ignore_index ? C(0) : quiet_nan<C>());
      if (dr) for (long long j = threadIdx.x; j < cols; j += blockDim.x) dr[j] = st<T>(C(0));
      continue;
    }
    const C wy = w ? (C)ld(w[y]) : C(1);
    if (nll) {
      if (loss && threadIdx.x == 0) loss[r] = st<T>(-wy * (C)ld(xr[y]));
      if (dr) for (long long j = threadIdx.x; j < cols; j += blockDim.x) dr[j] = st<T>(j == y ? -g * wy : C(0));
      continue;
    }
    const C xy = ld(xr[y]);  // read before any thread writes dr (barriers below)
    C mx, s;
    row_max_sum(xr, cols, sh, sh2, mx, s);
    const C lse = mx + sm::k_log(s);
    C sw = C(0), wsum = C(cols);
    if (ls != C(0)) {
      if (loss) {
        for (long long j = threadIdx.x; j < cols; j += blockDim.x)
          sw += (w ? (C)ld(w[j]) : C(1)) * (lse - (C)ld(xr[j]));
        sw = block_sum(sw, sh);
      }
      if (w && dr) {
        C ws = C(0);
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) ws += ld(w[j]);
        wsum = block_sum(ws, sh);
      }
    }
    if (loss && threadIdx.x == 0) {
      C v = (C(1) - ls) * wy * (lse - xy);
      if (ls != C(0)) v += ls / C(cols) * sw;
      loss[r] = st<T>(v);
    }
    if (dr) {
      const C k1 = g * (C(1) - ls) * wy, k2 = g * ls / C(cols);
      rowmap(xr, dr, cols, [&](T v, long long j) {
        const C pj = sm::k_exp((C)ld(v) - lse);
        const C d = k1 * pj + k2 * (wsum * pj - (w ? (C)ld(w[j]) : C(1)));
        return st<T>(j == y ? d - k1 : d);
      });
    }
  }
}

// ---- cross_entropy with probability targets (one block per row) -----------------------
// t' = (1 - ls) t + ls / C:  loss = -sum_c w_c t'_c (x_c - lse);
// dx_c = g (p_c sum_k w_k t'_k - w_c t'_c);  dt_c = -g (1 - ls) w_c (x_c - lse).
template <class T> __global__ void soft_rows(const T* x, const T* t, const T* w, const T* grad, double gs, T* loss,
                                                T* dx, T* dt, long long rows, long long cols, double label_smoothing) {
  using C = acc_t<T>;  // every row statistic in C; loss, dx and dt rounded once to T
  __shared__ C sh[1024];
  __shared__ C sh2[1024];
  const C ls = C(label_smoothing), u = ls / C(cols > 0 ? cols : 1);
  for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    const T* tr = t + r * cols;
    const C g = grad ? (C)ld(grad[r]) : C(gs);
    C mx, s;
    row_max_sum(xr, cols, sh, sh2, mx, s);
    const C lse = mx + sm::k_log(s);
    if (loss) {
      C v = C(0);
      for (long long j = threadIdx.x; j < cols; j += blockDim.x)
        v -= (w ? (C)ld(w[j]) : C(1)) * ((C(1) - ls) * (C)ld(tr[j]) + u) * ((C)ld(xr[j]) - lse);
      v = block_sum(v, sh);
      if (threadIdx.x == 0) loss[r] = st<T>(v);
    }
    if (dx || dt) {
      C wt = C(0);
      for (long long j = threadIdx.x; j < cols; j += blockDim.x)
        wt += (w ? (C)ld(w[j]) : C(1)) * ((C(1) - ls) * (C)ld(tr[j]) + u);
      wt = block_sum(wt, sh);
      for (long long j = threadIdx.x; j < cols; j += blockDim.x) {
        const C wj = w ? (C)ld(w[j]) : C(1), xj = ld(xr[j]), tj = ld(tr[j]);
        if (dx) dx[r * cols + j] = st<T>(g * (sm::k_exp(xj - lse) * wt - wj * ((C(1) - ls) * tj + u)));
        if (dt) dt[r * cols + j] = st<T>(-g * (C(1) - ls) * wj * (xj - lse));
      }
    }
  }
}

}  // namespace fk
