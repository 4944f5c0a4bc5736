// gemm_lp.h — the ways gemm_lp (kernels.h) can compute a product, for the tests and the
// benchmarks that compare them (csrc/bind_gemm.cpp); everything else calls gemm_lp, which
// picks one per call (gemm_lp.cpp).
#pragma once

#include "kernels.h"

namespace fastnn {

enum class GemmLpPath : int {
  best = 0,       // what gemm_lp runs: the fastest available at isa() for these types
  widen = 1,      // 16-bit operands widened while packing into fastnn's float32 product (AVX2 or AVX-512)
  bf16dot = 2,    // vdpbf16ps (AVX512-BF16; bf16 / float operands, float rounded to bf16 while packing)
  blas = 3,       // k blocks converted to float32 (bounded scratch), OpenBLAS sgemm: the baseline level's
  reference = 4,  // plain loops: the definition the others must reproduce
  amx = 5,        // AMX-BF16 tiles (bf16 / float operands as bf16dot)
  amx_split = 6,  // AMX-BF16 tiles, a float operand as two bf16 parts (hi + lo: 16 significant bits)
};
// The CPU has AVX512-BF16 and isa() is avx512: gemm_lp's bf16 products use vdpbf16ps.
bool has_bf16dot();
// The CPU has AMX-BF16, Linux granted its tile state and isa() is avx512.
bool has_amx();
// The path gemm_lp takes for these types and sizes at isa() now (never best).
template <class TA, class TB> GemmLpPath gemm_lp_best(int64_t m, int64_t n, int64_t k);
// gemm_lp through `path`; std::invalid_argument where that path cannot run here (the ISA
// level, the types) — best and reference always can.
template <class TA, class TB>
void gemm_lp_path(GemmLpPath path, bool at, bool bt, int64_t m, int64_t n, int64_t k, float alpha, const TA* a,
                  int64_t lda, const TB* b, int64_t ldb, float beta, float* c, int64_t ldc,
                  const RowsDone* rows_done = nullptr, const BRows* b_rows = nullptr);

}  // namespace fastnn
