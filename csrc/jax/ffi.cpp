// ffi.cpp — fastnn's CPU kernels as XLA FFI handlers (the jax backend of fastnn.keras).
//
// Why: jax.pure_callback leaves the compiled step for Python on every call (~110 us per
// callback here, three per Dense forward + backward). An XLA FFI custom call runs inside
// the compiled step: XLA hands the handler its input and output buffers and the kernel
// writes straight into XLA's memory. fastnn/keras/_jax_ffi.py builds this file on first
// use against jaxlib's headers (jax.ffi.include_dir()), registers the handlers with
// jax.ffi.register_ffi_target and calls them with jax.ffi.ffi_call inside jax.custom_vjp.
//
// The kernels are fastnn._C's, through its C++ table (csrc/cpu/api.h), as in
// csrc/torch/native.cpp: the same code and bits as the Python API. Shapes and dtypes
// are checked in Python at trace time; the handlers check them again (a wrong call is an
// error, never an out-of-bounds access) and check what only the data shows: class
// indices in range. Layouts are Keras': w (in, out), row-major buffers.
//
// Handlers (inputs -> results; attributes in brackets):
//   fastnn_dense_fwd    x (..., in), w (in, out), b (out,) or 0-d -> y, [z]     [act, p, approx, has_b]
//   fastnn_dense_bwd_w  dy, x, w, r (y or z, or 0-d) -> dw, [db], [dpre]        [act, p, approx, from_y, has_b]
//   fastnn_dense_bwd_x  dpre (..., out), w (in, out) -> dx (..., in)
//   fastnn_act_fwd      x -> y                                                  [act, p, approx]
//   fastnn_act_bwd      dy, r (y or x) -> dx                                    [act, p, approx, from_y]
//   fastnn_loss_fwd     pred, target -> per-element (per-row) loss              [loss attributes]
//   fastnn_loss_bwd     g, pred, target -> dpred                                [loss attributes]
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "cpu/api.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

const fastnn::CpuApi* g_api = nullptr;

template <class T> const fastnn::CpuKernels<T>& K() {
  if constexpr (std::is_same_v<T, float>) return g_api->f32; else return g_api->f64;
}

ffi::Error bad(const std::string& what) { return ffi::Error::InvalidArgument("fastnn (jax ffi): " + what); }

int64_t rows(const ffi::AnyBuffer& b) {  // prod(shape[:-1])
  auto d = b.dimensions();
  int64_t m = 1;
  for (size_t i = 0; i + 1 < d.size(); ++i) m *= d[i];
  return m;
}
int64_t last(const ffi::AnyBuffer& b) { auto d = b.dimensions(); return d.size() ? d.back() : 1; }
int64_t count(const ffi::AnyBuffer& b) { return static_cast<int64_t>(b.element_count()); }
bool is_float(ffi::DataType t) { return t == ffi::DataType::F32 || t == ffi::DataType::F64; }

std::string dims(const ffi::AnyBuffer& b) {
  std::string s = "(";
  for (int64_t d : b.dimensions()) s += std::to_string(d) + ",";
  return s + ")";
}

ffi::Error act_of(int64_t code, ffi::Span<const double> p, int64_t approx, fastnn::Act* act, fastnn::ActParams* ap) {
  if (code < 0 || code > static_cast<int64_t>(fastnn::Act::log_softmax) || p.size() != 7)
    return bad("bad activation attributes");
  *act = static_cast<fastnn::Act>(code);
  *ap = fastnn::ActParams{p[0], p[1], p[2], p[3], p[4], p[5], p[6], static_cast<int>(approx)};
  return ffi::Error::Success();
}

// The i-th of the remaining results (a buffer of `n` elements of `dt`), or an error.
ffi::Error extra(const ffi::RemainingRets& rest, size_t i, ffi::DataType dt, int64_t n, void** out) {
  if (i >= rest.size()) return bad("missing result");
  auto r = rest.get<ffi::AnyBuffer>(i);
  if (!r) return r.error();
  if ((*r)->element_type() != dt || count(**r) != n) return bad("result of the wrong size or dtype");
  *out = (*r)->untyped_data();
  return ffi::Error::Success();
}

// ---- Dense ------------------------------------------------------------------------------

ffi::Error DenseFwd(ffi::AnyBuffer x, ffi::AnyBuffer w, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> y,
                    ffi::RemainingRets rest, int64_t code, ffi::Span<const double> p, int64_t approx, bool has_b) {
  fastnn::Act act;
  fastnn::ActParams ap;
  if (auto e = act_of(code, p, approx, &act, &ap); e.failure()) return e;
  const auto dt = x.element_type();
  if (!is_float(dt) || w.element_type() != dt || y->element_type() != dt) return bad("dense: dtypes differ");
  if (w.dimensions().size() != 2 || x.dimensions().size() < 1 || w.dimensions()[0] != last(x))
    return bad("dense: x " + dims(x) + " does not match w " + dims(w));
  const int64_t m = rows(x), k = w.dimensions()[0], n = w.dimensions()[1];
  if (count(*y) != m * n) return bad("dense: y has the wrong size");
  if (has_b && (b.element_type() != dt || count(b) != n)) return bad("dense: b " + dims(b) + " does not match w");
  void* z = nullptr;
  if (!rest.empty())
    if (auto e = extra(rest, 0, dt, m * n, &z); e.failure()) return e;
  if (dt == ffi::DataType::F32)
    K<float>().dense_forward(act, ap, static_cast<const float*>(x.untyped_data()),
                             static_cast<const float*>(w.untyped_data()), false,
                             has_b ? static_cast<const float*>(b.untyped_data()) : nullptr,
                             static_cast<float*>(y->untyped_data()), static_cast<float*>(z), m, k, n);
  else
    K<double>().dense_forward(act, ap, static_cast<const double*>(x.untyped_data()),
                              static_cast<const double*>(w.untyped_data()), false,
                              has_b ? static_cast<const double*>(b.untyped_data()) : nullptr,
                              static_cast<double*>(y->untyped_data()), static_cast<double*>(z), m, k, n);
  return ffi::Error::Success();
}

template <class T>
void dense_bwd_w(fastnn::Act act, const fastnn::ActParams& ap, bool from_y, const T* dy, const T* x, const T* w,
                 const T* r, T* dw, T* db, T* dpre, int64_t m, int64_t k, int64_t n) {
  const T* d = dy;
  if (act != fastnn::Act::linear) {  // dpre = dy * act'(r), kept for dense_bwd_x
    (from_y ? K<T>().act_backward_y : K<T>().act_backward_x)(act, ap, r, dy, dpre, m * n, n);
    d = dpre;
  }
  const fastnn::ActParams none{};
  K<T>().dense_backward(fastnn::Act::linear, none, false, d, x, w, false, nullptr, nullptr, dw, db, m, k, n);
}

ffi::Error DenseBwdW(ffi::AnyBuffer dy, ffi::AnyBuffer x, ffi::AnyBuffer w, ffi::AnyBuffer r,
                     ffi::Result<ffi::AnyBuffer> dw, ffi::RemainingRets rest, int64_t code, ffi::Span<const double> p,
                     int64_t approx, bool from_y, bool has_b) {
  fastnn::Act act;
  fastnn::ActParams ap;
  if (auto e = act_of(code, p, approx, &act, &ap); e.failure()) return e;
  const auto dt = x.element_type();
  if (!is_float(dt) || w.element_type() != dt || dy.element_type() != dt || dw->element_type() != dt)
    return bad("dense backward: dtypes differ");
  if (w.dimensions().size() != 2 || x.dimensions().size() < 1 || w.dimensions()[0] != last(x))
    return bad("dense backward: x " + dims(x) + " does not match w " + dims(w));
  const int64_t m = rows(x), k = w.dimensions()[0], n = w.dimensions()[1];
  if (count(dy) != m * n || count(*dw) != k * n) return bad("dense backward: dy " + dims(dy) + " has the wrong size");
  const bool linear = act == fastnn::Act::linear;
  if (!linear && (r.element_type() != dt || count(r) != m * n)) return bad("dense backward: r has the wrong size");
  if (!linear && from_y && !g_api->act_has_y_backward(act)) return bad("this activation's backward needs z");
  void *db = nullptr, *dpre = nullptr;
  size_t i = 0;
  if (has_b)
    if (auto e = extra(rest, i++, dt, n, &db); e.failure()) return e;
  if (!linear)
    if (auto e = extra(rest, i++, dt, m * n, &dpre); e.failure()) return e;
  if (dt == ffi::DataType::F32)
    dense_bwd_w<float>(act, ap, from_y, static_cast<const float*>(dy.untyped_data()),
                       static_cast<const float*>(x.untyped_data()), static_cast<const float*>(w.untyped_data()),
                       static_cast<const float*>(r.untyped_data()), static_cast<float*>(dw->untyped_data()),
                       static_cast<float*>(db), static_cast<float*>(dpre), m, k, n);
  else
    dense_bwd_w<double>(act, ap, from_y, static_cast<const double*>(dy.untyped_data()),
                        static_cast<const double*>(x.untyped_data()), static_cast<const double*>(w.untyped_data()),
                        static_cast<const double*>(r.untyped_data()), static_cast<double*>(dw->untyped_data()),
                        static_cast<double*>(db), static_cast<double*>(dpre), m, k, n);
  return ffi::Error::Success();
}

// dx = dpre @ w.T: w (in, out) row-major is a torch-layout ("oi") weight of a layer out -> in.
ffi::Error DenseBwdX(ffi::AnyBuffer dpre, ffi::AnyBuffer w, ffi::Result<ffi::AnyBuffer> dx) {
  const auto dt = dpre.element_type();
  if (!is_float(dt) || w.element_type() != dt || dx->element_type() != dt) return bad("dense dx: dtypes differ");
  if (w.dimensions().size() != 2 || dpre.dimensions().size() < 1 || w.dimensions()[1] != last(dpre))
    return bad("dense dx: dy " + dims(dpre) + " does not match w " + dims(w));
  const int64_t m = rows(dpre), k = w.dimensions()[0], n = w.dimensions()[1];
  if (count(*dx) != m * k) return bad("dense dx: dx has the wrong size");
  const fastnn::ActParams none{};
  if (dt == ffi::DataType::F32)
    K<float>().dense_forward(fastnn::Act::linear, none, static_cast<const float*>(dpre.untyped_data()),
                             static_cast<const float*>(w.untyped_data()), true, nullptr,
                             static_cast<float*>(dx->untyped_data()), nullptr, m, n, k);
  else
    K<double>().dense_forward(fastnn::Act::linear, none, static_cast<const double*>(dpre.untyped_data()),
                              static_cast<const double*>(w.untyped_data()), true, nullptr,
                              static_cast<double*>(dx->untyped_data()), nullptr, m, n, k);
  return ffi::Error::Success();
}

// ---- activations (softmax / log_softmax along the last axis) ----------------------------

ffi::Error ActFwd(ffi::AnyBuffer x, ffi::Result<ffi::AnyBuffer> y, int64_t code, ffi::Span<const double> p,
                  int64_t approx) {
  fastnn::Act act;
  fastnn::ActParams ap;
  if (auto e = act_of(code, p, approx, &act, &ap); e.failure()) return e;
  const auto dt = x.element_type();
  if (!is_float(dt) || y->element_type() != dt || count(*y) != count(x)) return bad("activation: bad result");
  if (dt == ffi::DataType::F32)
    K<float>().act_forward(act, ap, static_cast<const float*>(x.untyped_data()), static_cast<float*>(y->untyped_data()),
                           count(x), last(x));
  else
    K<double>().act_forward(act, ap, static_cast<const double*>(x.untyped_data()),
                            static_cast<double*>(y->untyped_data()), count(x), last(x));
  return ffi::Error::Success();
}

ffi::Error ActBwd(ffi::AnyBuffer dy, ffi::AnyBuffer r, ffi::Result<ffi::AnyBuffer> dx, int64_t code,
                  ffi::Span<const double> p, int64_t approx, bool from_y) {
  fastnn::Act act;
  fastnn::ActParams ap;
  if (auto e = act_of(code, p, approx, &act, &ap); e.failure()) return e;
  const auto dt = dy.element_type();
  if (!is_float(dt) || r.element_type() != dt || dx->element_type() != dt || count(r) != count(dy) ||
      count(*dx) != count(dy) || last(r) != last(dy))
    return bad("activation backward: dy " + dims(dy) + " does not match " + dims(r));
  if (from_y && !g_api->act_has_y_backward(act)) return bad("this activation's backward needs x");
  if (dt == ffi::DataType::F32)
    (from_y ? K<float>().act_backward_y : K<float>().act_backward_x)(
        act, ap, static_cast<const float*>(r.untyped_data()), static_cast<const float*>(dy.untyped_data()),
        static_cast<float*>(dx->untyped_data()), count(dy), last(dy));
  else
    (from_y ? K<double>().act_backward_y : K<double>().act_backward_x)(
        act, ap, static_cast<const double*>(r.untyped_data()), static_cast<const double*>(dy.untyped_data()),
        static_cast<double*>(dx->untyped_data()), count(dy), last(dy));
  return ffi::Error::Success();
}

// ---- losses, reduction "none" ---------------------------------------------------------
// kind: an elementwise loss code (cpu/kernels.h, Loss), or -1 cross_entropy, -2 nll
// (pred (..., C) with integer class indices of shape pred.shape[:-1]).

struct LossAttrs {
  int64_t kind;
  double delta, beta, eps;
  bool log_target, log_input, full;
  int64_t ignore_index;
  double label_smoothing;
};

ffi::Error loss_check(const LossAttrs& a, const ffi::AnyBuffer& pred, const ffi::AnyBuffer& target) {
  const auto dt = pred.element_type();
  if (!is_float(dt)) return bad("loss: pred must be float32 or float64");
  if (a.kind >= 0) {
    if (a.kind > static_cast<int64_t>(fastnn::Loss::log_cosh)) return bad("bad loss code");
    if (target.element_type() != dt || count(target) != count(pred)) return bad("loss: target does not match pred");
    return ffi::Error::Success();
  }
  if (a.kind < -2) return bad("bad loss code");
  const auto tt = target.element_type();
  if (tt != ffi::DataType::S32 && tt != ffi::DataType::S64) return bad("loss: class targets must be integers");
  if (pred.dimensions().size() < 1 || count(target) != rows(pred))
    return bad("loss: target " + dims(target) + " does not match pred " + dims(pred));
  return ffi::Error::Success();
}

// Class indices as int64, each one checked: in [0, C) or the ignore index.
ffi::Error class_targets(const LossAttrs& a, const ffi::AnyBuffer& target, int64_t cols, std::vector<int64_t>* out) {
  const int64_t n = count(target);
  out->resize(static_cast<size_t>(n));
  const bool wide = target.element_type() == ffi::DataType::S64;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = wide ? static_cast<const int64_t*>(target.untyped_data())[i]
                           : static_cast<const int32_t*>(target.untyped_data())[i];
    if (t != a.ignore_index && (t < 0 || t >= cols))
      return bad("class index " + std::to_string(t) + " is out of range [0, " + std::to_string(cols) + ")");
    (*out)[static_cast<size_t>(i)] = t;
  }
  return ffi::Error::Success();
}

template <class T> bool in_unit(const T* p, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!(p[i] >= T(0) && p[i] <= T(1))) return false;  // NaN too
  return true;
}
template <class T> T nan_max(T a, T b) { return std::isnan(a) || std::isnan(b) ? std::numeric_limits<T>::quiet_NaN() : (a > b ? a : b); }

// Keras' probability BCE takes any float (a loss-scale overflow, odd labels); the kernel
// keeps torch's domain [0, 1]. Outside it, fastnn/keras/_numpy.py's formula, elementwise.
template <class T> void bce_outside(const T* p, const T* t, const T* g, T* out, int64_t n, bool backward) {
  for (int64_t i = 0; i < n; ++i) {
    if (backward) {
      out[i] = g[i] * (p[i] - t[i]) / nan_max(p[i] * (T(1) - p[i]), T(1e-12));
    } else {
      out[i] = -(t[i] * nan_max(std::log(p[i]), T(-100)) + (T(1) - t[i]) * nan_max(std::log1p(-p[i]), T(-100)));
    }
  }
}

template <class T>
ffi::Error loss_run(const LossAttrs& a, const ffi::AnyBuffer* g, const ffi::AnyBuffer& pred,
                    const ffi::AnyBuffer& target, T* out) {
  const T* p = static_cast<const T*>(pred.untyped_data());
  const T* gp = g ? static_cast<const T*>(g->untyped_data()) : nullptr;
  if (a.kind >= 0) {
    const T* t = static_cast<const T*>(target.untyped_data());
    const int64_t n = count(pred);
    const auto k = static_cast<fastnn::Loss>(a.kind);
    if (k == fastnn::Loss::bce && !(in_unit(p, n) && in_unit(t, n))) {
      bce_outside(p, t, gp, out, n, g != nullptr);
      return ffi::Error::Success();
    }
    const fastnn::LossArgs<T> la{k, a.delta, a.beta, a.eps, a.log_target, a.log_input, a.full, nullptr, 0};
    if (g)
      K<T>().loss_backward(la, p, t, gp, 1.0, out, nullptr, n);
    else
      K<T>().loss_forward(la, p, t, out, n);
    return ffi::Error::Success();
  }
  const int64_t cols = last(pred), r = rows(pred);
  std::vector<int64_t> idx;
  if (auto e = class_targets(a, target, cols, &idx); e.failure()) return e;
  const fastnn::ClassArgs ca{a.kind == -2, a.ignore_index, a.label_smoothing};
  if (g)
    K<T>().class_backward(ca, p, idx.data(), nullptr, gp, 1.0, out, r, cols);
  else
    K<T>().class_forward(ca, p, idx.data(), nullptr, out, r, cols);
  return ffi::Error::Success();
}

ffi::Error LossImpl(const LossAttrs& a, const ffi::AnyBuffer* g, const ffi::AnyBuffer& pred,
                    const ffi::AnyBuffer& target, ffi::AnyBuffer& out) {
  if (auto e = loss_check(a, pred, target); e.failure()) return e;
  const auto dt = pred.element_type();
  const int64_t n_out = g ? count(pred) : (a.kind >= 0 ? count(pred) : rows(pred));
  if (out.element_type() != dt || count(out) != n_out) return bad("loss: result has the wrong size");
  if (g && (g->element_type() != dt || count(*g) != (a.kind >= 0 ? count(pred) : rows(pred))))
    return bad("loss backward: g has the wrong size");
  if (count(pred) == 0) return ffi::Error::Success();
  if (dt == ffi::DataType::F32) return loss_run<float>(a, g, pred, target, static_cast<float*>(out.untyped_data()));
  return loss_run<double>(a, g, pred, target, static_cast<double*>(out.untyped_data()));
}

ffi::Error LossFwd(ffi::AnyBuffer pred, ffi::AnyBuffer target, ffi::Result<ffi::AnyBuffer> out, int64_t kind,
                   double delta, double beta, double eps, bool log_target, bool log_input, bool full,
                   int64_t ignore_index, double label_smoothing) {
  const LossAttrs a{kind, delta, beta, eps, log_target, log_input, full, ignore_index, label_smoothing};
  return LossImpl(a, nullptr, pred, target, *out);
}

ffi::Error LossBwd(ffi::AnyBuffer g, ffi::AnyBuffer pred, ffi::AnyBuffer target, ffi::Result<ffi::AnyBuffer> out,
                   int64_t kind, double delta, double beta, double eps, bool log_target, bool log_input, bool full,
                   int64_t ignore_index, double label_smoothing) {
  const LossAttrs a{kind, delta, beta, eps, log_target, log_input, full, ignore_index, label_smoothing};
  return LossImpl(a, &g, pred, target, *out);
}

template <class B> auto act_attrs(B&& b) {
  return std::move(b).template Attr<int64_t>("act").template Attr<ffi::Span<const double>>("p").template Attr<int64_t>(
      "approx");
}
template <class B> auto loss_attrs(B&& b) {
  return std::move(b)
      .template Attr<int64_t>("kind")
      .template Attr<double>("delta")
      .template Attr<double>("beta")
      .template Attr<double>("eps")
      .template Attr<bool>("log_target")
      .template Attr<bool>("log_input")
      .template Attr<bool>("full")
      .template Attr<int64_t>("ignore_index")
      .template Attr<double>("label_smoothing");
}

}  // namespace

#define FASTNN_EXPORT extern "C" __attribute__((visibility("default")))

// 0 on success; -1: not fastnn's table or a table of another version (rebuild both).
FASTNN_EXPORT int fastnn_jax_init(const void* table) {
  const auto* api = static_cast<const fastnn::CpuApi*>(table);
  if (!api || api->version != fastnn::kCpuApiVersion || api->size != static_cast<int>(sizeof(fastnn::CpuApi)))
    return -1;
  g_api = api;
  return 0;
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(fastnn_dense_fwd, DenseFwd,
                              act_attrs(ffi::Ffi::Bind()
                                            .Arg<ffi::AnyBuffer>()
                                            .Arg<ffi::AnyBuffer>()
                                            .Arg<ffi::AnyBuffer>()
                                            .Ret<ffi::AnyBuffer>()
                                            .RemainingRets())
                                  .Attr<bool>("has_b"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(fastnn_dense_bwd_w, DenseBwdW,
                              act_attrs(ffi::Ffi::Bind()
                                            .Arg<ffi::AnyBuffer>()
                                            .Arg<ffi::AnyBuffer>()
                                            .Arg<ffi::AnyBuffer>()
                                            .Arg<ffi::AnyBuffer>()
                                            .Ret<ffi::AnyBuffer>()
                                            .RemainingRets())
                                  .Attr<bool>("from_y")
                                  .Attr<bool>("has_b"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(fastnn_dense_bwd_x, DenseBwdX,
                              ffi::Ffi::Bind().Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(fastnn_act_fwd, ActFwd,
                              act_attrs(ffi::Ffi::Bind().Arg<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>()));

XLA_FFI_DEFINE_HANDLER_SYMBOL(fastnn_act_bwd, ActBwd,
                              act_attrs(ffi::Ffi::Bind().Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>())
                                  .Attr<bool>("from_y"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(fastnn_loss_fwd, LossFwd,
                              loss_attrs(ffi::Ffi::Bind().Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>()));

XLA_FFI_DEFINE_HANDLER_SYMBOL(fastnn_loss_bwd, LossBwd,
                              loss_attrs(ffi::Ffi::Bind()
                                             .Arg<ffi::AnyBuffer>()
                                             .Arg<ffi::AnyBuffer>()
                                             .Arg<ffi::AnyBuffer>()
                                             .Ret<ffi::AnyBuffer>()));
