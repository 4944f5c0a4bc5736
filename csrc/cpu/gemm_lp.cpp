// gemm_lp.cpp — the products of 16-bit Dense layers (kernels.h, gemm_lp): A and B widened
// to float32 exactly, products accumulated in float32; which code runs them, per call.
//
//  - AVX-512 with AMX-BF16 (Sapphire Rapids and later), bf16 x bf16: AMX tiles
//    (sgemm_avx512.cpp, gemm_amx), ~4x fastnn's float32 product. Without AMX but with
//    AVX512-BF16 (AMD Zen 4 and later): vdpbf16ps on k pairs (gemm_bf16dot), about twice
//    the float32 rate there; on Intel CPUs it runs at half the float32 FMA rate, so where
//    the CPU has AMX tiles that Linux does not grant, the widened product below runs.
//    A product with a float operand (a Dense backward's gradient of the pre-activation,
//    float32 until the product reads it): rounded to bf16 that operand would be 2^-9 off
//    per term, which shows in cancelling sums (a fused cross-entropy's dx) beyond what the
//    contract (float32 products of it) and the tests allow. On AMX it goes in as two bf16
//    parts, hi + lo (16 significant bits, relative error <= 2^-17, below float32
//    summation's own error bound k 2^-24 for k >= 128), two tile products: about twice
//    the float32 rate (amx_split). Without AMX it is widened into the float32 product
//    (kMixedBf16Dot false). The bf16 paths can still take such products rounded
//    (gemm_lp_path amx / bf16dot), for tests and benchmarks.
//  - AVX-512 otherwise, and AVX2 (+FMA, F16C): the 16-bit operands widened while they are
//    packed (bf16: a shift; f16: vcvtph2ps) into fastnn's float32 product (sgemm_driver.h,
//    gemm<TA, TB>). float16 always goes this way: AVX512-FP16's products accumulate in
//    float16, which the float32-accumulation contract rules out.
//  - baseline: k blocks of op(A) and op(B) converted to float32 (scratch (m + n) x kKcBlas
//    floats, never a whole operand) and OpenBLAS's sgemm accumulating into C; tiny
//    products by the reference loops.
//  - gemm_lp_reference: plain loops, correct on every level and for every stride: the
//    definition the tests hold the others to.
#include <algorithm>
#include <stdexcept>
#include <cstdlib>
#include <string>

#include <vector>

#include "blas.h"
#include "gemm_lp.h"
#include "kernels.h"

#if defined(FASTNN_ISA_LEVELS)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace fastnn {

#if defined(FASTNN_ISA_LEVELS)
#define FASTNN_GEMM_DECL(NS, NAME)                                                                                \
  namespace NS {                                                                                                  \
  template <class TA, class TB>                                                                                   \
  void NAME(bool at, bool bt, int64_t m, int64_t n, int64_t k, float alpha, const TA* a, int64_t lda, const TB* b, \
            int64_t ldb, float beta, float* c, int64_t ldc, const RowsDone* rows_done, const BRows* b_rows);     \
  }
FASTNN_GEMM_DECL(sgemm_avx512, gemm)
FASTNN_GEMM_DECL(sgemm_avx512, gemm_bf16dot)
FASTNN_GEMM_DECL(sgemm_avx2, gemm)
#undef FASTNN_GEMM_DECL
namespace sgemm_avx512 {
template <class TA, class TB>
void gemm_amx(bool at, bool bt, int64_t m, int64_t n, int64_t k, float alpha, const TA* a, int64_t lda, const TB* b,
              int64_t ldb, float beta, float* c, int64_t ldc, const RowsDone* rows_done, const BRows* b_rows, bool split);
}
#endif

namespace {

// Mixed bf16 / float products on the bf16 units, the float side rounded to bf16 (above: off).
constexpr bool kMixedBf16Dot = false;
// The baseline's k block: scratch of (m + n) x kKcBlas floats.
constexpr int64_t kKcBlas = 256;
// Below this many multiply-adds the baseline runs the reference loops (no conversion pass).
constexpr int64_t kBlasMinMacs = int64_t(1) << 15;

bool cpu_bf16dot() {
#if defined(FASTNN_ISA_LEVELS)
  static const bool yes = cpu_isa() == Isa::avx512 && __builtin_cpu_supports("avx512bf16");
  return yes;
#else
  return false;
#endif
}

// The CPU has AMX-BF16 tiles (CPUID 7.0 EDX bits 22, 24).
bool cpu_amx_hw() {
#if defined(FASTNN_ISA_LEVELS)
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  return ((edx >> 22) & 1u) && ((edx >> 24) & 1u);
#else
  return false;
#endif
}
// AMX-BF16 tiles usable: the CPU has them and Linux grants this process the tile data
// state (arch_prctl ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA; asked once). FASTNN_AMX=0 at
// start-up turns them off.
bool cpu_amx() {
#if defined(FASTNN_ISA_LEVELS) && defined(__linux__)
  static const bool yes = [] {
    const char* env = std::getenv("FASTNN_AMX");
    if ((env && std::string(env) == "0") || cpu_isa() != Isa::avx512 || !cpu_amx_hw()) return false;
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return yes;
#else
  return false;
#endif
}

template <class TA, class TB>
void reference(bool at, bool bt, int64_t m, int64_t n, int64_t k, float alpha, const TA* a, int64_t lda, const TB* b,
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

// n elements (float or 16-bit) to float32.
inline void to_float(const float* s, float* d, int64_t n) { std::copy(s, s + n, d); }
template <class T> inline void to_float(const T* s, float* d, int64_t n) { widen_block(s, d, n); }

// The baseline: per k block [p0, p1), op(A)'s and op(B)'s slices converted to float32 in
// their stored orientation, then C (+)= alpha op(A_blk) op(B_blk) by OpenBLAS.
template <class TA, class TB>
void blas_blocks(bool at, bool bt, int64_t m, int64_t n, int64_t k, float alpha, const TA* a, int64_t lda,
                 const TB* b, int64_t ldb, float beta, float* c, int64_t ldc, const RowsDone* rows_done,
                 const BRows* b_rows) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    if (rows_done) (*rows_done)(0, m);
    return;
  }
  const int64_t kc_max = std::min(k, kKcBlas);
  std::vector<float> abuf(size_t(m * kc_max)), bbuf(size_t(n * kc_max));
  for (int64_t p0 = 0; p0 < k; p0 += kKcBlas) {
    const int64_t kc = std::min(kKcBlas, k - p0);
    // A block: (m, kc) if !at, else (kc, m); B block: (kc, n) if !bt (or produced), else (n, kc)
    if (at)
      for (int64_t p = 0; p < kc; ++p) to_float(a + (p0 + p) * lda, abuf.data() + p * m, m);
    else
      for (int64_t i = 0; i < m; ++i) to_float(a + i * lda + p0, abuf.data() + i * kc, kc);
    bool btt = bt;
    if (b_rows) {
      const int64_t group = std::max<int64_t>(1, b_rows->group);
      for (int64_t r0 = p0; r0 < p0 + kc;) {  // serial, in order, never across a group's end
        const int64_t r1 = std::min(p0 + kc, (r0 / group + 1) * group);
        b_rows->fn(r0, r1, bbuf.data() + (r0 - p0) * n);
        r0 = r1;
      }
      btt = false;
    } else if (bt) {
      for (int64_t j = 0; j < n; ++j) to_float(b + j * ldb + p0, bbuf.data() + j * kc, kc);
    } else {
      for (int64_t p = 0; p < kc; ++p) to_float(b + (p0 + p) * ldb, bbuf.data() + p * n, n);
    }
    blas::gemm(at ? CblasTrans : CblasNoTrans, btt ? CblasTrans : CblasNoTrans, blas::bi(m), blas::bi(n),
               blas::bi(kc), alpha, abuf.data(), blas::bi(at ? m : kc), bbuf.data(), blas::bi(btt ? kc : n),
               p0 == 0 ? beta : 1.0f, c, blas::bi(ldc));
  }
  if (rows_done) (*rows_done)(0, m);
}

template <class T> constexpr bool is_bf_or_float = std::is_same_v<T, bf16> || std::is_same_v<T, float>;

}  // namespace

bool has_bf16dot() { return cpu_bf16dot() && isa() == Isa::avx512; }
bool has_amx() { return cpu_amx() && isa() == Isa::avx512; }

template <class TA, class TB> GemmLpPath gemm_lp_best(int64_t m, int64_t n, int64_t k) {
  constexpr bool bf_types = is_bf_or_float<TA> && is_bf_or_float<TB>;
  constexpr bool mixed = std::is_same_v<TA, float> || std::is_same_v<TB, float>;
  if (bf_types && mixed && has_amx()) return GemmLpPath::amx_split;
  if (bf_types && (!mixed || kMixedBf16Dot)) {
    if (has_amx()) return GemmLpPath::amx;
    // vdpbf16ps only where the CPU has no AMX tiles (above)
    if (has_bf16dot() && !cpu_amx_hw()) return GemmLpPath::bf16dot;
  }
  if (isa() != Isa::baseline) return GemmLpPath::widen;
  return double(m) * double(n) * double(k) < double(kBlasMinMacs) ? GemmLpPath::reference : GemmLpPath::blas;
}

template <class TA, class TB>
void gemm_lp_path(GemmLpPath path, bool at, bool bt, int64_t m, int64_t n, int64_t k, float alpha, const TA* a,
                  int64_t lda, const TB* b, int64_t ldb, float beta, float* c, int64_t ldc,
                  const RowsDone* rows_done, const BRows* b_rows) {
  if constexpr (!std::is_same_v<TB, float>) b_rows = nullptr;  // b_rows: TB float only (kernels.h)
  const Isa level = isa();
  constexpr bool bf_types = is_bf_or_float<TA> && is_bf_or_float<TB>;
  if (path == GemmLpPath::best) path = gemm_lp_best<TA, TB>(m, n, k);
  switch (path) {
    case GemmLpPath::reference:
      return reference(at, bt, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, rows_done, b_rows);
    case GemmLpPath::blas:
      return blas_blocks(at, bt, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, rows_done, b_rows);
#if defined(FASTNN_ISA_LEVELS)
    case GemmLpPath::widen:
      if (level == Isa::avx512)
        return sgemm_avx512::gemm(at, bt, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, rows_done, b_rows);
      if (level == Isa::avx2)
        return sgemm_avx2::gemm(at, bt, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, rows_done, b_rows);
      break;
    case GemmLpPath::bf16dot:
      if constexpr (bf_types) {
        if (has_bf16dot())
          return sgemm_avx512::gemm_bf16dot(at, bt, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, rows_done, b_rows);
      }
      break;
    case GemmLpPath::amx:
      if constexpr (bf_types) {
        if (has_amx())
          return sgemm_avx512::gemm_amx(at, bt, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, rows_done, b_rows, false);
      }
      break;
    case GemmLpPath::amx_split:
      if constexpr (bf_types) {
        if (has_amx())
          return sgemm_avx512::gemm_amx(at, bt, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, rows_done, b_rows, true);
      }
      break;
#endif
    default: break;
  }
  throw std::invalid_argument("fastnn: gemm_lp path " + std::to_string(int(path)) + " is not available for these types at ISA level " +
                              isa_name(level));
}

template <class TA, class TB>
void gemm_lp(bool at, bool bt, int64_t m, int64_t n, int64_t k, float alpha, const TA* a, int64_t lda, const TB* b,
             int64_t ldb, float beta, float* c, int64_t ldc, const RowsDone* rows_done, const BRows* b_rows) {
  gemm_lp_path(GemmLpPath::best, at, bt, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, rows_done, b_rows);
}

#define FASTNN_GEMM_LP(TA, TB)                                                                                     \
  template void gemm_lp<TA, TB>(bool, bool, int64_t, int64_t, int64_t, float, const TA*, int64_t, const TB*,      \
                                int64_t, float, float*, int64_t, const RowsDone*, const BRows*);                  \
  template GemmLpPath gemm_lp_best<TA, TB>(int64_t, int64_t, int64_t);                                          \
  template void gemm_lp_path<TA, TB>(GemmLpPath, bool, bool, int64_t, int64_t, int64_t, float, const TA*, int64_t, \
                                     const TB*, int64_t, float, float*, int64_t, const RowsDone*, const BRows*);
FASTNN_GEMM_LP(bf16, bf16)
FASTNN_GEMM_LP(bf16, float)
FASTNN_GEMM_LP(float, bf16)
FASTNN_GEMM_LP(f16, f16)
FASTNN_GEMM_LP(f16, float)
FASTNN_GEMM_LP(float, f16)
#undef FASTNN_GEMM_LP

}  // namespace fastnn
