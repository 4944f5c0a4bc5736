// simd_kernels.h — float32 activations vectorized by hand, written once for every vector
// width: this file names no intrinsic, only the operations of simd_avx512.h (whose
// comment states their contract) / simd_avx2.h, and is included once per ISA, inside
// that ISA's target region and namespace (simd_avx512.cpp, simd_avx2.cpp). A NEON port
// is one more ops header and one more .cpp.
//
// Why by hand: the portable path (scalar_math.h's formulas, vectorized by the compiler
// with glibc's libmvec or cpu_math.h in each ISA copy) evaluates erfc, log1p(exp(.)),
// tanh(softplus(.)) and 1 / (1 + exp) through general-purpose functions with argument
// checks and range reductions for every case; these kernels share one exponential per
// element between the terms that need it (bench/avx2_paths.py with FASTNN_SIMD=0 compares).
//
// Entry points (reached through simd_dispatch.h): vec_act_forward / vec_act_backward_x
// (float32, or bf16 / f16 storage converted in registers) return false for an activation
// this file does not handle (the portable loop runs then); vec_exp_row, the exponentials of
// a softmax / cross-entropy row and their sum; vec_convert, 16-bit <-> float32 arrays.
//
// ---- exponentials ----------------------------------------------------------------------
// exp_neg(a) = e^-a for a >= 0 (NaN stays NaN): a clamped to 104 (e^-104 is below the
//   smallest subnormal), n = round(-a / ln 2), r = -a - n ln 2 (ln 2 in two parts: n ln2_hi
//   exact), e^r by a degree-6 polynomial (1.9e-9 relative on |r| <= ln2 / 2), 2^n applied
//   last by scale2 (subnormal results rounded once).
//
// ---- gelu, erf form ----------------------------------------------------------------------
// With a = |x| / sqrt 2 and Q = Phi(-|x|) = erfc(a) / 2:
//   Q = exp(-x^2/2) t R(t), t = 1 / (1 + p a), R a degree-8 polynomial (least-relative-error
//     fit of erfcx(a) / (2t) on a in [0, 10.5], p = 0.3: 2.0e-8 relative in float64);
//   exp(-x^2/2) = 2^n exp(-g/2) with x^2 = hi + lo exactly (lo by FMA), n = round(-hi / (2 ln 2)),
//     g = hi + 2n ln 2 + lo in [-ln 2, ln 2] (ln 2 in two parts; n ln2_hi exact), exp(-g/2)
//     by a degree-6 polynomial (1.9e-9 relative), and 2^n applied last by scale2. No
//     rounding of x^2 or of x / sqrt 2 enters the exponent: the tail keeps its relative
//     accuracy (tests/test_activations.py test_cpp_gelu_tail_relative_accuracy).
//   forward:  y = x (1 - Q) for x >= 0, x Q for x < 0;
//   backward: Phi + x phi = 1 - (Q - |x| phi) for x >= 0, Q - |x| phi for x < 0, with
//     phi = exp(-x^2/2) / sqrt(2 pi) sharing Q's exponential.
// Special values as the portable path: gelu(inf) = inf, gelu(-inf) = NaN (-inf * 0, as
// torch), gelu'(+-inf) = NaN (inf * 0 in x phi, as torch), NaN -> NaN, gelu(-0) = -0.
//
// ---- the sigmoid family (sigmoid, silu, softplus, mish, log_sigmoid, gelu tanh form) ------
// All from e = e^-|z| (exp_neg), which never overflows:
//   sigmoid(z) = 1 / (1 + e) for z >= 0, e / (1 + e) for z < 0;
//   softplus(z) = max(z, 0) + log1p(e), log1p(e) = e P(e) on e in [0, 1], P of degree 9
//     (4.7e-9 relative), so it keeps its relative accuracy as e -> 0 (softplus(x) ~ e^x);
//   mish: tanh(softplus(x)) = N / D with N = 1 + 2e, D = N + 2e^2 for x >= 0 and
//     N = e (e + 2), D = N + 2 for x < 0 (exact rewrites of ((1 + e^x)^2 - 1) / ((1 + e^x)^2
//     + 1), no cancellation), 1 - tanh^2 = (D - N)(D + N) / D^2.
// Each keeps the portable formula's special values (tested on every ISA level).
#pragma once

template <size_t N> inline V horner(V x, const float (&c)[N]) {
  V p = set1(c[0]);
  for (size_t i = 1; i < N; ++i) p = fma(p, x, set1(c[i]));
  return p;
}

// gelu's R(t) (degree 8) and exp(-g/2) (degree 6); exp(r) (degree 6) and log1p(e) / e
// (degree 9): the fits described above.
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

// e^-a, a >= 0 or NaN (see above)
inline V exp_neg(V a) {
  a = vmin(set1(104.0f), a);  // NaN stays NaN: vmin returns its second operand then
  const V n = round_int(mul(a, set1(-1.44269504088896341f)));
  V r = fnma(n, set1(0.693145751953125f), sub(zero(), a));
  r = fnma(n, set1(1.428606765330187045e-06f), r);
  return scale2(horner(r, kExp), n);
}

// ---- gelu (erf form) ----
struct GeluCore {
  V q;   // Q / 2^n
  V e;   // exp(-x^2/2) / 2^n
  V n;   // the exponent, an integer-valued float
  V ax;  // |x|, clamped
};

inline GeluCore gelu_core(V x) {
  const V one = set1(1.0f);
  // |x| clamped to 10.5 sqrt 2 (Q underflows to 0 before that); NaN stays NaN
  const V ax = vmin(set1(14.8492424f), vabs(x));
  const V t = recip(fma(ax, set1(0.212132037f), one));  // 1 / (1 + p |x| / sqrt 2)
  const V r = horner(t, kGeluR);
  const V hi = mul(ax, ax);
  const V lo = fms(ax, ax, hi);  // x^2 - hi, exact
  const V n = round_int(mul(hi, set1(-0.721347520444481703f)));
  V g = fma(n, set1(1.38629150390625f), hi);  // 2 ln 2, high part
  g = fma(n, set1(2.857213530660374e-06f), g);  // 2 ln 2, low part
  g = add(g, lo);
  const V e = horner(g, kExpHalf);
  return GeluCore{mul(mul(e, t), r), e, n, ax};
}

inline V gelu_fwd(V x) {
  const GeluCore c = gelu_core(x);
  const V q = scale2(c.q, c.n);
  return mul(x, select(ge(x, zero()), sub(set1(1.0f), q), q));
}

inline V gelu_bwd(V x, V dy) {
  const GeluCore c = gelu_core(x);
  const V w = fnma(c.ax, mul(c.e, set1(0.398942280401432678f)), c.q);
  const V v = scale2(w, c.n);
  V d = select(ge(x, zero()), sub(set1(1.0f), v), v);
  // x = +-inf: inf * phi(inf) = inf * 0 = NaN, as the portable path and torch
  d = select(is_inf(x), set1(__builtin_nanf("")), d);
  return mul(dy, d);
}

// ---- the sigmoid family ----
// sigmoid(z) from e = e^-|z|
inline V sigmoid_of(V z, V e) {
  const V r = recip(add(set1(1.0f), e));
  return select(ge(z, zero()), r, mul(e, r));
}
inline V sigmoid(V z) { return sigmoid_of(z, exp_neg(vabs(z))); }

// softplus(z) = max(z, 0) + log1p(e); max(z, 0) keeps NaN (vmax returns its second operand)
inline V softplus_of(V z, V e) { return fma(e, horner(e, kLog1pOverE), vmax(zero(), z)); }

inline V silu_fwd(V x) { return mul(x, sigmoid(x)); }
inline V silu_bwd(V x, V dy) {  // dy s (1 + x (1 - s))
  const V s = sigmoid(x);
  return mul(mul(dy, s), fma(x, sub(set1(1.0f), s), set1(1.0f)));
}
inline V sigmoid_bwd(V x, V dy) {  // dy s (1 - s)
  const V s = sigmoid(x);
  return mul(mul(dy, s), sub(set1(1.0f), s));
}

// mish: N, D of tanh(softplus(x)) = N / D (see above)
struct MishCore { V t, omt2; };  // tanh(softplus(x)), 1 - tanh^2
inline MishCore mish_core(V x, V e) {
  const V one = set1(1.0f), two = set1(2.0f);
  const M pos = ge(x, zero());
  const V e2 = mul(e, e);
  const V num = select(pos, fma(two, e, one), mul(e, add(e, two)));
  const V dmn = select(pos, mul(two, e2), two);  // D - N
  const V den = add(num, dmn);
  const V rd = div(one, den);
  const V t = mul(num, rd);
  return MishCore{t, mul(mul(dmn, add(den, num)), mul(rd, rd))};
}
inline V mish_fwd(V x) {
  const V e = exp_neg(vabs(x));
  const V t = mish_core(x, e).t;
  // x = -inf: t = 0 and -inf * 0 = NaN, as the portable path's x tanh(softplus(x))
  return mul(x, t);
}
inline V mish_bwd(V x, V dy) {  // dy (t + x sigmoid(x) (1 - t^2))
  const V e = exp_neg(vabs(x));
  const MishCore c = mish_core(x, e);
  return mul(dy, fma(mul(x, sigmoid_of(x, e)), c.omt2, c.t));
}

// gelu, tanh form: y = x s, s = sigmoid(2u), u = sqrt(2/pi) (x + k x^3);
// y' = s + 2 x s (1 - s) sqrt(2/pi) (1 + 3k x^2), with the portable path's rule for
// finite x whose 3k x^2 overflows (the second term is 0 there).
constexpr float kSqrt2OverPi = static_cast<float>(FASTNN_SQRT_2_OVER_PI), kKappa = static_cast<float>(FASTNN_GELU_KAPPA);
inline V gelu_tanh_s(V x) {
  const V x2 = mul(x, x);
  const V u = mul(set1(kSqrt2OverPi), fma(mul(set1(kKappa), x2), x, x));
  return sigmoid(add(u, u));
}
inline V gelu_tanh_fwd(V x) { return mul(x, gelu_tanh_s(x)); }
inline V gelu_tanh_bwd(V x, V dy) {
  const V one = set1(1.0f);
  const V s = gelu_tanh_s(x);
  const V x2 = mul(x, x);
  const V poly = mul(set1(kSqrt2OverPi), fma(set1(3.0f * kKappa), x2, one));
  const V t = mul(mul(add(x, x), mul(s, sub(one, s))), poly);
  const V r = mul(dy, add(s, t));
  // r is NaN from 0 * inf in t for finite x (then: dy s), or from x = +-inf / NaN (x - x
  // is NaN there) or dy = NaN, whose NaN is kept
  const M redo = mand(unord(r, r), mand(eq(sub(x, x), zero()), eq(dy, dy)));
  return select(redo, mul(dy, s), r);
}

// log_sigmoid(x) = min(x, 0) - log1p(e), e = e^-|x|; y' = sigmoid(-x)
inline V log_sigmoid_fwd(V x) {
  const V e = exp_neg(vabs(x));
  return fnma(e, horner(e, kLog1pOverE), vmin(zero(), x));  // min keeps NaN (second operand)
}
inline V log_sigmoid_bwd(V x, V dy) {
  const V e = exp_neg(vabs(x));
  return mul(dy, sigmoid_of(sub(zero(), x), e));
}

// ---- expm1 family: elu, selu ----
// (tanh, celu and the rest stay on the portable loops: glibc's vector tanhf is as fast
// as a kernel here would be, and celu's rounding of 1 / alpha is the portable code's.)
// expm1(x) for x <= 0 (NaN stays NaN): x + x^2 q(x) on (-ln 2, 0], q of degree 5 (4.3e-9
// relative), so small |x| keep their relative accuracy; e^x - 1 below -ln 2, where e^x <=
// 1/2 and the subtraction adds at most half an ulp of the result.
constexpr float kExpm1Q[] = {1.535949996e-04f, 1.355268992e-03f, 8.321205154e-03f, 4.166459665e-02f,
                             1.666665226e-01f, 5.000000000e-01f};
inline V expm1_nonpos(V x) {
  const V small = fma(mul(x, x), horner(x, kExpm1Q), x);
  const V big = sub(exp_neg(sub(zero(), x)), set1(1.0f));
  return select(gt(x, set1(-0.693147181f)), small, big);
}
// elu: x > 0 ? x : alpha expm1(x); y' = x <= 0 ? dy alpha e^x : dy (NaN: dy, as torch).
// selu: the same with scale and alpha fixed (scale alpha rounded to float first, as the
// portable code). min(x, 0) keeps NaN (second operand), so NaN reaches the result.
inline V elu_fwd(V x, V alpha) {
  return select(gt(x, zero()), x, mul(alpha, expm1_nonpos(vmin(zero(), x))));
}
inline V elu_bwd(V x, V dy, V alpha) {
  const V e = exp_neg(sub(zero(), vmin(zero(), x)));
  return select(ge(zero(), x), mul(mul(dy, alpha), e), dy);
}
constexpr float kSeluScale = static_cast<float>(FASTNN_SELU_SCALE), kSeluAlpha = static_cast<float>(FASTNN_SELU_ALPHA);
inline V selu_fwd(V x) {
  const V neg = mul(set1(kSeluScale * kSeluAlpha), expm1_nonpos(vmin(zero(), x)));
  return select(gt(x, zero()), mul(set1(kSeluScale), x), neg);
}
inline V selu_bwd(V x, V dy) {
  const V e = exp_neg(sub(zero(), vmin(zero(), x)));
  const V ds = mul(dy, set1(kSeluScale));
  return select(ge(zero(), x), mul(mul(ds, set1(kSeluAlpha)), e), ds);
}
// ---- array loops ----
// T: float, or a 16-bit storage type (bf16, f16) that load / store widen and narrow in
// registers: a 16-bit activation is the float32 kernel on the widened values, rounded once.
template <class T, class F> inline void map1(const T* x, T* y, int64_t n, F f) {
  int64_t i = 0;
  for (; i + kW <= n; i += kW) store(y + i, f(load(x + i)));
  if (i < n) store_n(y + i, f(load_n(x + i, n - i)), n - i);  // no access past the end
}
template <class T, class F> inline void map2(const T* x, const T* dy, T* dx, int64_t n, F f) {
  int64_t i = 0;
  for (; i + kW <= n; i += kW) store(dx + i, f(load(x + i), load(dy + i)));
  if (i < n) store_n(dx + i, f(load_n(x + i, n - i), load_n(dy + i, n - i)), n - i);
}

// softplus with beta and threshold: y = softplus(beta x) / beta, or x where beta x > threshold
template <bool Unit> inline V softplus_fwd(V x, V beta, V thr) {
  const V bx = Unit ? x : mul(beta, x);
  V y = softplus_of(bx, exp_neg(vabs(bx)));
  if (!Unit) y = div(y, beta);
  return select(gt(bx, thr), x, y);
}
template <bool Unit> inline V softplus_bwd(V x, V dy, V beta, V thr) {
  const V bx = Unit ? x : mul(beta, x);
  return select(gt(bx, thr), dy, mul(dy, sigmoid(bx)));
}

// The kernels as function objects for map1 / map2 (not lambdas: a lambda's call operator
// does not carry the target region's ISA in GCC 12).
#define FASTNN_FN1(Name, expr) struct Name { V operator()(V v) const { return expr; } };
#define FASTNN_FN2(Name, expr) struct Name { V operator()(V v, V d) const { return expr; } };
FASTNN_FN1(GeluFwd, gelu_fwd(v))
FASTNN_FN1(GeluTanhFwd, gelu_tanh_fwd(v))
FASTNN_FN1(SigmoidFwd, sigmoid(v))
FASTNN_FN1(SiluFwd, silu_fwd(v))
FASTNN_FN1(MishFwd, mish_fwd(v))
FASTNN_FN2(GeluBwd, gelu_bwd(v, d))
FASTNN_FN2(GeluTanhBwd, gelu_tanh_bwd(v, d))
FASTNN_FN2(SigmoidBwd, sigmoid_bwd(v, d))
FASTNN_FN2(SiluBwd, silu_bwd(v, d))
FASTNN_FN2(MishBwd, mish_bwd(v, d))
FASTNN_FN1(LogSigmoidFwd, log_sigmoid_fwd(v))
FASTNN_FN1(SeluFwd, selu_fwd(v))
FASTNN_FN2(SeluBwd, selu_bwd(v, d))
struct EluFwd {
  V alpha;
  V operator()(V v) const { return elu_fwd(v, alpha); }
};
struct EluBwd {
  V alpha;
  V operator()(V v, V d) const { return elu_bwd(v, d, alpha); }
};
FASTNN_FN2(LogSigmoidBwd, log_sigmoid_bwd(v, d))
#undef FASTNN_FN1
#undef FASTNN_FN2
template <bool Unit> struct SoftplusFwd {
  V b, t;
  V operator()(V v) const { return softplus_fwd<Unit>(v, b, t); }
};
template <bool Unit> struct SoftplusBwd {
  V b, t;
  V operator()(V v, V d) const { return softplus_bwd<Unit>(v, d, b, t); }
};

template <class T> inline bool act_forward_t(Act a, const ActParams& p, const T* x, T* y, int64_t n) {
  switch (a) {
    case Act::gelu:
      if (p.approximate) map1(x, y, n, GeluTanhFwd{});
      else map1(x, y, n, GeluFwd{});
      return true;
    case Act::softplus: {
      const V b = set1(static_cast<float>(p.beta)), t = set1(static_cast<float>(p.threshold));
      if (static_cast<float>(p.beta) == 1.0f) map1(x, y, n, SoftplusFwd<true>{b, t});
      else map1(x, y, n, SoftplusFwd<false>{b, t});
      return true;
    }
    case Act::sigmoid: map1(x, y, n, SigmoidFwd{}); return true;
    case Act::silu: map1(x, y, n, SiluFwd{}); return true;
    case Act::mish: map1(x, y, n, MishFwd{}); return true;
    case Act::log_sigmoid: map1(x, y, n, LogSigmoidFwd{}); return true;
    case Act::elu: map1(x, y, n, EluFwd{set1(static_cast<float>(p.alpha))}); return true;
    case Act::selu: map1(x, y, n, SeluFwd{}); return true;
    default: return false;
  }
}

template <class T> inline bool act_backward_x_t(Act a, const ActParams& p, const T* x, const T* dy, T* dx, int64_t n) {
  switch (a) {
    case Act::gelu:
      if (p.approximate) map2(x, dy, dx, n, GeluTanhBwd{});
      else map2(x, dy, dx, n, GeluBwd{});
      return true;
    case Act::softplus: {
      const V b = set1(static_cast<float>(p.beta)), t = set1(static_cast<float>(p.threshold));
      if (static_cast<float>(p.beta) == 1.0f) map2(x, dy, dx, n, SoftplusBwd<true>{b, t});
      else map2(x, dy, dx, n, SoftplusBwd<false>{b, t});
      return true;
    }
    case Act::sigmoid: map2(x, dy, dx, n, SigmoidBwd{}); return true;
    case Act::silu: map2(x, dy, dx, n, SiluBwd{}); return true;
    case Act::mish: map2(x, dy, dx, n, MishBwd{}); return true;
    case Act::log_sigmoid: map2(x, dy, dx, n, LogSigmoidBwd{}); return true;
    case Act::elu: map2(x, dy, dx, n, EluBwd{set1(static_cast<float>(p.alpha))}); return true;
    case Act::selu: map2(x, dy, dx, n, SeluBwd{}); return true;
    default: return false;
  }
}

#define FASTNN_VEC_ACT(T)                                                                               \
  bool vec_act_forward(Act a, const ActParams& p, const T* x, T* y, int64_t n) {                        \
    return act_forward_t(a, p, x, y, n);                                                                \
  }                                                                                                     \
  bool vec_act_backward_x(Act a, const ActParams& p, const T* x, const T* dy, T* dx, int64_t n) {       \
    return act_backward_x_t(a, p, x, dy, dx, n);                                                        \
  }
FASTNN_VEC_ACT(float)
FASTNN_VEC_ACT(bf16)
FASTNN_VEC_ACT(f16)
#undef FASTNN_VEC_ACT

// ---- 16-bit <-> float32 blocks (convert.cpp's widen_block / narrow_block) ----
template <class S, class D> inline void convert_loop(const S* src, D* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 2 * kW <= n; i += 2 * kW) {
    const V a = load(src + i), b = load(src + i + kW);
    store(dst + i, a);
    store(dst + i + kW, b);
  }
  for (; i < n; i += kW) {
    if (n - i >= kW) store(dst + i, load(src + i));
    else store_n(dst + i, load_n(src + i, n - i), n - i);
  }
}
void vec_convert(const bf16* src, float* dst, int64_t n) { convert_loop(src, dst, n); }
void vec_convert(const f16* src, float* dst, int64_t n) { convert_loop(src, dst, n); }
void vec_convert(const float* src, bf16* dst, int64_t n) { convert_loop(src, dst, n); }
void vec_convert(const float* src, f16* dst, int64_t n) { convert_loop(src, dst, n); }

// ---- rows of the softmax family ----
// sum_j e^(x_j - mx) over a row of c, e^(x_j - mx) stored to e[j] when Store; mx is the
// row's max (every x_j - mx <= 0, so exp_neg applies; x_j = -inf gives 0, NaN gives NaN).
// Sums in kW lanes, then across them.
template <bool Store> inline float exp_row(const float* x, float* e, int64_t c, float mx) {
  const V m = set1(mx);
  V s0 = zero(), s1 = zero();
  int64_t j = 0;
  for (; j + 2 * kW <= c; j += 2 * kW) {
    const V v0 = exp_neg(sub(m, load(x + j))), v1 = exp_neg(sub(m, load(x + j + kW)));
    if (Store) { store(e + j, v0); store(e + j + kW, v1); }
    s0 = add(s0, v0);
    s1 = add(s1, v1);
  }
  for (; j < c; j += kW) {
    const int64_t left = c - j;
    V v;
    if (left >= kW) {
      v = exp_neg(sub(m, load(x + j)));
      if (Store) store(e + j, v);
    } else {
      v = keep_n(exp_neg(sub(m, load_n(x + j, left))), left);
      if (Store) store_n(e + j, v, left);
    }
    s0 = add(s0, v);
  }
  return hsum(add(s0, s1));
}

float vec_exp_row(const float* x, float* e, int64_t c, float mx) {
  return e ? exp_row<true>(x, e, c, mx) : exp_row<false>(x, nullptr, c, mx);
}
