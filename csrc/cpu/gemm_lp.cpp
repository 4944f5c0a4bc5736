// gemm_lp.cpp — the products of 16-bit Dense layers (kernels.h, gemm_lp): A and B widened
// to float32 exactly, products accumulated in float32.
//
// This is the reference form: plain loops, correct on every ISA level and for every
// stride, used by the tests as the definition the fast paths must reproduce.
#include <algorithm>
#include <vector>

#include "kernels.h"

namespace fastnn {

template <class TA, class TB>
void gemm_lp(bool at, bool bt, int64_t m, int64_t n, int64_t k, float alpha, const TA* a, int64_t lda, const TB* b,
             int64_t ldb, float beta, float* c, int64_t ldc, const RowsDone* rows_done, const BRows* b_rows) {
  std::vector<float> bbuf;
  if (b_rows) {  // op(B) is produced, (k, n) row-major, a group of rows at a time
    if constexpr (std::is_same_v<TB, float>) {
      bbuf.resize(size_t(k) * size_t(n));
      for (int64_t p0 = 0; p0 < k; p0 += b_rows->group) {
        const int64_t p1 = std::min(k, p0 + b_rows->group);
        b_rows->fn(p0, p1, bbuf.data() + p0 * n);
      }
      b = bbuf.data(), ldb = n, bt = false;
    }
  }
  std::vector<float> acc(static_cast<size_t>(n));
  for (int64_t i = 0; i < m; ++i) {
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int64_t p = 0; p < k; ++p) {
      const float av = widen(at ? a[p * lda + i] : a[i * lda + p]);
      if (bt)
        for (int64_t j = 0; j < n; ++j) acc[j] += av * widen(b[j * ldb + p]);
      else
        for (int64_t j = 0; j < n; ++j) acc[j] += av * widen(b[p * ldb + j]);
    }
    float* ci = c + i * ldc;
    for (int64_t j = 0; j < n; ++j) ci[j] = alpha * acc[j] + (beta == 0.0f ? 0.0f : beta * ci[j]);
  }
  if (rows_done && m) (*rows_done)(0, m);
}

#define FASTNN_GEMM_LP(TA, TB)                                                                                   \
  template void gemm_lp<TA, TB>(bool, bool, int64_t, int64_t, int64_t, float, const TA*, int64_t, const TB*, \
                                int64_t, float, float*, int64_t, const RowsDone*, const BRows*);
FASTNN_GEMM_LP(bf16, bf16)
FASTNN_GEMM_LP(bf16, float)
FASTNN_GEMM_LP(float, bf16)
FASTNN_GEMM_LP(f16, f16)
FASTNN_GEMM_LP(f16, float)
FASTNN_GEMM_LP(float, f16)
#undef FASTNN_GEMM_LP

}  // namespace fastnn
