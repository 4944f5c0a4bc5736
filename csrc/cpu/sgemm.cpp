// sgemm.cpp — fastnn's own float32 matrix product for CPUs with AVX-512 or AVX2 + FMA, on
// fastnn's thread pool (or a host framework's executor), in place of OpenBLAS's sgemm for
// the Dense layers' products of at least a level's minimum multiply-adds (why at
// default_min_macs).
//
// Why not OpenBLAS there:
//  - Speed. From the minimum up this product is faster than OpenBLAS's sgemm, one core or
//    two (docs/performance.md, "Dense and sgemm").
//  - Its threads. After each call OpenBLAS's worker threads spin (by default ~2^28
//    cycles) before they sleep. Whatever runs on those cores meanwhile (fastnn's own
//    pool: the epilogue, the activation gradient; TensorFlow's or torch's threads) shares
//    them with a spinning thread. This product runs on fastnn's pool or on the host
//    framework's executor, whose threads are the ones that run next.
//  - Determinism. Each output element is one thread's sum over k in a fixed order (k
//    blocks in order, each in order), so the bits never depend on the thread count.
//
// The method is the usual one (Goto / BLIS): the product is cut into k blocks of kKc,
// op(B) is packed once per call into panels of kKc x kNr (the vector side, zero-padded),
// op(A) into panels of kMr x kKc per unit of rows (the broadcast side), and a micro-kernel
// keeps a kMr x kNr tile of C in vector registers (6 x 64 in 24 zmm on AVX-512, 6 x 16 in
// 12 ymm on AVX2: sgemm_avx512.cpp, sgemm_avx2.cpp; one driver, sgemm_driver.h). Tiles at the
// edges are computed whole (the padding is zero) and stored through masks. The rows are
// cut into units of kUnitPanels tiles that the threads claim one at a time. op(B) may also
// be made by the caller, rows at a time, as the packing reads it (BRows in kernels.h: a
// backward's activation gradient, never written out).
//
// This file: the routing (own_sgemm: which products run here) and the dispatch on isa();
// the code itself is compiled per ISA level in sgemm_avx512.cpp and sgemm_avx2.cpp.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <string>

#include "isa.h"
#include "kernels.h"

namespace fastnn {

#define FASTNN_SGEMM_DECL                                                                                        \
  void sgemm(bool at, bool bt, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,        \
             const float* b, int64_t ldb, float beta, float* c, int64_t ldc, const RowsDone* rows_done,          \
             const BRows* b_rows);
namespace sgemm_avx512 { FASTNN_SGEMM_DECL }
namespace sgemm_avx2 { FASTNN_SGEMM_DECL }
#undef FASTNN_SGEMM_DECL

void sgemm_own(bool at, bool bt, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
               const float* b, int64_t ldb, float beta, float* c, int64_t ldc, const RowsDone* rows_done,
               const BRows* b_rows) {
#if defined(FASTNN_ISA_LEVELS)
  switch (isa()) {
    case Isa::avx512: return sgemm_avx512::sgemm(at, bt, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, rows_done, b_rows);
    case Isa::avx2: return sgemm_avx2::sgemm(at, bt, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, rows_done, b_rows);
    default: break;
  }
#endif
  throw std::logic_error("fastnn: sgemm_own needs AVX2 or AVX-512 (callers check own_sgemm())");
}

namespace {
// The default minimum multiply-adds per level: from there up this sgemm is faster than
// OpenBLAS's, below OpenBLAS is as fast or faster (Dense forward + backward, both forced
// onto each: docs/performance.md, "Dense and sgemm"; bench/avx2_paths.py --gemm;
// FASTNN_GEMM=openblas for OpenBLAS). Where it loses: B is packed in a pass of its own
// (written out and read back, where OpenBLAS packs blocks that stay in cache) and the
// pool's threads must be woken where OpenBLAS's are still spinning from its last call.
// On AVX2 OpenBLAS's Haswell kernels measured as fast or faster than this one at every
// Dense shape tried, one thread or two (docs/performance.md), so OpenBLAS runs every AVX2
// product by default; set_own_sgemm (Python: _C._set_gemm_path("fastnn", min_macs)) routes
// them here.
int64_t default_min_macs(Isa level) {
  return level == Isa::avx512 ? kOwnSgemmMinMacs : kOwnSgemmMinMacsAvx2;
}
bool has_own(Isa level) { return level == Isa::avx512 || level == Isa::avx2; }
#if defined(FASTNN_ISA_LEVELS)
std::atomic<bool> g_own{[] {
  const char* env = std::getenv("FASTNN_GEMM");
  return has_own(cpu_isa()) && !(env && std::string(env) == "openblas");
}()};
#else
std::atomic<bool> g_own{false};
#endif
std::atomic<int64_t> g_min_macs{-1};  // < 0: default_min_macs(isa())
}  // namespace

int64_t own_sgemm_min_macs() {
  const int64_t v = g_min_macs.load(std::memory_order_relaxed);
  return v < 0 ? default_min_macs(isa()) : v;
}
bool own_sgemm_on() {
  return g_own.load(std::memory_order_relaxed) && has_own(isa()) && own_sgemm_min_macs() < INT64_MAX;
}
bool own_sgemm(int64_t m, int64_t n, int64_t k) {
  return own_sgemm_on() && double(m) * double(n) * double(k) >= double(own_sgemm_min_macs());
}
void set_own_sgemm(bool on, int64_t min_macs) {
#if defined(FASTNN_ISA_LEVELS)
  g_own.store(on && has_own(cpu_isa()), std::memory_order_relaxed);
#else
  (void)on;
#endif
  g_min_macs.store(min_macs < 0 ? -1 : min_macs, std::memory_order_relaxed);
}

}  // namespace fastnn
