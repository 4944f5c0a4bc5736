// cpu_math.h — host-side math for scalar_math.h (not used by CUDA, which has its own).
//
// exp(float) is fastnn's own: it is the innermost operation of softmax, cross-entropy,
// sigmoid, silu, elu and their gradients, and this version vectorizes to a dozen FMAs
// (about 2x faster than glibc's SIMD expf here, at memory speed). Max error 1.01 ulp
// over [-110, 95] (checked against double exp); exp(-inf) = 0, exp(inf) = inf, NaN
// propagates, subnormal results are produced. Everything else is <cmath>, vectorized
// through glibc's libmvec (csrc/cpu/vecmath.h).
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
  const float xc = x < -104.0f ? -104.0f : (x > 89.0f ? 89.0f : x);  // NaN passes through
  const float shift = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  float n = (xc * 1.44269504088896341f + shift) - shift;  // log2(e)
  n = xc == xc ? n : 0.0f;  // keep the int conversion below defined for NaN
  float r = xc - n * 0.693145751953125f;  // ln 2, high part
  r = r - n * 1.428606765330187045e-06f;  // ln 2, low part
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const int32_t ni = static_cast<int32_t>(n), n1 = ni >> 1, n2 = ni - n1;
  const float s1 = __builtin_bit_cast(float, (n1 + 127) << 23);
  const float s2 = __builtin_bit_cast(float, (n2 + 127) << 23);
  return p * s1 * s2;
}
inline __attribute__((always_inline)) double exp(double x) { return std::exp(x); }

using std::erf; using std::erfc; using std::expm1; using std::fabs; using std::log;
using std::log1p; using std::tanh;

}  // namespace sm
}  // namespace fastnn
