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
