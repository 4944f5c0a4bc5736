// simd_avx2.h — the vector operations of simd_kernels.h for AVX2 + FMA (8 float32 lanes).
// The contract of each operation is in simd_avx512.h; included only by simd_avx2.cpp,
// inside its target region and its own namespace.
#pragma once

constexpr int kW = 8;
using V = __m256;
using M = __m256;  // all-ones lanes where true

inline V load(const float* p) { return _mm256_loadu_ps(p); }
inline void store(float* p, V v) { _mm256_storeu_ps(p, v); }
// lanes [0, n) set: vmaskmovps touches (and may fault on) no masked-off lane
inline __m256i first_n(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline V load_n(const float* p, int64_t n) { return _mm256_maskload_ps(p, first_n(n)); }
inline void store_n(float* p, V v, int64_t n) { _mm256_maskstore_ps(p, first_n(n), v); }
inline V keep_n(V v, int64_t n) { return _mm256_and_ps(v, _mm256_castsi256_ps(first_n(n))); }
inline float hsum(V v) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}
inline V set1(float f) { return _mm256_set1_ps(f); }
inline V zero() { return _mm256_setzero_ps(); }
inline V add(V a, V b) { return _mm256_add_ps(a, b); }
inline V sub(V a, V b) { return _mm256_sub_ps(a, b); }
inline V mul(V a, V b) { return _mm256_mul_ps(a, b); }
inline V div(V a, V b) { return _mm256_div_ps(a, b); }
inline V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
inline V fnma(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); }
inline V fms(V a, V b, V c) { return _mm256_fmsub_ps(a, b, c); }
inline V vmin(V a, V b) { return _mm256_min_ps(a, b); }
inline V vmax(V a, V b) { return _mm256_max_ps(a, b); }
inline V vabs(V a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
inline V round_int(V a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
// A division: vrcpps is only 2^-12, and two Newton steps cost about what vdivps does.
inline V recip(V d) { return _mm256_div_ps(_mm256_set1_ps(1.0f), d); }
// x 2^n as x 2^n1 2^n2, n1 = floor(n / 2), n2 = n - n1, each factor a normal float
// (n1, n2 in [-126, 127]): the first product is exact for x in the kernels' range
// ([2^-2, 2^2]), the second rounds once, into the subnormals if need be (as vscalefps).
inline V pow2i(__m256i k) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23)); }
inline V scale2(V x, V n) {
  const __m256i k = _mm256_cvtps_epi32(n);
  const __m256i k1 = _mm256_srai_epi32(k, 1);
  return _mm256_mul_ps(_mm256_mul_ps(x, pow2i(k1)), pow2i(_mm256_sub_epi32(k, k1)));
}
inline M ge(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
inline M gt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
inline M eq(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
inline M unord(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_UNORD_Q); }
inline M mand(M a, M b) { return _mm256_and_ps(a, b); }
inline M is_inf(V a) { return _mm256_cmp_ps(vabs(a), _mm256_set1_ps(__builtin_inff()), _CMP_EQ_OQ); }
inline V select(M m, V a, V b) { return _mm256_blendv_ps(b, a, m); }

// ---- 16-bit storage (the contract in simd_avx512.h) ----
// bfloat16: shift up / half.h's integer RNE; float16: F16C (vcvtph2ps, vcvtps2ph with
// round-to-nearest-even), a group holding a NaN narrowed by half.h (whose quiet NaN drops
// the payload vcvtps2ph keeps). Tails go through a small stack buffer (no masked 16-bit
// moves in AVX2).
inline V widen_bf16(__m128i h) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)); }
inline __m128i narrow_bf16(V v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
  const __m256i nan =
      _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)), _mm256_set1_epi32(0x7f800000));
  r = _mm256_blendv_epi8(r, _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40)), nan);
  // lanes are in [0, 0xffff], so packus keeps them; it interleaves the 128-bit halves, and
  // the permute brings lanes 0-3 and 4-7 together into the low half
  return _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08));
}
inline V widen_f16(__m128i h) { return _mm256_cvtph_ps(h); }
inline __m128i narrow_f16(V v) {
  if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))) {
    alignas(32) float f[kW];
    alignas(16) uint16_t h[kW];
    _mm256_store_ps(f, v);
    for (int i = 0; i < kW; ++i) h[i] = float_to_f16(f[i]);
    return _mm_load_si128(reinterpret_cast<const __m128i*>(h));
  }
  return _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT);
}
inline __m128i load16(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
inline __m128i load16_n(const void* p, int64_t n) {
  alignas(16) uint16_t h[kW] = {};
  __builtin_memcpy(h, p, static_cast<size_t>(n) * 2);
  return _mm_load_si128(reinterpret_cast<const __m128i*>(h));
}
inline void store16(void* p, __m128i h) { _mm_storeu_si128(static_cast<__m128i*>(p), h); }
inline void store16_n(void* p, __m128i h, int64_t n) {
  alignas(16) uint16_t b[kW];
  _mm_store_si128(reinterpret_cast<__m128i*>(b), h);
  __builtin_memcpy(p, b, static_cast<size_t>(n) * 2);
}
inline V load(const bf16* p) { return widen_bf16(load16(p)); }
inline V load_n(const bf16* p, int64_t n) { return widen_bf16(load16_n(p, n)); }
inline void store(bf16* p, V v) { store16(p, narrow_bf16(v)); }
inline void store_n(bf16* p, V v, int64_t n) { store16_n(p, narrow_bf16(v), n); }
inline V load(const f16* p) { return widen_f16(load16(p)); }
inline V load_n(const f16* p, int64_t n) { return widen_f16(load16_n(p, n)); }
inline void store(f16* p, V v) { store16(p, narrow_f16(v)); }
inline void store_n(f16* p, V v, int64_t n) { store16_n(p, narrow_f16(v), n); }
