// isa.h — the instruction-set level fastnn's CPU kernels run at, chosen at run time.
//
// Levels: baseline x86-64 (SSE2), avx2 (x86-64-v3: AVX2, FMA, F16C, BMI) and avx512
// (x86-64-v4: AVX-512 F/BW/CD/DQ/VL). isa() is the best level the CPU has, capped by the
// environment variable FASTNN_ISA (baseline, avx2 or avx512) at start-up or by set_isa()
// later: the cap lets the AVX2 and baseline paths run, be tested and be measured on an
// AVX-512 CPU (tests/test_isa_levels.py; bench/avx2_paths.py). No level is ever raised
// above what the CPU has.
//
// Every kernel entry point of activation.cpp, loss.cpp and dense.cpp is compiled once per
// level (FASTNN_ISA_FN below) and dispatches on isa() per call (one relaxed atomic load);
// the hand-vectorized float32 kernels (simd_kernels.h, one source for every vector
// width) are reached through simd_dispatch.h the same way. A build without the x86 levels
// (FASTNN_NO_CLONES, another CPU or compiler) has only the baseline, and isa() says so.
#pragma once

#include <cstdint>

namespace fastnn {

enum class Isa : int { baseline = 0, avx2 = 1, avx512 = 2 };

Isa cpu_isa();          // the best level this CPU supports and this build has
Isa isa();              // the level the kernels use now
Isa set_isa(Isa cap);   // use min(cap, cpu_isa()); returns the level now in effect
const char* isa_name(Isa level);                  // "baseline", "avx2", "avx512"
bool parse_isa(const char* name, Isa* level);     // the inverse; false for an unknown name

// True where the AVX-512 kernels run now (isa() == avx512): fastnn's own sgemm.
inline bool have_avx512() { return isa() == Isa::avx512; }

// True where the CPU has AVX512-BF16 (vcvtneps2bf16, vdpbf16ps) and this build has the x86
// levels: code at the avx512 level may then use it. Fixed at start-up.
extern const bool g_cpu_avx512_bf16;
inline bool cpu_avx512_bf16() { return g_cpu_avx512_bf16; }

}  // namespace fastnn

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FASTNN_NO_CLONES)
#define FASTNN_ISA_LEVELS 1
#define FASTNN_TARGET_AVX512 __attribute__((target("arch=x86-64-v4")))
#define FASTNN_TARGET_AVX2 __attribute__((target("arch=x86-64-v3")))
// Defines `ret name params` (args: the same parameters' names, parenthesized), which runs
// `call` compiled for the level isa() names. `call` is an expression over the parameters
// whose inner loops are always_inline templates, so each copy is compiled with its
// level's ISA (GCC inlines a generic function into a function with a wider target).
#define FASTNN_ISA_FN(ret, name, params, args, call)                   \
  FASTNN_TARGET_AVX512 ret name##_avx512 params { return call; }       \
  FASTNN_TARGET_AVX2 ret name##_avx2 params { return call; }           \
  ret name##_baseline params { return call; }                          \
  ret name params {                                                    \
    switch (::fastnn::isa()) {                                         \
      case ::fastnn::Isa::avx512: return name##_avx512 args;           \
      case ::fastnn::Isa::avx2: return name##_avx2 args;               \
      default: return name##_baseline args;                            \
    }                                                                  \
  }
#else
#define FASTNN_ISA_FN(ret, name, params, args, call) \
  ret name params { return call; }
#endif
// Prepends a dtype tag to a parenthesized argument list: FASTNN_TAG_F (a, b) -> (0.0f, a, b).
#define FASTNN_TAG_F(...) (0.0f, __VA_ARGS__)
#define FASTNN_TAG_D(...) (0.0, __VA_ARGS__)
