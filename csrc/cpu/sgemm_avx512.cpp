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
#include <cstring>
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

// ---- bfloat16 products on AVX512-BF16 (vdpbf16ps) -----------------------------------------
// gemm_bf16dot: the contract of gemm_lp (kernels.h) for A and B each bf16 or float, on CPUs
// with AVX512-BF16 (gemm_lp.cpp checks has_avx512_bf16()). The same blocking as the float32
// product above with k taken in pairs: packed A holds, per k pair and row, the two bf16 of
// A in one 32-bit word; packed B, per k pair and column, the two bf16 of B; vdpbf16ps
// multiplies 16 such word pairs and adds both products to 16 float32 accumulators. A bf16
// x bf16 product is exact in float32, so the sums are float32 sums of exact products, as
// for widened operands (the order: the two products of a pair, then the running sum). A
// float operand is rounded to bf16 (nearest-even) while it is packed (gemm_lp.cpp: why).
// The unit treats bf16 subnormals (|x| < 2^-126) as zero and flushes subnormal sums (as
// oneDNN's bf16 products do); values are bf16's normal range otherwise unchanged.
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,avx512bf16,avx2,fma,f16c")

namespace fastnn {
namespace sgemm_avx512 {
namespace bfdot {

constexpr int64_t kBfKc = 1024;        // k block (512 pairs): an A panel (6 x kBfKc bf16, 12 KiB) stays in L1
constexpr int64_t kBfNc = 4 * kNr;     // columns per pass over a row block: B (kBfKc x kBfNc bf16, 512 KiB) in L2
constexpr int64_t kBfUnitPanels = 8;   // rows per unit of work: 8 tiles

// Pairs per k block in packed B: the block's (kc + 1) / 2 rounded up to 16 (the zero pairs
// past the end fill the AMX tiles' 32 k; the vdpbf16ps kernel reads only the first).
inline int64_t padded_pairs(int64_t kc) { return ((kc + 1) / 2 + 15) / 16 * 16; }

// A float v as two bf16 parts (AMX products with a float operand: gemm_amx): part 0,
// hi = bf16(v) (nearest-even); part 1, lo = bf16(v - hi) (v - hi is exact in float32). hi +
// lo carries 16 of v's 24 significant bits (relative error <= 2^-17, against 2^-9 for hi
// alone; below 2^-126 the bf16 units flush lo to zero).
inline __m256i bf16_part(__m512 v, int part) {
  const __m256bh hi = _mm512_cvtneps_pbh(v);
  if (part == 0) return (__m256i)hi;
  const __m512 hv = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)hi), 16));
  return (__m256i)_mm512_cvtneps_pbh(_mm512_sub_ps(v, hv));
}
// bf16 bits of n consecutive elements (a float: its part 0 or 1, above).
inline void row_bits(const bf16* s, uint16_t* d, int64_t n, int = 0) { std::memcpy(d, s, size_t(n) * 2); }
inline void row_bits(const float* s, uint16_t* d, int64_t n, int part = 0) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), bf16_part(_mm512_loadu_ps(s + i), part));
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1);
    _mm256_mask_storeu_epi16(d + i, m, bf16_part(_mm512_maskz_loadu_ps(m, s + i), part));
  }
}
// The bf16 bits of up to 16 consecutive elements (n of them, the rest 0), zero-extended to 32 bits.
inline __m512i bits16(const bf16* s, int n, int = 0) {
  const __mmask16 m = n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1);
  return _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, s));
}
inline __m512i bits16(const float* s, int n, int part = 0) {
  const __mmask16 m = n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1);
  return _mm512_cvtepu16_epi32(bf16_part(_mm512_maskz_loadu_ps(m, s), part));
}

// C[0:mr, 0:nr] (ldc) = alpha sum_pp dot(a pair pp of row i, b pair pp of column j) (+ beta C / + C).
inline void kernel(int64_t kp, const uint32_t* __restrict a, const uint32_t* __restrict b, float* c, int64_t ldc,
                   int mr, int nr, float alpha, float beta, bool first) {
  V acc[kMr][kNv];
#pragma GCC unroll 8
  for (int i = 0; i < kMr; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < kNv; ++v) acc[i][v] = zero();
  for (int i = 0; i < mr; ++i) __builtin_prefetch(c + i * ldc, 1), __builtin_prefetch(c + i * ldc + kNr - 1, 1);
#pragma GCC unroll 2
  for (int64_t p = 0; p < kp; ++p) {
    __m512bh bv[kNv];
#pragma GCC unroll 4
    for (int v = 0; v < kNv; ++v) bv[v] = (__m512bh)_mm512_loadu_si512(b + p * kNr + kW * v);
#pragma GCC unroll 8
    for (int i = 0; i < kMr; ++i) {
      const __m512bh ai = (__m512bh)_mm512_set1_epi32(int(a[p * kMr + i]));
#pragma GCC unroll 4
      for (int v = 0; v < kNv; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], ai, bv[v]);
    }
  }
  store_tile(acc, c, ldc, mr, nr, alpha, beta, first);
}

// Rows [r0, r0 + rows) of op(A), k range [p0, p0 + kc), into panels of kMr rows:
// out[panel * kMr * kp + pp * kMr + r] = (A[r][p0 + 2pp], A[r][p0 + 2pp + 1]); rows past
// the end and the odd k's partner zero.
template <class T>
void pack_a(bool at, const T* a, int64_t lda, int64_t r0, int64_t rows, int64_t p0, int64_t kc, uint32_t* out) {
  const int64_t kp = (kc + 1) / 2, panels = (rows + kMr - 1) / kMr;
  if (rows % kMr || kc % 2) std::memset(out, 0, size_t(panels * kMr * kp) * 4);
  thread_local std::vector<uint16_t> tmp;
  if (at) {  // A stored (k, m): row p of the source holds the rows' elements of one k
    if (tmp.size() < size_t(rows)) tmp.resize(size_t(rows));
    uint16_t* o = reinterpret_cast<uint16_t*>(out);
    for (int64_t p = 0; p < kc; ++p) {
      row_bits(a + (p0 + p) * lda + r0, tmp.data(), rows);
      const int64_t pp = p / 2, h = p % 2;
      for (int64_t r = 0; r < rows; ++r) o[2 * ((r / kMr) * kMr * kp + pp * kMr + r % kMr) + h] = tmp[r];
    }
  } else {  // A stored (m, k): each row's pairs are consecutive
    if (tmp.size() < size_t(2 * kp)) tmp.resize(size_t(2 * kp));
    tmp[2 * kp - 1] = 0;
    const uint32_t* w = reinterpret_cast<const uint32_t*>(tmp.data());
    for (int64_t r = 0; r < rows; ++r) {
      row_bits(a + (r0 + r) * lda + p0, tmp.data(), kc);
      uint32_t* o = out + (r / kMr) * kMr * kp + r % kMr;
      for (int64_t pp = 0; pp < kp; ++pp) o[pp * kMr] = w[pp];
    }
  }
}

// Columns [j0, j0 + cols) of op(B), k range [p0, p0 + kc), into one panel:
// out[pp * kNr + j] = (B[p0 + 2pp][j], B[p0 + 2pp + 1][j]); columns past cols, the odd
// k's partner and the pairs up to padded_pairs(kc) zero.
template <class T>
void pack_b(bool bt, const T* b, int64_t ldb, int64_t j0, int64_t cols, int64_t p0, int64_t kc, uint32_t* out,
            int part = 0) {
  const int64_t kp = (kc + 1) / 2;
  std::memset(out + kp * kNr, 0, size_t((padded_pairs(kc) - kp) * kNr) * 4);
  if (!bt) {  // B stored (k, n): two rows' runs interleaved, 16 columns at a time
    for (int64_t pp = 0; pp < kp; ++pp) {
      const T* s0 = b + (p0 + 2 * pp) * ldb + j0;
      const bool two = 2 * pp + 1 < kc;
      for (int v = 0; v < kNr; v += kW) {
        const int rem = static_cast<int>(std::min<int64_t>(kW, cols - v));
        __m512i w = _mm512_setzero_si512();
        if (rem > 0) {
          w = bits16(s0 + v, rem, part);
          if (two) w = _mm512_or_si512(w, _mm512_slli_epi32(bits16(s0 + ldb + v, rem, part), 16));
        }
        _mm512_storeu_si512(out + pp * kNr + v, w);
      }
    }
    return;
  }
  // B stored (n, k): column j's pairs are consecutive in source row j.
  int64_t pp0 = 0;
  if constexpr (std::is_same_v<T, bf16>) {
    if (ldb % 2 == 0 && cols == kNr) {  // whole pairs as 32-bit words, 8 x 8 transposes
      const float* w = reinterpret_cast<const float*>(b + j0 * ldb + p0);
      const int64_t ldw = ldb / 2;
      float* o = reinterpret_cast<float*>(out);
      for (; pp0 + 8 <= kc / 2; pp0 += 8)
#pragma GCC unroll 8
        for (int j = 0; j < kNr; j += 8) transpose8<8>(w + j * ldw + pp0, ldw, o + pp0 * kNr + j, kNr);
    }
  }
  if (pp0 < kp) {
    thread_local std::vector<uint16_t> tmp;
    if (tmp.size() < size_t(2 * kp)) tmp.resize(size_t(2 * kp));
    tmp[2 * (kp - pp0) - 1] = 0;  // the odd k's partner (row_bits writes the kc - 2 pp0 before it)
    const uint32_t* w = reinterpret_cast<const uint32_t*>(tmp.data());
    for (int64_t j = 0; j < kNr; ++j) {
      if (j < cols) row_bits(b + (j0 + j) * ldb + p0 + 2 * pp0, tmp.data(), kc - 2 * pp0, part);
      for (int64_t pp = pp0; pp < kp; ++pp) out[pp * kNr + j] = j < cols ? w[pp - pp0] : 0u;
    }
  }
}

// Row p of op(B) (n floats, rounded to bf16) into its half of the packed pairs (layout in
// gemm_bf16dot below); the last panel's padding columns zero. Other threads may write the
// other half of the same words: the 16-bit masked stores leave it alone.
inline void scatter_row(const float* row, int64_t n, int64_t p, int64_t k, int64_t npad, uint32_t* bp, int part = 0) {
  const int64_t p0 = p / kBfKc * kBfKc, kc = std::min(kBfKc, k - p0), kp = padded_pairs(kc), pp = (p - p0) / 2;
  const __mmask32 half = (p - p0) % 2 ? __mmask32(0xAAAAAAAAu) : __mmask32(0x55555555u);
  const int sh = (p - p0) % 2 ? 16 : 0;
  uint32_t* base = bp + (p0 / 2) * npad + pp * kNr;
  for (int64_t j0 = 0; j0 < npad; j0 += kNr)
    for (int v = 0; v < kNr; v += kW) {
      const int64_t rem = n - j0 - v;
      const __m512i w = rem > 0 ? bits16(row + j0 + v, static_cast<int>(std::min<int64_t>(rem, kW)), part) : _mm512_setzero_si512();
      _mm512_mask_storeu_epi16(base + j0 * kp + v, half, _mm512_slli_epi32(w, sh));
    }
}

// op(B) (k, n) packed for the bf16 products: k block p0 (kc = min(kBfKc, k - p0)) at
// bp + (p0 / 2) * npad words, its panel j at + j * padded_pairs(kc), pair pp of column j
// at + pp * kNr + j (a word: the even k in the low half). From b, or made by b_rows.
inline int64_t packed_b_words(int64_t k, int64_t npad) {
  const int64_t last = (k - 1) / kBfKc * kBfKc;
  return (last / 2 + padded_pairs(k - last)) * npad;
}
template <class TB>
void pack_b_all(bool bt, const TB* b, int64_t ldb, int64_t n, int64_t k, int64_t npad, const BRows* b_rows,
                uint32_t* bp, uint32_t* bp_lo = nullptr) {  // bp_lo: also the float rows' part 1 (bf16_part)
  const int64_t npanels = npad / kNr, kblocks = (k + kBfKc - 1) / kBfKc;
  if (b_rows) {  // rows of op(B) made by b_rows->fn, ~64 KiB at a time, each rounded into its half-words
    {  // zero the last block's last pairs first: its odd k's partner and the padding pairs
      const int64_t p0 = (k - 1) / kBfKc * kBfKc, kp = (k - p0 + 1) / 2, kpp = padded_pairs(k - p0);
      for (uint32_t* q : {bp, bp_lo})
        if (q)
          for (int64_t j0 = 0; j0 < npad; j0 += kNr)
            std::memset(q + (p0 / 2) * npad + j0 * kpp + (kp - 1) * kNr, 0, size_t((kpp - kp + 1) * kNr) * 4);
    }
    const int64_t group = std::max<int64_t>(1, b_rows->group), groups = (k + group - 1) / group;
    const int64_t sub = std::max<int64_t>(1, (int64_t(64) << 10) / (n * int64_t(sizeof(float))));
    parallel_for(groups, 1, [&](int64_t s, int64_t e) {
      thread_local std::vector<float> rowbuf;
      if (rowbuf.size() < size_t(sub * n)) rowbuf.resize(size_t(sub * n));
      for (int64_t g = s; g < e; ++g) {
        for (int64_t r0 = g * group; r0 < std::min(k, (g + 1) * group); r0 += sub) {
          const int64_t r1 = std::min({r0 + sub, (g + 1) * group, k});
          b_rows->fn(r0, r1, rowbuf.data());
          for (int64_t r = r0; r < r1; ++r) {
            scatter_row(rowbuf.data() + (r - r0) * n, n, r, k, npad, bp);
            if (bp_lo) scatter_row(rowbuf.data() + (r - r0) * n, n, r, k, npad, bp_lo, 1);
          }
        }
      }
    });
  } else {
    parallel_for(kblocks * npanels, std::max<int64_t>(1, (int64_t(1) << 18) / (kBfKc * kNr)), [&](int64_t s, int64_t e) {
      for (int64_t t = s; t < e; ++t) {
        const int64_t p0 = (t / npanels) * kBfKc, kc = std::min(kBfKc, k - p0), j0 = (t % npanels) * kNr;
        const int64_t off = (p0 / 2) * npad + j0 * padded_pairs(kc);
        pack_b(bt, b, ldb, j0, std::min<int64_t>(kNr, n - j0), p0, kc, bp + off);
        if (bp_lo) pack_b(bt, b, ldb, j0, std::min<int64_t>(kNr, n - j0), p0, kc, bp_lo + off, 1);
      }
    });
  }
}

}  // namespace bfdot

template <class TA, class TB>
void gemm_bf16dot(bool at, bool bt, int64_t m, int64_t n, int64_t k, float alpha, const TA* a, int64_t lda,
                  const TB* b, int64_t ldb, float beta, float* c, int64_t ldc, const RowsDone* rows_done,
                  const BRows* b_rows) {
  using namespace bfdot;
  if (m <= 0 || n <= 0) return;
  if (k <= 0) return gemm<float, float>(at, bt, m, n, k, alpha, nullptr, lda, nullptr, ldb, beta, c, ldc, rows_done, nullptr);
  const int64_t npad = (n + kNr - 1) / kNr * kNr;
  Buffer bbuf(bfdot::packed_b_words(k, npad));
  uint32_t* bp = reinterpret_cast<uint32_t*>(bbuf.get());
  bfdot::pack_b_all(bt, b, ldb, n, k, npad, b_rows, bp);
  const int64_t rpanels = (m + kMr - 1) / kMr;
  const double macs = double(rpanels) * kMr * double(n) * double(k);
  // a multiply-add here takes about half a float32 one's time
  const int64_t threads =
      std::max<int64_t>(1, static_cast<int64_t>(std::min<double>(num_threads(), macs / (2 * kGrainMacs))));
  const int64_t unit = std::max<int64_t>(1, std::min<int64_t>(kBfUnitPanels, (rpanels + threads - 1) / threads));
  const int64_t units = (rpanels + unit - 1) / unit;
  std::atomic<int64_t> next{0};
  parallel_for(std::min(threads, units), 1, [&](int64_t, int64_t) {
    struct Free {
      void operator()(uint32_t* p) const { std::free(p); }
    };
    thread_local std::unique_ptr<uint32_t, Free> abuf;  // kBfUnitPanels * kMr x kBfKc / 2 words, per thread, kept
    if (!abuf) {
      abuf.reset(static_cast<uint32_t*>(std::aligned_alloc(64, kBfUnitPanels * kMr * (kBfKc / 2) * sizeof(uint32_t))));
      if (!abuf) throw std::bad_alloc();
    }
    uint32_t* ap = abuf.get();
    for (int64_t u; (u = next.fetch_add(1, std::memory_order_relaxed)) < units;) {
      const int64_t r0 = u * unit * kMr, rows = std::min(unit * kMr, m - r0);
      for (int64_t p0 = 0; p0 < k; p0 += kBfKc) {
        const int64_t kc = std::min(kBfKc, k - p0), kp = (kc + 1) / 2, kpp = padded_pairs(kc);
        pack_a(at, a, lda, r0, rows, p0, kc, ap);
        const uint32_t* bk = bp + (p0 / 2) * npad;
        for (int64_t j0 = 0; j0 < n; j0 += kBfNc) {  // each A panel from L1 across kBfNc columns of B (from L2)
          const int64_t j1 = std::min(n, j0 + kBfNc);
          for (int64_t i = 0; i < rows; i += kMr) {
            const int mr = static_cast<int>(std::min<int64_t>(kMr, rows - i));
            for (int64_t j = j0; j < j1; j += kNr)
              bfdot::kernel(kp, ap + i * kp, bk + j * kpp, c + (r0 + i) * ldc + j, ldc, mr,
                            static_cast<int>(std::min<int64_t>(kNr, n - j)), alpha, beta, p0 == 0);
          }
        }
      }
      if (rows_done) (*rows_done)(r0, r0 + rows);
    }
  });
}

#define FASTNN_GEMM_BF16DOT(TA, TB)                                                                          \
  template void gemm_bf16dot<TA, TB>(bool, bool, int64_t, int64_t, int64_t, float, const TA*, int64_t, \
                                     const TB*, int64_t, float, float*, int64_t, const RowsDone*, const BRows*);
FASTNN_GEMM_BF16DOT(bf16, bf16)
FASTNN_GEMM_BF16DOT(bf16, float)
FASTNN_GEMM_BF16DOT(float, bf16)
#undef FASTNN_GEMM_BF16DOT

}  // namespace sgemm_avx512
}  // namespace fastnn

#pragma GCC pop_options

// ---- bfloat16 products on AMX (tdpbf16ps) -------------------------------------------------
// gemm_amx: the contract of gemm_bf16dot (above: bf16 / float operands, a float one rounded
// to bf16 while packed, bf16 subnormals as zero) on AMX-BF16 tiles, where the CPU has them
// and Linux grants the tile state (gemm_lp.cpp: amx_ready()). A 32 x 32 block of C is four
// 16 x 16 float32 tiles; per 32 k, two A tiles (16 rows x 32 bf16, from A packed row-major)
// and two B tiles (16 k pairs x 16 columns: the packed B above read with its pair stride)
// and four tdpbf16ps. k blocks of kBfKc, C accumulated across them as in the other kernels.
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,avx512bf16,avx2,fma,f16c,amx-tile,amx-bf16")

namespace fastnn {
namespace sgemm_avx512 {
namespace amx {

constexpr int64_t kRows = 64;  // rows per unit of work: two 32-row blocks

inline void configure() {
  alignas(64) uint8_t cfg[64] = {};
  cfg[0] = 1;  // palette 1
  for (int t = 0; t < 8; ++t) {
    cfg[16 + 2 * t] = 64;  // bytes per tile row
    cfg[48 + t] = 16;      // rows
  }
  _tile_loadconfig(cfg);
}

// Rows [r0, r0 + rows) of op(A), k range [p0, p0 + kc), row-major bf16 with row stride ldo
// (kc rounded up to 32); rows up to a multiple of 32 and k past kc zero.
template <class T>
void pack_a(bool at, const T* a, int64_t lda, int64_t r0, int64_t rows, int64_t p0, int64_t kc, uint16_t* out,
            int64_t ldo, int part = 0) {
  const int64_t rpad = (rows + 31) / 32 * 32;
  if (at) {  // A stored (k, m): two source rows (k, k + 1) interleaved into words, 16 rows scattered at a time
    std::memset(out, 0, size_t(rpad * ldo) * 2);
    uint32_t* o = reinterpret_cast<uint32_t*>(out);
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32(static_cast<int>(ldo / 2)));
    for (int64_t p = 0; p < kc; p += 2) {
      const T* s0 = a + (p0 + p) * lda + r0;
      for (int64_t r = 0; r < rows; r += 16) {
        const int cnt = static_cast<int>(std::min<int64_t>(16, rows - r));
        __m512i w = bfdot::bits16(s0 + r, cnt, part);
        if (p + 1 < kc) w = _mm512_or_si512(w, _mm512_slli_epi32(bfdot::bits16(s0 + lda + r, cnt, part), 16));
        const __mmask16 mk = cnt >= 16 ? __mmask16(0xffff) : __mmask16((1u << cnt) - 1);
        _mm512_mask_i32scatter_epi32(o + r * (ldo / 2) + p / 2, mk, idx, w, 4);
      }
    }
  } else {
    for (int64_t r = 0; r < rows; ++r) {
      bfdot::row_bits(a + (r0 + r) * lda + p0, out + r * ldo, kc, part);
      std::memset(out + r * ldo + kc, 0, size_t(ldo - kc) * 2);
    }
    std::memset(out + rows * ldo, 0, size_t((rpad - rows) * ldo) * 2);
  }
}

// C[0:mr, 0:nr] (ldc) from a 32 x 32 float block t: alpha t (+ beta C if first, else + C).
inline void store_block(const float* t, float* c, int64_t ldc, int mr, int nr, float alpha, float beta, bool first) {
  const V va = set1(alpha), vb = set1(beta);
  for (int i = 0; i < mr; ++i)
    for (int v = 0; v < 2; ++v) {
      const int rem = nr - 16 * v;
      if (rem <= 0) break;
      float* cp = c + i * ldc + 16 * v;
      const int64_t w = std::min(rem, 16);
      V r = mul(load(t + i * 32 + 16 * v), va);
      if (!first) r = add(r, load_n(cp, w));
      else if (beta != 0.0f) r = fma(vb, load_n(cp, w), r);
      store_n(cp, r, w);
    }
}

// t (32 x 32 floats) = A block (32 rows, stride lda16 bf16) x B (pair rows of kNr words; 32 columns), k2 pairs.
// a_lo / b_lo (at most one, else null): the float operand's part 1, added as a second product.
inline void block32(const uint16_t* a, const uint16_t* a_lo, int64_t lda16, const uint32_t* b, const uint32_t* b_lo,
                    int64_t kpairs, float* t) {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int64_t pp = 0; pp < kpairs; pp += 16) {
    _tile_loadd(4, a + 2 * pp, lda16 * 2);
    _tile_loadd(5, a + 16 * lda16 + 2 * pp, lda16 * 2);
    _tile_loadd(6, b + pp * kNr, kNr * 4);
    _tile_loadd(7, b + pp * kNr + 16, kNr * 4);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
    if (a_lo) {
      _tile_loadd(4, a_lo + 2 * pp, lda16 * 2);
      _tile_loadd(5, a_lo + 16 * lda16 + 2 * pp, lda16 * 2);
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    } else if (b_lo) {
      _tile_loadd(6, b_lo + pp * kNr, kNr * 4);
      _tile_loadd(7, b_lo + pp * kNr + 16, kNr * 4);
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
  }
  _tile_stored(0, t, 128);
  _tile_stored(1, t + 16, 128);
  _tile_stored(2, t + 16 * 32, 128);
  _tile_stored(3, t + 16 * 32 + 16, 128);
}

}  // namespace amx

template <class TA, class TB>
void gemm_amx(bool at, bool bt, int64_t m, int64_t n, int64_t k, float alpha, const TA* a, int64_t lda, const TB* b,
              int64_t ldb, float beta, float* c, int64_t ldc, const RowsDone* rows_done, const BRows* b_rows,
              bool split) {
  using bfdot::kBfKc;
  using bfdot::padded_pairs;
  if (m <= 0 || n <= 0) return;
  if (k <= 0) return gemm<float, float>(at, bt, m, n, k, alpha, nullptr, lda, nullptr, ldb, beta, c, ldc, rows_done, nullptr);
  const int64_t npad = (n + kNr - 1) / kNr * kNr;
  // A float operand goes in as two bf16 parts (bf16_part), two products: split (gemm_lp.cpp)
  const bool b_split = split && std::is_same_v<TB, float>, a_split = split && !b_split && std::is_same_v<TA, float>;
  const int64_t bwords = bfdot::packed_b_words(k, npad);
  Buffer bbuf(bwords * (b_split ? 2 : 1));  // one Buffer: a thread's small-block Buffers share storage
  uint32_t* bp = reinterpret_cast<uint32_t*>(bbuf.get());
  uint32_t* bp_lo = b_split ? bp + bwords : nullptr;
  bfdot::pack_b_all(bt, b, ldb, n, k, npad, b_rows, bp, bp_lo);
  const int64_t units = (m + amx::kRows - 1) / amx::kRows;
  // a multiply-add here takes about an eighth of a float32 one's time
  const double macs = double(m) * double(n) * double(k);
  const int64_t threads = std::max<int64_t>(1, static_cast<int64_t>(std::min<double>(num_threads(), macs / (8 * kGrainMacs))));
  std::atomic<int64_t> next{0};
  parallel_for(std::min(threads, units), 1, [&](int64_t, int64_t) {
    struct Free {
      void operator()(uint16_t* p) const { std::free(p); }
    };
    thread_local std::unique_ptr<uint16_t, Free> abuf;  // 2 x kRows x kBfKc bf16 (row stride: kc rounded up to 32), per thread, kept
    if (!abuf) {
      abuf.reset(static_cast<uint16_t*>(std::aligned_alloc(64, 2 * amx::kRows * kBfKc * sizeof(uint16_t))));
      if (!abuf) throw std::bad_alloc();
    }
    uint16_t* ap = abuf.get();
    uint16_t* ap_lo = a_split ? ap + amx::kRows * kBfKc : nullptr;
    alignas(64) float t[32 * 32];
    amx::configure();
    for (int64_t u; (u = next.fetch_add(1, std::memory_order_relaxed)) < units;) {
      const int64_t r0 = u * amx::kRows, rows = std::min(amx::kRows, m - r0);
      for (int64_t p0 = 0; p0 < k; p0 += kBfKc) {
        const int64_t kc = std::min(kBfKc, k - p0), kpp = padded_pairs(kc);
        const int64_t ldo = (kc + 31) / 32 * 32;
        amx::pack_a(at, a, lda, r0, rows, p0, kc, ap, ldo);
        if (ap_lo) amx::pack_a(at, a, lda, r0, rows, p0, kc, ap_lo, ldo, 1);
        const int64_t boff = (p0 / 2) * npad;
        for (int64_t j = 0; j < n; j += 32) {
          const int64_t joff = boff + (j / kNr) * kNr * kpp + j % kNr;
          for (int64_t i = 0; i < rows; i += 32) {
            amx::block32(ap + i * ldo, ap_lo ? ap_lo + i * ldo : nullptr, ldo, bp + joff, bp_lo ? bp_lo + joff : nullptr,
                         kpp, t);
            amx::store_block(t, c + (r0 + i) * ldc + j, ldc, static_cast<int>(std::min<int64_t>(32, rows - i)),
                             static_cast<int>(std::min<int64_t>(32, n - j)), alpha, beta, p0 == 0);
          }
        }
      }
      if (rows_done) (*rows_done)(r0, r0 + rows);
    }
    _tile_release();
  });
}

#define FASTNN_GEMM_AMX(TA, TB)                                                                          \
  template void gemm_amx<TA, TB>(bool, bool, int64_t, int64_t, int64_t, float, const TA*, int64_t, \
                                 const TB*, int64_t, float, float*, int64_t, const RowsDone*, const BRows*, bool);
FASTNN_GEMM_AMX(bf16, bf16)
FASTNN_GEMM_AMX(bf16, float)
FASTNN_GEMM_AMX(float, bf16)
#undef FASTNN_GEMM_AMX

}  // namespace sgemm_avx512
}  // namespace fastnn

#pragma GCC pop_options
#endif
