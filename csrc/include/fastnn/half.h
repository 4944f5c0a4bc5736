// half.h — fastnn's 16-bit float storage types for the CPU kernels and the host bridges
// (host C++; the CUDA kernels use __half / __nv_bfloat16 and the same contract).
//
// The contract, torch's for these dtypes:
//   - a 16-bit value widens to float32 exactly;
//   - arithmetic runs in float32 (compute_t<T>), every product and reduction accumulates in
//     float32 or wider;
//   - each output is rounded to the storage type once, round-to-nearest-even (a fused op
//     rounds once, at its output).
// bfloat16: the upper half of a float32 (sign, 8-bit exponent, 7-bit mantissa): same range
//   as float32. Narrowing rounds the low 16 bits to nearest-even; +-inf stay inf, finite
//   values past the largest bfloat16 (3.3895e38) round to inf as IEEE says, a NaN stays a
//   NaN (sign kept, quiet bit set).
// float16 (IEEE binary16): sign, 5-bit exponent, 10-bit mantissa; largest finite 65504.
//   Narrowing: |v| >= 65520 rounds to inf (torch gives inf too), below 2^-14 to subnormals,
//   below 2^-25 to +-0; NaN stays NaN (quiet).
//
// The scalar conversions below are exact bit manipulations, independent of the CPU's
// F16C / AVX512-BF16 units (the vector layer, simd_*.h, uses those where present and is
// tested against these). They rely on IEEE float arithmetic in round-to-nearest (fastnn is
// never compiled with -ffast-math).
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace fastnn {

// Storage only: no arithmetic operators, so no expression can round twice by accident.
// Convert with widen() / narrow<T>().
struct bf16 {
  uint16_t bits;
};
struct f16 {
  uint16_t bits;
};
static_assert(sizeof(bf16) == 2 && sizeof(f16) == 2, "16-bit storage types");

template <class T> inline constexpr bool is_half_v = std::is_same_v<T, bf16> || std::is_same_v<T, f16>;
// The type a kernel computes in for storage type T: float for the 16-bit types, else T.
template <class T> using compute_t = std::conditional_t<is_half_v<T>, float, T>;

namespace half_detail {
inline uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
}  // namespace half_detail

// ---- bfloat16 ---------------------------------------------------------------------------
inline float bf16_to_float(uint16_t h) { return half_detail::float_of(uint32_t(h) << 16); }
inline uint16_t float_to_bf16(float f) {
  uint32_t u = half_detail::bits_of(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);  // NaN: quiet, sign kept
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even (carries into the exponent)
  return uint16_t(u >> 16);
}

// ---- float16 (after M. Maratyszcza's FP16 library, MIT) ---------------------------------
inline float f16_to_float(uint16_t h) {
  using namespace half_detail;
  const uint32_t w = uint32_t(h) << 16;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t two_w = w + w;  // exponent and mantissa, sign shifted out
  // normal (and inf / NaN): re-bias the exponent by shifting into float32's position and
  // scaling by 2^-112 (exact); subnormal: the mantissa as a float in [0.5, 1) minus 0.5.
  const float normalized = float_of((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
  const float denormalized = float_of((two_w >> 17) | (126u << 23)) - 0.5f;
  const uint32_t r = sign | (two_w < (1u << 27) ? bits_of(denormalized) : bits_of(normalized));
  return float_of(r);
}
inline uint16_t float_to_f16(float f) {
  using namespace half_detail;
  // Scaling by 2^112 then 2^-110 makes values past float16's range overflow to inf and
  // leaves the rest exact; adding a power of two aligned to the result's last mantissa bit
  // rounds to nearest-even in the FPU (subnormals included).
  const float absf = float_of(bits_of(f) & 0x7fffffffu);
  float base = (absf * 0x1.0p+112f) * 0x1.0p-110f;
  const uint32_t w = bits_of(f);
  const uint32_t shl1_w = w + w;
  const uint32_t sign = w & 0x80000000u;
  uint32_t bias = shl1_w & 0xFF000000u;
  if (bias < 0x71000000u) bias = 0x71000000u;
  base = float_of((bias >> 1) + 0x07800000u) + base;
  const uint32_t b = bits_of(base);
  const uint32_t exp_bits = (b >> 13) & 0x00007C00u;
  const uint32_t mantissa_bits = b & 0x00000FFFu;
  const uint32_t nonsign = exp_bits + mantissa_bits;
  return uint16_t((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

// ---- generic forms for templated kernels -------------------------------------------------
inline float widen(bf16 v) { return bf16_to_float(v.bits); }
inline float widen(f16 v) { return f16_to_float(v.bits); }
inline float widen(float v) { return v; }
inline double widen(double v) { return v; }

// compute_t<T> -> T, rounded once (identity for float / double).
template <class T> inline T narrow(compute_t<T> v) {
  if constexpr (std::is_same_v<T, bf16>) return bf16{float_to_bf16(v)};
  else if constexpr (std::is_same_v<T, f16>) return f16{float_to_f16(v)};
  else return v;
}

// Scalar block conversions (the vector layer has faster ones; these are the reference).
template <class T> inline void widen_n(const T* src, compute_t<T>* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = widen(src[i]);
}
template <class T> inline void narrow_n(const compute_t<T>* src, T* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = narrow<T>(src[i]);
}

}  // namespace fastnn
