// ops.h — what fastnn.keras' compiled bridges run, for any host framework: the jax XLA
// FFI handlers (csrc/jax/ffi.cpp) and the TensorFlow ops (csrc/tf/ops.cc) decode their
// framework's buffers and attributes, check shapes, and call these. Header-only: each
// bridge is its own shared library built on first use against its framework, and reaches
// fastnn._C's kernels through the C++ table (cpu/api.h) given to init().
//
// Layout is Keras': x (..., in) row-major, w (in, out), b (out,). Dense backward is split
// as the Python bridges split it, so a graph can drop the dx call it does not use:
//   dense_bwd_w: dpre = dy * act'(r) (r is y or z), dw = x^T dpre, db = sum_rows dpre
//   dense_bwd_x: dx = dpre @ w^T
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "cpu/api.h"

namespace fastnn::host {

inline const CpuApi*& table() {
  static const CpuApi* api = nullptr;
  return api;
}

// true if `t` is fastnn._C's table of this build (version and size agree).
inline bool init(const void* t) {
  const auto* api = static_cast<const CpuApi*>(t);
  if (!api || api->version != kCpuApiVersion || api->size != static_cast<int>(sizeof(CpuApi))) return false;
  table() = api;
  return true;
}

template <class T> const CpuKernels<T>& K() {
  if constexpr (std::is_same_v<T, float>) return table()->f32; else return table()->f64;
}

// An activation from its attributes (code, the 7 numeric parameters, approximate); "" or
// what is wrong.
inline std::string act_of(int64_t code, const double* p, size_t np, int64_t approx, Act* act, ActParams* ap) {
  if (code < 0 || code > static_cast<int64_t>(Act::log_softmax) || np != 7) return "bad activation attributes";
  *act = static_cast<Act>(code);
  *ap = ActParams{p[0], p[1], p[2], p[3], p[4], p[5], p[6], static_cast<int>(approx)};
  return "";
}

inline bool needs_x(Act act, bool from_y) { return from_y && act != Act::linear && !table()->act_has_y_backward(act); }

template <class T> void dense_fwd(Act act, const ActParams& ap, const T* x, const T* w, const T* b, T* y, T* z,
                                  int64_t m, int64_t k, int64_t n) {
  K<T>().dense_forward(act, ap, x, w, false, b, y, z, m, k, n);
}

// dpre is written unless act is linear (then dy is dpre) or dpre is null (not wanted); db may be null.
template <class T> void dense_bwd_w(Act act, const ActParams& ap, bool from_y, const T* dy, const T* x, const T* w,
                                    const T* r, T* dw, T* db, T* dpre, int64_t m, int64_t k, int64_t n) {
  // one pass writes dpre and sums db, then the product (dpre: needed when act is not linear)
  const bool lin = act == Act::linear;
  K<T>().dense_backward(act, ap, from_y, dy, x, w, false, lin ? nullptr : r, nullptr, dw, db, lin ? nullptr : dpre,
                        m, k, n);
}

// dx (m, k) = dpre (m, n) @ w^T: w (k, n) row-major is a torch-layout ("oi") weight of a
// layer n -> k.
template <class T> void dense_bwd_x(const T* dpre, const T* w, T* dx, int64_t m, int64_t k, int64_t n) {
  const ActParams none{};
  K<T>().dense_forward(Act::linear, none, dpre, w, true, nullptr, dx, nullptr, m, n, k);
}

template <class T> void act_fwd(Act act, const ActParams& ap, const T* x, T* y, int64_t n, int64_t cols) {
  K<T>().act_forward(act, ap, x, y, n, cols);
}

template <class T> void act_bwd(Act act, const ActParams& ap, bool from_y, const T* dy, const T* r, T* dx, int64_t n,
                                int64_t cols) {
  (from_y ? K<T>().act_backward_y : K<T>().act_backward_x)(act, ap, r, dy, dx, n, cols);
}

// ---- losses, reduction "none" ---------------------------------------------------------
// kind: an elementwise loss code (cpu/kernels.h, Loss), or -1 cross_entropy, -2 nll (pred
// (rows, cols) with integer class indices, one per row).
struct LossAttrs {
  int64_t kind;
  double delta, beta, eps;
  bool log_target, log_input, full;
  int64_t ignore_index;
  double label_smoothing;
};

inline std::string loss_kind_ok(int64_t kind) {
  return kind >= -2 && kind <= static_cast<int64_t>(Loss::log_cosh) ? "" : "bad loss code";
}

template <class T> bool in_unit(const T* p, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!(p[i] >= T(0) && p[i] <= T(1))) return false;  // NaN too
  return true;
}
template <class T> T nan_max(T a, T b) {
  return std::isnan(a) || std::isnan(b) ? std::numeric_limits<T>::quiet_NaN() : (a > b ? a : b);
}

// Keras' probability BCE takes any float (a loss-scale overflow, odd labels); the kernel
// keeps torch's domain [0, 1]. Outside it: fastnn/keras/_numpy.py's formula, elementwise,
// in double (NaN where a log is; the numpy route rounds each step to the dtype, so the
// two agree to an ulp or two, not bit for bit).
template <class T> void bce_outside(const T* p, const T* t, const T* g, T* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double pi = p[i], ti = t[i];
    if (g)
      out[i] = static_cast<T>(g[i] * (pi - ti) / nan_max(pi * (1.0 - pi), 1e-12));
    else
      out[i] = static_cast<T>(-(ti * nan_max(std::log(pi), -100.0) + (1.0 - ti) * nan_max(std::log1p(-pi), -100.0)));
  }
}

// Elementwise loss over n elements: out = loss (g null) or g * dloss/dpred.
template <class T> void loss_elementwise(const LossAttrs& a, const T* g, const T* p, const T* t, T* out, int64_t n) {
  if (n == 0) return;
  const auto k = static_cast<Loss>(a.kind);
  if (k == Loss::bce && !(in_unit(p, n) && in_unit(t, n))) {
    bce_outside(p, t, g, out, n);
    return;
  }
  const LossArgs<T> la{k, a.delta, a.beta, a.eps, a.log_target, a.log_input, a.full, nullptr, 0};
  if (g)
    K<T>().loss_backward(la, p, t, g, 1.0, out, nullptr, n);
  else
    K<T>().loss_forward(la, p, t, out, n);
}

// Class loss over rows x cols: out = per-row loss (g null) or g (per row) * dloss/dpred.
// Every index is checked (in [0, cols) or the ignore index): "" or the error.
template <class T, class I>
std::string loss_class(const LossAttrs& a, const T* g, const T* p, const I* target, T* out, int64_t rows,
                       int64_t cols) {
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t t = static_cast<int64_t>(target[i]);
    if (t != a.ignore_index && (t < 0 || t >= cols))
      return "class index " + std::to_string(t) + " is out of range [0, " + std::to_string(cols) + ")";
  }
  if (rows == 0 || cols == 0) return "";
  std::vector<int64_t> wide;  // the kernels take int64 indices: int32 ones are widened
  const int64_t* idx = nullptr;
  if constexpr (std::is_same_v<I, int64_t>) {
    idx = target;
  } else {
    wide.assign(target, target + rows);
    idx = wide.data();
  }
  const ClassArgs ca{a.kind == -2, a.ignore_index, a.label_smoothing};
  if (g)
    K<T>().class_backward(ca, p, idx, nullptr, g, 1.0, out, rows, cols);
  else
    K<T>().class_forward(ca, p, idx, nullptr, out, rows, cols);
  return "";
}

}  // namespace fastnn::host
