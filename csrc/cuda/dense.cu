// dense.cu — the dense layer's epilogue (bias + activation) and prologue (activation
// derivative + bias-gradient partial sums), and the fixed-order reductions.
// Part of the one NVRTC program kernels.cu assembles (conventions: kernels.cu).
#pragma once
#include "common.cuh"

namespace fk {

// ---- dense epilogue / prologue -------------------------------------------------------

// Over a (rows, cols) product z: v = z + b (b may be null); y = act(v); z = v when
// y != z (keep_z). Blocks: x over columns, y over rows (strided).
template <class T, class F> __device__ __forceinline__ void bias_act_loop(T* z, T* y, const T* b, long long rows,
                                                                        long long cols, long long c, F f) {
  const T bc = b ? b[c] : T(0);
  const long long gs = gridDim.y;
  long long r = blockIdx.y;
  for (; r + 3 * gs < rows; r += 4 * gs) {
    T v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) v[u] = z[(r + u * gs) * cols + c];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      if (b) v[u] = v[u] + bc;  // no "+ 0" without b: it would turn -0 into +0
      if (y != z && b) z[(r + u * gs) * cols + c] = v[u];
      y[(r + u * gs) * cols + c] = f(v[u]);
    }
  }
  for (; r < rows; r += gs) {
    const long long i = r * cols + c;
    const T v = b ? z[i] + bc : z[i];
    if (y != z && b) z[i] = v;
    y[i] = f(v);
  }
}
template <class T> __global__ void bias_act(T* z, T* y, const T* b, long long rows, long long cols, int code,
                                               FK_ACT_DECL) {
  const ActParams p = FK_ACT_PARAMS;
  const long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;  // no barriers in this kernel
  switch (static_cast<Act>(code)) {
#define FK_CASE(f) case Act::f: bias_act_loop(z, y, b, rows, cols, c, [&](T v) { return sm::f##_fwd<T>(v, p); }); break;
    FASTNN_ELEMENTWISE_ACTIVATIONS(FK_CASE)
#undef FK_CASE
    default: break;
  }
}

// g = dy * act'(zy) (act given by code; zy null: g = dy, the linear case) over the rows
// [blockIdx.y * rpc, +rpc) of column c, and partial[blockIdx.y, c] = sum of those g in
// double (bias gradient, finished by col_reduce in chunk order). g and partial may be null.
template <class T> __global__ void act_grad(const T* zy, const T* dy, T* g, double* partial, long long rows,
                                               long long cols, long long rpc, int code, int from_y, FK_ACT_DECL) {
  const ActParams p = FK_ACT_PARAMS;
  const long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;  // no barriers in this kernel
  const long long r0 = (long long)blockIdx.y * rpc;
  const long long r1 = r0 + rpc < rows ? r0 + rpc : rows;
  double s = 0.0;
  long long r = r0;
  for (; r + 3 < r1; r += 4) {  // four rows' loads in flight; summed in row order
    T v[4], a[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) v[u] = dy[(r + u) * cols + c];
    if (zy) {
#pragma unroll
      for (int u = 0; u < 4; ++u) a[u] = zy[(r + u) * cols + c];
#pragma unroll
      for (int u = 0; u < 4; ++u) v[u] = from_y ? act_bwd_y<T>(code, a[u], v[u], p) : act_bwd<T>(code, a[u], v[u], p);
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      if (g) g[(r + u) * cols + c] = v[u];
      s += (double)v[u];
    }
  }
  for (; r < r1; ++r) {
    const long long i = r * cols + c;
    T v = dy[i];
    if (zy) v = from_y ? act_bwd_y<T>(code, zy[i], v, p) : act_bwd<T>(code, zy[i], v, p);
    if (g) g[i] = v;
    s += (double)v;
  }
  if (partial) partial[(long long)blockIdx.y * cols + c] = s;
}

// out[c] = sum over k < nchunks of partial[k, c], in order.
template <class T> __global__ void col_reduce(const double* partial, long long nchunks, long long cols, T* out) {
  for (long long c = gtid(); c < cols; c += gstride()) {
    double s = 0.0;
    for (long long k = 0; k < nchunks; ++k) s += partial[k * cols + c];
    out[c] = (T)s;
  }
}

// out[0] = sum of v[0 .. n) in double, by one block (fixed order).
template <class T> __global__ void sum_all(const T* v, long long n, double* out) {
  __shared__ double sh[1024];
  double s = 0.0;
  for (long long i = threadIdx.x; i < n; i += blockDim.x) s += (double)v[i];
  s = block_sum(s, sh);
  if (threadIdx.x == 0) out[0] = s;
}

}  // namespace fk
