// simd_dispatch.h — the hand-vectorized float32 kernels (simd_kernels.h) at the level
// isa() names (isa.h). Each returns false, doing nothing, where no such kernel exists for
// the activation or the level (baseline x86-64, a build without the x86 levels): the
// caller runs its portable loop then. FASTNN_SIMD=0 at start-up turns them all off.
#pragma once

#include <cstdint>

#include "fastnn/op_table.h"
#include "fastnn/scalar_math.h"

namespace fastnn {

bool simd_act_forward(Act a, const ActParams& p, const float* x, float* y, int64_t n);
bool simd_act_backward_x(Act a, const ActParams& p, const float* x, const float* dy, float* dx, int64_t n);

// The per-ISA definitions (simd_avx512.cpp, simd_avx2.cpp); call only where isa() allows.
#define FASTNN_SIMD_DECLS                                                                   \
  bool vec_act_forward(Act a, const ActParams& p, const float* x, float* y, int64_t n);      \
  bool vec_act_backward_x(Act a, const ActParams& p, const float* x, const float* dy, float* dx, int64_t n);
namespace simd_avx512 { FASTNN_SIMD_DECLS }
namespace simd_avx2 { FASTNN_SIMD_DECLS }
#undef FASTNN_SIMD_DECLS

}  // namespace fastnn
