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
#define FK_LOSS_PARAMS LossScalars<T>{T(delta), T(beta), T(eps), log_target != 0, log_input != 0, full != 0}

// Per-element values to out (may be null) and partial[blockIdx.x] = this block's sum in
// double; the caller sums the partials with sum_all (fixed grid for a given n: the
// result is the same run to run).
template <class T> __global__ void loss_forward(const T* pred, const T* target, T* out, long long n, FK_LOSS_DECL,
                                                   double* partial) {
  __shared__ double sh[1024];
  const LossScalars<T> a = FK_LOSS_PARAMS;
  double s = 0.0;
  const long long st = gstride();
  long long i = gtid();
  for (; i + 3 * st < n; i += 4 * st) {  // four elements' loads in flight, summed in order
    T p[4], t[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      p[u] = pred[i + u * st];
      t[u] = target[i + u * st];
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const long long k = i + u * st;
      const T v = loss_val<T>(code, p[u], t[u], a, pw ? pw[k % pwl] : T(1));
      if (out) out[k] = v;
      s += (double)v;
    }
  }
  for (; i < n; i += st) {
    const T v = loss_val<T>(code, pred[i], target[i], a, pw ? pw[i % pwl] : T(1));
    if (out) out[i] = v;
    s += (double)v;
  }
  s = block_sum(s, sh);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// dpred = g * dloss/dpred, dtarget (may be null) = g * dloss/dtarget; g = grad[i] or gs.
template <class T> __global__ void loss_backward(const T* pred, const T* target, const T* grad, double gs, T* dpred,
                                                    T* dtarget, long long n, FK_LOSS_DECL) {
  const LossScalars<T> a = FK_LOSS_PARAMS;
  const T gsc = T(gs);
  const long long st = gstride();
  long long i = gtid();
  for (; i + 3 * st < n; i += 4 * st) {  // four elements' loads in flight
    T p[4], t[4], g[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      p[u] = pred[i + u * st];
      t[u] = target[i + u * st];
      g[u] = grad ? grad[i + u * st] : gsc;
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const long long k = i + u * st;
      const T w = pw ? pw[k % pwl] : T(1);
      dpred[k] = g[u] * loss_dpred<T>(code, p[u], t[u], a, w);
      if (dtarget) dtarget[k] = g[u] * loss_dtarget<T>(code, p[u], t[u], a, w);
    }
  }
  for (; i < n; i += st) {
    const T w = pw ? pw[i % pwl] : T(1);
    const T p = pred[i], t = target[i], g = grad ? grad[i] : gsc;
    dpred[i] = g * loss_dpred<T>(code, p, t, a, w);
    if (dtarget) dtarget[i] = g * loss_dtarget<T>(code, p, t, a, w);
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
  __shared__ T sh[1024];
  __shared__ T sh2[1024];
  const T ls = T(label_smoothing);
  for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    T* dr = dx ? dx + r * cols : (T*)0;
    const long long y = target[r];
    const bool valid = y >= 0 && y < cols;
    const T g = grad ? grad[r] : T(gs);
    if (y == ignore_index || !valid) {  // uniform over the block
      if (loss && threadIdx.x == 0) loss[r] = y == ignore_index ? T(0) : quiet_nan<T>();
      if (dr) for (long long j = threadIdx.x; j < cols; j += blockDim.x) dr[j] = T(0);
      continue;
    }
    const T wy = w ? w[y] : T(1);
    if (nll) {
      if (loss && threadIdx.x == 0) loss[r] = -wy * xr[y];
      if (dr) for (long long j = threadIdx.x; j < cols; j += blockDim.x) dr[j] = j == y ? -g * wy : T(0);
      continue;
    }
    const T xy = xr[y];  // read before any thread writes dr (barriers below)
    T mx, s;
    row_max_sum(xr, cols, sh, sh2, mx, s);
    const T lse = mx + sm::k_log(s);
    T sw = T(0), wsum = T(cols);
    if (ls != T(0)) {
      if (loss) {
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) sw += (w ? w[j] : T(1)) * (lse - xr[j]);
        sw = block_sum(sw, sh);
      }
      if (w && dr) {
        T ws = T(0);
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) ws += w[j];
        wsum = block_sum(ws, sh);
      }
    }
    if (loss && threadIdx.x == 0) {
      T v = (T(1) - ls) * wy * (lse - xy);
      if (ls != T(0)) v += ls / T(cols) * sw;
      loss[r] = v;
    }
    if (dr) {
      const T k1 = g * (T(1) - ls) * wy, k2 = g * ls / T(cols);
      rowmap(xr, dr, cols, [&](T v, long long j) {
        const T pj = sm::k_exp(v - lse);
        const T d = k1 * pj + k2 * (wsum * pj - (w ? w[j] : T(1)));
        return j == y ? d - k1 : d;
      });
    }
  }
}

// ---- cross_entropy with probability targets (one block per row) -----------------------
// t' = (1 - ls) t + ls / C:  loss = -sum_c w_c t'_c (x_c - lse);
// dx_c = g (p_c sum_k w_k t'_k - w_c t'_c);  dt_c = -g (1 - ls) w_c (x_c - lse).
template <class T> __global__ void soft_rows(const T* x, const T* t, const T* w, const T* grad, double gs, T* loss,
                                                T* dx, T* dt, long long rows, long long cols, double label_smoothing) {
  __shared__ T sh[1024];
  __shared__ T sh2[1024];
  const T ls = T(label_smoothing), u = ls / T(cols > 0 ? cols : 1);
  for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    const T* tr = t + r * cols;
    const T g = grad ? grad[r] : T(gs);
    T mx, s;
    row_max_sum(xr, cols, sh, sh2, mx, s);
    const T lse = mx + sm::k_log(s);
    if (loss) {
      T v = T(0);
      for (long long j = threadIdx.x; j < cols; j += blockDim.x)
        v -= (w ? w[j] : T(1)) * ((T(1) - ls) * tr[j] + u) * (xr[j] - lse);
      v = block_sum(v, sh);
      if (threadIdx.x == 0) loss[r] = v;
    }
    if (dx || dt) {
      T wt = T(0);
      for (long long j = threadIdx.x; j < cols; j += blockDim.x) wt += (w ? w[j] : T(1)) * ((T(1) - ls) * tr[j] + u);
      wt = block_sum(wt, sh);
      for (long long j = threadIdx.x; j < cols; j += blockDim.x) {
        const T wj = w ? w[j] : T(1);
        if (dx) dx[r * cols + j] = g * (sm::k_exp(xr[j] - lse) * wt - wj * ((T(1) - ls) * tr[j] + u));
        if (dt) dt[r * cols + j] = -g * (T(1) - ls) * wj * (xr[j] - lse);
      }
    }
  }
}

}  // namespace fk
