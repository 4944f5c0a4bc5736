// sgemm_avx512.cpp — fastnn's own sgemm (sgemm_driver.h) compiled for AVX-512
// F/DQ/VL/BW, in namespace fastnn::sgemm_avx512. The micro-kernel keeps a 6 x 64 tile of
// C in 24 zmm registers: per k, 4 vector loads of B, 6 broadcasts of A, 24 FMAs (enough
// FMAs per load to reach the FMA peak from cache). The file is compiled for baseline
// x86-64; only the code inside the target region carries the wider ISA, and it runs only
// where isa() allows (sgemm.cpp). Not built without the x86 levels (FASTNN_NO_CLONES).
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <new>
#include <vector>

#include "isa.h"
#include "kernels.h"
#include "parallel.h"
#include "pool.h"

#if defined(FASTNN_ISA_LEVELS)
#include <immintrin.h>
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma,f16c")

namespace fastnn {
namespace sgemm_avx512 {
#include "simd_avx512.h"

constexpr int kMr = 6;             // rows of the C tile (broadcasts)
constexpr int kNr = 64;            // columns of the C tile: 4 zmm vectors
constexpr int64_t kKc = 512;       // k block: an A panel (kMr x kKc, 12 KiB) stays in L1
constexpr int64_t kNc = 3 * kNr;   // columns per pass over a row block: B (kKc x kNc, 384 KiB) stays in L2
constexpr int64_t kUnitPanels = 8; // rows per unit of work: 8 tiles (48 x kKc of A: 96 KiB)
constexpr bool kBPanelInL1 = false; // a B micro-panel (kKc x 64: 128 KiB) does not fit L1

template <int R> inline __m256 load8_first(const float* p) { return _mm256_maskz_loadu_ps(__mmask8((1u << R) - 1), p); }
template <int R> inline void store8_first(float* p, __m256 v) { _mm256_mask_storeu_ps(p, __mmask8((1u << R) - 1), v); }

#include "sgemm_driver.h"
}  // namespace sgemm_avx512
}  // namespace fastnn

#pragma GCC pop_options
#endif
