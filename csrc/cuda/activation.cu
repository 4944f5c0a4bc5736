// activation.cu — elementwise activations and softmax / log_softmax rows.
// Part of the one NVRTC program kernels.cu assembles (conventions: kernels.cu).
#pragma once
#include "common.cuh"

namespace fk {

// The switch on the activation is outside the loop: one loop per activation.
template <class T> __global__ void act_forward(const T* x, T* y, long long n, int code, FK_ACT_DECL) {
  const ActParams p = FK_ACT_PARAMS;
  switch (static_cast<Act>(code)) {
#define FK_CASE(f) case Act::f: map1(x, y, n, [&](T v) { return sm::f##_fwd<T>(v, p); }); break;
    FASTNN_ELEMENTWISE_ACTIVATIONS(FK_CASE)
#undef FK_CASE
    default: break;
  }
}

// dx = dy * f'(x), or from the output y where from_y.
template <class T> __global__ void act_backward(const T* xy, const T* dy, T* dx, long long n, int code, int from_y,
                                                   FK_ACT_DECL) {
  const ActParams p = FK_ACT_PARAMS;
  if (from_y) {
    switch (static_cast<Act>(code)) {
#define FK_CASE(f) case Act::f: map2(xy, dy, dx, n, [&](T v, T d) { return sm::f##_bwd_y<T>(v, d, p); }); break;
      FASTNN_Y_BACKWARD_ACTIVATIONS(FK_CASE)
#undef FK_CASE
      default: break;
    }
    return;
  }
  switch (static_cast<Act>(code)) {
#define FK_CASE(f) case Act::f: map2(xy, dy, dx, n, [&](T v, T d) { return sm::f##_bwd<T>(v, d, p); }); break;
    FASTNN_ELEMENTWISE_ACTIVATIONS(FK_CASE)
#undef FK_CASE
    default: break;
  }
}

// ---- softmax / log_softmax rows (one block per row) ---------------------------------

// y = softmax(x) or log_softmax(x) along rows of `cols`; y may be x.
template <class T> __global__ void softmax_forward(const T* x, T* y, long long rows, long long cols, int log_out) {
  __shared__ T sh[1024];
  __shared__ T sh2[1024];
  for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    T mx, s;
    row_max_sum(xr, cols, sh, sh2, mx, s);
    if (log_out) {
      const T lse = mx + sm::k_log(s);
      rowmap(xr, yr, cols, [&](T v, long long) { return v - lse; });
    } else {
      const T inv = T(1) / s;
      rowmap(xr, yr, cols, [&](T v, long long) { return sm::k_exp(v - mx) * inv; });
    }
  }
}

// softmax: dx = y (dy - sum(dy y)); log_softmax: dx = dy - e^y sum(dy); y from x (from_x)
// or given. dx may be dy.
template <class T> __global__ void softmax_backward(const T* xy, const T* dy, T* dx, long long rows, long long cols,
                                                       int log_out, int from_x) {
  __shared__ T sh[1024];
  __shared__ T sh2[1024];
  for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* ar = xy + r * cols;
    const T* dr = dy + r * cols;
    T* or_ = dx + r * cols;
    T mx = T(0), inv = T(1), lse = T(0);
    if (from_x) {
      T s;
      row_max_sum(ar, cols, sh, sh2, mx, s);
      inv = T(1) / s;
      lse = mx + sm::k_log(s);
    }
    T s2 = T(0);
    for (long long j = threadIdx.x; j < cols; j += blockDim.x) {
      const T yj = !from_x ? ar[j] : (log_out ? ar[j] - lse : sm::k_exp(ar[j] - mx) * inv);
      s2 += log_out ? dr[j] : dr[j] * yj;
    }
    s2 = block_sum(s2, sh);
    for (long long j = threadIdx.x; j < cols; j += blockDim.x) {
      const T yj = !from_x ? ar[j] : (log_out ? ar[j] - lse : sm::k_exp(ar[j] - mx) * inv);
      or_[j] = log_out ? dr[j] - sm::k_exp(yj) * s2 : yj * (dr[j] - s2);
    }
  }
}

}  // namespace fk
