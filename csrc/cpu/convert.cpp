// convert.cpp — block conversions between 16-bit storage and float32 (kernels.h), at the
// ISA level isa() names. Every level gives half.h's scalar results bit for bit (exact
// widening; round-to-nearest-even narrowing, overflow to inf, NaN -> quiet NaN with its
// sign: bfloat16 keeps the payload's top bits and sets 0x40, float16 gives 0x7e00):
// tests/test_lowp_cpp.py checks all 65536 halves and ~1M float32 patterns at each level.
//
//   AVX-512: float16 by vcvtph2ps / vcvtps2ph (imm8 round-to-nearest-even, MXCSR's DAZ /
//     FTZ off as in any Python process), its NaN lanes replaced by half.h's quiet NaN (the
//     instruction keeps payload bits); bfloat16 widening = zero-extend and shift by 16,
//     narrowing = half.h's integer RNE in 16 lanes. Not vcvtneps2bf16 (AVX512-BF16): it
//     treats float32 subnormal inputs as zero (Intel SDM: no MXCSR, DAZ implied), which
//     half.h and ml_dtypes round to +-0 or the smallest bfloat16 subnormals instead, and
//     the integer form costs a few ALU ops per 16 lanes of a memory-bound loop.
//   AVX2: F16C's vcvtph2ps / vcvtps2ph for float16 (8 lanes), the same integer forms for
//     bfloat16; tails (< 8 elements) and groups holding a float16 NaN by half.h.
//   baseline: half.h's scalar forms.
#include "kernels.h"

#if defined(FASTNN_ISA_LEVELS)
#include <immintrin.h>
// GCC 12 reports the intrinsics' deliberately undefined pass-through operand as
// maybe-uninitialized where they inline (as in simd_avx512.cpp)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace fastnn {
namespace {

#if defined(FASTNN_ISA_LEVELS)
// ---- AVX-512 (16 lanes; masked tails) ----
FASTNN_TARGET_AVX512 inline __mmask16 first16(int64_t n) { return static_cast<__mmask16>((1u << n) - 1u); }

// bfloat16 RNE of the float32 bits u (half.h's float_to_bf16), in the low 16 bits of each lane
FASTNN_TARGET_AVX512 inline __m512i bf16_rne_512(__m512i u) {
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  const __mmask16 nan =
      _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
  return _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40)));
}
// float16 of v, RNE, NaN lanes as half.h (sign | 0x7e00)
FASTNN_TARGET_AVX512 inline __m256i f16_rne_512(__m512 v) {
  __m256i h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  if (nan) {
    const __m512i q = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(_mm512_castps_si512(v), 16),
                                                       _mm512_set1_epi32(0x8000)),
                                      _mm512_set1_epi32(0x7e00));
    h = _mm256_mask_mov_epi16(h, nan, _mm512_cvtepi32_epi16(q));
  }
  return h;
}

FASTNN_TARGET_AVX512 void widen_bf16_avx512(const bf16* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    _mm512_storeu_si512(dst + i, _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  if (i < n) {
    const __mmask16 m = first16(n - i);
    const __m256i h = _mm256_maskz_loadu_epi16(m, src + i);
    _mm512_mask_storeu_epi32(dst + i, m, _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}
FASTNN_TARGET_AVX512 void narrow_bf16_avx512(const float* src, bf16* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i u = _mm512_loadu_si512(src + i);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm512_cvtepi32_epi16(bf16_rne_512(u)));
  }
  if (i < n) {
    const __mmask16 m = first16(n - i);
    const __m512i u = _mm512_maskz_loadu_epi32(m, src + i);
    _mm256_mask_storeu_epi16(dst + i, m, _mm512_cvtepi32_epi16(bf16_rne_512(u)));
  }
}
FASTNN_TARGET_AVX512 void widen_f16_avx512(const f16* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
  if (i < n) {
    const __mmask16 m = first16(n - i);
    _mm512_mask_storeu_ps(dst + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, src + i)));
  }
}
FASTNN_TARGET_AVX512 void narrow_f16_avx512(const float* src, f16* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), f16_rne_512(_mm512_loadu_ps(src + i)));
  if (i < n) {
    const __mmask16 m = first16(n - i);
    _mm256_mask_storeu_epi16(dst + i, m, f16_rne_512(_mm512_maskz_loadu_ps(m, src + i)));
  }
}

// ---- AVX2 + F16C (8 lanes; scalar tails) ----
FASTNN_TARGET_AVX2 void widen_bf16_avx2(const bf16* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  widen_n(src + i, dst + i, n - i);
}
FASTNN_TARGET_AVX2 void narrow_bf16_avx2(const float* src, bf16* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
    const __m256i nan =
        _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)), _mm256_set1_epi32(0x7f800000));
    r = _mm256_blendv_epi8(r, _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40)), nan);
    // lanes are in [0, 0xffff]: packus keeps them; it interleaves 128-bit halves, so the
    // permute brings lanes 0-3 and 4-7 together into the low half
    const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm256_castsi256_si128(p));
  }
  narrow_n(src + i, dst + i, n - i);
}
FASTNN_TARGET_AVX2 void widen_f16_avx2(const f16* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  widen_n(src + i, dst + i, n - i);
}
FASTNN_TARGET_AVX2 void narrow_f16_avx2(const float* src, f16* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(src + i);
    if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))) {
      narrow_n(src + i, dst + i, 8);  // a NaN: half.h's quiet NaN, not the payload vcvtps2ph keeps
      continue;
    }
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
  narrow_n(src + i, dst + i, n - i);
}
#endif

}  // namespace

#if defined(FASTNN_ISA_LEVELS)
#define FASTNN_CONVERT(fn, fn512, fn256, ...)   \
  switch (isa()) {                               \
    case Isa::avx512: return fn512(__VA_ARGS__); \
    case Isa::avx2: return fn256(__VA_ARGS__);   \
    default: return fn(__VA_ARGS__);             \
  }
#else
#define FASTNN_CONVERT(fn, fn512, fn256, ...) return fn(__VA_ARGS__);
#endif

void widen_block(const bf16* src, float* dst, int64_t n) {
  FASTNN_CONVERT(widen_n, widen_bf16_avx512, widen_bf16_avx2, src, dst, n)
}
void widen_block(const f16* src, float* dst, int64_t n) {
  FASTNN_CONVERT(widen_n, widen_f16_avx512, widen_f16_avx2, src, dst, n)
}
void narrow_block(const float* src, bf16* dst, int64_t n) {
  FASTNN_CONVERT(narrow_n, narrow_bf16_avx512, narrow_bf16_avx2, src, dst, n)
}
void narrow_block(const float* src, f16* dst, int64_t n) {
  FASTNN_CONVERT(narrow_n, narrow_f16_avx512, narrow_f16_avx2, src, dst, n)
}
#undef FASTNN_CONVERT

}  // namespace fastnn
