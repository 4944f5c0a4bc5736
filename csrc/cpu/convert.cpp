// convert.cpp — block conversions between 16-bit storage and float32 (kernels.h), at the
// ISA level isa() names: the vector layer's 16-bit loads and stores (simd_avx512.h,
// simd_avx2.h; simd_kernels.h's vec_convert), half.h's scalar forms at the baseline. Every
// level gives half.h's results bit for bit (exact widening; round-to-nearest-even
// narrowing, overflow to inf, NaN -> quiet NaN with its sign: bfloat16 keeps the payload's
// top bits, float16 gives 0x7e00): tests/test_lowp_cpp.py checks all 65536 halves and ~1.4M
// float32 patterns at each level.
//
// bfloat16 narrowing is half.h's integer RNE in vector registers, not AVX512-BF16's
// vcvtneps2bf16: that instruction treats float32 subnormal inputs as zero (Intel SDM: it
// ignores MXCSR, DAZ implied), where half.h and ml_dtypes round them to +-0 or to bfloat16
// subnormals, and the integer form is a few ALU operations per 16 lanes of a memory-bound
// loop. (Unlike FASTNN_SIMD=0, which turns off the optional activation kernels, nothing
// turns these off: they are the conversions.)
#include "kernels.h"
#include "simd_dispatch.h"

namespace fastnn {

#if defined(FASTNN_ISA_LEVELS)
#define FASTNN_CONVERT(fallback, src, dst, n)                        \
  switch (isa()) {                                                   \
    case Isa::avx512: return simd_avx512::vec_convert(src, dst, n);  \
    case Isa::avx2: return simd_avx2::vec_convert(src, dst, n);      \
    default: return fallback(src, dst, n);                           \
  }
#else
#define FASTNN_CONVERT(fallback, src, dst, n) return fallback(src, dst, n);
#endif

void widen_block(const bf16* src, float* dst, int64_t n) { FASTNN_CONVERT(widen_n, src, dst, n) }
void widen_block(const f16* src, float* dst, int64_t n) { FASTNN_CONVERT(widen_n, src, dst, n) }
void narrow_block(const float* src, bf16* dst, int64_t n) { FASTNN_CONVERT(narrow_n, src, dst, n) }
void narrow_block(const float* src, f16* dst, int64_t n) { FASTNN_CONVERT(narrow_n, src, dst, n) }
#undef FASTNN_CONVERT

}  // namespace fastnn
