// simd_dispatch.h — the hand-vectorized float32 kernels (simd_kernels.h) at the level
// isa() names (isa.h), also on bf16 / f16 storage (converted in registers). Each returns
// false, doing nothing, where no such kernel exists for the activation or the level
// (baseline x86-64, a build without the x86 levels): the caller runs its portable loop
// then. FASTNN_SIMD=0 at start-up turns them all off (not the 16-bit conversions,
// vec_convert, which convert.cpp calls at every level that has them).
#pragma once

#include <cstdint>
#include <type_traits>

#include "fastnn/half.h"
#include "fastnn/op_table.h"
#include "fastnn/scalar_math.h"
#include "parallel.h"  // FASTNN_INLINE

namespace fastnn {

// x, y, dy, dx: float32, or 16-bit storage (bf16, f16) widened and narrowed in registers
// (the float32 kernel on the widened values, each output rounded once).
#define FASTNN_SIMD_ACT(T)                                                                      \
  bool simd_act_forward(Act a, const ActParams& p, const T* x, T* y, int64_t n);                \
  bool simd_act_backward_x(Act a, const ActParams& p, const T* x, const T* dy, T* dx, int64_t n);
FASTNN_SIMD_ACT(float)
FASTNN_SIMD_ACT(bf16)
FASTNN_SIMD_ACT(f16)
#undef FASTNN_SIMD_ACT
// sum_j e^(x_j - mx) over a row of c floats, each term stored to e[j] when e is not null;
// mx the row's max. Returns false (doing nothing) where no vector kernel runs (only
// AVX-512 has one: isa.cpp says why).
bool simd_exp_row(const float* x, float* e, int64_t c, float mx, float* sum);

// The same with its portable fallback, for the row kernels (softmax, log_softmax, the
// cross-entropy family): inlined into each ISA copy of its caller, whose translation unit
// includes vecmath.h first (the fallback's exp vectorizes through libmvec).
template <class T> FASTNN_INLINE T exp_row_sum(const T* x, T* e, int64_t c, T mx) {
  if constexpr (std::is_same_v<T, float>) {
    float s;
    if (simd_exp_row(x, e, c, mx, &s)) return s;
  }
  T s = 0;
  if (e) {
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < c; ++j) {
      e[j] = sm::exp(x[j] - mx);
      s += e[j];
    }
  } else {
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < c; ++j) s += sm::exp(x[j] - mx);
  }
  return s;
}

// The per-ISA definitions (simd_avx512.cpp, simd_avx2.cpp); call only where isa() allows.
#define FASTNN_VEC_ACT(T)                                                                         \
  bool vec_act_forward(Act a, const ActParams& p, const T* x, T* y, int64_t n);                   \
  bool vec_act_backward_x(Act a, const ActParams& p, const T* x, const T* dy, T* dx, int64_t n);
#define FASTNN_SIMD_DECLS                                                                   \
  FASTNN_VEC_ACT(float) FASTNN_VEC_ACT(bf16) FASTNN_VEC_ACT(f16)                            \
  float vec_exp_row(const float* x, float* e, int64_t c, float mx);                         \
  void vec_convert(const bf16* src, float* dst, int64_t n);                                 \
  void vec_convert(const f16* src, float* dst, int64_t n);                                  \
  void vec_convert(const float* src, bf16* dst, int64_t n);                                 \
  void vec_convert(const float* src, f16* dst, int64_t n);
namespace simd_avx512 { FASTNN_SIMD_DECLS }
namespace simd_avx2 { FASTNN_SIMD_DECLS }
#undef FASTNN_SIMD_DECLS
#undef FASTNN_VEC_ACT

}  // namespace fastnn
