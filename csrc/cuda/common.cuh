// common.cuh — what every CUDA kernel file shares: the formulas (scalar_math.h), the op
// codes (the generated op_table.h), the activation dispatch, and the loop, pack and
// block-reduction helpers. Part of the one NVRTC program kernels.cu assembles.
#pragma once
#include "fastnn/op_table.h"
#include "fastnn/scalar_math.h"

// The 16-bit storage types come from CUDA's own headers; only the 16-bit programs define
// FASTNN_CUDA_16BIT (fastnn/_backends/_cuda_src.py), so the float32 / float64 programs
// compile without the toolkit's include directory. The CPU emulator (tests/cuda_emu/emu.h)
// defines the types and their intrinsics itself.
#if defined(FASTNN_CUDA_16BIT) && defined(__CUDACC__)
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#endif

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

// ---- storage and compute types ------------------------------------------------------
// A kernel is instantiated per storage type S (float, double, __half, __nv_bfloat16) and
// computes in acc_t<S>: S itself for float / double, float for the 16-bit types (torch's
// contract). Every load widens with ld() (exact), every store narrows once with st<S>()
// (round-to-nearest-even: __float2half_rn / __float2bfloat16_rn; float16 overflow gives
// inf). Sums and log-sum-exp run in acc_t<S> or in double, never in 16 bits.
template <class S> struct Num {
  using C = S;
  static __device__ __forceinline__ C ld(S v) { return v; }
  static __device__ __forceinline__ S st(C v) { return v; }
};
#if defined(FASTNN_CUDA_16BIT)
template <> struct Num<__half> {
  using C = float;
  static __device__ __forceinline__ C ld(__half v) { return __half2float(v); }
  static __device__ __forceinline__ __half st(C v) { return __float2half_rn(v); }
};
template <> struct Num<__nv_bfloat16> {
  using C = float;
  static __device__ __forceinline__ C ld(__nv_bfloat16 v) { return __bfloat162float(v); }
  static __device__ __forceinline__ __nv_bfloat16 st(C v) { return __float2bfloat16_rn(v); }
};
#endif
template <class S> using acc_t = typename Num<S>::C;
template <class S> __device__ __forceinline__ acc_t<S> ld(S v) { return Num<S>::ld(v); }
template <class S> __device__ __forceinline__ S st(acc_t<S> v) { return Num<S>::st(v); }

// The activation parameters travel as plain scalars (NVRTC kernels take no host structs).
#define FK_ACT_DECL double p_ns, double p_mv, double p_th, double p_al, double p_be, double p_lo, double p_hi, int p_ap
#define FK_ACT_PARAMS ActParams{p_ns, p_mv, p_th, p_al, p_be, p_lo, p_hi, p_ap}

// One activation's formulas by code (the kernels keep the switch outside their loops;
// these serve the per-element dispatch of act_grad and the emulator's references).
template <class T> __device__ __forceinline__ T act_fwd(int a, T x, const ActParams& p) {
  switch (static_cast<Act>(a)) {
#define FK_CASE(f) case Act::f: return sm::f##_fwd<T>(x, p);
    FASTNN_ELEMENTWISE_ACTIVATIONS(FK_CASE)
#undef FK_CASE
    default: return x;
  }
}
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

// 16 bytes of T (4 floats, 2 doubles, 8 halves): one 128-bit load or store where the data is
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
// xr holds storage values (S), widened as they are read; the row's statistics are in C.
template <class S, class T> __device__ __forceinline__ void row_max_sum(const S* xr, long long cols, T* sm_, T* ss_,
                                                                        T& mx, T& sum) {
  const unsigned t = threadIdx.x, B = blockDim.x;
  T m = neg_inf<T>(), s = T(0);
  long long j = t;
  if (aligned16(xr) && cols % Pack<S>::N == 0) {  // 16-byte packs
    using P = Pack<S>;
    const P* xv = reinterpret_cast<const P*>(xr);
    const long long nv = cols / P::N;
    for (; j + B < nv; j += 2 * B) {
      const P a = xv[j], b = xv[j + B];
#pragma unroll
      for (int k = 0; k < P::N; ++k) lse_add(m, s, (T)ld(a.v[k]));
#pragma unroll
      for (int k = 0; k < P::N; ++k) lse_add(m, s, (T)ld(b.v[k]));
    }
    for (; j < nv; j += B) {
      const P a = xv[j];
#pragma unroll
      for (int k = 0; k < P::N; ++k) lse_add(m, s, (T)ld(a.v[k]));
    }
    j = cols;  // done
  }
  for (; j + 3 * B < cols; j += 4 * B) {
    const T v0 = ld(xr[j]), v1 = ld(xr[j + B]), v2 = ld(xr[j + 2 * B]), v3 = ld(xr[j + 3 * B]);
    lse_add(m, s, v0);
    lse_add(m, s, v1);
    lse_add(m, s, v2);
    lse_add(m, s, v3);
  }
  for (; j < cols; j += B) lse_add(m, s, (T)ld(xr[j]));
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

// yr[j] = f(xr[j], j) over a row (f maps storage to storage), by the block: four loads in flight per thread.
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

// y[i] = f(x[i]) (storage to storage: f widens, computes, narrows) over a grid-stride loop, four elements per thread and step with all four
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

}  // namespace fk
