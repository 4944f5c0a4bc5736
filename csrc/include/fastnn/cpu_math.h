// cpu_math.h — host-side math for scalar_math.h (not used by CUDA, which has its own).
//
// exp(float) is fastnn's own: it is the innermost operation of softmax, cross-entropy,
// sigmoid, silu, elu and their gradients, and this version vectorizes to a dozen FMAs
// (faster than glibc's SIMD expf: docs/performance.md, "Activations"). Max error 1.0 ulp
// over [-120, 100] (every 13th float, against double exp); exp(-inf) = 0, exp(inf) = inf,
// NaN propagates, subnormal results are produced. log, log1p and erfc of float are
// fastnn's too (below), for the same reason: libmvec's erfcf and log1pf made gelu and
// softplus about twice as slow. float32 gelu, softplus and the other activations of
// csrc/cpu/simd_kernels.h run those kernels instead on AVX2 and AVX-512 CPUs. Everything else is <cmath>, vectorized through glibc's
// libmvec (csrc/cpu/vecmath.h).
#pragma once

#include <cmath>
#include <cstdint>

namespace fastnn {
namespace sm {

// exp(x) = 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2] (ln 2 split
// in a high part exact in float and a low part); exp(r) by the Cephes expf polynomial;
// 2^n applied as two factors so n in [-150, 128] covers subnormals and overflow.
// Plain products and sums: the compiler fuses them into FMAs in the AVX2/AVX-512 clones
// (GCC's default -ffp-contract=fast); n * ln2_hi is exact (16 + 8 significant bits).
inline __attribute__((always_inline)) float exp(float x) {
  const float lo = -104.0f, hi = 89.0f;
  float xc = lo > x ? lo : x;  // max / min instructions; NaN passes through
  xc = hi < xc ? hi : xc;
  const float shift = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer, kept in the low bits
  const float ns = xc * 1.44269504088896341f + shift;  // log2(e)
  const float n = ns - shift;
  float r = xc - n * 0.693145751953125f;  // ln 2, high part
  r = r - n * 1.428606765330187045e-06f;  // ln 2, low part
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  // n as an integer from the bits of ns (no float -> int conversion, defined for NaN too)
  const int32_t ni = __builtin_bit_cast(int32_t, ns) - 0x4b400000, n1 = ni >> 1, n2 = ni - n1;
  const float s1 = __builtin_bit_cast(float, (n1 + 127) << 23);
  const float s2 = __builtin_bit_cast(float, (n2 + 127) << 23);
  return p * s1 * s2;
}
inline __attribute__((always_inline)) double exp(double x) { return std::exp(x); }

// log(x) for x > 0 normal or subnormal: x = 2^e m with m in [sqrt(1/2), sqrt(2)), then
// log(m) = f - f^2/2 + f^3 P(f), f = m - 1, by the Cephes logf polynomial (ln 2 split in
// 0.693359375, exact in float, and -2.12194440e-4). Max error 0.8 ulp (against double
// log: 22M floats spread over every exponent). 0 -> -inf, inf -> inf, negative or NaN -> NaN.
// log_normal: the same for a positive normal finite x only (log1p's 1 + x always is).
inline __attribute__((always_inline)) float log_normal(float x, float e_bias = 0.0f) {
  const int32_t bits = __builtin_bit_cast(int32_t, x);
  float e = static_cast<float>(((bits >> 23) & 0xff) - 127) - e_bias;
  float m = __builtin_bit_cast(float, (bits & 0x007fffff) | 0x3f800000);  // [1, 2)
  const bool big = m > 1.41421356f;
  m = big ? 0.5f * m : m;
  e = big ? e + 1.0f : e;
  const float f = m - 1.0f, z = f * f;
  float p = 7.0376836292e-2f;
  p = p * f - 1.1514610310e-1f;
  p = p * f + 1.1676998740e-1f;
  p = p * f - 1.2420140846e-1f;
  p = p * f + 1.4249322787e-1f;
  p = p * f - 1.6668057665e-1f;
  p = p * f + 2.0000714765e-1f;
  p = p * f - 2.4999993993e-1f;
  p = p * f + 3.3333331174e-1f;
  const float r = p * f * z + e * -2.12194440e-4f - 0.5f * z;
  return (f + r) + e * 0.693359375f;
}
inline __attribute__((always_inline)) float log(float x) {
  const bool sub = x < 1.17549435e-38f;  // subnormal (or 0, negative): scale by 2^23
  float r = log_normal(sub ? x * 8388608.0f : x, sub ? 23.0f : 0.0f);
  r = x == 0.0f ? -__builtin_inff() : r;
  r = x == __builtin_inff() ? x : r;
  return x >= 0.0f ? r : __builtin_nanf("");  // negative, NaN
}
inline __attribute__((always_inline)) double log(double x) { return std::log(x); }

// log1p(x) = log(u) + (x - (u - 1)) / u with u = 1 + x rounded: the second term restores
// what rounding u lost (Goldberg). Max error 1.5 ulp. |x| < 2^-24: x; -1 -> -inf; inf -> inf.
inline __attribute__((always_inline)) float log1p(float x) {
  const float u = 1.0f + x;
  float r = log_normal(u) + (x - (u - 1.0f)) / u;  // u >= 2^-24 here, or handled below
  r = u == 1.0f ? x : r;
  r = x == __builtin_inff() ? x : r;
  r = x == -1.0f ? -__builtin_inff() : r;
  return x >= -1.0f ? r : __builtin_nanf("");  // below -1, NaN
}
inline __attribute__((always_inline)) double log1p(double x) { return std::log1p(x); }

// erfc(z) for z >= 0 as t exp(-z^2 + P(t)), t = 1 / (1 + z/2) (Numerical Recipes' erfcc,
// relative error < 1.2e-7 for every z >= 0); erfc(-z) = 2 - erfc(z). The exponent is
// carried as hi + lo, exact: -z^2 = -h^2 - (z - h)(z + h) with h = z cut to 12
// significant bits (h^2 exact), so the tail keeps its relative accuracy down to the
// subnormals (z^2 rounded would cost z^2 * 2^-24, 1e-5 at z = 9). Max error against
// double erfc (every 7th float in [0, 16], every 31st below 0): 6.7 ulp for z >= 0, 3.6
// ulp for z < 0 (torch's gelu, 1 + erf(x / sqrt 2), loses all relative accuracy in the
// tail). z > 10.5: 0 (erfc(10.06) is the smallest subnormal); NaN -> NaN.
inline __attribute__((always_inline)) float erfc(float z) {
  float a = std::fabs(z);
  a = a > 10.5f ? 10.5f : a;  // NaN stays NaN
  const float t = 1.0f / (1.0f + 0.5f * a);
  float p = 0.17087277f;
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  // exp(-a^2 + p) = exp(hi) (1 + lo): -a^2 = -h^2 - (a - h)(a + h) with h^2 exact, and
  // hi + lo = -h^2 + (p - (a - h)(a + h)) exactly (TwoSum)
  const float h = __builtin_bit_cast(float, __builtin_bit_cast(int32_t, a) & int32_t(0xfffff000));
  const float big = -(h * h), small = p - (a - h) * (a + h);
  const float hi = big + small, bv = hi - big, lo = (big - (hi - bv)) + (small - bv);
  const float e = exp(hi);
  float r = t * (e + e * lo);
  r = a >= 10.5f ? 0.0f : r;
  return z < 0.0f ? 2.0f - r : r;
}
inline __attribute__((always_inline)) double erfc(double z) { return std::erfc(z); }

using std::erf; using std::expm1; using std::fabs; using std::tanh;

}  // namespace sm
}  // namespace fastnn
