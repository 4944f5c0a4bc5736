// sgemm_avx512.cpp — fastnn's own float32 matrix product for CPUs with AVX-512, on
// fastnn's thread pool (or a host framework's executor), in place of OpenBLAS's sgemm for
// the Dense layers' products of >= kOwnSgemmMinMacs multiply-adds (why at kMinMacs).
//
// Why not OpenBLAS there:
//  - Speed. From kMinMacs multiply-adds up this product is faster than OpenBLAS's sgemm
//    on AVX-512 CPUs, one core or two (docs/performance.md, "Dense and sgemm").
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
// keeps a kMr x kNr tile of C in 24 zmm registers: per k, 4 vector loads of B, 6
// broadcasts of A, 24 FMAs (enough FMAs per load to reach the FMA peak from cache). Tiles at the
// edges are computed whole (the padding is zero) and stored through masks. The rows are
// cut into units of kUnitPanels tiles that the threads claim one at a time. op(B) may also
// be made by the caller, rows at a time, as the packing reads it (BRows in kernels.h: a
// backward's activation gradient, never written out).
//
// Used for float32 on CPUs with AVX-512 F/DQ/VL/BW (have_avx512()); the file is compiled
// for baseline x86-64, only these functions carry the target attribute.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "kernels.h"
#include "parallel.h"
#include "pool.h"

#if defined(__GNUC__) && defined(__x86_64__) && !defined(FASTNN_NO_CLONES)
#include <immintrin.h>
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define FASTNN_AVX512_FN __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,fma,avx2")))

namespace fastnn {
namespace {

constexpr int kMr = 6;           // rows of the C tile (broadcasts)
constexpr int kNv = 4;           // zmm vectors across the C tile
constexpr int kNr = 16 * kNv;    // columns of the C tile
constexpr int64_t kKc = 512;     // k block: an A panel (kMr x kKc, 12 KiB) stays in L1
constexpr int64_t kNc = 3 * kNr; // columns per pass over a row block: B (kKc x kNc, 384 KiB) stays in L2
constexpr int64_t kUnitPanels = 8; // rows per unit of work: 8 tiles (48 x kKc of A: 96 KiB)

// C[0:mr, 0:nr] (ldc) = alpha sum_p a[p][0:kMr] b[p][0:kNr] (+ beta C if `first`, else + C).
FASTNN_AVX512_FN void kernel(int64_t kc, const float* __restrict a, const float* __restrict b, float* c, int64_t ldc,
                             int mr, int nr, float alpha, float beta, bool first) {
  __m512 acc[kMr][kNv];
#pragma GCC unroll 8
  for (int i = 0; i < kMr; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < kNv; ++v) acc[i][v] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    __m512 bv[kNv];
#pragma GCC unroll 4
    for (int v = 0; v < kNv; ++v) bv[v] = _mm512_load_ps(b + p * kNr + 16 * v);
#pragma GCC unroll 8
    for (int i = 0; i < kMr; ++i) {
      const __m512 ai = _mm512_set1_ps(a[p * kMr + i]);
#pragma GCC unroll 4
      for (int v = 0; v < kNv; ++v) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
    }
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  const bool scale = alpha != 1.0f;
  for (int i = 0; i < mr; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < kNv; ++v) {
      const int rem = nr - 16 * v;
      if (rem <= 0) break;
      const __mmask16 mk = rem >= 16 ? __mmask16(0xffff) : __mmask16((1u << rem) - 1);
      float* cp = c + i * ldc + 16 * v;
      __m512 r = scale ? _mm512_mul_ps(acc[i][v], va) : acc[i][v];
      if (!first) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(mk, cp));
      else if (beta != 0.0f) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mk, cp), r);
      _mm512_mask_storeu_ps(cp, mk, r);
    }
  }
}

// dst[c * ldd + r] = src[r * lds + c] for r < R (R <= 8 rows read), c < 8; of each dst row
// only the first R floats are written.
template <int R> FASTNN_AVX512_FN inline void transpose8(const float* src, int64_t lds, float* dst, int64_t ldd) {
  __m256 r[8], t[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) r[i] = i < R ? _mm256_loadu_ps(src + i * lds) : _mm256_setzero_ps();
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  const __m256 u[8] = {_mm256_shuffle_ps(t[0], t[2], 0x44), _mm256_shuffle_ps(t[0], t[2], 0xEE),
                       _mm256_shuffle_ps(t[1], t[3], 0x44), _mm256_shuffle_ps(t[1], t[3], 0xEE),
                       _mm256_shuffle_ps(t[4], t[6], 0x44), _mm256_shuffle_ps(t[4], t[6], 0xEE),
                       _mm256_shuffle_ps(t[5], t[7], 0x44), _mm256_shuffle_ps(t[5], t[7], 0xEE)};
  constexpr __mmask8 mk = __mmask8((1u << R) - 1);
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    const __m256 lo = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20), hi = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    if constexpr (R == 8) {
      _mm256_storeu_ps(dst + i * ldd, lo);
      _mm256_storeu_ps(dst + (i + 4) * ldd, hi);
    } else {
      _mm256_mask_storeu_ps(dst + i * ldd, mk, lo);
      _mm256_mask_storeu_ps(dst + (i + 4) * ldd, mk, hi);
    }
  }
}

// Packs `rows` x kc of a matrix into panels of W rows: out[panel * W * kc + p * W + r],
// rows past the end zero. Element (r, p) is at src[p * ld + r] when contig_r (each p a
// contiguous run of r: row copies), else at src[r * ld + p] (8 x 8 transposes).
template <int W>
FASTNN_AVX512_FN void pack(bool contig_r, const float* src, int64_t ld, int64_t rows, int64_t kc, float* out) {
  const int64_t full = rows / W * W;
  if (contig_r) {
    for (int64_t p = 0; p < kc; ++p) {  // one source row at a time, across its panels
      const float* s = src + p * ld;
      if constexpr (W % 8 == 0) {
        for (int64_t r0 = 0; r0 < full; r0 += W)
#pragma GCC unroll 8
          for (int v = 0; v < W; v += 8) _mm256_storeu_ps(out + r0 * kc + p * W + v, _mm256_loadu_ps(s + r0 + v));
      } else {  // W < 8: masked 8-lane moves
        static_assert(W < 8, "panel width");
        constexpr __mmask8 mk = __mmask8((1u << W) - 1);
        for (int64_t r0 = 0; r0 < full; r0 += W)
          _mm256_mask_storeu_ps(out + r0 * kc + p * W, mk, _mm256_maskz_loadu_ps(mk, s + r0));
      }
    }
  } else {
    for (int64_t r0 = 0; r0 < full; r0 += W) {
      const float* s = src + r0 * ld;
      float* o = out + r0 * kc;
      int64_t p = 0;
      if constexpr (W % 8 == 0) {
        for (; p + 8 <= kc; p += 8)
#pragma GCC unroll 8
          for (int r = 0; r < W; r += 8) transpose8<8>(s + r * ld + p, ld, o + p * W + r, W);
      } else if constexpr (W < 8) {
        for (; p + 8 <= kc; p += 8) transpose8<W>(s + p, ld, o + p * W, W);
      }
      for (; p < kc; ++p)
        for (int r = 0; r < W; ++r) o[p * W + r] = s[r * ld + p];
    }
  }
  if (full < rows) {  // the last, partial panel
    const int w = static_cast<int>(rows - full);
    float* o = out + full * kc;
    for (int64_t p = 0; p < kc; ++p) {
      for (int r = 0; r < w; ++r) o[p * W + r] = contig_r ? src[p * ld + full + r] : src[(full + r) * ld + p];
      for (int r = w; r < W; ++r) o[p * W + r] = 0.0f;
    }
  }
}

// Row p of op(B) (n floats) into its place in the packed panels (layout in sgemm_avx512),
// the last panel's padding zeroed.
FASTNN_AVX512_FN void scatter_row(const float* row, int64_t n, int64_t p, int64_t k, int64_t npad, float* bp) {
  const int64_t p0 = p / kKc * kKc, kc = std::min(kKc, k - p0);
  float* base = bp + p0 * npad + (p - p0) * kNr;
  int64_t j0 = 0;
  for (; j0 + kNr <= n; j0 += kNr)
#pragma GCC unroll 4
    for (int v = 0; v < kNr; v += 16) _mm512_store_ps(base + j0 * kc + v, _mm512_loadu_ps(row + j0 + v));
  if (j0 < n) {
    float* o = base + j0 * kc;
    for (int v = 0; v < kNr; v += 16) {
      const int64_t rem = n - j0 - v;
      const __mmask16 mk = rem >= 16 ? __mmask16(0xffff) : rem <= 0 ? __mmask16(0) : __mmask16((1u << rem) - 1);
      _mm512_store_ps(o + v, _mm512_maskz_loadu_ps(mk, row + j0 + v));
    }
  }
}

// Scratch floats, 64-byte aligned and already faulted in: from the buffer cache when
// large, else this thread's own block, kept between calls (a fresh heap block of a few
// hundred KiB is a fresh mmap: page faults on every call, which cost a small layer more
// than its products). One Buffer per thread at a time (sgemm does not nest).
class Buffer {
 public:
  explicit Buffer(int64_t n) {
    const size_t bytes = size_t(n) * sizeof(float) + 64;
    if (bytes >= pool::kMinBytes) {
      raw_ = pool::acquire(bytes, &block_);
    } else {
      thread_local std::vector<char> local;
      if (local.size() < bytes) local.resize(pool::kMinBytes);
      raw_ = local.data();
    }
    p_ = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(raw_) + 63) & ~uintptr_t(63));
  }
  ~Buffer() {
    if (block_) pool::release(raw_, block_);
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  float* get() const { return p_; }

 private:
  void* raw_ = nullptr;
  size_t block_ = 0;
  float* p_ = nullptr;
};

// Work per pool part, in multiply-adds: more than waking a sleeping pool thread costs
// (~3M multiply-adds' time; docs/performance.md, "Dense and sgemm").
constexpr int64_t kGrainMacs = int64_t(4) << 20;

}  // namespace

void sgemm_avx512(bool at, bool bt, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                  const float* b, int64_t ldb, float beta, float* c, int64_t ldc, const RowsDone* rows_done,
                  const BRows* b_rows) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {  // C = beta C
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    if (rows_done) (*rows_done)(0, m);
    return;
  }
  const int64_t npanels = (n + kNr - 1) / kNr, npad = npanels * kNr;
  // op(B) packed once: k block p0 (kc = min(kKc, k - p0)) at bp + p0 * npad, its panel j
  // at + j * kNr * kc. Always packed, even where B is stored (k, n) with whole panels and
  // the kernel could read it in place: read in place, the speed depends on where B lives
  // (a weight in TensorFlow's memory ran ~10% slower than in numpy's); packed, it does not.
  const int64_t kblocks = (k + kKc - 1) / kKc;
  Buffer bbuf(k * npad);
  float* bp = bbuf.get();
  if (b_rows) {  // rows of op(B) made by b_rows->fn, ~64 KiB at a time, then scattered into the panels
    const int64_t group = std::max<int64_t>(1, b_rows->group), groups = (k + group - 1) / group;
    const int64_t sub = std::max<int64_t>(1, (int64_t(64) << 10) / (n * int64_t(sizeof(float))));
    parallel_for(groups, 1, [&](int64_t s, int64_t e) {
      thread_local std::vector<float> rowbuf;
      if (rowbuf.size() < size_t(sub * n)) rowbuf.resize(size_t(sub * n));
      for (int64_t g = s; g < e; ++g) {
        for (int64_t r0 = g * group; r0 < std::min(k, (g + 1) * group); r0 += sub) {
          const int64_t r1 = std::min({r0 + sub, (g + 1) * group, k});
          b_rows->fn(r0, r1, rowbuf.data());
          for (int64_t r = r0; r < r1; ++r) scatter_row(rowbuf.data() + (r - r0) * n, n, r, k, npad, bp);
        }
      }
    });
  } else {
    parallel_for(kblocks * npanels, std::max<int64_t>(1, (int64_t(1) << 18) / (kKc * kNr)), [&](int64_t s, int64_t e) {
      for (int64_t t = s; t < e; ++t) {
        const int64_t p0 = (t / npanels) * kKc, kc = std::min(kKc, k - p0), j0 = (t % npanels) * kNr;
        const int64_t cols = std::min<int64_t>(kNr, n - j0);
        float* out = bp + p0 * npad + j0 * kc;
        if (bt) pack<kNr>(false, b + j0 * ldb + p0, ldb, cols, kc, out);  // B stored (n, k)
        else pack<kNr>(true, b + p0 * ldb + j0, ldb, cols, kc, out);      // B stored (k, n)
      }
    });
  }
  // Rows in units of up to kUnitPanels tiles, claimed one at a time by the threads (not
  // split in fixed halves): a thread whose core is taken by other work (TensorFlow runs
  // independent ops at once) does fewer units instead of holding up the call.
  const int64_t rpanels = (m + kMr - 1) / kMr;
  const double macs = double(rpanels) * kMr * double(n) * double(k);
  const int64_t threads = std::max<int64_t>(1, static_cast<int64_t>(std::min<double>(num_threads(), macs / kGrainMacs)));
  const int64_t unit = std::max<int64_t>(1, std::min<int64_t>(kUnitPanels, (rpanels + threads - 1) / threads));
  const int64_t units = (rpanels + unit - 1) / unit;
  std::atomic<int64_t> next{0};
  parallel_for(std::min(threads, units), 1, [&](int64_t, int64_t) {
    struct Free {
      void operator()(float* p) const { std::free(p); }
    };
    thread_local std::unique_ptr<float, Free> abuf;  // kUnitPanels * kMr x kKc, per thread, kept
    if (!abuf) {
      abuf.reset(static_cast<float*>(std::aligned_alloc(64, kUnitPanels * kMr * kKc * sizeof(float))));
      if (!abuf) throw std::bad_alloc();
    }
    float* ap = abuf.get();
    for (int64_t u; (u = next.fetch_add(1, std::memory_order_relaxed)) < units;) {
      const int64_t r0 = u * unit * kMr, rows = std::min(unit * kMr, m - r0);
      for (int64_t p0 = 0; p0 < k; p0 += kKc) {
        const int64_t kc = std::min(kKc, k - p0);
        if (at) pack<kMr>(true, a + p0 * lda + r0, lda, rows, kc, ap);  // A stored (k, m)
        else pack<kMr>(false, a + r0 * lda + p0, lda, rows, kc, ap);    // A stored (m, k)
        const float* bk = bp + p0 * npad;
        for (int64_t j0 = 0; j0 < n; j0 += kNc) {
          const int64_t j1 = std::min(n, j0 + kNc);
          for (int64_t i = 0; i < rows; i += kMr) {
            const int mr = static_cast<int>(std::min<int64_t>(kMr, rows - i));
            for (int64_t j = j0; j < j1; j += kNr)
              kernel(kc, ap + i * kc, bk + j * kc, c + (r0 + i) * ldc + j, ldc, mr,
                     static_cast<int>(std::min<int64_t>(kNr, n - j)), alpha, beta, p0 == 0);
          }
        }
      }
      if (rows_done) (*rows_done)(r0, r0 + rows);  // while the rows are in this core's L2
    }
  });
}

namespace {
// From kMinMacs multiply-adds up this one is faster than OpenBLAS; below, OpenBLAS is as
// fast or faster (Dense forward + backward, both forced onto each: docs/performance.md,
// "Dense and sgemm"; python -m fastnn.bench --ops dense, FASTNN_GEMM=openblas for OpenBLAS).
// Where it loses: B is packed in a pass of its own (written out and read back, where
// OpenBLAS packs blocks that stay in cache) and the pool's threads must be woken where
// OpenBLAS's are still spinning from its last call.
constexpr int64_t kMinMacs = kOwnSgemmMinMacs;
std::atomic<bool> g_own{[] {
  const char* env = std::getenv("FASTNN_GEMM");
  return cpu_isa() == Isa::avx512 && !(env && std::string(env) == "openblas");
}()};
std::atomic<int64_t> g_min_macs{kMinMacs};
}  // namespace
bool own_sgemm(int64_t m, int64_t n, int64_t k) {
  return g_own.load(std::memory_order_relaxed) && have_avx512() && double(m) * double(n) * double(k) >= double(g_min_macs.load(std::memory_order_relaxed));
}
bool own_sgemm_on() { return g_own.load(std::memory_order_relaxed) && have_avx512(); }
int64_t own_sgemm_min_macs() { return g_min_macs.load(std::memory_order_relaxed); }
void set_own_sgemm(bool on, int64_t min_macs) {
  g_own.store(on && cpu_isa() == Isa::avx512, std::memory_order_relaxed);
  g_min_macs.store(min_macs < 0 ? kMinMacs : min_macs, std::memory_order_relaxed);
}

}  // namespace fastnn

#else

#include <stdexcept>
namespace fastnn {
void sgemm_avx512(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float,
                  float*, int64_t, const RowsDone*, const BRows*) {
  throw std::logic_error("fastnn: sgemm_avx512 is not built in this configuration");
}
bool own_sgemm(int64_t, int64_t, int64_t) { return false; }
bool own_sgemm_on() { return false; }
int64_t own_sgemm_min_macs() { return kOwnSgemmMinMacs; }
void set_own_sgemm(bool, int64_t) {}
}  // namespace fastnn

#endif
