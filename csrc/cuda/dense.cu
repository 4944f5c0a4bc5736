// dense.cu — the dense layer's epilogue (bias + activation) and prologue (activation
// derivative + bias-gradient partial sums), and the fixed-order reductions.
// Part of the one NVRTC program kernels.cu assembles (conventions: kernels.cu).
#pragma once
#include "common.cuh"

namespace fk {

// ---- dense epilogue / prologue -------------------------------------------------------

// Over a (rows, cols) product `in` (storage T, or float32 A for the 16-bit products'
// float32 results): v = in + b (b may be null), computed in C = acc_t<T>; y = act(v), and
// zo = v where zo is given (the pre-activation kept for backward), each rounded once to T.
// Blocks: x over columns, y over rows (strided).
template <class T, class A, class F>
__device__ __forceinline__ void bias_act_loop(const A* in, T* zo, T* y, const T* b, long long rows, long long cols,
                                              long long c, F f) {
  using C = acc_t<T>;
  const C bc = b ? (C)ld(b[c]) : C(0);
  const long long gs = gridDim.y;
  long long r = blockIdx.y;
  for (; r + 3 * gs < rows; r += 4 * gs) {
    C v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) v[u] = (C)ld(in[(r + u * gs) * cols + c]);
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      if (b) v[u] = v[u] + bc;  // no "+ 0" without b: it would turn -0 into +0
      if (zo) zo[(r + u * gs) * cols + c] = st<T>(v[u]);
      y[(r + u * gs) * cols + c] = st<T>(f(v[u]));
    }
  }
  for (; r < rows; r += gs) {
    const long long i = r * cols + c;
    const C v = b ? (C)ld(in[i]) + bc : (C)ld(in[i]);
    if (zo) zo[i] = st<T>(v);
    y[i] = st<T>(f(v));
  }
}
// In place on the product z (T): y = act(z + b); z = z + b kept where y != z.
template <class T> __global__ void bias_act(T* z, T* y, const T* b, long long rows, long long cols, int code,
                                               FK_ACT_DECL) {
  using C = acc_t<T>;
  const ActParams p = FK_ACT_PARAMS;
  const long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;  // no barriers in this kernel
  T* zo = y != z && b ? z : (T*)0;
  switch (static_cast<Act>(code)) {
#define FK_CASE(f) \
  case Act::f: bias_act_loop(z, zo, y, b, rows, cols, c, [&](C v) { return sm::f##_fwd<C>(v, p); }); break;
    FASTNN_ELEMENTWISE_ACTIVATIONS(FK_CASE)
#undef FK_CASE
    default: break;
  }
}
// From a float32 product acc (the 16-bit layers' cuBLAS result, float32 accumulation):
// y = act(acc + b) and z = acc + b (z may be null), rounded once each. This is what makes
// a 16-bit Dense + activation round once, at its output.
template <class T> __global__ void bias_act_acc(const float* acc, T* z, T* y, const T* b, long long rows,
                                                   long long cols, int code, FK_ACT_DECL) {
  using C = acc_t<T>;
  const ActParams p = FK_ACT_PARAMS;
  const long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;  // no barriers in this kernel
  switch (static_cast<Act>(code)) {
#define FK_CASE(f) \
  case Act::f: bias_act_loop(acc, z, y, b, rows, cols, c, [&](C v) { return sm::f##_fwd<C>(v, p); }); break;
    FASTNN_ELEMENTWISE_ACTIVATIONS(FK_CASE)
#undef FK_CASE
    default: break;
  }
}

// out[i] = a[i] rounded once to T (the 16-bit layers' float32 accumulators to storage).
template <class T> __global__ void from_f32(const float* a, T* out, long long n) {
  for (long long i = gtid(); i < n; i += gstride()) out[i] = st<T>((acc_t<T>)a[i]);
}

// hi[i] = a[i] rounded to T, lo[i] = the residue a[i] - hi[i] rounded to T: hi + lo carries
// a float32 value to ~2^-16 (bfloat16) / 2^-22 (float16) relative, so that two 16-bit
// GemmEx products accumulated in float32 read an unrounded float32 operand (the 16-bit
// fused dense + cross-entropy's logits gradient).
template <class T> __global__ void split_f32(const float* a, T* hi, T* lo, long long n) {
  for (long long i = gtid(); i < n; i += gstride()) {
    const T h = st<T>((acc_t<T>)a[i]);
    hi[i] = h;
    lo[i] = st<T>((acc_t<T>)(a[i] - (float)ld(h)));
  }
}

// acc[r, c] += b[c] over a (rows, cols) float32 product (b widened; no rounding).
template <class T> __global__ void add_bias_f32(float* acc, const T* b, long long rows, long long cols) {
  const long long n = rows * cols;
  for (long long i = gtid(); i < n; i += gstride()) acc[i] += (float)ld(b[i % cols]);
}

// g = dy * act'(zy) (act given by code; zy null: g = dy, the linear case) over the rows
// [blockIdx.y * rpc, +rpc) of column c, and partial[blockIdx.y, c] = sum of those g in
// double (bias gradient, finished by col_reduce in chunk order). g and partial may be null.
// g is computed in C and rounded to T; the sums add the rounded g (the values the weight
// gradient's product reads). g_lo (may be null; the 16-bit layers whose activation
// derivative is not exact in 16 bits): the residue g - (T)g as a second T, so that the
// products read g to ~2^-16 / 2^-22 (split_f32's scheme); the sums then add the unrounded g.
template <class T> __global__ void act_grad(const T* zy, const T* dy, T* g, T* g_lo, double* partial, long long rows,
                                               long long cols, long long rpc, int code, int from_y, FK_ACT_DECL) {
  using C = acc_t<T>;
  const ActParams p = FK_ACT_PARAMS;
  const long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;  // no barriers in this kernel
  const long long r0 = (long long)blockIdx.y * rpc;
  const long long r1 = r0 + rpc < rows ? r0 + rpc : rows;
  double s = 0.0;
  long long r = r0;
  for (; r + 3 < r1; r += 4) {  // four rows' loads in flight; summed in row order
    C v[4], a[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) v[u] = ld(dy[(r + u) * cols + c]);
    if (zy) {
#pragma unroll
      for (int u = 0; u < 4; ++u) a[u] = ld(zy[(r + u) * cols + c]);
#pragma unroll
      for (int u = 0; u < 4; ++u) v[u] = from_y ? act_bwd_y<C>(code, a[u], v[u], p) : act_bwd<C>(code, a[u], v[u], p);
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const T gv = st<T>(v[u]);
      if (g) g[(r + u) * cols + c] = gv;
      if (g_lo) g_lo[(r + u) * cols + c] = st<T>(v[u] - (C)ld(gv));
      s += g_lo ? (double)v[u] : (double)ld(gv);
    }
  }
  for (; r < r1; ++r) {
    const long long i = r * cols + c;
    C v = ld(dy[i]);
    if (zy) v = from_y ? act_bwd_y<C>(code, (C)ld(zy[i]), v, p) : act_bwd<C>(code, (C)ld(zy[i]), v, p);
    const T gv = st<T>(v);
    if (g) g[i] = gv;
    if (g_lo) g_lo[i] = st<T>(v - (C)ld(gv));
    s += g_lo ? (double)v : (double)ld(gv);
  }
  if (partial) partial[(long long)blockIdx.y * cols + c] = s;
}

// out[c] = sum over k < nchunks of partial[k, c], in order, rounded to T (through C: for
// the 16-bit types double -> float -> T, torch's float32 accumulator rounded once).
template <class T> __global__ void col_reduce(const double* partial, long long nchunks, long long cols, T* out) {
  for (long long c = gtid(); c < cols; c += gstride()) {
    double s = 0.0;
    for (long long k = 0; k < nchunks; ++k) s += partial[k * cols + c];
    out[c] = st<T>((acc_t<T>)s);
  }
}

// out[0] = sum of v[0 .. n) in double, by one block (fixed order).
template <class T> __global__ void sum_all(const T* v, long long n, double* out) {
  __shared__ double sh[1024];
  double s = 0.0;
  for (long long i = threadIdx.x; i < n; i += blockDim.x) s += (double)ld(v[i]);
  s = block_sum(s, sh);
  if (threadIdx.x == 0) out[0] = s;
}

}  // namespace fk
