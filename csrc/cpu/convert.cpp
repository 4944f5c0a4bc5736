// convert.cpp — block conversions between 16-bit storage and float32 (kernels.h).
// Scalar reference form (half.h); the vector forms per ISA level replace the loops.
#include "kernels.h"

namespace fastnn {

void widen_block(const bf16* src, float* dst, int64_t n) { widen_n(src, dst, n); }
void widen_block(const f16* src, float* dst, int64_t n) { widen_n(src, dst, n); }
void narrow_block(const float* src, bf16* dst, int64_t n) { narrow_n(src, dst, n); }
void narrow_block(const float* src, f16* dst, int64_t n) { narrow_n(src, dst, n); }

}  // namespace fastnn
