// act_avx512.cpp — float32 activations in AVX-512 intrinsics, where the portable path's
// transcendentals cost several times the memory traffic: gelu (erf form) forward and
// backward, softplus forward. Chosen at run time (have_avx512()).
//
// ---- gelu --------------------------------------------------------------------------
//
// The portable path (scalar_math.h's gelu_fwd / gelu_bwd, vectorized by the compiler in
// each ISA clone) evaluates an erfc of ~100 instructions per 16 floats, about twice this
// kernel's cost per element, which is level with torch's gelu and has better tail
// accuracy (python -m fastnn.bench --ops activation --activations gelu). It is
// used for float32 on CPUs with AVX-512 F/DQ/VL/BW (the x86-64-v4 clone's ISA), chosen at
// run time: the file is compiled for baseline x86-64, only these functions carry the
// target attribute. Not built with FASTNN_NO_CLONES (the baseline-only build).
//
// Formulas, with a = |x| / sqrt 2 and Q = Phi(-|x|) = erfc(a) / 2:
//   Q = exp(-x^2/2) t R(t), t = 1 / (1 + p a), R a degree-8 polynomial (least-relative-error
//     fit of erfcx(a) / (2t) on a in [0, 10.5], p = 0.3: 2.0e-8 relative in float64);
//   exp(-x^2/2) = 2^n exp(-g/2) with x^2 = hi + lo exactly (lo by FMA), n = round(-hi / (2 ln 2)),
//     g = hi + 2n ln 2 + lo in [-ln 2, ln 2] (ln 2 in two parts; n ln2_hi exact), exp(-g/2)
//     by a degree-6 polynomial (1.9e-9 relative), and 2^n applied last by vscalefps, so
//     results are correctly scaled down to the subnormals. No rounding of x^2 or of x / sqrt 2
//     enters the exponent: the tail keeps its relative accuracy (see tests/test_activations.py
//     test_gelu_tail_relative_accuracy);
//   t by vrcp14ps and one Newton step (~2^-28).
//   forward:  y = x (1 - Q) for x >= 0, x Q for x < 0;
//   backward: Phi + x phi = 1 - (Q - |x| phi) for x >= 0, Q - |x| phi for x < 0, with
//     phi = exp(-x^2/2) / sqrt(2 pi) sharing Q's exponential.
// Special values as the portable path: gelu(inf) = inf, gelu(-inf) = NaN (-inf * 0, as
// torch), gelu'(+-inf) = NaN (inf * 0 in x phi, as torch), NaN -> NaN, gelu(-0) = -0.
#include <cstddef>
#include <cstdint>

#include "kernels.h"

#if defined(__GNUC__) && defined(__x86_64__) && !defined(FASTNN_NO_CLONES)
#include <immintrin.h>
// GCC 12 reports the intrinsics' deliberately undefined pass-through operand
// (_mm512_undefined_ps, `__m512 __Y = __Y;`) as maybe-uninitialized where they inline
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define FASTNN_AVX512_FN __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,fma")))
#define FASTNN_AVX512_INLINE FASTNN_AVX512_FN inline __attribute__((always_inline))

namespace fastnn {
namespace {

struct GeluCore {
  __m512 q;   // Q / 2^n
  __m512 e;   // exp(-x^2/2) / 2^n
  __m512 n;   // the exponent, an integer-valued float
  __m512 ax;  // |x|, clamped
};

// p(x) by Horner's rule, coefficients from the highest degree down (unrolled: N is constant).
template <size_t N> FASTNN_AVX512_INLINE __m512 horner(__m512 x, const float (&c)[N]) {
  __m512 p = _mm512_set1_ps(c[0]);
  for (size_t i = 1; i < N; ++i) p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(c[i]));
  return p;
}

// gelu's R(t) (degree 8) and exp(-g/2) (degree 6); softplus's exp(r) (degree 6) and
// log1p(e) / e (degree 9): the fits described above.
constexpr float kGeluR[] = {-6.477703154e-02f, 2.428634316e-01f, -2.563232481e-01f, 2.740918696e-01f,
                            -4.750354961e-02f, 1.075485051e-01f, 7.414463162e-02f, 8.536165953e-02f,
                            8.459372073e-02f};
constexpr float kExpHalf[] = {2.162005512e-05f, -2.617132559e-04f, 2.604264067e-03f, -2.083302476e-02f,
                              1.249999776e-01f, -0.5f, 1.0f};
constexpr float kExp[] = {1.383683528e-03f, 8.374824189e-03f, 4.166822508e-02f, 1.666641980e-01f,
                          4.999999106e-01f, 1.0f, 1.0f};
constexpr float kLog1pOverE[] = {-3.244023304e-03f, 1.985145360e-02f, -5.695951730e-02f, 1.060365289e-01f,
                                 -1.530559212e-01f, 1.967593879e-01f, -2.495413423e-01f, 3.332996368e-01f,
                                 -4.999990165e-01f, 1.0f};

FASTNN_AVX512_INLINE GeluCore gelu_core(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  // |x| clamped to 10.5 sqrt 2 (Q underflows to 0 before that); NaN stays NaN (vminps
  // returns its second operand when either is NaN)
  const __m512 ax = _mm512_min_ps(_mm512_set1_ps(14.8492424f), _mm512_abs_ps(x));
  const __m512 d = _mm512_fmadd_ps(ax, _mm512_set1_ps(0.212132037f), one);  // 1 + p |x| / sqrt 2
  __m512 t = _mm512_rcp14_ps(d);
  t = _mm512_fmadd_ps(t, _mm512_fnmadd_ps(d, t, one), t);
  const __m512 r = horner(t, kGeluR);
  const __m512 hi = _mm512_mul_ps(ax, ax);
  const __m512 lo = _mm512_fmsub_ps(ax, ax, hi);  // x^2 - hi, exact
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(hi, _mm512_set1_ps(-0.721347520444481703f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 g = _mm512_fmadd_ps(n, _mm512_set1_ps(1.38629150390625f), hi);  // 2 ln 2, high part
  g = _mm512_fmadd_ps(n, _mm512_set1_ps(2.857213530660374e-06f), g);     // 2 ln 2, low part
  g = _mm512_add_ps(g, lo);
  const __m512 e = horner(g, kExpHalf);
  return GeluCore{_mm512_mul_ps(_mm512_mul_ps(e, t), r), e, n, ax};
}

FASTNN_AVX512_INLINE __m512 gelu_fwd16(__m512 x) {
  const GeluCore c = gelu_core(x);
  const __m512 q = _mm512_scalef_ps(c.q, c.n);
  const __mmask16 pos = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ);
  return _mm512_mul_ps(x, _mm512_mask_sub_ps(q, pos, _mm512_set1_ps(1.0f), q));
}

FASTNN_AVX512_INLINE __m512 gelu_bwd16(__m512 x, __m512 dy) {
  const GeluCore c = gelu_core(x);
  const __m512 w = _mm512_fnmadd_ps(c.ax, _mm512_mul_ps(c.e, _mm512_set1_ps(0.398942280401432678f)), c.q);
  const __m512 v = _mm512_scalef_ps(w, c.n);
  const __mmask16 pos = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ);
  __m512 d = _mm512_mask_sub_ps(v, pos, _mm512_set1_ps(1.0f), v);
  // x = +-inf: inf * phi(inf) = inf * 0 = NaN, as the portable path and torch
  const __mmask16 inf = _mm512_fpclass_ps_mask(x, 0x18);  // +inf | -inf
  d = _mm512_mask_mov_ps(d, inf, _mm512_set1_ps(__builtin_nanf("")));
  return _mm512_mul_ps(dy, d);
}

__mmask16 tail_mask(int64_t left) { return static_cast<__mmask16>((1u << left) - 1u); }

// ---- softplus ----------------------------------------------------------------------
// y = max(bx, 0) + log1p(e) with e = exp(-|bx|), b = beta; divided by beta when beta != 1;
// y = x where bx > threshold (torch's softplus). The portable path (log1p(exp(.)) from
// cpu_math.h) costs about 3x this kernel per element (docs/performance.md, "Activations").
//   exp(-a) = 2^n exp(r), n = round(-a / ln 2), r = -a - n ln 2 (two parts), exp(r) by a
//     degree-6 polynomial (1.9e-9 relative on |r| <= ln2 / 2), 2^n by vscalefps (subnormal
//     results rounded once); a = |bx| clamped to 104 (exp(-104) < the smallest subnormal).
//   log1p(e) = e P(e) on e in [0, 1], P of degree 9 (4.7e-9 relative, 1.2e-7 in float32),
//     so log1p(e) keeps its relative accuracy as e -> 0 (the tail softplus(x) ~ e^x).
// Special values: NaN -> NaN, inf -> inf, -inf -> 0 (as torch).
FASTNN_AVX512_INLINE __m512 softplus_core(__m512 bx) {
  const __m512 a = _mm512_min_ps(_mm512_set1_ps(104.0f), _mm512_abs_ps(bx));  // NaN stays NaN
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(a, _mm512_set1_ps(-1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), _mm512_sub_ps(_mm512_setzero_ps(), a));
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
  const __m512 p = horner(r, kExp);
  const __m512 e = _mm512_scalef_ps(p, n);
  const __m512 q = horner(e, kLog1pOverE);
  // max(bx, 0) keeping NaN: vmaxps returns its second operand when either is NaN
  return _mm512_fmadd_ps(e, q, _mm512_max_ps(_mm512_setzero_ps(), bx));
}

FASTNN_AVX512_INLINE __m512 softplus16(__m512 x, __m512 beta, __m512 thr, bool unit_beta) {
  const __m512 bx = unit_beta ? x : _mm512_mul_ps(beta, x);
  __m512 y = softplus_core(bx);
  if (!unit_beta) y = _mm512_div_ps(y, beta);
  const __mmask16 lin = _mm512_cmp_ps_mask(bx, thr, _CMP_GT_OQ);
  return _mm512_mask_mov_ps(y, lin, x);
}

}  // namespace

FASTNN_AVX512_FN void gelu_forward_avx512(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, gelu_fwd16(_mm512_loadu_ps(x + i)));
  if (i < n) {  // masked: no load or store past the end
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m, gelu_fwd16(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

FASTNN_AVX512_FN void gelu_backward_avx512(const float* x, const float* dy, float* dx, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(dx + i, gelu_bwd16(_mm512_loadu_ps(x + i), _mm512_loadu_ps(dy + i)));
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(dx + i, m, gelu_bwd16(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, dy + i)));
  }
}

template <bool Unit> FASTNN_AVX512_FN void softplus_loop(const float* x, float* y, int64_t n, __m512 b, __m512 t) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, softplus16(_mm512_loadu_ps(x + i), b, t, Unit));
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m, softplus16(_mm512_maskz_loadu_ps(m, x + i), b, t, Unit));
  }
}

FASTNN_AVX512_FN void softplus_forward_avx512(const float* x, float* y, int64_t n, float beta, float threshold) {
  const __m512 b = _mm512_set1_ps(beta), t = _mm512_set1_ps(threshold);
  if (beta == 1.0f) softplus_loop<true>(x, y, n, b, t);
  else softplus_loop<false>(x, y, n, b, t);
}

bool have_avx512() {
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
  }();
  return yes;
}

}  // namespace fastnn

#else

namespace fastnn {
void gelu_forward_avx512(const float*, float*, int64_t) {}
void gelu_backward_avx512(const float*, const float*, float*, int64_t) {}
void softplus_forward_avx512(const float*, float*, int64_t, float, float) {}
bool have_avx512() { return false; }
}  // namespace fastnn

#endif
