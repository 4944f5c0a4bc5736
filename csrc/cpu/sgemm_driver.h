// sgemm_driver.h — fastnn's own float32 matrix product (the method and why: sgemm.cpp),
// written once against a vector-operations header (simd_avx512.h, simd_avx2.h: V, kW,
// load/store, load_n/store_n, set1, zero, fma, mul, add) and the tile constants of the
// including file, then compiled once per ISA: sgemm_avx512.cpp, sgemm_avx2.cpp include it
// inside their target region and namespace, after defining
//   kMr (rows of the C tile: broadcasts), kNr (columns: kNr / kW vectors), kKc (k block),
//   kNc (columns per pass over a row block), kUnitPanels (row tiles per unit of work),
//   kBPanelInL1 (loop order: true, each packed B micro-panel (kKc x kNr) is reused from L1
//   across a unit's row tiles, the A tiles streaming from L2 (small tiles, per k fewer
//   bytes of A than of B: the BLIS order); false, each A micro-panel stays in L1 across
//   kNc columns of B streaming from L2 (a wide tile whose B micro-panel exceeds L1)),
//   load8_first<R>(p) / store8_first<R>(p, v): the first R < 8 floats of an __m256, no
//   memory past them touched (AVX-512VL masks; vmaskmovps on AVX2).
// Edge tiles are computed whole from the zero padding of the packed panels and stored
// through load_n/store_n. Defines gemm<TA, TB>(...), TA and TB each float, bf16 or f16, with
// the contract of sgemm_own (kernels.h): a 16-bit operand is widened to float32 (exactly)
// while it is packed, so the float32 micro-kernel runs unchanged (gemm_lp's path where there
// is no bf16 dot-product unit, and for float16 everywhere: gemm_lp.cpp says why); and
// sgemm(...) = gemm<float, float>.

constexpr int kNv = kNr / kW;  // vectors across the C tile
static_assert(kNr % kW == 0 && kNr % 8 == 0, "tile width");

// C[0:mr, 0:nr] (ldc) = alpha acc (+ beta C if `first`, else + C): a micro-kernel's tile
// stored, the edges through masks (beta == 0: C not read).
inline void store_tile(const V (&acc)[kMr][kNv], float* c, int64_t ldc, int mr, int nr, float alpha, float beta,
                       bool first) {
  const V va = set1(alpha), vb = set1(beta);
  const bool scale = alpha != 1.0f;
  for (int i = 0; i < mr; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < kNv; ++v) {
      const int rem = nr - kW * v;
      if (rem <= 0) break;
      float* cp = c + i * ldc + kW * v;
      V r = scale ? mul(acc[i][v], va) : acc[i][v];
      if (rem >= kW) {
        if (!first) r = add(r, load(cp));
        else if (beta != 0.0f) r = fma(vb, load(cp), r);
        store(cp, r);
      } else {
        if (!first) r = add(r, load_n(cp, rem));
        else if (beta != 0.0f) r = fma(vb, load_n(cp, rem), r);
        store_n(cp, r, rem);
      }
    }
  }
}

// C[0:mr, 0:nr] (ldc) = alpha sum_p a[p][0:kMr] b[p][0:kNr] (+ beta C if `first`, else + C).
inline void kernel(int64_t kc, const float* __restrict a, const float* __restrict b, float* c, int64_t ldc, int mr,
                   int nr, float alpha, float beta, bool first) {
  V acc[kMr][kNv];
#pragma GCC unroll 8
  for (int i = 0; i < kMr; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < kNv; ++v) acc[i][v] = zero();
  for (int i = 0; i < mr; ++i) __builtin_prefetch(c + i * ldc, 1), __builtin_prefetch(c + i * ldc + kNr - 1, 1);
#pragma GCC unroll 4
  for (int64_t p = 0; p < kc; ++p) {
    V bv[kNv];
#pragma GCC unroll 4
    for (int v = 0; v < kNv; ++v) bv[v] = load(b + p * kNr + kW * v);
#pragma GCC unroll 8
    for (int i = 0; i < kMr; ++i) {
      const V ai = set1(a[p * kMr + i]);
#pragma GCC unroll 4
      for (int v = 0; v < kNv; ++v) acc[i][v] = fma(ai, bv[v], acc[i][v]);
    }
  }
  store_tile(acc, c, ldc, mr, nr, alpha, beta, first);
}

// 8 consecutive elements as float32: a plain load, or widened (F16C for float16; bfloat16
// is the upper half of a float32).
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const f16* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
inline __m256 load8(const bf16* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}

// dst[c * ldd + r] = src[r * lds + c] for r < R (R <= 8 rows read), c < 8; of each dst row
// only the first R floats are written.
template <int R, class T> inline void transpose8(const T* src, int64_t lds, float* dst, int64_t ldd) {
  __m256 r[8], t[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) r[i] = i < R ? load8(src + i * lds) : _mm256_setzero_ps();
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  const __m256 u[8] = {_mm256_shuffle_ps(t[0], t[2], 0x44), _mm256_shuffle_ps(t[0], t[2], 0xEE),
                       _mm256_shuffle_ps(t[1], t[3], 0x44), _mm256_shuffle_ps(t[1], t[3], 0xEE),
                       _mm256_shuffle_ps(t[4], t[6], 0x44), _mm256_shuffle_ps(t[4], t[6], 0xEE),
                       _mm256_shuffle_ps(t[5], t[7], 0x44), _mm256_shuffle_ps(t[5], t[7], 0xEE)};
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    const __m256 lo = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20), hi = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    if constexpr (R == 8) {
      _mm256_storeu_ps(dst + i * ldd, lo);
      _mm256_storeu_ps(dst + (i + 4) * ldd, hi);
    } else {
      store8_first<R>(dst + i * ldd, lo);
      store8_first<R>(dst + (i + 4) * ldd, hi);
    }
  }
}

// Packs `rows` x kc of a matrix into panels of W rows: out[panel * W * kc + p * W + r],
// rows past the end zero. Element (r, p) is at src[p * ld + r] when contig_r (each p a
// contiguous run of r: row copies), else at src[r * ld + p] (8 x 8 transposes); 16-bit
// elements widened to float32.
template <int W, class T> void pack(bool contig_r, const T* src, int64_t ld, int64_t rows, int64_t kc, float* out) {
  const int64_t full = rows / W * W;
  if (contig_r) {
    for (int64_t p = 0; p < kc; ++p) {  // one source row at a time, across its panels
      const T* s = src + p * ld;
      if constexpr (W % 8 == 0) {
        for (int64_t r0 = 0; r0 < full; r0 += W)
#pragma GCC unroll 8
          for (int v = 0; v < W; v += 8) _mm256_storeu_ps(out + r0 * kc + p * W + v, load8(s + r0 + v));
      } else {  // W < 8: masked 8-lane moves
        static_assert(W < 8, "panel width");
        if constexpr (std::is_same_v<T, float>) {
          for (int64_t r0 = 0; r0 < full; r0 += W) store8_first<W>(out + r0 * kc + p * W, load8_first<W>(s + r0));
        } else {  // 16-bit: 8-element loads where they stay inside the rows, the last panel element by element
          int64_t r0 = 0;
          for (; r0 < full && r0 + 8 <= rows; r0 += W) store8_first<W>(out + r0 * kc + p * W, load8(s + r0));
          for (; r0 < full; r0 += W)
            for (int r = 0; r < W; ++r) out[r0 * kc + p * W + r] = widen(s[r0 + r]);
        }
      }
    }
  } else {
    for (int64_t r0 = 0; r0 < full; r0 += W) {
      const T* s = src + r0 * ld;
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
        for (int r = 0; r < W; ++r) o[p * W + r] = widen(s[r * ld + p]);
    }
  }
  if (full < rows) {  // the last, partial panel
    const int w = static_cast<int>(rows - full);
    float* o = out + full * kc;
    for (int64_t p = 0; p < kc; ++p) {
      for (int r = 0; r < w; ++r) o[p * W + r] = widen(contig_r ? src[p * ld + full + r] : src[(full + r) * ld + p]);
      for (int r = w; r < W; ++r) o[p * W + r] = 0.0f;
    }
  }
}

// Row p of op(B) (n floats) into its place in the packed panels (layout in sgemm below),
// the last panel's padding zeroed.
inline void scatter_row(const float* row, int64_t n, int64_t p, int64_t k, int64_t npad, float* bp) {
  const int64_t p0 = p / kKc * kKc, kc = std::min(kKc, k - p0);
  float* base = bp + p0 * npad + (p - p0) * kNr;
  int64_t j0 = 0;
  for (; j0 + kNr <= n; j0 += kNr)
#pragma GCC unroll 4
    for (int v = 0; v < kNr; v += kW) store(base + j0 * kc + v, load(row + j0 + v));
  if (j0 < n) {
    float* o = base + j0 * kc;
    for (int v = 0; v < kNr; v += kW) {
      const int64_t rem = n - j0 - v;
      store(o + v, rem >= kW ? load(row + j0 + v) : rem <= 0 ? zero() : load_n(row + j0 + v, rem));
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

template <class TA, class TB>
void gemm(bool at, bool bt, int64_t m, int64_t n, int64_t k, float alpha, const TA* a, int64_t lda, const TB* b,
          int64_t ldb, float beta, float* c, int64_t ldc, const RowsDone* rows_done, const BRows* b_rows) {
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
        if constexpr (kBPanelInL1) {  // each B micro-panel from L1 across the unit's row tiles (A from L2)
          for (int64_t j = 0; j < n; j += kNr)
            for (int64_t i = 0; i < rows; i += kMr)
              kernel(kc, ap + i * kc, bk + j * kc, c + (r0 + i) * ldc + j, ldc,
                     static_cast<int>(std::min<int64_t>(kMr, rows - i)), static_cast<int>(std::min<int64_t>(kNr, n - j)),
                     alpha, beta, p0 == 0);
        } else {  // each A micro-panel from L1 across kNc columns of B (from L2)
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
      }
      if (rows_done) (*rows_done)(r0, r0 + rows);  // while the rows are in this core's L2
    }
  });
}

void sgemm(bool at, bool bt, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc, const RowsDone* rows_done,
           const BRows* b_rows) {
  gemm<float, float>(at, bt, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, rows_done, b_rows);
}

// The 16-bit operand combinations of gemm_lp (kernels.h), widened while packing.
#define FASTNN_GEMM_WIDEN(TA, TB)                                                                                 \
  template void gemm<TA, TB>(bool, bool, int64_t, int64_t, int64_t, float, const TA*, int64_t, const TB*, int64_t, \
                             float, float*, int64_t, const RowsDone*, const BRows*);
FASTNN_GEMM_WIDEN(bf16, bf16)
FASTNN_GEMM_WIDEN(bf16, float)
FASTNN_GEMM_WIDEN(float, bf16)
FASTNN_GEMM_WIDEN(f16, f16)
FASTNN_GEMM_WIDEN(f16, float)
FASTNN_GEMM_WIDEN(float, f16)
#undef FASTNN_GEMM_WIDEN
