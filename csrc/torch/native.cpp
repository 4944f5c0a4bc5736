// native.cpp — fastnn.torch's autograd nodes in C++ (the module fastnn.torch._native), and
// the CPU kernels of the custom ops fastnn::* that compiled / exported graphs call
// (section "the custom ops" below; both run the same forward / backward functions).
//
// Why: a Python torch.autograd.Function has a fixed cost per forward + backward before
// any work is done, most of a tiny layer's time (examples/torch_overhead.py). These
// C++ twins of fastnn/torch/_ops.py's Dense, Activation and Loss Functions build their
// graph nodes and run backward without Python. They call fastnn._C's front end
// (csrc/front/front.h, through its table csrc/cpu/api.h) with the same arrays the Python
// path hands them (C-contiguous, w in the layout it comes in), so results are bit-identical
// to the Python path. float16 / bfloat16 tensors run on the 16-bit kernels directly (the
// front end's DType::f16 / bf16): no float32 copy is made here.
//
// Each entry point takes what fastnn.torch already resolved (a spec registered once,
// referenced by id) and returns None when the call is not one it serves (CUDA tensors,
// other dtypes, shapes or values the public API must check, weights): the caller then
// takes the Python path, which runs the same kernels or raises the public API's error.
//
// Backward is once-differentiable, as in the Python Functions: with create_graph its
// results carry a node that raises if differentiated again.
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/functions/basic_ops.h>
#include <torch/csrc/utils/pybind.h>
#include <torch/library.h>

#include <cstdint>
#include <deque>
#include <limits>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include <ATen/Parallel.h>

#include "cpu/api.h"

namespace py = pybind11;
namespace F = fastnn::front;
using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Named (not anonymous): autograd shows the nodes as CppNode<fastnn_torch::DenseFn> etc.
namespace fastnn_torch {

const fastnn::CpuApi* g_api = nullptr;

// ---- specs: registered once by fastnn/torch/_native.py, then referenced by index ------
constexpr int64_t kNoAxis = std::numeric_limits<int64_t>::min();

struct ActSpec {
  F::ActArgs a;
  bool from_y;   // backward reads y (else x, or z for Dense)
  int64_t axis;  // softmax / log_softmax axis, kNoAxis for elementwise activations
};

// Deques: a registered spec never moves, so readers need no lock.
std::mutex g_spec_mutex;
std::deque<ActSpec> g_act;
std::deque<F::LossDesc> g_loss;

const ActSpec& act_spec(int64_t id) { return g_act.at(static_cast<size_t>(id)); }
const F::LossDesc& loss_spec(int64_t id) { return g_loss.at(static_cast<size_t>(id)); }

// ---- tensors <-> the front end --------------------------------------------------------
F::DType dtype_of(const Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return F::DType::f32;
    case at::kDouble: return F::DType::f64;
    case at::kInt: return F::DType::i32;
    case at::kLong: return F::DType::i64;
    case at::kHalf: return F::DType::f16;
    case at::kBFloat16: return F::DType::bf16;
    default: return F::DType::other;
  }
}
F::View view(const Tensor& t) {  // t: a defined CPU tensor
  return F::View{t.data_ptr(), dtype_of(t), static_cast<int>(t.dim()), t.sizes().data(), t.is_contiguous(), true};
}
struct Opt {  // null where t is undefined
  F::View v;
  const F::View* p = nullptr;
  explicit Opt(const Tensor& t) {
    if (t.defined()) v = view(t), p = &v;
  }
};
void check(const F::Status& s) { TORCH_CHECK_VALUE(s.ok(), "fastnn.torch._native: ", s.msg); }

// ---- threads: the kernels run on torch's intra-op pool -----------------------------------
// After each parallel torch op, torch's OpenMP workers spin for a while (GOMP's default
// wait policy) before they sleep. fastnn's own threads and OpenBLAS's, started then, share
// the cores with them (twice as slow between torch ops as with OMP_WAIT_POLICY=PASSIVE;
// docs/performance.md, "Threads and pools"). So inside these nodes fastnn's
// parallel_for and OpenBLAS's jobs (through its threads callback) run on torch's pool:
// the spinning workers take them at once. FASTNN_TORCH_SHARED_THREADS=0 turns it off.
bool g_share_threads = false;

// fastnn's executor contract: every job on its own thread, all at once (OpenBLAS's GEMM
// jobs wait for one another). at::parallel_for with grain 1 gives each job its own
// OpenMP thread when the team is as large as asked; if it ever is not, the jobs a thread
// got beyond its first run on threads started here, so none waits on a job not yet running.
void torch_exec(void*, int n, fastnn::JobFn job, void* jctx) {
  at::parallel_for(0, n, 1, [&](int64_t b, int64_t e) {
    std::vector<std::thread> extra;
    for (int64_t i = b + 1; i < e; ++i) extra.emplace_back([=] { job(jctx, static_cast<int>(i)); });
    job(jctx, static_cast<int>(b));
    for (auto& t : extra) t.join();
  });
}

// The team size torch_exec may use now on this thread (<= 1: not at all).
int torch_team(void*) { return at::in_parallel_region() ? 1 : at::get_num_threads(); }

struct TorchThreads : F::ThreadScope {  // for the scope of one node's kernels, on this thread
  TorchThreads()
      : F::ThreadScope(*g_api, g_share_threads && !at::in_parallel_region() && at::get_num_threads() > 1,
                       &torch_exec, nullptr, at::get_num_threads(), true) {}
};

// An uninitialized output (front end's allocation policy): large ones from fastnn's buffer
// cache, given back when torch frees the tensor.
Tensor out_empty(at::IntArrayRef sizes, const at::TensorOptions& opt) {
  size_t n = 1;
  for (int64_t d : sizes) n *= static_cast<size_t>(d);
  return F::pooled_or(
      *g_api, F::checked_bytes(n, opt.dtype().itemsize()), [&] { return at::empty(sizes, opt); },
      [&](void* p, size_t block, void (*release)(void*, size_t)) {
        return at::from_blob(p, sizes, [release, block](void* q) { release(q, block); }, opt);
      });
}
Tensor out_like(const Tensor& t) { return out_empty(t.sizes(), t.options()); }

// The kernels' float dtypes: float32, float64, and float16 / bfloat16 natively (16-bit
// storage, float32 arithmetic, each output rounded once to the dtype). Every tensor a node
// saves for backward is one of its inputs or outputs, so it keeps the input's dtype.
bool kernel_dtype(const Tensor& t) {
  const auto st = t.scalar_type();
  return t.device().is_cpu() && t.layout() == at::kStrided &&
         (st == at::kFloat || st == at::kDouble || st == at::kBFloat16 || st == at::kHalf);
}
bool same_kind(const Tensor& t, const Tensor& ref) {
  return t.device().is_cpu() && t.layout() == at::kStrided && t.scalar_type() == ref.scalar_type();
}
// softmax / log_softmax: served only along the last axis (what the kernels compute)
bool last_axis(const ActSpec& s, int64_t nd) {
  return s.axis == kNoAxis || (nd > 0 && s.axis >= -nd && s.axis < nd && (s.axis + nd) % nd == nd - 1);
}

// dy * f'(.) may be asked for twice only through DelayedError, as once_differentiable does.
variable_list once_differentiable(variable_list grads_in, variable_list out) {
  if (!at::GradMode::is_enabled()) return out;
  bool any = false;
  for (const auto& g : grads_in) any = any || (g.defined() && g.requires_grad());
  if (!any) return out;
  for (auto& v : out) {
    if (v.defined()) {
      v = v.detach();
      v.set_requires_grad(true);
    }
  }
  auto err = std::make_shared<torch::autograd::DelayedError>(
      "trying to differentiate twice a function that was marked with @once_differentiable",
      static_cast<int64_t>(out.size()));
  return (*err)(std::move(out));
}

// ---- Dense: y = act(x @ w.T + b); x (..., in), w (out, in), b (out,) --------------------

// w as the kernel takes it: C-contiguous (out, in), or its transpose when w is a
// Fortran-order (transposed) view; otherwise a contiguous copy (as _kernels._dense_arrays).
struct WView {
  Tensor w;
  bool w_oi, flipped;
};
WView w_view(const Tensor& w) {
  if (w.is_contiguous()) return {w, true, false};
  Tensor wt = w.t();
  if (wt.is_contiguous()) return {wt, false, true};
  return {w.contiguous(), true, false};
}

// The computation, shared by the autograd node and the op kernel fastnn::dense (one path).
// y, and z (the pre-activation) where backward reads it (need_z), else undefined.
std::pair<Tensor, Tensor> dense_forward(const ActSpec& s, const Tensor& x, const Tensor& w, const Tensor& b) {
  const int64_t n = w.size(0);
  const Tensor xc = x.contiguous(), bc = b.defined() ? b.contiguous() : b;
  const WView wv = w_view(w);
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = n;
  const bool need_z = s.a.act != fastnn::Act::linear && !s.from_y;
  Tensor y = out_empty(shape, x.options()), z = need_z ? out_empty(shape, x.options()) : Tensor();
  TorchThreads threads;
  const Opt bo(bc), zo(z);
  check(g_api->dense_forward(s.a, view(xc), view(wv.w), wv.w_oi, bo.p, view(y), zo.p));
  return {y, z};
}

// zy: z, or y where the activation's backward reads y (s.from_y); undefined for linear.
// dw comes in w's layout (a transposed view when w is one).
std::tuple<Tensor, Tensor, Tensor> dense_backward(const ActSpec& s, const Tensor& dy_, const Tensor& x,
                                                  const Tensor& w, const Tensor& zy, bool need_dx, bool need_dw,
                                                  bool need_db) {
  const Tensor xc = x.contiguous(), dy = dy_.contiguous(), zyc = zy.defined() ? zy.contiguous() : zy;
  const WView wv = w_view(w);
  Tensor dx = need_dx ? out_like(xc) : Tensor(), dw = need_dw ? out_like(wv.w) : Tensor();
  Tensor db = need_db ? at::empty({w.size(0)}, x.options()) : Tensor();
  {
    TorchThreads threads;
    const Opt zo(zyc), dxo(dx), dwo(dw), dbo(db);
    check(g_api->dense_backward(s.a, s.from_y, view(dy), view(xc), view(wv.w), wv.w_oi, zo.p, dxo.p, dwo.p, dbo.p,
                                nullptr));
  }
  if (need_dw && wv.flipped) dw = dw.t();
  return {dx, dw, db};
}

struct DenseFn : public torch::autograd::Function<DenseFn> {
  // b: an optional (Function::apply takes no undefined tensor as an input)
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& w, const std::optional<Tensor>& b_opt,
                        int64_t id) {
    const Tensor b = b_opt.value_or(Tensor());
    const ActSpec& s = act_spec(id);
    auto [y, z] = dense_forward(s, x, w, b);
    ctx->saved_data["id"] = id;
    ctx->saved_data["has_b"] = b.defined();
    const bool keep_y = s.a.act != fastnn::Act::linear && s.from_y;
    ctx->save_for_backward({x, w, keep_y ? y : Tensor(), z});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();  // throws if any was modified in place
    const ActSpec& s = act_spec(ctx->saved_data["id"].toInt());
    const bool need_db = ctx->saved_data["has_b"].toBool() && ctx->needs_input_grad(2);
    auto [dx, dw, db] = dense_backward(s, grads[0], saved[0], saved[1], s.from_y ? saved[2] : saved[3],
                                       ctx->needs_input_grad(0), ctx->needs_input_grad(1), need_db);
    return once_differentiable(grads, {dx, dw, db, Tensor()});
  }
};

// The calls the kernels serve (else the public API decides, and raises its error).
bool dense_ok(const Tensor& x, const Tensor& w, const Tensor& b, const ActSpec& s) {
  return kernel_dtype(x) && same_kind(w, x) && x.dim() >= 1 && w.dim() == 2 && w.size(1) == x.size(-1) &&
         (!b.defined() || (same_kind(b, x) && b.dim() == 1 && b.size(0) == w.size(0))) && last_axis(s, x.dim());
}

py::object dense(const Tensor& x, const Tensor& w, const std::optional<Tensor>& b_opt, int64_t id) {
  const Tensor b = b_opt.value_or(Tensor());  // None, or a tensor (never an undefined one)
  if (!dense_ok(x, w, b, act_spec(id))) return py::none();
  Tensor y;
  {
    py::gil_scoped_release nogil;
    y = DenseFn::apply(x, w, b_opt, id);
  }
  return py::cast(y);
}

// ---- activations: y = f(x), any shape ---------------------------------------------------

Tensor act_forward(const ActSpec& s, const Tensor& x) {
  const Tensor xc = x.contiguous();
  Tensor y = out_like(xc);
  TorchThreads threads;
  const F::View xv = view(xc);
  check(g_api->act_forward(s.a, xv, view(y), xv.last()));
  return y;
}

// src: y where the activation's backward reads y (s.from_y), else x.
Tensor act_backward(const ActSpec& s, const Tensor& dy_, const Tensor& src_) {
  const Tensor src = src_.contiguous(), dy = dy_.contiguous();
  Tensor dx = out_like(src);
  TorchThreads threads;
  const F::View sv = view(src);
  check(g_api->act_backward(s.a, s.from_y, sv, view(dy), view(dx), sv.last()));
  return dx;
}

struct ActFn : public torch::autograd::Function<ActFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, int64_t id) {
    const ActSpec& s = act_spec(id);
    Tensor y = act_forward(s, x);
    ctx->saved_data["id"] = id;
    ctx->save_for_backward({s.from_y ? y : x});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const ActSpec& s = act_spec(ctx->saved_data["id"].toInt());
    return once_differentiable(grads, {act_backward(s, grads[0], saved[0]), Tensor()});
  }
};

py::object activation(const Tensor& x, int64_t id) {
  if (!kernel_dtype(x) || !last_axis(act_spec(id), x.dim())) return py::none();
  Tensor y;
  {
    py::gil_scoped_release nogil;
    y = ActFn::apply(x, id);
  }
  return py::cast(y);
}

// ---- losses -------------------------------------------------------------------------------
// pred and target: one shape (elementwise), or pred (..., C) with int64 class indices of
// shape pred.shape[:-1] (cross_entropy / nll, class axis last: the functional moved it).
// pc, tc: contiguous.
F::LossCall call_of(const F::LossDesc& d, const Tensor& pc, const Tensor& tc) {
  return F::LossCall{&d, view(pc), view(tc)};
}

// (the loss: per element / row for reduction none, else a 0-d tensor; the denominator
// of mean / batchmean)
std::pair<Tensor, double> loss_forward(const F::LossDesc& d, const Tensor& pred, const Tensor& target,
                                       int64_t reduction) {
  const Tensor pc = pred.contiguous(), tc = target.contiguous();
  const F::LossCall c = call_of(d, pc, tc);
  const double denom = g_api->loss_denominator(c, static_cast<int>(reduction));
  const auto none_shape = d.is_class ? pred.sizes().slice(0, pred.dim() - 1) : pred.sizes();
  Tensor per = reduction == F::kNone ? out_empty(none_shape, pred.options()) : Tensor();
  double sum = 0;
  {
    TorchThreads threads;
    const Opt po(per);
    check(g_api->loss_forward(c, po.p, &sum));
  }
  if (reduction == F::kNone) return {per, denom};
  // rounded once to the dtype, as np.asarray(value, dtype)
  return {at::scalar_tensor(F::loss_reduce(sum, static_cast<int>(reduction), denom), pred.options()), denom};
}

// d loss / d pred for the upstream gradient g (0-d for a reduced loss), pred's shape.
Tensor loss_backward(const F::LossDesc& d, const Tensor& pred, const Tensor& target, const Tensor& g, int red,
                     double denom) {
  const Tensor pc = pred.contiguous(), tc = target.contiguous();
  const bool scalar = red != F::kNone || g.dim() == 0;
  const double gs = scalar ? F::loss_grad_scale(g.item<double>(), red, denom) : 1.0;
  const Tensor gc = scalar ? Tensor() : g.contiguous();
  Tensor dpred = out_like(pc);
  {
    TorchThreads threads;
    const Opt go(gc);
    check(g_api->loss_backward(call_of(d, pc, tc), go.p, gs, view(dpred), nullptr));
  }
  return dpred.view(pred.sizes());
}

struct LossFn : public torch::autograd::Function<LossFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& pred, const Tensor& target, int64_t id,
                        int64_t reduction) {
    auto [out, denom] = loss_forward(loss_spec(id), pred, target, reduction);
    ctx->saved_data["id"] = id;
    ctx->saved_data["reduction"] = reduction;
    ctx->saved_data["denom"] = denom;
    ctx->save_for_backward({pred, target});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    if (!ctx->needs_input_grad(0)) return {Tensor(), Tensor(), Tensor(), Tensor()};
    const Tensor dpred = loss_backward(loss_spec(ctx->saved_data["id"].toInt()), saved[0], saved[1], grads[0],
                                       static_cast<int>(ctx->saved_data["reduction"].toInt()),
                                       ctx->saved_data["denom"].toDouble());
    return once_differentiable(grads, {dpred, Tensor(), Tensor(), Tensor()});
  }
};

// The calls served: what the front end accepts, bce inside its domain, some class target
// not ignored; else the public API decides (and raises its error).
bool loss_ok(const F::LossDesc& d, const Tensor& pred, const Tensor& target, int64_t reduction) {
  if (!kernel_dtype(pred) || target.requires_grad() || pred.numel() == 0) return false;
  if (reduction < F::kNone || reduction > F::kBatchMean || (reduction == F::kBatchMean && d.is_class)) return false;
  if (d.is_class ? !(pred.dim() >= 1 && target.device().is_cpu() && target.scalar_type() == at::kLong &&
                     target.sizes() == pred.sizes().slice(0, pred.dim() - 1))
                 : !(same_kind(target, pred) && target.sizes() == pred.sizes()))
    return false;
  const Tensor pc = pred.contiguous(), tc = target.contiguous();
  const F::LossCall c = call_of(d, pc, tc);
  return g_api->loss_check(c).ok() && g_api->loss_in_domain(c) && (!d.is_class || g_api->loss_denominator(c, F::kMean) > 0);
}

py::object loss(const Tensor& pred, const Tensor& target, int64_t id, int64_t reduction) {
  if (!loss_ok(loss_spec(id), pred, target, reduction)) return py::none();
  Tensor out;
  {
    py::gil_scoped_release nogil;
    out = LossFn::apply(pred, target, id, reduction);
  }
  return py::cast(out);
}

// ---- the custom ops fastnn::* (torch.compile, torch.export, AOTInductor) ------------------
// Their schemas, fake (meta) implementations and autograd formulas are declared once, in
// fastnn/torch/_ops.py (torch.library.custom_op), whose Python implementation serves every
// device. init() registers these kernels for the CPU dispatch key over it, so a compiled
// or exported graph calls the kernels directly, on torch's intra-op pool, as the nodes
// above do (the same functions). A call they do not serve (class weights, pos_weight, a
// target gradient, values the public API must check and refuse) goes to the Python
// implementation (_ops._<op>_py), which runs the same kernels or raises the public error.
//
// The ops carry the activation / loss as strings (name, reduction, _ops.encode(params)):
// a spec is resolved by Python once per distinct string (_ops.native_spec, under the
// GIL) and then looked up here. Outputs are fresh, C-contiguous and alias no input, as the
// fakes declare; an output not asked for is a (0,) placeholder.

struct Resolved {
  int64_t id;         // the spec's id (act_spec / loss_spec), -1: not served here
  int64_t reduction;  // losses: front::Reduction
};
std::mutex g_key_mutex;
std::unordered_map<std::string, Resolved> g_keys;

Resolved resolve(char kind, std::string_view name, std::string_view reduction, std::string_view params) {
  std::string key(1, kind);
  key.append(1, '\x1f').append(name).append(1, '\x1f').append(reduction).append(1, '\x1f').append(params);
  {
    std::lock_guard<std::mutex> lock(g_key_mutex);
    auto it = g_keys.find(key);
    if (it != g_keys.end()) return it->second;
  }
  Resolved r;
  {
    py::gil_scoped_acquire gil;
    auto t = py::module_::import("fastnn.torch._ops")
                 .attr("native_spec")(std::string(1, kind), name, reduction, params)
                 .cast<std::pair<int64_t, int64_t>>();
    r = {t.first, t.second};
  }
  std::lock_guard<std::mutex> lock(g_key_mutex);
  return g_keys.emplace(std::move(key), r).first->second;
}

template <class R, class... Args>
R python_impl(const char* fn, const Args&... args) {
  py::gil_scoped_acquire gil;
  return py::module_::import("fastnn.torch._ops").attr(fn)(args...).template cast<R>();
}

struct NoGil {  // the kernels run without the GIL when the caller held it
  std::optional<py::gil_scoped_release> r;
  NoGil() {
    if (PyGILState_Check()) r.emplace();
  }
};

Tensor or_placeholder(const Tensor& t, const Tensor& like) {
  if (!t.defined()) return at::empty({0}, like.options());
  return t.is_contiguous() ? t : t.contiguous();
}

using Str = c10::string_view;
using OptT = std::optional<Tensor>;

std::tuple<Tensor, Tensor> dense_op(const Tensor& x, const Tensor& w, const OptT& b, Str act, Str params) {
  const Resolved r = resolve('d', act, "", params);
  const Tensor bt = b.value_or(Tensor());
  if (r.id < 0 || !dense_ok(x, w, bt, act_spec(r.id)))
    return python_impl<std::tuple<Tensor, Tensor>>("_dense_py", x, w, b, act, params);
  NoGil nogil;
  auto [y, z] = dense_forward(act_spec(r.id), x, w, bt);
  return {y, or_placeholder(z, x)};
}

std::tuple<Tensor, Tensor, Tensor> dense_backward_op(const Tensor& dy, const Tensor& x, const Tensor& w,
                                                     const OptT& y, const OptT& z, Str act, Str params,
                                                     bool need_dx, bool need_dw, bool need_db) {
  const Resolved r = resolve('d', act, "", params);
  if (r.id >= 0 && dense_ok(x, w, Tensor(), act_spec(r.id)) && same_kind(dy, x)) {
    const ActSpec& s = act_spec(r.id);
    const Tensor zy = (s.from_y ? y : z).value_or(Tensor());
    if (s.a.act == fastnn::Act::linear || (zy.defined() && same_kind(zy, x))) {
      NoGil nogil;
      auto [dx, dw, db] = dense_backward(s, dy, x, w, zy, need_dx, need_dw, need_db);
      return {or_placeholder(dx, x), or_placeholder(dw, x), or_placeholder(db, x)};
    }
  }
  return python_impl<std::tuple<Tensor, Tensor, Tensor>>("_dense_backward_py", dy, x, w, y, z, act, params, need_dx,
                                                         need_dw, need_db);
}

Tensor activation_op(const Tensor& x, Str name, Str params) {
  const Resolved r = resolve('a', name, "", params);
  if (r.id < 0 || !kernel_dtype(x) || !last_axis(act_spec(r.id), x.dim()))
    return python_impl<Tensor>("_activation_py", x, name, params);
  NoGil nogil;
  return act_forward(act_spec(r.id), x);
}

Tensor activation_backward_op(const Tensor& dy, const Tensor& src, Str name, Str params) {
  const Resolved r = resolve('a', name, "", params);
  if (r.id < 0 || !kernel_dtype(src) || !same_kind(dy, src) || !last_axis(act_spec(r.id), src.dim()))
    return python_impl<Tensor>("_activation_backward_py", dy, src, name, params);
  NoGil nogil;
  return act_backward(act_spec(r.id), dy, src);
}

Tensor loss_op(const Tensor& pred, const Tensor& target, const OptT& weight, const OptT& pos_weight, Str name,
               Str reduction, Str params) {
  const Resolved r = weight || pos_weight ? Resolved{-1, 0} : resolve('l', name, reduction, params);
  if (r.id < 0 || !loss_ok(loss_spec(r.id), pred, target, r.reduction))
    return python_impl<Tensor>("_loss_py", pred, target, weight, pos_weight, name, reduction, params);
  NoGil nogil;
  return loss_forward(loss_spec(r.id), pred, target, r.reduction).first;
}

std::tuple<Tensor, Tensor> loss_backward_op(const Tensor& grad, const Tensor& pred, const Tensor& target,
                                            const OptT& weight, const OptT& pos_weight, Str name, Str reduction,
                                            Str params, bool need_target_grad) {
  const Resolved r =
      weight || pos_weight || need_target_grad ? Resolved{-1, 0} : resolve('l', name, reduction, params);
  if (r.id < 0 || !loss_ok(loss_spec(r.id), pred, target, r.reduction) || !same_kind(grad, pred))
    return python_impl<std::tuple<Tensor, Tensor>>("_loss_backward_py", grad, pred, target, weight, pos_weight, name,
                                                   reduction, params, need_target_grad);
  NoGil nogil;
  const F::LossDesc& d = loss_spec(r.id);
  const Tensor pc = pred.contiguous(), tc = target.contiguous();
  const double denom = g_api->loss_denominator(call_of(d, pc, tc), static_cast<int>(r.reduction));
  return {loss_backward(d, pred, target, grad, static_cast<int>(r.reduction), denom), at::empty({0}, pred.options())};
}

// Registered once, after the kernel table is connected; never unregistered (the
// dispatcher may outlive this module's statics at exit).
void register_ops() {
  static torch::Library* lib = [] {
    auto* l = new torch::Library(torch::Library::IMPL, "fastnn", c10::DispatchKey::CPU, __FILE__, __LINE__);
    l->impl("dense", TORCH_FN(dense_op));
    l->impl("dense_backward", TORCH_FN(dense_backward_op));
    l->impl("activation", TORCH_FN(activation_op));
    l->impl("activation_backward", TORCH_FN(activation_backward_op));
    l->impl("loss", TORCH_FN(loss_op));
    l->impl("loss_backward", TORCH_FN(loss_backward_op));
    return l;
  }();
  (void)lib;
}

// ---- registration ---------------------------------------------------------------------

void init(py::capsule cap, bool share_threads) {
  if (std::string(cap.name()) != "fastnn._C.cpu_api") throw std::invalid_argument("not fastnn's kernel table");
  g_api = F::connect(cap.get_pointer());
  if (!g_api) throw std::invalid_argument("fastnn._C's kernel table does not match this build (rebuild both)");
  g_share_threads = share_threads;
  // fastnn's numpy API on this (the loading) thread runs on torch's pool too, between
  // torch ops: the same reason as TorchThreads (csrc/cpu/parallel.h, set_default_executor).
  if (share_threads) g_api->set_default_executor(&torch_exec, nullptr, &torch_team);
  register_ops();
}

// code, numeric: ActSpec.code / ActSpec.numeric.
int64_t register_activation(int64_t code, const std::vector<double>& numeric, bool from_y,
                            std::optional<int64_t> axis) {
  ActSpec s{{}, from_y, axis.value_or(kNoAxis)};
  const F::Status st = g_api->decode_act(code, numeric.data(), numeric.size(), &s.a);
  if (!st.ok()) throw std::invalid_argument(std::string("fastnn.torch._native: ") + st.msg);
  if (from_y && s.a.act != fastnn::Act::linear && !g_api->act_has_y_backward(s.a.act))
    throw std::invalid_argument("fastnn.torch._native: this activation's backward needs x");
  std::lock_guard<std::mutex> lock(g_spec_mutex);
  g_act.push_back(s);
  return static_cast<int64_t>(g_act.size()) - 1;
}

// code, numeric: LossSpec.code / LossSpec.numeric (one code space, class losses included).
int64_t register_loss(int64_t code, const std::vector<double>& numeric) {
  F::LossDesc d;
  const F::Status st = g_api->decode_loss(code, numeric.data(), numeric.size(), &d);
  if (!st.ok()) throw std::invalid_argument(std::string("fastnn.torch._native: ") + st.msg);
  std::lock_guard<std::mutex> lock(g_spec_mutex);
  g_loss.push_back(d);
  return static_cast<int64_t>(g_loss.size()) - 1;
}

}  // namespace fastnn_torch

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  using namespace fastnn_torch;
  m.doc() = "fastnn.torch's autograd nodes in C++ (built on first use by fastnn/torch/_native.py).";
  m.def("init", &init);
  m.def("register_activation", &register_activation);
  m.def("register_loss", &register_loss);
  m.def("dense", &dense, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("spec"));
  m.def("activation", &activation);
  m.def("loss", &loss);
}
