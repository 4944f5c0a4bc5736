// blas.h — the one place fastnn names BLAS symbols. The scipy-openblas32 wheel (the
// OpenBLAS numpy ships) exports them with a "scipy_" prefix and 32-bit sizes.
#pragma once

#include <climits>
#include <cstdint>
#include <stdexcept>

extern "C" {
#include <cblas.h>
}

namespace fastnn {
namespace blas {
// A size or leading dimension as BLAS's 32-bit int; larger ones are refused, not truncated.
inline blasint bi(int64_t v) {
  if (v > INT_MAX) throw std::length_error("fastnn: matrix dimension exceeds 2^31 - 1 (32-bit BLAS)");
  return static_cast<blasint>(v);
}
inline void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k, float alpha, const float* a,
                 blasint lda, const float* b, blasint ldb, float beta, float* c, blasint ldc) {
  scipy_cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
inline void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k, double alpha,
                 const double* a, blasint lda, const double* b, blasint ldb, double beta, double* c, blasint ldc) {
  scipy_cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
// y = alpha op(A) x + beta y (unit strides).
inline void gemv(CBLAS_TRANSPOSE ta, blasint m, blasint n, float alpha, const float* a, blasint lda, const float* x,
                 float beta, float* y) {
  scipy_cblas_sgemv(CblasRowMajor, ta, m, n, alpha, a, lda, x, 1, beta, y, 1);
}
inline void gemv(CBLAS_TRANSPOSE ta, blasint m, blasint n, double alpha, const double* a, blasint lda,
                 const double* x, double beta, double* y) {
  scipy_cblas_dgemv(CblasRowMajor, ta, m, n, alpha, a, lda, x, 1, beta, y, 1);
}
inline const char* config() { return scipy_openblas_get_config(); }
inline int get_num_threads() { return scipy_openblas_get_num_threads(); }
}  // namespace blas
}  // namespace fastnn
