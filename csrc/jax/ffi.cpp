// ffi.cpp — fastnn's CPU kernels as XLA FFI handlers (the jax backend of fastnn.keras).
//
// Why: jax.pure_callback leaves the compiled step for Python on every call (~110 us per
// callback here, three per Dense forward + backward). An XLA FFI custom call runs inside
// the compiled step: XLA hands the handler its input and output buffers and the kernel
// writes straight into XLA's memory. fastnn/keras/_jax_ffi.py builds this file on first
// use against jaxlib's headers (jax.ffi.include_dir()), registers the handlers with
// jax.ffi.register_ffi_target and calls them with jax.ffi.ffi_call inside jax.custom_vjp.
//
// The work is csrc/host/ops.h's (shared with the TensorFlow ops), on fastnn._C's kernels
// through its C++ table: the same code and bits as the Python API. Shapes and dtypes are
// checked in Python at trace time; the handlers check them again (a wrong call is an
// error, never an out-of-bounds access) and check what only the data shows: class
// indices in range.
//
// Handlers (inputs -> results; attributes in brackets):
//   fastnn_dense_fwd    x (..., in), w (in, out), b (out,) or 0-d -> y, [z]     [act, p, approx, has_b]
//   fastnn_dense_bwd_w  dy, x, w, r (y or z, or 0-d) -> dw, [db], [dpre]        [act, p, approx, from_y, has_b]
//   fastnn_dense_bwd_x  dpre (..., out), w (in, out) -> dx (..., in)
//   fastnn_act_fwd      x -> y                                                  [act, p, approx]
//   fastnn_act_bwd      dy, r (y or x) -> dx                                    [act, p, approx, from_y]
//   fastnn_loss_fwd     pred, target -> per-element (per-row) loss              [loss attributes]
//   fastnn_loss_bwd     g, pred, target -> dpred                                [loss attributes]
#include <cstdint>
#include <string>

#include "host/ops.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
namespace H = fastnn::host;

namespace {

ffi::Error bad(const std::string& what) { return ffi::Error::InvalidArgument("fastnn (jax ffi): " + what); }
ffi::Error ok_or(const std::string& what) { return what.empty() ? ffi::Error::Success() : bad(what); }

int64_t rows(const ffi::AnyBuffer& b) {  // prod(shape[:-1])
  auto d = b.dimensions();
  int64_t m = 1;
  for (size_t i = 0; i + 1 < d.size(); ++i) m *= d[i];
  return m;
}
int64_t last(const ffi::AnyBuffer& b) { auto d = b.dimensions(); return d.size() ? d.back() : 1; }
int64_t count(const ffi::AnyBuffer& b) { return static_cast<int64_t>(b.element_count()); }
bool is_float(ffi::DataType t) { return t == ffi::DataType::F32 || t == ffi::DataType::F64; }
bool f32(ffi::DataType t) { return t == ffi::DataType::F32; }
template <class T> const T* in(const ffi::AnyBuffer& b) { return static_cast<const T*>(b.untyped_data()); }
template <class T> T* out(const ffi::AnyBuffer& b) { return static_cast<T*>(b.untyped_data()); }

std::string dims(const ffi::AnyBuffer& b) {
  std::string s = "(";
  for (int64_t d : b.dimensions()) s += std::to_string(d) + ",";
  return s + ")";
}

ffi::Error act_of(int64_t code, ffi::Span<const double> p, int64_t approx, fastnn::Act* act, fastnn::ActParams* ap) {
  return ok_or(H::act_of(code, p.begin(), p.size(), approx, act, ap));
}

// The i-th of the remaining results (a buffer of `n` elements of `dt`), or an error.
ffi::Error extra(const ffi::RemainingRets& rest, size_t i, ffi::DataType dt, int64_t n, void** ptr) {
  if (i >= rest.size()) return bad("missing result");
  auto r = rest.get<ffi::AnyBuffer>(i);
  if (!r) return r.error();
  if ((*r)->element_type() != dt || count(**r) != n) return bad("result of the wrong size or dtype");
  *ptr = (*r)->untyped_data();
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
  if (f32(dt))
    H::dense_fwd<float>(act, ap, in<float>(x), in<float>(w), has_b ? in<float>(b) : nullptr, out<float>(*y),
                        static_cast<float*>(z), m, k, n);
  else
    H::dense_fwd<double>(act, ap, in<double>(x), in<double>(w), has_b ? in<double>(b) : nullptr, out<double>(*y),
                         static_cast<double*>(z), m, k, n);
  return ffi::Error::Success();
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
  if (H::needs_x(act, from_y)) return bad("this activation's backward needs z");
  void *db = nullptr, *dpre = nullptr;
  size_t i = 0;
  if (has_b)
    if (auto e = extra(rest, i++, dt, n, &db); e.failure()) return e;
  if (!linear)
    if (auto e = extra(rest, i++, dt, m * n, &dpre); e.failure()) return e;
  if (f32(dt))
    H::dense_bwd_w<float>(act, ap, from_y, in<float>(dy), in<float>(x), in<float>(w), in<float>(r), out<float>(*dw),
                          static_cast<float*>(db), static_cast<float*>(dpre), m, k, n);
  else
    H::dense_bwd_w<double>(act, ap, from_y, in<double>(dy), in<double>(x), in<double>(w), in<double>(r),
                           out<double>(*dw), static_cast<double*>(db), static_cast<double*>(dpre), m, k, n);
  return ffi::Error::Success();
}

ffi::Error DenseBwdX(ffi::AnyBuffer dpre, ffi::AnyBuffer w, ffi::Result<ffi::AnyBuffer> dx) {
  const auto dt = dpre.element_type();
  if (!is_float(dt) || w.element_type() != dt || dx->element_type() != dt) return bad("dense dx: dtypes differ");
  if (w.dimensions().size() != 2 || dpre.dimensions().size() < 1 || w.dimensions()[1] != last(dpre))
    return bad("dense dx: dy " + dims(dpre) + " does not match w " + dims(w));
  const int64_t m = rows(dpre), k = w.dimensions()[0], n = w.dimensions()[1];
  if (count(*dx) != m * k) return bad("dense dx: dx has the wrong size");
  if (f32(dt))
    H::dense_bwd_x<float>(in<float>(dpre), in<float>(w), out<float>(*dx), m, k, n);
  else
    H::dense_bwd_x<double>(in<double>(dpre), in<double>(w), out<double>(*dx), m, k, n);
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
  if (f32(dt))
    H::act_fwd<float>(act, ap, in<float>(x), out<float>(*y), count(x), last(x));
  else
    H::act_fwd<double>(act, ap, in<double>(x), out<double>(*y), count(x), last(x));
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
  if (H::needs_x(act, from_y)) return bad("this activation's backward needs x");
  if (f32(dt))
    H::act_bwd<float>(act, ap, from_y, in<float>(dy), in<float>(r), out<float>(*dx), count(dy), last(dy));
  else
    H::act_bwd<double>(act, ap, from_y, in<double>(dy), in<double>(r), out<double>(*dx), count(dy), last(dy));
  return ffi::Error::Success();
}

// ---- losses, reduction "none" -------------------------------------------------------------

template <class T>
ffi::Error loss_run(const H::LossAttrs& a, const ffi::AnyBuffer* g, const ffi::AnyBuffer& pred,
                    const ffi::AnyBuffer& target, const ffi::AnyBuffer& res) {
  const T* gp = g ? in<T>(*g) : nullptr;
  if (a.kind >= 0) {
    H::loss_elementwise<T>(a, gp, in<T>(pred), in<T>(target), out<T>(res), count(pred));
    return ffi::Error::Success();
  }
  if (target.element_type() == ffi::DataType::S64)
    return ok_or(H::loss_class<T, int64_t>(a, gp, in<T>(pred), in<int64_t>(target), out<T>(res), rows(pred), last(pred)));
  return ok_or(H::loss_class<T, int32_t>(a, gp, in<T>(pred), in<int32_t>(target), out<T>(res), rows(pred), last(pred)));
}

ffi::Error LossImpl(const H::LossAttrs& a, const ffi::AnyBuffer* g, const ffi::AnyBuffer& pred,
                    const ffi::AnyBuffer& target, const ffi::AnyBuffer& res) {
  if (auto e = ok_or(H::loss_kind_ok(a.kind)); e.failure()) return e;
  const auto dt = pred.element_type();
  if (!is_float(dt)) return bad("loss: pred must be float32 or float64");
  const bool elementwise = a.kind >= 0;
  if (elementwise && (target.element_type() != dt || count(target) != count(pred)))
    return bad("loss: target " + dims(target) + " does not match pred " + dims(pred));
  if (!elementwise && (target.element_type() != ffi::DataType::S32 && target.element_type() != ffi::DataType::S64))
    return bad("loss: class targets must be int32 or int64");
  if (!elementwise && (pred.dimensions().size() < 1 || count(target) != rows(pred)))
    return bad("loss: target " + dims(target) + " does not match pred " + dims(pred));
  const int64_t per = elementwise ? count(pred) : rows(pred);
  if (res.element_type() != dt || count(res) != (g ? count(pred) : per)) return bad("loss: result has the wrong size");
  if (g && (g->element_type() != dt || count(*g) != per)) return bad("loss backward: g has the wrong size");
  return f32(dt) ? loss_run<float>(a, g, pred, target, res) : loss_run<double>(a, g, pred, target, res);
}

ffi::Error LossFwd(ffi::AnyBuffer pred, ffi::AnyBuffer target, ffi::Result<ffi::AnyBuffer> res, int64_t kind,
                   double delta, double beta, double eps, bool log_target, bool log_input, bool full,
                   int64_t ignore_index, double label_smoothing) {
  const H::LossAttrs a{kind, delta, beta, eps, log_target, log_input, full, ignore_index, label_smoothing};
  return LossImpl(a, nullptr, pred, target, *res);
}

ffi::Error LossBwd(ffi::AnyBuffer g, ffi::AnyBuffer pred, ffi::AnyBuffer target, ffi::Result<ffi::AnyBuffer> res,
                   int64_t kind, double delta, double beta, double eps, bool log_target, bool log_input, bool full,
                   int64_t ignore_index, double label_smoothing) {
  const H::LossAttrs a{kind, delta, beta, eps, log_target, log_input, full, ignore_index, label_smoothing};
  return LossImpl(a, &g, pred, target, *res);
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

// 0 on success; -1: not fastnn's table or a table of another version (rebuild both).
extern "C" __attribute__((visibility("default"))) int fastnn_jax_init(const void* table) {
  return H::init(table) ? 0 : -1;
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
