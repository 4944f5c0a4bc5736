// fastnn/scalar_math.h — the one place each formula and its derivative lives.
//
// Every activation's forward and derivative and every loss's per-element value and
// derivative, as FASTNN_HD FASTNN_INLINE_MATH templates over T = float | double. The C++ CPU
// kernels (csrc/cpu/*.cpp) and the CUDA kernels (csrc/cuda/*.cu, compiled by NVRTC
// through CuPy) include this same header, so a formula can only be wrong once.
//
// Conventions:
//   *_fwd(x, p)          y = f(x)
//   *_bwd(x, dy, p)      dx = dy * f'(x)  (from the input x)
//   *_bwd_y(y, dy, p)    dx = dy * f'(x)  (from the output y, where that is cheaper)
// Derivatives at kinks are torch's (docs/api.md, "Derivatives at kinks"); each is stated where it is set.
// So is each derivative at x = NaN: torch's masks are written so that NaN takes one
// side or the other (relu passes dy, leaky_relu multiplies by the slope, ...), and the
// comparisons below are written the same way round.
// Masks use selects, never multiplication by 0, so dy = inf/NaN outside the active
// region gives 0 exactly as torch's `where`-based backward kernels do.
// Transcendental calls are made unconditionally and the result selected afterwards
// ("compute, then select"): the CPU loops then vectorize (libmvec, see
// csrc/cpu/vecmath.h) and CUDA warps do not diverge. A value computed for the branch
// not taken may overflow; it is discarded.
#pragma once

#ifdef __CUDACC__
#define FASTNN_HD __host__ __device__
#define FASTNN_INLINE_MATH __forceinline__
#else
#define FASTNN_HD
// Always inlined on the host: each CPU kernel is compiled once per ISA (target_clones),
// and a formula left out of line would run with the baseline ISA (and no FMA).
#define FASTNN_INLINE_MATH inline __attribute__((always_inline))
#endif

#if defined(__CUDACC_RTC__)
// NVRTC has no <cmath>; CUDA's device math library provides the overloads.
#elif !defined(__CUDACC__)
#include "fastnn/cpu_math.h"  // host: exp, log, ... for float and double
#else
#include <cmath>
#endif

namespace fastnn {

// ---- constants (each says where it comes from) -----------------------------------
// sqrt(2/pi), for gelu's tanh approximation.
#define FASTNN_SQRT_2_OVER_PI 0.79788456080286535587989211986876
// 1/sqrt(2), for gelu's erf form.
#define FASTNN_SQRT1_2 0.70710678118654752440084436210485
// 1/sqrt(2*pi), the standard normal density's factor.
#define FASTNN_INV_SQRT_2PI 0.39894228040143267793994605993438
// 0.044715: the cubic coefficient of gelu's tanh approximation (Hendrycks & Gimpel).
#define FASTNN_GELU_KAPPA 0.044715
// SELU's alpha and scale (Klambauer et al. 2017), the values torch uses.
#define FASTNN_SELU_ALPHA 1.6732632423543772848170429916717
#define FASTNN_SELU_SCALE 1.0507009873554804934193349852946
// log(2), exact to double.
#define FASTNN_LN2 0.69314718055994530941723212145818
// log(2*pi), for the Stirling term of poisson_nll(full=True).
#define FASTNN_LN_2PI 1.8378770664093454835606594728112

// Parameters of every activation, by name; unused fields are ignored.
// Defaults are torch's; the Python layer fills them in.
// A plain struct (no initializers, so NVRTC device code can take it by value): the
// host fills every field, torch's defaults coming from the Python layer.
struct ActParams {
  double negative_slope;  // relu, leaky_relu
  double max_value;       // relu (Keras); inf = no cap
  double threshold;       // relu (Keras), softplus
  double alpha;           // elu, celu
  double beta;            // softplus
  double min_val;         // hard_tanh
  double max_val;         // hard_tanh
  int approximate;        // gelu: 0 = erf ("none"), 1 = "tanh"
};

namespace sm {

// max(v, 0) that keeps NaN (fmax would drop it).
template <class T> FASTNN_HD FASTNN_INLINE_MATH T relu0(T v) { return v > T(0) ? v : (v <= T(0) ? T(0) : v); }

// Helpers stable in both tails.
// softplus(x) = log(1 + e^x) = max(x, 0) + log1p(e^-|x|)
template <class T> FASTNN_HD FASTNN_INLINE_MATH T softplus(T x) {
  return (x > T(0) ? x : T(0)) + log1p(exp(-fabs(x)));
}
// sigmoid(x) = 1 / (1 + e^-x), without overflow for either sign.
template <class T> FASTNN_HD FASTNN_INLINE_MATH T sigmoid(T x) {
  const T e = exp(-fabs(x)), r = T(1) / (T(1) + e);
  return x >= T(0) ? r : e * r;
}

// ---- activations -------------------------------------------------------------------

// linear: y = x, dy/dx = 1
template <class T> FASTNN_HD FASTNN_INLINE_MATH T linear_fwd(T x, const ActParams&) { return x; }
template <class T> FASTNN_HD FASTNN_INLINE_MATH T linear_bwd(T, T dy, const ActParams&) { return dy; }

// relu (torch defaults; Keras params): y = x > t ? min(x, max_value) : s * (x - t)
// dy/dx = x > t ? (x < max_value) : s.  At x == t: s (torch: 0 at 0); at max_value: 0;
// at NaN: 1 (torch's threshold_backward passes dy unless the output is <= 0).
// s == 0 is special-cased so relu(-inf) = 0, and NaN stays NaN as in F.relu.
template <class T> FASTNN_HD FASTNN_INLINE_MATH T relu_fwd(T x, const ActParams& p) {
  const T t = T(p.threshold), mv = T(p.max_value), s = T(p.negative_slope);
  if (x > t) return x < mv ? x : mv;
  if (x <= t) return s == T(0) ? T(0) : s * (x - t);
  return x;  // NaN
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T relu_bwd(T x, T dy, const ActParams& p) {
  const T t = T(p.threshold), mv = T(p.max_value), s = T(p.negative_slope);
  if (x <= t) return s == T(0) ? T(0) : s * dy;
  return x >= mv ? T(0) : dy;
}
// Default relu from its output (torch's threshold_backward): dx = y <= 0 ? 0 : dy.
template <class T> FASTNN_HD FASTNN_INLINE_MATH T relu_bwd_y(T y, T dy, const ActParams&) {
  return y <= T(0) ? T(0) : dy;
}

// hard_tanh(min, max) = clamp(x, min, max); dy/dx = 0 at and beyond both bounds, else 1
// (NaN included, as torch).
template <class T> FASTNN_HD FASTNN_INLINE_MATH T hard_tanh_fwd(T x, const ActParams& p) {
  const T lo = T(p.min_val), hi = T(p.max_val);
  return x < lo ? lo : (x > hi ? hi : x);  // NaN passes through
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T hard_tanh_bwd(T x, T dy, const ActParams& p) {
  return (x <= T(p.min_val) || x >= T(p.max_val)) ? T(0) : dy;
}

// relu6 = hard_tanh(0, 6), torch's definition (0 derivative at both bounds).
template <class T> FASTNN_HD FASTNN_INLINE_MATH T relu6_fwd(T x, const ActParams&) {
  return x < T(0) ? T(0) : (x > T(6) ? T(6) : x);
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T relu6_bwd(T x, T dy, const ActParams&) {
  return (x <= T(0) || x >= T(6)) ? T(0) : dy;
}

// leaky_relu(s): y = x > 0 ? x : s x; dy/dx = x > 0 ? 1 : s (s at 0, as torch).
template <class T> FASTNN_HD FASTNN_INLINE_MATH T leaky_relu_fwd(T x, const ActParams& p) {
  return x > T(0) ? x : x * T(p.negative_slope);
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T leaky_relu_bwd(T x, T dy, const ActParams& p) {
  return x > T(0) ? dy : dy * T(p.negative_slope);
}

// elu(a): y = x > 0 ? x : a (e^x - 1); dy/dx = x > 0 ? 1 : a e^x (a at 0, as torch).
template <class T> FASTNN_HD FASTNN_INLINE_MATH T elu_fwd(T x, const ActParams& p) {
  const T neg = T(p.alpha) * expm1(x);
  return x > T(0) ? x : neg;
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T elu_bwd(T x, T dy, const ActParams& p) {
  const T neg = dy * T(p.alpha) * exp(x);
  return x <= T(0) ? neg : dy;  // NaN: dy, as torch
}

// selu = scale * elu(x, alpha_selu); derivative scale * alpha at 0, as torch.
template <class T> FASTNN_HD FASTNN_INLINE_MATH T selu_fwd(T x, const ActParams&) {
  const T scale = T(FASTNN_SELU_SCALE), a = T(FASTNN_SELU_ALPHA);
  const T neg = scale * a * expm1(x);
  return x > T(0) ? scale * x : neg;
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T selu_bwd(T x, T dy, const ActParams&) {
  const T scale = T(FASTNN_SELU_SCALE), a = T(FASTNN_SELU_ALPHA);
  const T neg = dy * scale * a * exp(x);
  return x <= T(0) ? neg : dy * scale;
}

// celu(a) = max(0, x) + min(0, a (e^(x/a) - 1)); derivative x > 0 ? 1 : e^(x/a) (1 at 0).
// torch's backward is elu_backward(input_scale = 1 / float(a)): it divides by alpha
// rounded to float32, also for double tensors (its forward uses alpha itself); matched,
// so float64 gradients agree to 1e-16 for any alpha.
template <class T> FASTNN_HD FASTNN_INLINE_MATH T celu_scale(const ActParams& p) {
  return T(1.0 / double(float(p.alpha)));
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T celu_fwd(T x, const ActParams& p) {
  const T a = T(p.alpha), neg = a * expm1(x / a);  // the forward divides by alpha itself
  return x > T(0) ? x : neg;
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T celu_bwd(T x, T dy, const ActParams& p) {
  const T s = celu_scale<T>(p), neg = dy * s * T(p.alpha) * exp(x * s);
  return x <= T(0) ? neg : dy;
}

// gelu, erf form: y = x Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2; y' = Phi(x) + x phi(x).
// gelu, tanh form: u = sqrt(2/pi) (x + k x^3); y = x/2 (1 + tanh u) = x s, s = sigmoid(2u);
//   y' = (1 + tanh u)/2 + x/2 (1 - tanh^2 u) sqrt(2/pi) (1 + 3k x^2)
//      = s + 2 x s (1 - s) sqrt(2/pi) (1 + 3k x^2).
// (erfc and sigmoid instead of 1 + erf / 1 + tanh: same values as torch's formulas where
// those are exact, no cancellation in the negative tail where they are not.)
template <class T> FASTNN_HD FASTNN_INLINE_MATH T gelu_fwd(T x, const ActParams& p) {
  if (p.approximate) {
    const T u = T(FASTNN_SQRT_2_OVER_PI) * (x + T(FASTNN_GELU_KAPPA) * x * x * x);
    return x * sigmoid(T(2) * u);
  }
  return T(0.5) * x * erfc(-x * T(FASTNN_SQRT1_2));
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T gelu_bwd(T x, T dy, const ActParams& p) {
  if (p.approximate) {
    const T k = T(FASTNN_GELU_KAPPA), c = T(FASTNN_SQRT_2_OVER_PI);
    const T s = sigmoid(T(2) * c * (x + k * x * x * x));
    const T r = dy * (s + T(2) * x * s * (T(1) - s) * c * (T(1) + T(3) * k * x * x));
    // Finite x beyond ~1e19 (float32): 3k x^2 overflows where s (1 - s) is already 0, and
    // 0 * inf makes the second term NaN; it is 0 there (torch's float64 value). x = +-inf
    // and dy = NaN keep their NaN, as torch's. A select after the expression, so the
    // expression itself compiles (and rounds) as it always has.
    return r == r || x - x != T(0) || dy != dy ? r : dy * s;
  }
  const T cdf = T(0.5) * erfc(-x * T(FASTNN_SQRT1_2));
  const T pdf = T(FASTNN_INV_SQRT_2PI) * exp(T(-0.5) * x * x);
  return dy * (cdf + x * pdf);
}

// silu(x) = x sigmoid(x); y' = s (1 + x (1 - s)).
template <class T> FASTNN_HD FASTNN_INLINE_MATH T silu_fwd(T x, const ActParams&) {
  return x * sigmoid(x);
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T silu_bwd(T x, T dy, const ActParams&) {
  const T s = sigmoid(x);
  return dy * s * (T(1) + x * (T(1) - s));
}

// mish(x) = x tanh(softplus(x)); y' = tanh(sp) + x sigmoid(x) (1 - tanh^2(sp)).
template <class T> FASTNN_HD FASTNN_INLINE_MATH T mish_fwd(T x, const ActParams&) {
  return x * tanh(softplus(x));
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T mish_bwd(T x, T dy, const ActParams&) {
  const T t = tanh(softplus(x));
  return dy * (t + x * sigmoid(x) * (T(1) - t * t));
}

// sigmoid: y' = y (1 - y).
template <class T> FASTNN_HD FASTNN_INLINE_MATH T sigmoid_fwd(T x, const ActParams&) { return sigmoid(x); }
template <class T> FASTNN_HD FASTNN_INLINE_MATH T sigmoid_bwd_y(T y, T dy, const ActParams&) {
  return dy * y * (T(1) - y);
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T sigmoid_bwd(T x, T dy, const ActParams& p) {
  return sigmoid_bwd_y(sigmoid(x), dy, p);
}

// hard_sigmoid(x) = relu6(x + 3) / 6; y' = 1/6 on (-3, 3), 0 at and beyond +-3.
// torch's backward multiplies by the float constant 1.0f/6.0f even for double
// tensors; we do the same so float64 results agree with torch to the last bit.
template <class T> FASTNN_HD FASTNN_INLINE_MATH T hard_sigmoid_fwd(T x, const ActParams&) {
  if (x <= T(-3)) return T(0);
  if (x >= T(3)) return T(1);
  return (x + T(3)) / T(6);  // torch's order of operations; NaN passes through
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T hard_sigmoid_bwd(T x, T dy, const ActParams&) {
  return (x > T(-3) && x < T(3)) ? dy * T(1.0f / 6.0f) : T(0);
}

// hard_silu(x) = x relu6(x + 3) / 6; y' = 0 for x <= -3 (torch: 0 at -3),
// x/3 + 1/2 on (-3, 3], 1 beyond (torch: 1 at 3).
// Forward exactly as torch writes it, x * min(max(x + 3, 0), 6) / 6, so -inf gives NaN.
template <class T> FASTNN_HD FASTNN_INLINE_MATH T hard_silu_fwd(T x, const ActParams&) {
  T r = x + T(3);
  r = r < T(0) ? T(0) : r;
  r = T(6) < r ? T(6) : r;
  return x * r / T(6);
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T hard_silu_bwd(T x, T dy, const ActParams&) {
  if (x <= T(-3)) return T(0);
  if (x < T(3)) return dy * (x / T(3) + T(0.5));
  return dy;
}

// tanh: y' = 1 - y^2.
template <class T> FASTNN_HD FASTNN_INLINE_MATH T tanh_fwd(T x, const ActParams&) { return tanh(x); }
template <class T> FASTNN_HD FASTNN_INLINE_MATH T tanh_bwd_y(T y, T dy, const ActParams&) {
  return dy * (T(1) - y * y);
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T tanh_bwd(T x, T dy, const ActParams& p) {
  return tanh_bwd_y(tanh(x), dy, p);
}

// softplus(beta, threshold): y = beta x > threshold ? x : log(1 + e^(beta x)) / beta
// (strict >, as torch); y' = beta x > threshold ? 1 : sigmoid(beta x).
// threshold = inf is Keras' softplus; the stable forms keep it finite everywhere.
template <class T> FASTNN_HD FASTNN_INLINE_MATH T softplus_fwd(T x, const ActParams& p) {
  const T bx = T(p.beta) * x, sp = softplus(bx) / T(p.beta);
  return bx > T(p.threshold) ? x : sp;
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T softplus_bwd(T x, T dy, const ActParams& p) {
  const T bx = T(p.beta) * x, g = dy * sigmoid(bx);
  return bx > T(p.threshold) ? dy : g;
}

// softsign(x) = x / (1 + |x|); y' = 1 / (1 + |x|)^2.
template <class T> FASTNN_HD FASTNN_INLINE_MATH T softsign_fwd(T x, const ActParams&) {
  return x / (T(1) + fabs(x));
}
// softsign' = 1 / (1 + |x|)^2; at x = +-inf torch's autograd (through x / (1 + |x|))
// gives NaN, and so does this (d * 0 is NaN exactly when d is infinite or NaN).
template <class T> FASTNN_HD FASTNN_INLINE_MATH T softsign_bwd(T x, T dy, const ActParams&) {
  const T d = T(1) + fabs(x), r = dy / (d * d);
  return d * T(0) == T(0) ? r : d * T(0);
}

// log_sigmoid(x) = -softplus(-x) = min(x, 0) - log1p(e^-|x|); y' = sigmoid(-x).
template <class T> FASTNN_HD FASTNN_INLINE_MATH T log_sigmoid_fwd(T x, const ActParams&) {
  return (x < T(0) ? x : T(0)) - log1p(exp(-fabs(x)));
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T log_sigmoid_bwd(T x, T dy, const ActParams&) {
  return dy * sigmoid(-x);
}

// exponential (Keras): y = e^x; y' = y.
template <class T> FASTNN_HD FASTNN_INLINE_MATH T exponential_fwd(T x, const ActParams&) { return exp(x); }
template <class T> FASTNN_HD FASTNN_INLINE_MATH T exponential_bwd_y(T y, T dy, const ActParams&) {
  return dy * y;
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T exponential_bwd(T x, T dy, const ActParams&) {
  return dy * exp(x);
}

// relu_squared: y = x relu(x) (x^2 for x > 0, else 0), as torch's composition
// x * F.relu(x), whose autograd gives dx = dy relu(x) + (relu(x) > 0 or NaN ? dy x : 0)
// (the product rule, relu's mask from threshold_backward). The special values agree:
// y(-inf) = -inf * 0 = NaN, y(-1) = -0; dx = 2 (dy x) above 0 (the two equal terms), and
// elsewhere dy relu(x) + 0: +0 at and below 0 for finite dy, NaN there for dy = inf or
// NaN (inf * 0), NaN at x = NaN. Written per side rather than as the sum of both terms,
// so no fused multiply-add can round the x > 0 case differently from torch.
template <class T> FASTNN_HD FASTNN_INLINE_MATH T relu_squared_fwd(T x, const ActParams&) {
  return x * relu0(x);
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T relu_squared_bwd(T x, T dy, const ActParams&) {
  const T r = relu0(x);
  return r > T(0) ? T(2) * (dy * x) : dy * r + T(0);
}

// ---- losses: per-element value and derivatives ----------------------------------
// d = pred - target unless said otherwise. dpred/dtarget are d(loss_i)/d(pred_i),
// d(loss_i)/d(target_i). Kinks: 0 where pred == target (mae, huber, smooth_l1).

// sign(d) as torch.sign: 0 at 0 and at NaN (so mae's gradient at a NaN prediction is 0,
// as torch's; found by tests/test_properties.py).
template <class T> FASTNN_HD FASTNN_INLINE_MATH T sign0(T d) {
  return d > T(0) ? T(1) : (d < T(0) ? T(-1) : T(0));
}

// mse: d^2; dpred = 2 d; dtarget = -2 d.
template <class T> FASTNN_HD FASTNN_INLINE_MATH T mse_val(T p, T t) { T d = p - t; return d * d; }
template <class T> FASTNN_HD FASTNN_INLINE_MATH T mse_dpred(T p, T t) { return T(2) * (p - t); }

// mae: |d|; dpred = sign(d) (0 at d == 0).
template <class T> FASTNN_HD FASTNN_INLINE_MATH T mae_val(T p, T t) { return fabs(p - t); }
template <class T> FASTNN_HD FASTNN_INLINE_MATH T mae_dpred(T p, T t) { return sign0(p - t); }

// huber(delta): |d| < delta ? d^2/2 : delta (|d| - delta/2);
// dpred = clamp(d, -delta, delta) (torch: d < -delta ? -delta : d > delta ? delta : d).
template <class T> FASTNN_HD FASTNN_INLINE_MATH T huber_val(T p, T t, T delta) {
  const T d = p - t, a = fabs(d);
  return a < delta ? T(0.5) * d * d : delta * (a - T(0.5) * delta);
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T huber_dpred(T p, T t, T delta) {
  const T d = p - t;
  return d < -delta ? -delta : (d > delta ? delta : d);
}

// smooth_l1(beta): |d| < beta ? d^2 / (2 beta) : |d| - beta/2; beta == 0 is l1.
// dpred = d < -beta ? -1 : d > beta ? 1 : d / beta (sign(d) when beta == 0).
template <class T> FASTNN_HD FASTNN_INLINE_MATH T smooth_l1_val(T p, T t, T beta) {
  const T d = p - t, a = fabs(d), q = a < beta ? T(0.5) * d * d / beta : a - T(0.5) * beta;
  return beta == T(0) ? a : q;
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T smooth_l1_dpred(T p, T t, T beta) {
  const T d = p - t, q = d < -beta ? T(-1) : (d > beta ? T(1) : d / beta);
  return beta == T(0) ? sign0(d) : q;
}

// bce (probabilities): -(t log p + (1 - t) log(1 - p)), each log clamped at -100;
// dpred = (p - t) / max(p (1 - p), 1e-12f)  (torch's eps); dtarget = log(1-p) - log(p).
template <class T> FASTNN_HD FASTNN_INLINE_MATH T bce_val(T p, T t) {
  T lp = log(p), l1p = log1p(-p);
  lp = lp < T(-100) ? T(-100) : lp;
  l1p = l1p < T(-100) ? T(-100) : l1p;
  return -(t * lp + (T(1) - t) * l1p);
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T bce_dpred(T p, T t) {
  // torch's EPSILON is the float 1e-12f, also for double tensors.
  const T v = (T(1) - p) * p, eps = T(1e-12f);
  return (p - t) / (v < eps ? eps : v);
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T bce_dtarget(T p, T) { return log1p(-p) - log(p); }

// bce_with_logits(pos_weight w): lw = 1 + (w - 1) t;
// loss = (1 - t) x + lw softplus(-x); dpred = lw sigmoid(x) - w t;
// dtarget = (w - 1) softplus(-x) - x.  Without pos_weight, w = 1.
template <class T> FASTNN_HD FASTNN_INLINE_MATH T bce_logits_val(T x, T t, T w) {
  const T lw = T(1) + (w - T(1)) * t;
  return (T(1) - t) * x + lw * softplus(-x);
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T bce_logits_dpred(T x, T t, T w) {
  const T lw = T(1) + (w - T(1)) * t;
  return lw * sigmoid(x) - w * t;
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T bce_logits_dtarget(T x, T, T w) {
  return (w - T(1)) * softplus(-x) - x;
}

// kl_div (input x = log q): log_target false: t (log t - x), 0 where t == 0 (xlogy);
// dpred = -t; dtarget = log t + t/t - x (torch's xlogy gradient: NaN at t == 0).
// log_target true: e^t (t - x); dpred = -e^t; dtarget = e^t (t - x + 1).
template <class T> FASTNN_HD FASTNN_INLINE_MATH T kl_div_val(T x, T t, bool log_target) {
  const T e = exp(t), tl = t * log(t);
  if (log_target) return e * (t - x);
  return (t == T(0) ? T(0) : tl) - t * x;
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T kl_div_dpred(T, T t, bool log_target) {
  return log_target ? -exp(t) : -t;
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T kl_div_dtarget(T x, T t, bool log_target) {
  if (log_target) return exp(t) * (t - x + T(1));
  return log(t) + t / t - x;
}

// poisson_nll: log_input: e^x - t x (dpred e^x - t, dtarget -x);
// else x - t log(x + eps) (dpred 1 - t / (x + eps), dtarget -log(x + eps));
// full adds the Stirling term t log t - t + log(2 pi t)/2 where t > 1
// (its dtarget log t + 1/(2t)).
template <class T> FASTNN_HD FASTNN_INLINE_MATH T poisson_nll_val(T x, T t, bool log_input, bool full, T eps) {
  const T ex = exp(x), lx = log(x + eps), lt = log(t);
  const T v = log_input ? ex - t * x : x - t * lx;
  const T stirling = t * lt - t + T(0.5) * (T(FASTNN_LN_2PI) + lt);
  return full && t > T(1) ? v + stirling : v;
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T poisson_nll_dpred(T x, T t, bool log_input, T eps) {
  return log_input ? exp(x) - t : T(1) - t / (x + eps);
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T poisson_nll_dtarget(T x, T t, bool log_input, bool full, T eps) {
  const T lx = log(x + eps), lt = log(t);
  const T g = log_input ? -x : -lx;
  // torch masks the Stirling term with masked_fill(t <= 1, 0), whose backward multiplies
  // its derivative by 0: 0 for 0 < t <= 1, but NaN at t <= 0 (0 * (-inf + inf)).
  const T sd = lt + T(0.5) / t;
  return full ? g + (t > T(1) ? sd : sd * T(0)) : g;
}

// hinge (Keras, labels -1/+1): max(1 - t p, 0); dpred = -t where 1 - t p > 0, else 0.
template <class T> FASTNN_HD FASTNN_INLINE_MATH T hinge_val(T p, T t) { return relu0(T(1) - t * p); }
template <class T> FASTNN_HD FASTNN_INLINE_MATH T hinge_dpred(T p, T t) {
  return T(1) - t * p > T(0) ? -t : T(0);
}
// squared_hinge: max(1 - t p, 0)^2; dpred = -2 t max(1 - t p, 0).
template <class T> FASTNN_HD FASTNN_INLINE_MATH T squared_hinge_val(T p, T t) {
  const T m = relu0(T(1) - t * p);
  return m * m;
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T squared_hinge_dpred(T p, T t) {
  return T(-2) * t * relu0(T(1) - t * p);
}
// log_cosh (Keras 3): d + softplus(-2 d) - log 2; dpred = tanh(d).
template <class T> FASTNN_HD FASTNN_INLINE_MATH T log_cosh_val(T p, T t) {
  const T d = p - t;
  return d + softplus(T(-2) * d) - T(FASTNN_LN2);
}
template <class T> FASTNN_HD FASTNN_INLINE_MATH T log_cosh_dpred(T p, T t) { return tanh(p - t); }

// ---- losses by their table name ------------------------------------------------------
// One uniform triple per entry of FASTNN_ELEMENTWISE_LOSSES (op_table.h), for kernels that
// dispatch over that generated list (csrc/cpu/loss.cpp, csrc/cuda): a loss added to the
// table without its line here fails to compile there.
//   <name>_loss_val(p, t, a, pw), <name>_loss_dpred(...), <name>_loss_dtarget(...)
// a: the scalar params; pw: the element's pos_weight (1 without one);
// <name>_loss_uses_pw: whether pw is read (the kernels keep a loop without it).
// A loss with no target gradient (hinge, squared_hinge) has dtarget 0.
template <class T> struct LossScalars {
  T delta, beta, eps;              // huber, smooth_l1, poisson_nll
  bool log_target, log_input, full;  // kl_div, poisson_nll
};
#define FASTNN_LOSS_FORMS(name, USES_PW, VAL, DPRED, DTARGET)                                           \
  inline constexpr bool name##_loss_uses_pw = USES_PW;                                                  \
  template <class T> FASTNN_HD FASTNN_INLINE_MATH T name##_loss_val(T p, T t, const LossScalars<T>& a, T pw) { \
    (void)a; (void)pw; return VAL;                                                                     \
  }                                                                                                    \
  template <class T> FASTNN_HD FASTNN_INLINE_MATH T name##_loss_dpred(T p, T t, const LossScalars<T>& a, T pw) { \
    (void)a; (void)pw; return DPRED;                                                                   \
  }                                                                                                    \
  template <class T> FASTNN_HD FASTNN_INLINE_MATH T name##_loss_dtarget(T p, T t, const LossScalars<T>& a, T pw) { \
    (void)p; (void)t; (void)a; (void)pw; return DTARGET;                                               \
  }
FASTNN_LOSS_FORMS(mse, false, mse_val(p, t), mse_dpred(p, t), -mse_dpred(p, t))
FASTNN_LOSS_FORMS(mae, false, mae_val(p, t), mae_dpred(p, t), -mae_dpred(p, t))
FASTNN_LOSS_FORMS(huber, false, huber_val(p, t, a.delta), huber_dpred(p, t, a.delta), -huber_dpred(p, t, a.delta))
FASTNN_LOSS_FORMS(smooth_l1, false, smooth_l1_val(p, t, a.beta), smooth_l1_dpred(p, t, a.beta),
                  -smooth_l1_dpred(p, t, a.beta))
FASTNN_LOSS_FORMS(bce, false, bce_val(p, t), bce_dpred(p, t), bce_dtarget(p, t))
FASTNN_LOSS_FORMS(bce_with_logits, true, bce_logits_val(p, t, pw), bce_logits_dpred(p, t, pw),
                  bce_logits_dtarget(p, t, pw))
FASTNN_LOSS_FORMS(kl_div, false, kl_div_val(p, t, a.log_target), kl_div_dpred(p, t, a.log_target),
                  kl_div_dtarget(p, t, a.log_target))
FASTNN_LOSS_FORMS(poisson_nll, false, poisson_nll_val(p, t, a.log_input, a.full, a.eps),
                  poisson_nll_dpred(p, t, a.log_input, a.eps), poisson_nll_dtarget(p, t, a.log_input, a.full, a.eps))
FASTNN_LOSS_FORMS(hinge, false, hinge_val(p, t), hinge_dpred(p, t), T(0))
FASTNN_LOSS_FORMS(squared_hinge, false, squared_hinge_val(p, t), squared_hinge_dpred(p, t), T(0))
FASTNN_LOSS_FORMS(log_cosh, false, log_cosh_val(p, t), log_cosh_dpred(p, t), -log_cosh_dpred(p, t))
#undef FASTNN_LOSS_FORMS

}  // namespace sm
}  // namespace fastnn
