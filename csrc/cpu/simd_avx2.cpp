// simd_avx2.cpp — simd_kernels.h compiled for AVX2 + FMA + F16C, in namespace fastnn::simd_avx2.
// The file is compiled for baseline x86-64 like the rest; only the code inside the target
// region below carries the wider ISA, and it runs only where isa() allows
// (simd_dispatch.h). Not built without the x86 levels (FASTNN_NO_CLONES).
#include <cstddef>
#include <cstdint>

#include "isa.h"
#include "simd_dispatch.h"

#if defined(FASTNN_ISA_LEVELS)
#include <immintrin.h>
// GCC 12 reports the intrinsics' deliberately undefined pass-through operand
// (_mm512_undefined_ps, `__m512 __Y = __Y;`) as maybe-uninitialized where they inline
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")

namespace fastnn {
namespace simd_avx2 {
#include "simd_avx2.h"
#include "simd_kernels.h"
}  // namespace simd_avx2
}  // namespace fastnn

#pragma GCC pop_options
#endif
