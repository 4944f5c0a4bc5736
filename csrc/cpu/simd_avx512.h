// simd_avx512.h — the vector operations simd_kernels.h is written against, for AVX-512
// (16 float32 lanes). Included only by simd_avx512.cpp, inside its target region and its
// own namespace; simd_avx2.h offers the same names for AVX2 + FMA (8 lanes), and a NEON
// (or any other) port offers them again: the kernels themselves never name an intrinsic.
//
// The contract of each operation (identical for every width):
//   V: a vector of kW floats; M: a per-lane condition.
//   load/store (unaligned), load_n/store_n (the first n < kW lanes only; no memory past
//     them is touched; the other lanes load as 0), keep_n (lanes from n on set to 0),
//     hsum (the sum of the lanes, in any order), set1, zero.
//   add, sub, mul, div (IEEE, correctly rounded); fma(a, b, c) = a b + c and
//     fnma(a, b, c) = c - a b, one rounding; fms(a, b, c) = a b - c, one rounding.
//   vmin(a, b), vmax(a, b): b when either is NaN (x86's minps / maxps).
//   vabs; round_int (to nearest, ties to even, as a float).
//   recip(d): 1/d to ~2^-23 relative or better, for d in [1, 16].
//   scale2(x, n) = x 2^n rounded once (subnormal results included), n an integer-valued
//     float in [-252, 254]; NaN x gives NaN.
//   ge, gt, eq (ordered compares: false on NaN), unord (true where either is NaN), is_inf,
//   mand (both conditions); select(m, a, b) = m ? a : b.
//   load/store/load_n/store_n of 16-bit storage (bf16, f16: fastnn/half.h): kW values
//     widened exactly / narrowed round-to-nearest-even, half.h's scalar conversions bit for
//     bit (NaN -> half.h's quiet NaN with the sign kept); the same masking rules.
#pragma once

constexpr int kW = 16;
using V = __m512;
using M = __mmask16;

inline V load(const float* p) { return _mm512_loadu_ps(p); }
inline void store(float* p, V v) { _mm512_storeu_ps(p, v); }
inline M first_n(int64_t n) { return static_cast<M>((1u << n) - 1u); }
inline V load_n(const float* p, int64_t n) { return _mm512_maskz_loadu_ps(first_n(n), p); }
inline void store_n(float* p, V v, int64_t n) { _mm512_mask_storeu_ps(p, first_n(n), v); }
inline V keep_n(V v, int64_t n) { return _mm512_maskz_mov_ps(first_n(n), v); }
inline float hsum(V v) { return _mm512_reduce_add_ps(v); }
inline V set1(float f) { return _mm512_set1_ps(f); }
inline V zero() { return _mm512_setzero_ps(); }
inline V add(V a, V b) { return _mm512_add_ps(a, b); }
inline V sub(V a, V b) { return _mm512_sub_ps(a, b); }
inline V mul(V a, V b) { return _mm512_mul_ps(a, b); }
inline V div(V a, V b) { return _mm512_div_ps(a, b); }
inline V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
inline V fnma(V a, V b, V c) { return _mm512_fnmadd_ps(a, b, c); }
inline V fms(V a, V b, V c) { return _mm512_fmsub_ps(a, b, c); }
inline V vmin(V a, V b) { return _mm512_min_ps(a, b); }
inline V vmax(V a, V b) { return _mm512_max_ps(a, b); }
inline V vabs(V a) { return _mm512_abs_ps(a); }
inline V round_int(V a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
// vrcp14ps (2^-14) and one Newton step: ~2^-28 before rounding
inline V recip(V d) {
  const V t = _mm512_rcp14_ps(d);
  return _mm512_fmadd_ps(t, _mm512_fnmadd_ps(d, t, set1(1.0f)), t);
}
inline V scale2(V x, V n) { return _mm512_scalef_ps(x, n); }
inline M ge(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
inline M gt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
inline M eq(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
inline M unord(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q); }
inline M mand(M a, M b) { return static_cast<M>(a & b); }
inline M is_inf(V a) { return _mm512_fpclass_ps_mask(a, 0x18); }  // +inf | -inf
inline V select(M m, V a, V b) { return _mm512_mask_mov_ps(b, m, a); }

// ---- 16-bit storage ----
// bfloat16: widening is the 16 bits shifted up. Narrowing: AVX512-BF16's vcvtneps2bf16 where
// the CPU has it (RNE; a NaN gives (bits >> 16) | 0x40, half.h's rule), for vectors without
// float32 subnormals, which the instruction treats as zero (Intel SDM: DAZ implied) where
// half.h rounds them; else half.h's integer RNE. The instruction is written as inline asm so
// that nothing else in this file can be compiled to AVX512-BF16 for a CPU without it.
inline V widen_bf16(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
inline __m256i narrow_bf16(V v) {
  if (cpu_avx512_bf16() && !_mm512_fpclass_ps_mask(v, 0x20)) {  // 0x20: denormal
    __m256i r;
    asm("vcvtneps2bf16 %1, %0" : "=v"(r) : "v"(v));
    return r;
  }
  const __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  const __mmask16 nan =
      _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
  return _mm512_cvtepi32_epi16(
      _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40))));
}
// float16: vcvtph2ps / vcvtps2ph (imm8 round-to-nearest-even); the instruction keeps a NaN's
// payload, half.h gives sign | 0x7e00: NaN lanes replaced.
inline V widen_f16(__m256i h) { return _mm512_cvtph_ps(h); }
inline __m256i narrow_f16(V v) {
  __m256i h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  if (nan) {
    const __m512i q = _mm512_or_si512(
        _mm512_and_si512(_mm512_srli_epi32(_mm512_castps_si512(v), 16), _mm512_set1_epi32(0x8000)),
        _mm512_set1_epi32(0x7e00));
    h = _mm256_mask_mov_epi16(h, nan, _mm512_cvtepi32_epi16(q));
  }
  return h;
}
inline __m256i load16(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline __m256i load16_n(const void* p, int64_t n) { return _mm256_maskz_loadu_epi16(first_n(n), p); }
inline void store16(void* p, __m256i h) { _mm256_storeu_si256(static_cast<__m256i*>(p), h); }
inline void store16_n(void* p, __m256i h, int64_t n) { _mm256_mask_storeu_epi16(p, first_n(n), h); }
inline V load(const bf16* p) { return widen_bf16(load16(p)); }
inline V load_n(const bf16* p, int64_t n) { return widen_bf16(load16_n(p, n)); }
inline void store(bf16* p, V v) { store16(p, narrow_bf16(v)); }
inline void store_n(bf16* p, V v, int64_t n) { store16_n(p, narrow_bf16(v), n); }
inline V load(const f16* p) { return widen_f16(load16(p)); }
inline V load_n(const f16* p, int64_t n) { return widen_f16(load16_n(p, n)); }
inline void store(f16* p, V v) { store16(p, narrow_f16(v)); }
inline void store_n(f16* p, V v, int64_t n) { store16_n(p, narrow_f16(v), n); }
