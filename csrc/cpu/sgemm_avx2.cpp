// sgemm_avx2.cpp — fastnn's own sgemm (sgemm_driver.h) compiled for AVX2 + FMA, in
// namespace fastnn::sgemm_avx2. 16 ymm registers: the micro-kernel keeps a 6 x 16 tile of
// C in 12 of them, per k 2 vector loads of B and 6 broadcasts of A (one register, reused)
// for 12 FMAs (the BLIS / OpenBLAS Haswell shape). kKc = 256 keeps a packed B micro-panel
// (kKc x 16, 16 KiB) in a 32 KiB L1 while the unit's A tiles stream past it. Edge tiles and the
// 6-row A panels move through vmaskmovps (no AVX-512 masks). The file is compiled for
// baseline x86-64; only the code inside the target region carries the wider ISA, and it
// runs only where isa() allows (sgemm.cpp). Not built without the x86 levels.
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
#pragma GCC target("avx2,fma,f16c")

namespace fastnn {
namespace sgemm_avx2 {
#include "simd_avx2.h"

constexpr int kMr = 6;              // rows of the C tile (broadcasts)
constexpr int kNr = 16;             // columns of the C tile: 2 ymm vectors
constexpr int64_t kKc = 256;        // k block (above)
constexpr int64_t kNc = 12 * kNr;   // (unused with kBPanelInL1)
constexpr int64_t kUnitPanels = 8;  // rows per unit of work: 8 tiles (48 x kKc of A: 48 KiB, in L2)
constexpr bool kBPanelInL1 = true;  // the B micro-panel (kKc x 16: 16 KiB) stays in L1

template <int R> inline __m256i first8() {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(R), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
template <int R> inline __m256 load8_first(const float* p) { return _mm256_maskload_ps(p, first8<R>()); }
template <int R> inline void store8_first(float* p, __m256 v) { _mm256_maskstore_ps(p, first8<R>(), v); }

#include "sgemm_driver.h"
}  // namespace sgemm_avx2
}  // namespace fastnn

#pragma GCC pop_options
#endif
