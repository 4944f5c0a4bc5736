// dense_lp.h — what dense.cpp, dense_lp.cpp and dense_ce.cpp share: pooled scratch, the
// 16-bit Dense paths (dense_lp.cpp) that dense.cpp's dense_forward / dense_backward run
// for bf16 and f16, and the one rounding of a double sum to a 16-bit output.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>

#include "kernels.h"
#include "parallel.h"
#include "pool.h"

namespace fastnn {

// Scratch of n elements: from the buffer cache when large (already faulted in: a fresh
// 4 MB malloc per backward call cost page faults and zeroing), else the heap.
template <class T> class Scratch {
 public:
  explicit Scratch(int64_t n) {
    const size_t bytes = size_t(n) * sizeof(T);
    if (bytes >= pool::kMinBytes) p_ = static_cast<T*>(pool::acquire(bytes, &block_));
    else heap_.reset(new T[n]), p_ = heap_.get();
  }
  ~Scratch() { if (block_) pool::release(p_, block_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  T* get() const { return p_; }

 private:
  size_t block_ = 0;
  std::unique_ptr<T[]> heap_;
  T* p_ = nullptr;
};

// dst = narrow(src), count elements, over the pool (parts of 64 Ki elements).
template <class T> void narrow_par(const float* src, T* dst, int64_t count) {
  parallel_for(count, int64_t(1) << 16, [&](int64_t b, int64_t e) { narrow_block(src + b, dst + b, e - b); });
}

// A double (a bias-gradient sum) rounded once to T (bf16 / f16), round-to-nearest-even:
// through float32 rounded to odd (truncated, the last bit set when inexact), which keeps
// the one rounding exact because float32 has more than two bits beyond either 16-bit
// mantissa; plain double -> float -> T could round twice.
template <class T> inline T narrow_sum(double s) {
  float f = static_cast<float>(s);
  if (static_cast<double>(f) != s && !std::isnan(s)) {
    if (std::fabs(static_cast<double>(f)) > std::fabs(s)) f = std::nextafter(f, 0.0f);
    uint32_t u;
    std::memcpy(&u, &f, 4);
    u |= 1u;
    std::memcpy(&f, &u, 4);
  }
  return narrow<T>(f);
}

// The 16-bit Dense layer (dense_lp.cpp): dense_forward / dense_backward's contract
// (kernels.h) for T = bf16, f16, with float32 products (gemm_lp) and each output rounded once.
template <class T> void dense_forward_lp(Act a, const ActParams& p, const T* x, const T* w, bool w_oi, const T* b,
                                         T* y, T* z, int64_t m, int64_t k, int64_t n);
template <class T> void dense_backward_lp(Act a, const ActParams& p, bool from_y, const T* dy, const T* x,
                                          const T* w, bool w_oi, const T* zy, T* dx, T* dw, T* db, T* g,
                                          int64_t m, int64_t k, int64_t n);

}  // namespace fastnn
