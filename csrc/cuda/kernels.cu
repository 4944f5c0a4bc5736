// kernels.cu — the CuPy backend's CUDA kernels, compiled at run time by NVRTC
// (fastnn/_backends/_cuda_src.py builds the program: this file with its fastnn/ headers
// inlined, the options, and one name expression per kernel and dtype).
//
// Every formula comes from scalar_math.h, the header the C++ CPU backend uses; this file
// only loops, reduces and dispatches on the activation / loss code. Codes are the
// indices of fastnn/_registry.py; every dispatch iterates the lists of the generated
// fastnn/op_table.h (Act, Loss, FASTNN_ELEMENTWISE_ACTIVATIONS, ...).
//
// Conventions:
//  * 1-D blocks of a power-of-two size (32..1024); grid-stride loops with 64-bit indices.
//  * Reductions go through shared memory in a fixed tree order (no atomics, no warp
//    shuffles): results are bit-identical run to run, and the kernels run unchanged on
//    the CPU emulator of tests/cuda_emu (std::thread per CUDA thread, __syncthreads as a
//    barrier), which checks them against the C++ backend without a GPU.
//  * Pointers that may be absent are passed as null (0) and tested uniformly per kernel.
//  * Every kernel whose blocks synchronize returns only after its block-wide loop, never
//    from inside a branch that some threads of the block skip.
#include "fastnn/op_table.h"
#include "fastnn/scalar_math.h"

namespace fastnn {
namespace sm {
// Unqualified math, resolved where the formulas' is: CUDA's device overloads under NVRTC,
// fastnn/cpu_math.h's on the host (the emulator).
template <class T> __device__ __forceinline__ T k_exp(T x) { return exp(x); }
template <class T> __device__ __forceinline__ T k_log(T x) { return log(x); }
}  // namespace sm
}  // namespace fastnn

namespace fk {
using fastnn::ActParams;
namespace sm = fastnn::sm;

using fastnn::Act;
using fastnn::Loss;

// The activation parameters travel as plain scalars (NVRTC kernels take no host structs).
#define FK_ACT_DECL double p_ns, double p_mv, double p_th, double p_al, double p_be, double p_lo, double p_hi, int p_ap
#define FK_ACT_PARAMS ActParams{p_ns, p_mv, p_th, p_al, p_be, p_lo, p_hi, p_ap}

template <class T> __device__ __forceinline__ T act_bwd(int a, T x, T dy, const ActParams& p) {
  switch (static_cast<Act>(a)) {
#define FK_CASE(f) case Act::f: return sm::f##_bwd<T>(x, dy, p);
    FASTNN_ELEMENTWISE_ACTIVATIONS(FK_CASE)
#undef FK_CASE
    default: return dy;
  }
}
// From the output y: the activations of FROM_Y (relu only with torch's defaults).
template <class T> __device__ __forceinline__ T act_bwd_y(int a, T y, T dy, const ActParams& p) {
  switch (static_cast<Act>(a)) {
#define FK_CASE(f) case Act::f: return sm::f##_bwd_y<T>(y, dy, p);
    FASTNN_Y_BACKWARD_ACTIVATIONS(FK_CASE)
#undef FK_CASE
    default: return dy;
  }
}

__device__ __forceinline__ long long gtid() { return (long long)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ long long gstride() { return (long long)gridDim.x * blockDim.x; }

// 16 bytes of T (4 floats, 2 doubles): one 128-bit load or store where the data is
// 16-byte aligned, which keeps more bytes in flight per thread than scalar accesses.
template <class T> struct alignas(16) Pack {
  static constexpr int N = 16 / (int)sizeof(T);
  T v[N];
};
__device__ __forceinline__ bool aligned16(const void* p) { return ((unsigned long long)p & 15ull) == 0; }

// Sum / max of v over the block (blockDim.x a power of two), every thread gets it.
// sh holds blockDim.x values. Ends with a barrier, so sh can be reused at once.
template <class T> __device__ __forceinline__ T block_sum(T v, T* sh) {
  const unsigned t = threadIdx.x;
  sh[t] = v;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (t < s) sh[t] = sh[t] + sh[t + s];
    __syncthreads();
  }
  const T r = sh[0];
  __syncthreads();
  return r;
}
// -inf and NaN from their bits (no overflowing or 0/0 constant expressions to warn about).
template <class T> __device__ __forceinline__ T neg_inf();
template <> __device__ __forceinline__ float neg_inf<float>() { return __int_as_float((int)0xff800000u); }
template <> __device__ __forceinline__ double neg_inf<double>() {
  return __longlong_as_double((long long)0xfff0000000000000ull);
}
template <class T> __device__ __forceinline__ T quiet_nan();
template <> __device__ __forceinline__ float quiet_nan<float>() { return __int_as_float(0x7fc00000); }
template <> __device__ __forceinline__ double quiet_nan<double>() {
  return __longlong_as_double(0x7ff8000000000000ll);
}

// ---- log-sum-exp of a row in one read: online (max, sum) ------------------------------
// Each thread keeps m = max of its elements, s = sum of exp(x - m); pairs combine as
// (max(m1, m2), s1 e^(m1 - m) + s2 e^(m2 - m)). NaN and infinities come out as the C++
// backend's two-pass version gives them (torch's): a NaN anywhere, or a +inf (whose own
// term is e^(inf - inf)), makes the sum NaN; an all -inf row gives m = -inf, s = 0.
template <class T> __device__ __forceinline__ void lse_add(T& m, T& s, T v) {
  if (v > m) {
    s = s * sm::k_exp(m - v) + ((v - v) + T(1));  // (v - v) + 1: 1, or NaN for v = +inf
    m = v;
  } else {
    s += m == neg_inf<T>() ? (v == v ? T(0) : v) : sm::k_exp(v - m);  // a NaN v makes s NaN
  }
}
template <class T> __device__ __forceinline__ void lse_merge(T& m, T& s, T m2, T s2) {
  const T mm = m2 > m ? m2 : m;
  // a side with no finite element contributes 0, or its NaN
  const T a = m == neg_inf<T>() ? (s == s ? T(0) : s) : s * sm::k_exp(m - mm);
  const T b = m2 == neg_inf<T>() ? (s2 == s2 ? T(0) : s2) : s2 * sm::k_exp(m2 - mm);
  m = mm;
  s = a + b;
}
// (max, sum of e^(x - max)) of row xr over the block; sm_ and ss_ hold blockDim.x values.
// The max is returned as 0 for a row of -inf (then 0/0 gives torch's NaN downstream).
template <class T> __device__ __forceinline__ void row_max_sum(const T* xr, long long cols, T* sm_, T* ss_, T& mx,
                                                               T& sum) {
  const unsigned t = threadIdx.x, B = blockDim.x;
  T m = neg_inf<T>(), s = T(0);
  long long j = t;
  if (aligned16(xr) && cols % Pack<T>::N == 0) {  // 16-byte packs
    using P = Pack<T>;
    const P* xv = reinterpret_cast<const P*>(xr);
    const long long nv = cols / P::N;
    for (; j + B < nv; j += 2 * B) {
      const P a = xv[j], b = xv[j + B];
#pragma unroll
      for (int k = 0; k < P::N; ++k) lse_add(m, s, a.v[k]);
#pragma unroll
      for (int k = 0; k < P::N; ++k) lse_add(m, s, b.v[k]);
    }
    for (; j < nv; j += B) {
      const P a = xv[j];
#pragma unroll
      for (int k = 0; k < P::N; ++k) lse_add(m, s, a.v[k]);
    }
    j = cols;  // done
  }
  for (; j + 3 * B < cols; j += 4 * B) {
    const T v0 = xr[j], v1 = xr[j + B], v2 = xr[j + 2 * B], v3 = xr[j + 3 * B];
    lse_add(m, s, v0);
    lse_add(m, s, v1);
    lse_add(m, s, v2);
    lse_add(m, s, v3);
  }
  for (; j < cols; j += B) lse_add(m, s, xr[j]);
  sm_[t] = m;
  ss_[t] = s;
  __syncthreads();
  for (unsigned h = B / 2; h > 0; h >>= 1) {
    if (t < h) {
      T a = sm_[t], b = ss_[t];
      lse_merge(a, b, sm_[t + h], ss_[t + h]);
      sm_[t] = a;
      ss_[t] = b;
    }
    __syncthreads();
  }
  mx = sm_[0];
  sum = ss_[0];
  __syncthreads();
  if (!(mx > neg_inf<T>())) mx = T(0);
}

// yr[j] = f(xr[j], j) over a row, by the block: four loads in flight per thread.
template <class T, class F> __device__ __forceinline__ void rowmap(const T* xr, T* yr, long long cols, F f) {
  const long long B = blockDim.x;
  long long j = threadIdx.x;
  if (aligned16(xr) && aligned16(yr) && cols % Pack<T>::N == 0) {  // 16-byte packs
    using P = Pack<T>;
    const P* xv = reinterpret_cast<const P*>(xr);
    P* yv = reinterpret_cast<P*>(yr);
    const long long nv = cols / P::N;
    for (; j < nv; j += B) {
      P a = xv[j];
#pragma unroll
      for (int k = 0; k < P::N; ++k) a.v[k] = f(a.v[k], j * P::N + k);
      yv[j] = a;
    }
    return;
  }
  for (; j + 3 * B < cols; j += 4 * B) {
    const T v0 = xr[j], v1 = xr[j + B], v2 = xr[j + 2 * B], v3 = xr[j + 3 * B];
    yr[j] = f(v0, j);
    yr[j + B] = f(v1, j + B);
    yr[j + 2 * B] = f(v2, j + 2 * B);
    yr[j + 3 * B] = f(v3, j + 3 * B);
  }
  for (; j < cols; j += B) yr[j] = f(xr[j], j);
}

// ---- elementwise activations -------------------------------------------------------

// y[i] = f(x[i]) over a grid-stride loop, four elements per thread and step with all four
// loads issued before any store (a bandwidth-bound kernel needs the loads in flight).
template <class T, class F> __device__ __forceinline__ void map1(const T* x, T* y, long long n, F f) {
  const long long s = gstride();
  long long i = gtid();
  if (aligned16(x) && aligned16(y)) {  // 16-byte packs, two in flight per thread; then the tail
    using P = Pack<T>;
    const P* xv = reinterpret_cast<const P*>(x);
    P* yv = reinterpret_cast<P*>(y);
    const long long nv = n / P::N;
    for (; i + s < nv; i += 2 * s) {
      P a = xv[i], b = xv[i + s];
#pragma unroll
      for (int k = 0; k < P::N; ++k) {
        a.v[k] = f(a.v[k]);
        b.v[k] = f(b.v[k]);
      }
      yv[i] = a;
      yv[i + s] = b;
    }
    for (; i < nv; i += s) {
      P a = xv[i];
#pragma unroll
      for (int k = 0; k < P::N; ++k) a.v[k] = f(a.v[k]);
      yv[i] = a;
    }
    for (long long j = nv * P::N + gtid(); j < n; j += s) y[j] = f(x[j]);
    return;
  }
  for (; i + 3 * s < n; i += 4 * s) {
    const T a0 = x[i], a1 = x[i + s], a2 = x[i + 2 * s], a3 = x[i + 3 * s];
    y[i] = f(a0);
    y[i + s] = f(a1);
    y[i + 2 * s] = f(a2);
    y[i + 3 * s] = f(a3);
  }
  for (; i < n; i += s) y[i] = f(x[i]);
}
// y[i] = f(a[i], b[i]), likewise.
template <class T, class F> __device__ __forceinline__ void map2(const T* a, const T* b, T* y, long long n, F f) {
  const long long s = gstride();
  long long i = gtid();
  if (aligned16(a) && aligned16(b) && aligned16(y)) {
    using P = Pack<T>;
    const P* av = reinterpret_cast<const P*>(a);
    const P* bv = reinterpret_cast<const P*>(b);
    P* yv = reinterpret_cast<P*>(y);
    const long long nv = n / P::N;
    for (; i + s < nv; i += 2 * s) {
      P a0 = av[i], a1 = av[i + s];
      const P b0 = bv[i], b1 = bv[i + s];
#pragma unroll
      for (int k = 0; k < P::N; ++k) {
        a0.v[k] = f(a0.v[k], b0.v[k]);
        a1.v[k] = f(a1.v[k], b1.v[k]);
      }
      yv[i] = a0;
      yv[i + s] = a1;
    }
    for (; i < nv; i += s) {
      P a0 = av[i];
      const P b0 = bv[i];
#pragma unroll
      for (int k = 0; k < P::N; ++k) a0.v[k] = f(a0.v[k], b0.v[k]);
      yv[i] = a0;
    }
    for (long long j = nv * P::N + gtid(); j < n; j += s) y[j] = f(a[j], b[j]);
    return;
  }
  for (; i + 3 * s < n; i += 4 * s) {
    const T a0 = a[i], a1 = a[i + s], a2 = a[i + 2 * s], a3 = a[i + 3 * s];
    const T b0 = b[i], b1 = b[i + s], b2 = b[i + 2 * s], b3 = b[i + 3 * s];
    y[i] = f(a0, b0);
    y[i + s] = f(a1, b1);
    y[i + 2 * s] = f(a2, b2);
    y[i + 3 * s] = f(a3, b3);
  }
  for (; i < n; i += s) y[i] = f(a[i], b[i]);
}

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
