// isa.cpp — the run-time instruction-set level (isa.h) and the dispatch of the
// hand-vectorized kernels on it (simd_dispatch.h).
#include "isa.h"

#include "simd_dispatch.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

namespace fastnn {
namespace {

Isa detect() {
#if defined(FASTNN_ISA_LEVELS)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return Isa::avx512;
  if (__builtin_cpu_supports("x86-64-v3")) return Isa::avx2;
#endif
  return Isa::baseline;
}

Isa lower(Isa a, Isa b) { return static_cast<int>(a) < static_cast<int>(b) ? a : b; }

std::atomic<int> g_level{[] {
  Isa level = detect();
  Isa cap;
  if (const char* env = std::getenv("FASTNN_ISA"); env && parse_isa(env, &cap)) level = lower(level, cap);
  return static_cast<int>(level);
}()};

}  // namespace

const bool g_cpu_avx512_bf16 = [] {
#if defined(FASTNN_ISA_LEVELS)
  __builtin_cpu_init();
  return __builtin_cpu_supports("x86-64-v4") && __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}();

Isa cpu_isa() {
  static const Isa level = detect();
  return level;
}

Isa isa() { return static_cast<Isa>(g_level.load(std::memory_order_relaxed)); }

Isa set_isa(Isa cap) {
  const Isa level = lower(cap, cpu_isa());
  g_level.store(static_cast<int>(level), std::memory_order_relaxed);
  return level;
}

const char* isa_name(Isa level) {
  switch (level) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "baseline";
  }
}

bool parse_isa(const char* name, Isa* level) {
  for (Isa l : {Isa::baseline, Isa::avx2, Isa::avx512})
    if (std::strcmp(name, isa_name(l)) == 0) { *level = l; return true; }
  return false;
}

}  // namespace fastnn

// ---- the hand-vectorized kernels at the current level (simd_dispatch.h) ----
namespace fastnn {
namespace {
// FASTNN_SIMD=0 at start-up: the portable loops at every level (to measure what the
// hand-vectorized kernels gain: bench/avx2_paths.py).
const bool g_simd = [] {
  const char* env = std::getenv("FASTNN_SIMD");
  return !(env && std::strcmp(env, "0") == 0);
}();
}  // namespace

#if defined(FASTNN_ISA_LEVELS)
#define FASTNN_SIMD_ACT(T)                                                                                \
  bool simd_act_forward(Act a, const ActParams& p, const T* x, T* y, int64_t n) {                         \
    if (!g_simd) return false;                                                                            \
    switch (isa()) {                                                                                      \
      case Isa::avx512: return simd_avx512::vec_act_forward(a, p, x, y, n);                               \
      case Isa::avx2: return simd_avx2::vec_act_forward(a, p, x, y, n);                                   \
      default: return false;                                                                              \
    }                                                                                                     \
  }                                                                                                       \
  bool simd_act_backward_x(Act a, const ActParams& p, const T* x, const T* dy, T* dx, int64_t n) {        \
    if (!g_simd) return false;                                                                            \
    switch (isa()) {                                                                                      \
      case Isa::avx512: return simd_avx512::vec_act_backward_x(a, p, x, dy, dx, n);                       \
      case Isa::avx2: return simd_avx2::vec_act_backward_x(a, p, x, dy, dx, n);                           \
      default: return false;                                                                              \
    }                                                                                                     \
  }
#else
#define FASTNN_SIMD_ACT(T)                                                                                \
  bool simd_act_forward(Act, const ActParams&, const T*, T*, int64_t) { return false; }                   \
  bool simd_act_backward_x(Act, const ActParams&, const T*, const T*, T*, int64_t) { return false; }
#endif
FASTNN_SIMD_ACT(float)
FASTNN_SIMD_ACT(bf16)
FASTNN_SIMD_ACT(f16)
#undef FASTNN_SIMD_ACT

bool simd_exp_row(const float* x, float* e, int64_t c, float mx, float* sum) {
#if defined(FASTNN_ISA_LEVELS)
  if (!g_simd) return false;
  switch (isa()) {
    case Isa::avx512: *sum = simd_avx512::vec_exp_row(x, e, c, mx); return true;
    // AVX2: the portable loop (cpu_math.h's exp) is as fast as this kernel, whose 2^n
    // takes two multiplies and integer work without vscalefps (bench/avx2_paths.py --kernels)
    default: break;
  }
#else
  (void)x, (void)e, (void)c, (void)mx, (void)sum;
#endif
  return false;
}

}  // namespace fastnn
