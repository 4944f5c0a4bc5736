// activation.cu — elementwise activations and softmax / log_softmax rows.
// Part of the one NVRTC program kernels.cu assembles (conventions: kernels.cu).
#pragma once
#include "common.cuh"

namespace fk {

// The switch on the activation is outside the loop: one loop per activation. T is the
// storage type, C = acc_t<T> the type of the formula (common.cuh).
template <class T> __global__ void act_forward(const T* x, T* y, long long n, int code, FK_ACT_DECL) {
  using C = acc_t<T>;
  const ActParams p = FK_ACT_PARAMS;
  switch (static_cast<Act>(code)) {
#define FK_CASE(f) case Act::f: map1(x, y, n, [&](T v) { return st<T>(sm::f##_fwd<C>(ld(v), p)); }); break;
    FASTNN_ELEMENTWISE_ACTIVATIONS(FK_CASE)
#undef FK_CASE
    default: break;
  }
}

// dx = dy * f'(x), or from the output y where from_y.
template <class T> __global__ void act_backward(const T* xy, const T* dy, T* dx, long long n, int code, int from_y,
                                                   FK_ACT_DECL) {
  using C = acc_t<T>;
  const ActParams p = FK_ACT_PARAMS;
  if (from_y) {
    switch (static_cast<Act>(code)) {
#define FK_CASE(f) \
  case Act::f: map2(xy, dy, dx, n, [&](T v, T d) { return st<T>(sm::f##_bwd_y<C>(ld(v), ld(d), p)); }); break;
      FASTNN_Y_BACKWARD_ACTIVATIONS(FK_CASE)
#undef FK_CASE
      default: break;
    }
    return;
  }
  switch (static_cast<Act>(code)) {
#define FK_CASE(f) \
  case Act::f: map2(xy, dy, dx, n, [&](T v, T d) { return st<T>(sm::f##_bwd<C>(ld(v), ld(d), p)); }); break;
    FASTNN_ELEMENTWISE_ACTIVATIONS(FK_CASE)
#undef FK_CASE
    default: break;
  }
}

// ---- softmax / log_softmax rows (one block per row) ---------------------------------

// y = softmax(x) or log_softmax(x) along rows of `cols`; y may be x. The row's max and
// sum are in C (float for the 16-bit types).
template <class T> __global__ void softmax_forward(const T* x, T* y, long long rows, long long cols, int log_out) {
  using C = acc_t<T>;
  __shared__ C sh[1024];
  __shared__ C sh2[1024];
  for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    C mx, s;
    row_max_sum(xr, cols, sh, sh2, mx, s);
    if (log_out) {
      const C lse = mx + sm::k_log(s);
      rowmap(xr, yr, cols, [&](T v, long long) { return st<T>(ld(v) - lse); });
    } else {
      const C inv = C(1) / s;
      rowmap(xr, yr, cols, [&](T v, long long) { return st<T>(sm::k_exp(ld(v) - mx) * inv); });
    }
  }
}

// softmax: dx = y (dy - sum(dy y)); log_softmax: dx = dy - e^y sum(dy); y from x (from_x)
// or given. dx may be dy.
template <class T> __global__ void softmax_backward(const T* xy, const T* dy, T* dx, long long rows, long long cols,
                                                       int log_out, int from_x) {
  using C = acc_t<T>;
  __shared__ C sh[1024];
  __shared__ C sh2[1024];
  for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* ar = xy + r * cols;
    const T* dr = dy + r * cols;
    T* or_ = dx + r * cols;
    C mx = C(0), inv = C(1), lse = C(0);
    if (from_x) {
      C s;
      row_max_sum(ar, cols, sh, sh2, mx, s);
      inv = C(1) / s;
      lse = mx + sm::k_log(s);
    }
    // y from x is recomputed in C (not rounded to T): the backward rounds once, at dx
    C s2 = C(0);
    for (long long j = threadIdx.x; j < cols; j += blockDim.x) {
      const C a = ld(ar[j]), d = ld(dr[j]);
      const C yj = !from_x ? a : (log_out ? a - lse : sm::k_exp(a - mx) * inv);
      s2 += log_out ? d : d * yj;
    }
    s2 = block_sum(s2, sh);
    for (long long j = threadIdx.x; j < cols; j += blockDim.x) {
      const C a = ld(ar[j]), d = ld(dr[j]);
      const C yj = !from_x ? a : (log_out ? a - lse : sm::k_exp(a - mx) * inv);
      or_[j] = st<T>(log_out ? d - sm::k_exp(yj) * s2 : yj * (d - s2));
    }
  }
}

}  // namespace fk
