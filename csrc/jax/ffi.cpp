// ffi.cpp — fastnn's CPU kernels as XLA FFI handlers (the jax backend of fastnn.keras).
//
// Why: jax.pure_callback leaves the compiled step for Python on every call (three per
// Dense forward + backward). An XLA FFI custom call runs inside
// the compiled step: XLA hands the handler its input and output buffers and the kernel
// writes straight into XLA's memory. fastnn/keras/_jax.py builds this file on first
// use against jaxlib's headers (jax.ffi.include_dir()), registers the handlers with
// jax.ffi.register_ffi_target and calls them with jax.ffi.ffi_call inside jax.custom_vjp.
//
// Each handler turns XLA's buffers into front-end views and calls fastnn._C's front end
// (csrc/front/front.h, through its table csrc/cpu/api.h): the checks and kernels of the
// Python API, the same bits. Shapes and dtypes are checked in Python at trace time; the
// front end checks them again (a wrong call is an error, never an out-of-bounds access)
// and checks what only the data shows: class indices in range.
//
// Handlers (inputs -> results; attributes in brackets):
// Handlers (inputs -> results; attributes in brackets; act, p: ActSpec.code / numeric;
// kind, p: LossSpec.code / numeric):
//   fastnn_dense_fwd    x (..., in), w (in, out), b (out,) or 0-d -> y, [z]     [act, p, has_b]
//   fastnn_dense_bwd_w  dy, x, w, r (y or z, or dy) -> dw, [db], [dpre]         [act, p, from_y, has_b]
//   fastnn_dense_bwd_x  dpre (..., out), w (in, out) -> dx (..., in)
//   fastnn_act_fwd      x -> y                                                  [act, p]
//   fastnn_act_bwd      dy, r (y or x) -> dx                                    [act, p, from_y]
//   fastnn_loss_fwd     pred, target -> per-element (per-row) loss              [kind, p]
//   fastnn_loss_bwd     g, pred, target -> dpred                                [kind, p]
#include <cstdint>
#include <string>

#include "cpu/api.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
namespace F = fastnn::front;

namespace {

const fastnn::CpuApi* g_api = nullptr;
using Params = ffi::Span<const double>;

ffi::Error bad(const std::string& what) { return ffi::Error::InvalidArgument("fastnn (jax ffi): " + what); }
ffi::Error done(const F::Status& s) { return s.ok() ? ffi::Error::Success() : bad(s.msg); }

F::DType dtype_of(ffi::DataType t) {
  switch (t) {
    case ffi::DataType::F32: return F::DType::f32;
    case ffi::DataType::F64: return F::DType::f64;
    case ffi::DataType::F16: return F::DType::f16;  // 16-bit buffers reach the kernels as they
    case ffi::DataType::BF16: return F::DType::bf16;  // are: float32 math inside, rounded once
    case ffi::DataType::S32: return F::DType::i32;
    case ffi::DataType::S64: return F::DType::i64;
    default: return F::DType::other;
  }
}
F::View view(const ffi::AnyBuffer& b) {
  const auto d = b.dimensions();
  return F::View{b.untyped_data(), dtype_of(b.element_type()), static_cast<int>(d.size()), d.begin()};
}

// The i-th of the remaining results as a view, or an error.
ffi::Error extra(const ffi::RemainingRets& rest, size_t i, F::View* v) {
  if (i >= rest.size()) return bad("missing result");
  auto r = rest.get<ffi::AnyBuffer>(i);
  if (!r) return r.error();
  *v = view(**r);
  return ffi::Error::Success();
}

#define FFI_TRY(expr)                          \
  if (auto e_ = (expr); e_.failure()) return e_

ffi::Error act_of(int64_t code, Params p, F::ActArgs* a) { return done(g_api->decode_act(code, p.begin(), p.size(), a)); }

// ---- Dense ------------------------------------------------------------------------------

ffi::Error DenseFwd(ffi::AnyBuffer x, ffi::AnyBuffer w, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> y,
                    ffi::RemainingRets rest, int64_t code, Params p, bool has_b) {
  F::ActArgs a;
  FFI_TRY(act_of(code, p, &a));
  F::View z;
  if (!rest.empty()) FFI_TRY(extra(rest, 0, &z));
  const F::View bv = view(b);
  return done(g_api->dense_forward(a, view(x), view(w), false, has_b ? &bv : nullptr, view(*y),
                                   rest.empty() ? nullptr : &z));
}

ffi::Error DenseBwdW(ffi::AnyBuffer dy, ffi::AnyBuffer x, ffi::AnyBuffer w, ffi::AnyBuffer r,
                     ffi::Result<ffi::AnyBuffer> dw, ffi::RemainingRets rest, int64_t code, Params p, bool from_y,
                     bool has_b) {
  F::ActArgs a;
  FFI_TRY(act_of(code, p, &a));
  const bool linear = a.act == fastnn::Act::linear;
  F::View db, dpre;
  size_t i = 0;
  if (has_b) FFI_TRY(extra(rest, i++, &db));
  if (!linear) FFI_TRY(extra(rest, i++, &dpre));
  const F::View rv = view(r), dwv = view(*dw);
  return done(g_api->dense_backward(a, from_y, view(dy), view(x), view(w), false, &rv, nullptr, &dwv,
                                    has_b ? &db : nullptr, linear ? nullptr : &dpre));
}

// dx (..., in) = dpre (..., out) @ w^T: w (in, out) row-major is a torch-layout ("oi")
// weight of a layer out -> in.
ffi::Error DenseBwdX(ffi::AnyBuffer dpre, ffi::AnyBuffer w, ffi::Result<ffi::AnyBuffer> dx) {
  const F::ActArgs linear{fastnn::Act::linear, {}};
  return done(g_api->dense_forward(linear, view(dpre), view(w), true, nullptr, view(*dx), nullptr));
}

// ---- activations (softmax / log_softmax along the last axis) ----------------------------

ffi::Error ActFwd(ffi::AnyBuffer x, ffi::Result<ffi::AnyBuffer> y, int64_t code, Params p) {
  F::ActArgs a;
  FFI_TRY(act_of(code, p, &a));
  const F::View xv = view(x);
  return done(g_api->act_forward(a, xv, view(*y), xv.last()));
}

ffi::Error ActBwd(ffi::AnyBuffer dy, ffi::AnyBuffer r, ffi::Result<ffi::AnyBuffer> dx, int64_t code, Params p,
                  bool from_y) {
  F::ActArgs a;
  FFI_TRY(act_of(code, p, &a));
  const F::View rv = view(r);
  return done(g_api->act_backward(a, from_y, rv, view(dy), view(*dx), rv.last()));
}

// ---- losses, reduction "none" (Keras' BCE rule: any float) --------------------------------

ffi::Error Loss(const ffi::AnyBuffer* g, const ffi::AnyBuffer& pred, const ffi::AnyBuffer& target,
                const ffi::AnyBuffer& res, int64_t kind, Params p) {
  F::LossDesc d;
  FFI_TRY(done(g_api->decode_loss(kind, p.begin(), p.size(), &d)));
  const F::LossCall c{&d, view(pred), view(target), nullptr, true};
  const F::View out = view(res);
  if (!g) {
    double sum = 0;
    return done(g_api->loss_forward(c, &out, &sum));
  }
  const F::View gv = view(*g);
  return done(g_api->loss_backward(c, &gv, 1.0, out, nullptr));
}

ffi::Error LossFwd(ffi::AnyBuffer pred, ffi::AnyBuffer target, ffi::Result<ffi::AnyBuffer> res, int64_t kind,
                   Params p) {
  return Loss(nullptr, pred, target, *res, kind, p);
}

ffi::Error LossBwd(ffi::AnyBuffer g, ffi::AnyBuffer pred, ffi::AnyBuffer target, ffi::Result<ffi::AnyBuffer> res,
                   int64_t kind, Params p) {
  return Loss(&g, pred, target, *res, kind, p);
}

template <class B> auto act_attrs(B&& b) {
  return std::move(b).template Attr<int64_t>("act").template Attr<Params>("p");
}
template <class B> auto loss_attrs(B&& b) {
  return std::move(b).template Attr<int64_t>("kind").template Attr<Params>("p");
}
using ffi::AnyBuffer;

}  // namespace

// 0 on success; -1: not fastnn's table or a table of another build (rebuild both).
extern "C" __attribute__((visibility("default"))) int fastnn_jax_init(const void* table) {
  g_api = F::connect(table);
  return g_api ? 0 : -1;
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    fastnn_dense_fwd, DenseFwd,
    act_attrs(ffi::Ffi::Bind().Arg<AnyBuffer>().Arg<AnyBuffer>().Arg<AnyBuffer>().Ret<AnyBuffer>().RemainingRets())
        .Attr<bool>("has_b"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(fastnn_dense_bwd_w, DenseBwdW,
                              act_attrs(ffi::Ffi::Bind()
                                            .Arg<AnyBuffer>()
                                            .Arg<AnyBuffer>()
                                            .Arg<AnyBuffer>()
                                            .Arg<AnyBuffer>()
                                            .Ret<AnyBuffer>()
                                            .RemainingRets())
                                  .Attr<bool>("from_y")
                                  .Attr<bool>("has_b"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(fastnn_dense_bwd_x, DenseBwdX,
                              ffi::Ffi::Bind().Arg<AnyBuffer>().Arg<AnyBuffer>().Ret<AnyBuffer>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(fastnn_act_fwd, ActFwd, act_attrs(ffi::Ffi::Bind().Arg<AnyBuffer>().Ret<AnyBuffer>()));

XLA_FFI_DEFINE_HANDLER_SYMBOL(fastnn_act_bwd, ActBwd,
                              act_attrs(ffi::Ffi::Bind().Arg<AnyBuffer>().Arg<AnyBuffer>().Ret<AnyBuffer>())
                                  .Attr<bool>("from_y"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(fastnn_loss_fwd, LossFwd,
                              loss_attrs(ffi::Ffi::Bind().Arg<AnyBuffer>().Arg<AnyBuffer>().Ret<AnyBuffer>()));

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    fastnn_loss_bwd, LossBwd,
    loss_attrs(ffi::Ffi::Bind().Arg<AnyBuffer>().Arg<AnyBuffer>().Arg<AnyBuffer>().Ret<AnyBuffer>()));
