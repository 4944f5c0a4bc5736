// activation.cpp — elementwise activations, softmax/log_softmax along rows, and the
// dense layer's fused epilogue (bias + activation) and backward prologue (activation
// derivative + bias gradient). Formulas live in scalar_math.h; this file only loops.
//
// Shapes: elementwise kernels see flat arrays of n elements; row kernels see
// (rows, cols) C-contiguous blocks, the reduced axis last.
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "vecmath.h"  // first: SIMD declarations of libm functions
#include "kernels.h"
#include "parallel.h"
#include "isa.h"
#include "simd_dispatch.h"

namespace fastnn {
namespace {

// The activation lists come from the generated op_table.h (via kernels.h):
// FASTNN_ELEMENTWISE_ACTIVATIONS (each has sm::<name>_fwd / _bwd in scalar_math.h) and
// FASTNN_Y_BACKWARD_ACTIVATIONS (each has sm::<name>_bwd_y).

// Rows per part of the softmax kernels: ~32K items.
constexpr int64_t kGrain = 32768;

// Elementwise parts: waking the pool's other thread (a futex wake and a reschedule) costs
// tens of microseconds, so a part must hold enough work to pay for it: the grains below
// are where two threads beat one for each cost class (python -m fastnn.bench --ops
// threads; docs/performance.md, "Threads and pools").
int64_t elementwise_grain(Act a) {
  switch (a) {
    case Act::gelu: case Act::mish: case Act::softplus: case Act::log_sigmoid:
      return int64_t(1) << 17;  // ~1-2 ns per element
    case Act::elu: case Act::selu: case Act::celu: case Act::silu: case Act::sigmoid: case Act::tanh:
    case Act::exponential:
      return int64_t(1) << 18;  // one exp: ~0.4 ns per element
    default:
      return int64_t(1) << 20;  // no transcendental: memory speed, ~0.13 ns per element
  }
}

// ---- softmax rows -------------------------------------------------------------------
// softmax: y = e^(x - max) / sum e^(x - max); log_softmax: y = x - max - log(sum).
template <class T> FASTNN_INLINE void softmax_row(bool log_out, const T* x, T* y, int64_t c) {
  T mx = -INFINITY;
#pragma omp simd reduction(max : mx)
  for (int64_t j = 0; j < c; ++j) mx = x[j] > mx ? x[j] : mx;
  if (!(mx > -INFINITY)) mx = 0;  // all -inf: let the NaN of 0/0 through, as torch
  if (log_out) {
    const T lse = mx + sm::log(exp_row_sum<T>(x, nullptr, c, mx));
    for (int64_t j = 0; j < c; ++j) y[j] = x[j] - lse;
  } else {
    const T inv = T(1) / exp_row_sum<T>(x, y, c, mx);
    for (int64_t j = 0; j < c; ++j) y[j] *= inv;
  }
}
// softmax: dx = y (dy - sum(dy y)); log_softmax: dx = dy - e^y sum(dy). dx may alias y.
template <class T> FASTNN_INLINE void softmax_grad_row(bool log_out, const T* y, const T* dy, T* dx, int64_t c) {
  T s = 0;
  if (log_out) {
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < c; ++j) s += dy[j];
    for (int64_t j = 0; j < c; ++j) dx[j] = dy[j] - sm::exp(y[j]) * s;
  } else {
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < c; ++j) s += dy[j] * y[j];
    for (int64_t j = 0; j < c; ++j) dx[j] = y[j] * (dy[j] - s);
  }
}

// ---- serial bodies (always inlined into each ISA clone below) -------------------------
// gelu's erf and tanh forms get a loop each: with p.approximate only known at run time,
// GCC if-converts the branch inside the vectorized loop and computes both forms (gelu
// forward was 1.9 ns per element instead of 1.2 here).
template <class T, class F> FASTNN_INLINE void gelu_loops(const ActParams& pr, int64_t n, F body) {
  ActParams p = pr;
  if (pr.approximate) {
    p.approximate = 1;
    for (int64_t i = 0; i < n; ++i) body(i, p);
  } else {
    p.approximate = 0;
    for (int64_t i = 0; i < n; ++i) body(i, p);
  }
}
template <class T> FASTNN_INLINE void fwd_serial(Act a, const ActParams& pr, const T* x, T* y, int64_t n) {
  if constexpr (std::is_same_v<T, float>)
    if (simd_act_forward(a, pr, x, y, n)) return;  // the hand-vectorized kernels, where they exist
  if (a == Act::gelu)
    return gelu_loops<T>(pr, n, [&](int64_t i, const ActParams& p) { y[i] = sm::gelu_fwd<T>(x[i], p); });
  const ActParams p = pr;  // a local copy: stores to y cannot alias it
  switch (a) {
#define CASE(f) case Act::f: for (int64_t i = 0; i < n; ++i) y[i] = sm::f##_fwd<T>(x[i], p); break;
    FASTNN_ELEMENTWISE_ACTIVATIONS(CASE)
#undef CASE
    default: break;
  }
}
template <class T> FASTNN_INLINE void bwd_x_serial(Act a, const ActParams& pr, const T* x, const T* dy, T* dx, int64_t n) {
  if constexpr (std::is_same_v<T, float>)
    if (simd_act_backward_x(a, pr, x, dy, dx, n)) return;
  if (a == Act::gelu)
    return gelu_loops<T>(pr, n, [&](int64_t i, const ActParams& p) { dx[i] = sm::gelu_bwd<T>(x[i], dy[i], p); });
  const ActParams p = pr;
  switch (a) {
#define CASE(f) case Act::f: for (int64_t i = 0; i < n; ++i) dx[i] = sm::f##_bwd<T>(x[i], dy[i], p); break;
    FASTNN_ELEMENTWISE_ACTIVATIONS(CASE)
#undef CASE
    default: break;
  }
}
template <class T> FASTNN_INLINE void bwd_y_serial(Act a, const ActParams& pr, const T* y, const T* dy, T* dx, int64_t n) {
  const ActParams p = pr;
  switch (a) {
#define CASE(f) case Act::f: for (int64_t i = 0; i < n; ++i) dx[i] = sm::f##_bwd_y<T>(y[i], dy[i], p); break;
    FASTNN_Y_BACKWARD_ACTIVATIONS(CASE)
#undef CASE
    default: break;
  }
}
template <class T> FASTNN_INLINE void softmax_serial(bool log_out, const T* x, T* y, int64_t rows, int64_t c) {
  for (int64_t r = 0; r < rows; ++r) softmax_row(log_out, x + r * c, y + r * c, c);
}
template <class T> FASTNN_INLINE void softmax_grad_serial(bool log_out, bool from_x, const T* xy, const T* dy, T* dx,
                                                          int64_t rows, int64_t c) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* y = xy + r * c;
    if (from_x) { softmax_row(log_out, y, dx + r * c, c); y = dx + r * c; }
    softmax_grad_row(log_out, y, dy + r * c, dx + r * c, c);
  }
}
template <class T> FASTNN_INLINE void bias_act_serial(Act a, const ActParams& p, T* z, T* y, const T* b,
                                                      int64_t rows, int64_t c) {
  for (int64_t r = 0; r < rows; ++r) {
    T* zr = z + r * c;
    T* yr = y + r * c;
    if (b) for (int64_t j = 0; j < c; ++j) zr[j] += b[j];
    if (a == Act::softmax || a == Act::log_softmax) softmax_row(a == Act::log_softmax, zr, yr, c);
    else if (a != Act::linear || yr != zr) fwd_serial(a, p, zr, yr, c);
  }
}
// db[j] += sum_r g[r, j] in double, four rows per pass over db (one load and store of
// db[j] per four rows: with one row per pass the bias sum took longer than the
// activation gradient itself).
template <class T> FASTNN_INLINE void sum_rows_serial(const T* g, int64_t rows, int64_t c, double* db) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const T *g0 = g + r * c, *g1 = g0 + c, *g2 = g1 + c, *g3 = g2 + c;
#pragma omp simd
    for (int64_t j = 0; j < c; ++j)
      db[j] += (static_cast<double>(g0[j]) + static_cast<double>(g1[j])) +
               (static_cast<double>(g2[j]) + static_cast<double>(g3[j]));
  }
  for (; r < rows; ++r)
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) db[j] += static_cast<double>(g[r * c + j]);
}
template <class T> FASTNN_INLINE void act_grad_serial(Act a, const ActParams& p, bool from_y, const T* zy, const T* dy,
                                                      T* g, double* db, int64_t rows, int64_t c) {
  for (int64_t r = 0; r < rows; ++r) {
    const T *zr = zy + r * c, *dyr = dy + r * c;
    T* gr = g + r * c;
    if (a == Act::softmax || a == Act::log_softmax) softmax_grad_serial(a == Act::log_softmax, !from_y, zr, dyr, gr, 1, c);
    else if (from_y) bwd_y_serial(a, p, zr, dyr, gr, c);
    else bwd_x_serial(a, p, zr, dyr, gr, c);
  }
  if (db) sum_rows_serial(g, rows, c, db);
}

// ---- one entry point per (body, dtype), compiled for each ISA level (isa.h) ----------
#define FASTNN_CLONE_PAIR(name, body, params, args)                                      \
  FASTNN_ISA_FN(void, name, (float, params(float)), FASTNN_TAG_F args, body<float> args)  \
  FASTNN_ISA_FN(void, name, (double, params(double)), FASTNN_TAG_D args, body<double> args)

#define P_FWD(T) Act a, const ActParams& p, const T* x, T* y, int64_t n
FASTNN_CLONE_PAIR(fwd_isa, fwd_serial, P_FWD, (a, p, x, y, n))
#define P_BWD(T) Act a, const ActParams& p, const T* x, const T* dy, T* dx, int64_t n
FASTNN_CLONE_PAIR(bwd_x_isa, bwd_x_serial, P_BWD, (a, p, x, dy, dx, n))
FASTNN_CLONE_PAIR(bwd_y_isa, bwd_y_serial, P_BWD, (a, p, x, dy, dx, n))
#define P_SM(T) bool lg, const T* x, T* y, int64_t rows, int64_t c
FASTNN_CLONE_PAIR(softmax_isa, softmax_serial, P_SM, (lg, x, y, rows, c))
#define P_SMG(T) bool lg, bool fx, const T* xy, const T* dy, T* dx, int64_t rows, int64_t c
FASTNN_CLONE_PAIR(softmax_grad_isa, softmax_grad_serial, P_SMG, (lg, fx, xy, dy, dx, rows, c))
#define P_BA(T) Act a, const ActParams& p, T* z, T* y, const T* b, int64_t rows, int64_t c
FASTNN_CLONE_PAIR(bias_act_isa, bias_act_serial, P_BA, (a, p, z, y, b, rows, c))
#define P_AG(T) Act a, const ActParams& p, bool fy, const T* zy, const T* dy, T* g, double* db, int64_t rows, int64_t c
FASTNN_CLONE_PAIR(act_grad_isa, act_grad_serial, P_AG, (a, p, fy, zy, dy, g, db, rows, c))
#define P_SR(T) const T* g, int64_t rows, int64_t c, double* db
FASTNN_CLONE_PAIR(sum_rows_isa, sum_rows_serial, P_SR, (g, rows, c, db))

bool is_softmax(Act a) { return a == Act::softmax || a == Act::log_softmax; }
int64_t row_grain(int64_t cols) { return std::max<int64_t>(1, kGrain / std::max<int64_t>(cols, 1)); }

// ---- 16-bit storage (half.h): the float32 kernels on 16-bit data ---------------------------
// A 16-bit activation computes exactly what the float32 one computes on the widened inputs,
// each output rounded once (RNE), and holds no float32 copy of a tensor: the
// hand-vectorized kernels (simd_kernels.h) convert in registers as they load and store;
// the others run kLpBlock elements (or whole rows) at a time, the inputs widened into
// float32 buffers in L1, the float32 kernel of the current ISA level run on them, the
// output narrowed.
constexpr int64_t kLpBlock = 2048;  // three 8 KB buffers: in L1 with room to spare

// out = k(a, b) elementwise over n (b may be null), in parts of >= grain elements; a part
// for which fused(lo, hi) returns true is done (the kernel converting in registers).
template <class T, class Fused, class K>
void lp_map(int64_t n, int64_t grain, const T* a, const T* b, T* out, Fused fused, K k) {
  parallel_for(n, grain, [&](int64_t lo, int64_t hi) {
    if (fused(lo, hi)) return;
    alignas(64) float fa[kLpBlock], fb[kLpBlock], fo[kLpBlock];
    for (int64_t i = lo; i < hi; i += kLpBlock) {
      const int64_t m = std::min(kLpBlock, hi - i);
      widen_block(a + i, fa, m);
      if (b) widen_block(b + i, fb, m);
      k(fa, fb, fo, m);
      narrow_block(fo, out + i, m);
    }
  });
}
// The same over rows of `cols` (softmax): whole rows per block, at least one.
template <class T, class K> void lp_rows(int64_t rows, int64_t cols, const T* a, const T* b, T* out, K k) {
  parallel_for(rows, row_grain(cols), [&](int64_t lo, int64_t hi) {
    const int64_t blk = std::max<int64_t>(1, kLpBlock / std::max<int64_t>(cols, 1));
    std::vector<float> buf(3 * static_cast<size_t>(blk * cols));
    float *fa = buf.data(), *fb = fa + blk * cols, *fo = fb + blk * cols;
    for (int64_t r = lo; r < hi; r += blk) {
      const int64_t m = std::min(blk, hi - r), o = r * cols;
      widen_block(a + o, fa, m * cols);
      if (b) widen_block(b + o, fb, m * cols);
      k(fa, fb, fo, m);
      narrow_block(fo, out + o, m * cols);
    }
  });
}

template <class T> void lp_forward(Act a, const ActParams& p, const T* x, T* y, int64_t n, int64_t cols) {
  if (is_softmax(a)) {
    const bool lg = a == Act::log_softmax;
    return lp_rows<T>(cols > 0 ? n / cols : 0, cols, x, nullptr, y, [&](float* fx, float*, float* fy, int64_t m) {
      softmax_isa(0.0f, lg, fx, fy, m, cols);
    });
  }
  lp_map<T>(
      n, elementwise_grain(a), x, nullptr, y,
      [&](int64_t lo, int64_t hi) { return simd_act_forward(a, p, x + lo, y + lo, hi - lo); },
      [&](float* fx, float*, float* fy, int64_t m) { fwd_isa(0.0f, a, p, fx, fy, m); });
}
// from_y: xy is the activation's output y (act_has_y_backward).
template <class T> void lp_backward(Act a, const ActParams& p, bool from_y, const T* xy, const T* dy, T* dx,
                                    int64_t n, int64_t cols) {
  if (is_softmax(a)) {
    const bool lg = a == Act::log_softmax;
    return lp_rows<T>(cols > 0 ? n / cols : 0, cols, xy, dy, dx, [&](float* fxy, float* fdy, float* fdx, int64_t m) {
      softmax_grad_isa(0.0f, lg, !from_y, fxy, fdy, fdx, m, cols);
    });
  }
  lp_map<T>(
      n, elementwise_grain(a), xy, dy, dx,
      [&](int64_t lo, int64_t hi) { return !from_y && simd_act_backward_x(a, p, xy + lo, dy + lo, dx + lo, hi - lo); },
      [&](float* fxy, float* fdy, float* fdx, int64_t m) {
        if (from_y) bwd_y_isa(0.0f, a, p, fxy, fdy, fdx, m);
        else bwd_x_isa(0.0f, a, p, fxy, fdy, fdx, m);
      });
}

}  // namespace

bool act_has_y_backward(Act a) {
  switch (a) {
#define CASE(f) case Act::f:
    FASTNN_Y_BACKWARD_ACTIVATIONS(CASE)
#undef CASE
    case Act::softmax: case Act::log_softmax: return true;
    default: return false;
  }
}

template <class T> void act_forward(Act a, const ActParams& p, const T* x, T* y, int64_t n, int64_t cols) {
  if (is_softmax(a)) {
    const int64_t rows = cols > 0 ? n / cols : 0;
    parallel_for(rows, row_grain(cols), [&](int64_t b, int64_t e) {
      softmax_isa(T(), a == Act::log_softmax, x + b * cols, y + b * cols, e - b, cols);
    });
    return;
  }
  parallel_for(n, elementwise_grain(a), [&](int64_t b, int64_t e) { fwd_isa(T(), a, p, x + b, y + b, e - b); });
}

template <class T> void act_backward_x(Act a, const ActParams& p, const T* x, const T* dy, T* dx, int64_t n, int64_t cols) {
  if (is_softmax(a)) {
    const int64_t rows = cols > 0 ? n / cols : 0;
    parallel_for(rows, row_grain(cols), [&](int64_t b, int64_t e) {
      const int64_t o = b * cols;
      softmax_grad_isa(T(), a == Act::log_softmax, true, x + o, dy + o, dx + o, e - b, cols);
    });
    return;
  }
  parallel_for(n, elementwise_grain(a), [&](int64_t b, int64_t e) { bwd_x_isa(T(), a, p, x + b, dy + b, dx + b, e - b); });
}

template <class T> void act_backward_y(Act a, const ActParams& p, const T* y, const T* dy, T* dx, int64_t n, int64_t cols) {
  if (is_softmax(a)) {
    const int64_t rows = cols > 0 ? n / cols : 0;
    parallel_for(rows, row_grain(cols), [&](int64_t b, int64_t e) {
      const int64_t o = b * cols;
      softmax_grad_isa(T(), a == Act::log_softmax, false, y + o, dy + o, dx + o, e - b, cols);
    });
    return;
  }
  parallel_for(n, elementwise_grain(a), [&](int64_t b, int64_t e) { bwd_y_isa(T(), a, p, y + b, dy + b, dx + b, e - b); });
}

template <class T> void bias_act_rows(Act a, const ActParams& p, T* z, T* y, const T* b, int64_t rows, int64_t cols) {
  bias_act_isa(T(), a, p, z, y, b, rows, cols);
}

template <class T> void act_grad_rows(Act a, const ActParams& p, bool from_y, const T* zy, const T* dy, T* g,
                                      double* dbias, int64_t rows, int64_t cols) {
  act_grad_isa(T(), a, p, from_y, zy, dy, g, dbias, rows, cols);
}
template <class T> void sum_rows(const T* g, int64_t rows, int64_t cols, double* out) {
  sum_rows_isa(T(), g, rows, cols, out);
}

#define FASTNN_INSTANTIATE(T)                                                                              \
  template void act_forward<T>(Act, const ActParams&, const T*, T*, int64_t, int64_t);                    \
  template void act_backward_x<T>(Act, const ActParams&, const T*, const T*, T*, int64_t, int64_t);       \
  template void act_backward_y<T>(Act, const ActParams&, const T*, const T*, T*, int64_t, int64_t);       \
  template void bias_act_rows<T>(Act, const ActParams&, T*, T*, const T*, int64_t, int64_t);              \
  template void act_grad_rows<T>(Act, const ActParams&, bool, const T*, const T*, T*, double*, int64_t, int64_t); \
  template void sum_rows<T>(const T*, int64_t, int64_t, double*);
FASTNN_INSTANTIATE(float)
FASTNN_INSTANTIATE(double)
// 16-bit storage: the elementwise and row activations on widened blocks (the Dense
// epilogues are dense.cpp's).
#define FASTNN_SPECIALIZE_LP(T)                                                                              \
  template <> void act_forward<T>(Act a, const ActParams& p, const T* x, T* y, int64_t n, int64_t cols) {    \
    lp_forward(a, p, x, y, n, cols);                                                                         \
  }                                                                                                          \
  template <> void act_backward_x<T>(Act a, const ActParams& p, const T* x, const T* dy, T* dx, int64_t n,   \
                                     int64_t cols) {                                                         \
    lp_backward(a, p, false, x, dy, dx, n, cols);                                                            \
  }                                                                                                          \
  template <> void act_backward_y<T>(Act a, const ActParams& p, const T* y, const T* dy, T* dx, int64_t n,   \
                                     int64_t cols) {                                                         \
    lp_backward(a, p, true, y, dy, dx, n, cols);                                                             \
  }
FASTNN_SPECIALIZE_LP(bf16)
FASTNN_SPECIALIZE_LP(f16)

}  // namespace fastnn
