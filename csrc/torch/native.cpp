// native.cpp — fastnn.torch's autograd nodes in C++ (the module fastnn.torch._native).
//
// Why: a Python torch.autograd.Function costs ~35 us per forward + backward before any
// work is done, which is most of a tiny layer's time (examples/torch_overhead.py). These
// C++ twins of fastnn/torch/_ops.py's Dense, Activation and Loss Functions build their
// graph nodes and run backward without Python. They call the kernels of fastnn._C
// through its C++ table (csrc/cpu/api.h) with the same arrays fastnn/torch/_kernels.py
// hands them (C-contiguous, w in the layout it comes in), so results are bit-identical
// to the Python path.
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

#include <cmath>
#include <cstdint>
#include <deque>
#include <limits>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <ATen/Parallel.h>

#include "cpu/api.h"

namespace py = pybind11;
using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Named (not anonymous): autograd shows the nodes as CppNode<fastnn_torch::DenseFn> etc.
namespace fastnn_torch {

const fastnn::CpuApi* g_api = nullptr;

// ---- specs: registered once by fastnn/torch/_native.py, then referenced by index ------
constexpr int64_t kNoAxis = std::numeric_limits<int64_t>::min();

struct ActSpec {
  fastnn::Act act;
  fastnn::ActParams p;
  bool from_y;   // backward reads y (else x, or z for Dense)
  int64_t axis;  // softmax / log_softmax axis, kNoAxis for elementwise activations
};

enum class LossKind { elementwise, cross_entropy, nll };
struct LossSpec {
  LossKind kind;
  fastnn::LossArgs<float> ef;   // elementwise: params (pos_weight is never used here)
  fastnn::LossArgs<double> ed;
  fastnn::ClassArgs cls;        // cross_entropy / nll
  bool check_unit;              // bce: pred and target must lie in [0, 1]
};

// Deques: a registered spec never moves, so readers need no lock.
std::mutex g_spec_mutex;
std::deque<ActSpec> g_act;
std::deque<LossSpec> g_loss;

const ActSpec& act_spec(int64_t id) { return g_act.at(static_cast<size_t>(id)); }
const LossSpec& loss_spec(int64_t id) { return g_loss.at(static_cast<size_t>(id)); }

// ---- threads: the kernels run on torch's intra-op pool -----------------------------------
// After each parallel torch op, torch's OpenMP workers spin for a while (GOMP's default
// wait policy) before they sleep. fastnn's own threads and OpenBLAS's, started then, share
// the two cores with them: a Linear(1024)+ReLU forward + backward between torch ops took
// 46 ms instead of 24 (OMP_WAIT_POLICY=PASSIVE). So inside these nodes fastnn's
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

struct TorchThreads {  // for the scope of one node's kernels, on this thread
  bool on;
  TorchThreads() : on(g_share_threads && !at::in_parallel_region() && at::get_num_threads() > 1) {
    if (on) {
      g_api->set_thread_executor(&torch_exec, nullptr, at::get_num_threads());
      g_api->use_blas_callback(true);
    }
  }
  ~TorchThreads() {
    if (on) {
      g_api->use_blas_callback(false);
      g_api->set_thread_executor(nullptr, nullptr, 0);
    }
  }
  TorchThreads(const TorchThreads&) = delete;
  TorchThreads& operator=(const TorchThreads&) = delete;
};

template <class T> const fastnn::CpuKernels<T>& K() {
  if constexpr (std::is_same_v<T, float>) return g_api->f32; else return g_api->f64;
}

// An uninitialized output: large ones (>= 1 MiB) from fastnn's buffer cache (cpu/pool.h),
// given back when torch frees the tensor, so repeated calls skip the first-touch page
// faults of fresh memory (torch's allocator maps large tensors anew every time).
Tensor out_empty(at::IntArrayRef sizes, const at::TensorOptions& opt) {
  int64_t n = 1;
  for (int64_t d : sizes) n *= d;
  const size_t bytes = static_cast<size_t>(n) * opt.dtype().itemsize();
  if (bytes < fastnn::pool::kMinBytes) return at::empty(sizes, opt);
  size_t block = 0;
  void* p = g_api->pool_acquire(bytes, &block);
  const auto release = g_api->pool_release;
  try {
    return at::from_blob(p, sizes, [release, block](void* q) { release(q, block); }, opt);
  } catch (...) {
    release(p, block);
    throw;
  }
}
Tensor out_like(const Tensor& t) { return out_empty(t.sizes(), t.options()); }

bool kernel_dtype(const Tensor& t) {
  return t.device().is_cpu() && t.layout() == at::kStrided &&
         (t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble);
}
bool same_kind(const Tensor& t, const Tensor& ref) {
  return t.device().is_cpu() && t.layout() == at::kStrided && t.scalar_type() == ref.scalar_type();
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
// Rows of x (..., in) as a matrix: prod(x.shape[:-1]).
int64_t rows(const Tensor& x) {
  int64_t m = 1;
  for (int64_t d = 0; d + 1 < x.dim(); ++d) m *= x.size(d);
  return m;
}

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

template <class T> std::pair<Tensor, Tensor> dense_fwd(const Tensor& x, const Tensor& w, const Tensor& b,
                                                       const ActSpec& s) {
  const int64_t k = w.size(1), n = w.size(0), m = rows(x);
  const Tensor x2 = x.contiguous();
  const WView wv = w_view(w);
  const Tensor bc = b.defined() ? b.contiguous() : b;
  Tensor y = out_empty({m, n}, x.options());
  const bool need_z = s.act != fastnn::Act::linear && !s.from_y;
  Tensor z = need_z ? out_empty({m, n}, x.options()) : Tensor();
  K<T>().dense_forward(s.act, s.p, x2.data_ptr<T>(), wv.w.data_ptr<T>(), wv.w_oi,
                       bc.defined() ? bc.data_ptr<T>() : nullptr, y.data_ptr<T>(), need_z ? z.data_ptr<T>() : nullptr,
                       m, k, n);
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = n;
  return {y.view(shape), need_z ? z.view(shape) : z};
}

struct DenseFn : public torch::autograd::Function<DenseFn> {
  // b: an optional (Function::apply takes no undefined tensor as an input)
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& w, const std::optional<Tensor>& b_opt,
                        int64_t id) {
    const Tensor b = b_opt.value_or(Tensor());
    const ActSpec& s = act_spec(id);
    TorchThreads threads;
    auto [y, z] = x.scalar_type() == at::kFloat ? dense_fwd<float>(x, w, b, s) : dense_fwd<double>(x, w, b, s);
    ctx->saved_data["id"] = id;
    ctx->saved_data["has_b"] = b.defined();
    const bool keep_y = s.act != fastnn::Act::linear && s.from_y;
    ctx->save_for_backward({x, w, keep_y ? y : Tensor(), z});
    return y;
  }

  template <class T> static variable_list bwd(AutogradContext* ctx, const Tensor& dy_in) {
    const auto saved = ctx->get_saved_variables();  // throws if any was modified in place
    const Tensor &x = saved[0], &w = saved[1];
    const ActSpec& s = act_spec(ctx->saved_data["id"].toInt());
    const Tensor& zy = s.from_y ? saved[2] : saved[3];
    const bool need_dx = ctx->needs_input_grad(0), need_dw = ctx->needs_input_grad(1);
    const bool need_db = ctx->saved_data["has_b"].toBool() && ctx->needs_input_grad(2);
    const int64_t k = w.size(1), n = w.size(0), m = rows(x);
    const Tensor x2 = x.contiguous(), dy = dy_in.contiguous();
    const Tensor zyc = zy.defined() ? zy.contiguous() : zy;
    const WView wv = w_view(w);
    Tensor dx = need_dx ? out_like(x2) : Tensor();
    Tensor dw = need_dw ? out_like(wv.w) : Tensor();
    Tensor db = need_db ? at::empty({n}, x.options()) : Tensor();
    K<T>().dense_backward(s.act, s.p, s.from_y, dy.data_ptr<T>(), x2.data_ptr<T>(), wv.w.data_ptr<T>(), wv.w_oi,
                          zyc.defined() ? zyc.data_ptr<T>() : nullptr, need_dx ? dx.data_ptr<T>() : nullptr,
                          need_dw ? dw.data_ptr<T>() : nullptr, need_db ? db.data_ptr<T>() : nullptr, nullptr, m, k, n);
    if (need_dw && wv.flipped) dw = dw.t();
    return {need_dx ? dx.view(x.sizes()) : dx, dw, db, Tensor()};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const Tensor& dy = grads[0];
    TorchThreads threads;
    auto out = dy.scalar_type() == at::kFloat ? bwd<float>(ctx, dy) : bwd<double>(ctx, dy);
    return once_differentiable(grads, std::move(out));
  }
};

bool dense_ok(const Tensor& x, const Tensor& w, const Tensor& b, const ActSpec& s) {
  if (!kernel_dtype(x) || !same_kind(w, x) || x.dim() < 1 || w.dim() != 2 || w.size(1) != x.size(-1)) return false;
  if (b.defined() && !(same_kind(b, x) && b.dim() == 1 && b.size(0) == w.size(0))) return false;
  if (s.axis != kNoAxis) {  // softmax / log_softmax: only along the last axis (the output's features)
    const int64_t nd = x.dim();
    if (s.axis < -nd || s.axis >= nd || (s.axis + nd) % nd != nd - 1) return false;
  }
  return true;
}

py::object dense(const Tensor& x, const Tensor& w, const std::optional<Tensor>& b_opt, int64_t id) {
  const Tensor b = b_opt.value_or(Tensor());  // None, or a tensor (never an undefined one)
  const ActSpec& s = act_spec(id);
  if (!dense_ok(x, w, b, s)) return py::none();
  Tensor y;
  {
    py::gil_scoped_release nogil;
    y = DenseFn::apply(x, w, b_opt, id);
  }
  return py::cast(y);
}

// ---- activations: y = f(x), any shape ---------------------------------------------------

int64_t act_cols(const Tensor& x) { return x.dim() ? x.size(-1) : 1; }

struct ActFn : public torch::autograd::Function<ActFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, int64_t id) {
    const ActSpec& s = act_spec(id);
    const Tensor xc = x.contiguous();
    Tensor y = out_like(xc);
    TorchThreads threads;
    if (x.scalar_type() == at::kFloat)
      K<float>().act_forward(s.act, s.p, xc.data_ptr<float>(), y.data_ptr<float>(), xc.numel(), act_cols(xc));
    else
      K<double>().act_forward(s.act, s.p, xc.data_ptr<double>(), y.data_ptr<double>(), xc.numel(), act_cols(xc));
    ctx->saved_data["id"] = id;
    ctx->save_for_backward({s.from_y ? y : x});
    return y;
  }

  template <class T> static Tensor bwd(const ActSpec& s, const Tensor& src, const Tensor& dy_in) {
    const Tensor sc = src.contiguous(), dy = dy_in.contiguous();
    Tensor dx = out_like(sc);
    auto fn = s.from_y ? K<T>().act_backward_y : K<T>().act_backward_x;
    fn(s.act, s.p, sc.data_ptr<T>(), dy.data_ptr<T>(), dx.data_ptr<T>(), sc.numel(), act_cols(sc));
    return dx;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const ActSpec& s = act_spec(ctx->saved_data["id"].toInt());
    const Tensor& dy = grads[0];
    TorchThreads threads;
    Tensor dx = dy.scalar_type() == at::kFloat ? bwd<float>(s, saved[0], dy) : bwd<double>(s, saved[0], dy);
    return once_differentiable(grads, {dx, Tensor()});
  }
};

py::object activation(const Tensor& x, int64_t id) {
  const ActSpec& s = act_spec(id);
  if (!kernel_dtype(x)) return py::none();
  if (s.axis != kNoAxis) {
    const int64_t nd = x.dim();
    if (nd == 0 || s.axis < -nd || s.axis >= nd || (s.axis + nd) % nd != nd - 1) return py::none();
  }
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
enum Reduction : int64_t { kNone = 0, kMean = 1, kSum = 2, kBatchMean = 3 };

template <class T> const fastnn::LossArgs<T>& largs(const LossSpec& s) {
  if constexpr (std::is_same_v<T, float>) return s.ef; else return s.ed;
}

// Divisor of "mean" / "batchmean" (as fastnn/torch/_kernels.py's info["denom"]).
double loss_denominator(const LossSpec& s, const Tensor& pred, const Tensor& target, int64_t reduction) {
  if (s.kind != LossKind::elementwise) {
    const int64_t* t = target.data_ptr<int64_t>();
    int64_t keep = 0;
    for (int64_t i = 0, r = target.numel(); i < r; ++i) keep += t[i] != s.cls.ignore_index;
    return static_cast<double>(keep);
  }
  if (reduction == kBatchMean && pred.dim()) return static_cast<double>(pred.size(0));
  return static_cast<double>(pred.numel());
}

template <class T> Tensor loss_fwd(const LossSpec& s, const Tensor& pc, const Tensor& tc, int64_t reduction,
                                   double denom, at::IntArrayRef none_shape) {
  Tensor per;
  double total;
  if (s.kind == LossKind::elementwise) {
    if (reduction == kNone) per = out_like(pc);
    total = K<T>().loss_forward(largs<T>(s), pc.data_ptr<T>(), tc.data_ptr<T>(),
                                per.defined() ? per.data_ptr<T>() : nullptr, pc.numel());
  } else {
    const int64_t cols = pc.size(-1), rows = pc.numel() / cols;
    if (reduction == kNone) per = at::empty({rows}, pc.options());
    total = K<T>().class_forward(s.cls, pc.data_ptr<T>(), tc.data_ptr<int64_t>(), nullptr,
                                 per.defined() ? per.data_ptr<T>() : nullptr, rows, cols);
  }
  if (reduction == kNone) return per.view(none_shape);
  const double value = reduction == kSum ? total : total / denom;
  return at::scalar_tensor(value, pc.options());  // rounded once to the dtype, as np.asarray(value, dtype)
}

struct LossFn : public torch::autograd::Function<LossFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& pred, const Tensor& target, int64_t id,
                        int64_t reduction) {
    const LossSpec& s = loss_spec(id);
    const Tensor pc = pred.contiguous(), tc = target.contiguous();
    const double denom = reduction == kMean || reduction == kBatchMean ? loss_denominator(s, pc, tc, reduction) : 1.0;
    const auto none_shape = s.kind == LossKind::elementwise ? pred.sizes() : pred.sizes().slice(0, pred.dim() - 1);
    TorchThreads threads;
    Tensor out = pred.scalar_type() == at::kFloat ? loss_fwd<float>(s, pc, tc, reduction, denom, none_shape)
                                                  : loss_fwd<double>(s, pc, tc, reduction, denom, none_shape);
    ctx->saved_data["id"] = id;
    ctx->saved_data["reduction"] = reduction;
    ctx->saved_data["denom"] = denom;
    ctx->save_for_backward({pred, target});
    return out;
  }

  template <class T> static Tensor bwd(const LossSpec& s, const Tensor& pred, const Tensor& target,
                                       const Tensor& grad, int64_t reduction, double denom) {
    const Tensor pc = pred.contiguous(), tc = target.contiguous();
    Tensor gc;
    double gs = 1.0;
    if (reduction != kNone || grad.dim() == 0) {
      gs = grad.item<double>();
      if (reduction == kMean || reduction == kBatchMean) gs = gs / denom;
    } else {
      gc = grad.contiguous();
    }
    const T* gp = gc.defined() ? gc.data_ptr<T>() : nullptr;
    Tensor dpred = out_like(pc);
    if (s.kind == LossKind::elementwise) {
      K<T>().loss_backward(largs<T>(s), pc.data_ptr<T>(), tc.data_ptr<T>(), gp, gs, dpred.data_ptr<T>(), nullptr,
                           pc.numel());
    } else {
      const int64_t cols = pc.size(-1), rows = pc.numel() / cols;
      K<T>().class_backward(s.cls, pc.data_ptr<T>(), tc.data_ptr<int64_t>(), nullptr, gp, gs, dpred.data_ptr<T>(),
                            rows, cols);
    }
    return dpred.view(pred.sizes());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    if (!ctx->needs_input_grad(0)) return {Tensor(), Tensor(), Tensor(), Tensor()};
    const LossSpec& s = loss_spec(ctx->saved_data["id"].toInt());
    const int64_t red = ctx->saved_data["reduction"].toInt();
    const double denom = ctx->saved_data["denom"].toDouble();
    const Tensor& g = grads[0];
    TorchThreads threads;
    Tensor d = saved[0].scalar_type() == at::kFloat ? bwd<float>(s, saved[0], saved[1], g, red, denom)
                                                    : bwd<double>(s, saved[0], saved[1], g, red, denom);
    return once_differentiable(grads, {d, Tensor(), Tensor(), Tensor()});
  }
};

template <class T> bool in_unit(const Tensor& c) {
  const T* p = c.data_ptr<T>();
  for (int64_t i = 0, n = c.numel(); i < n; ++i)
    if (!(p[i] >= T(0) && p[i] <= T(1))) return false;  // NaN too
  return true;
}

bool loss_ok(const LossSpec& s, const Tensor& pred, const Tensor& target) {
  if (!kernel_dtype(pred) || target.requires_grad() || pred.numel() == 0) return false;
  if (s.kind == LossKind::elementwise) {
    if (!same_kind(target, pred) || target.sizes() != pred.sizes()) return false;
    if (s.check_unit) {
      const Tensor pc = pred.contiguous(), tc = target.contiguous();
      return pred.scalar_type() == at::kFloat ? in_unit<float>(pc) && in_unit<float>(tc)
                                              : in_unit<double>(pc) && in_unit<double>(tc);
    }
    return true;
  }
  if (pred.dim() < 1 || !target.device().is_cpu() || target.scalar_type() != at::kLong ||
      target.sizes() != pred.sizes().slice(0, pred.dim() - 1))
    return false;
  const int64_t cols = pred.size(-1);
  const Tensor tc = target.contiguous();
  const int64_t* t = tc.data_ptr<int64_t>();
  int64_t keep = 0;
  for (int64_t i = 0, n = tc.numel(); i < n; ++i) {
    if (t[i] == s.cls.ignore_index) continue;
    if (t[i] < 0 || t[i] >= cols) return false;  // the public API raises its error
    ++keep;
  }
  return keep > 0;
}

py::object loss(const Tensor& pred, const Tensor& target, int64_t id, int64_t reduction) {
  const LossSpec& s = loss_spec(id);
  if (reduction < kNone || reduction > kBatchMean || !loss_ok(s, pred, target)) return py::none();
  if (reduction == kBatchMean && s.kind != LossKind::elementwise) return py::none();
  Tensor out;
  {
    py::gil_scoped_release nogil;
    out = LossFn::apply(pred, target, id, reduction);
  }
  return py::cast(out);
}

// ---- registration ---------------------------------------------------------------------

void init(py::capsule cap, bool share_threads) {
  if (std::string(cap.name()) != "fastnn._C.cpu_api") throw std::invalid_argument("not fastnn's kernel table");
  const auto* api = static_cast<const fastnn::CpuApi*>(cap.get_pointer());
  if (api->version != fastnn::kCpuApiVersion || api->size != static_cast<int>(sizeof(fastnn::CpuApi)))
    throw std::invalid_argument("fastnn._C's kernel table does not match this build (rebuild both)");
  g_api = api;
  g_share_threads = share_threads;
}

int64_t register_activation(int64_t code, const std::vector<double>& p, int64_t approximate, bool from_y,
                            std::optional<int64_t> axis) {
  if (code < 0 || code > static_cast<int64_t>(fastnn::Act::log_softmax) || p.size() != 7)
    throw std::invalid_argument("fastnn.torch._native: bad activation spec");
  const auto act = static_cast<fastnn::Act>(code);
  if (from_y && act != fastnn::Act::linear && !g_api->act_has_y_backward(act))
    throw std::invalid_argument("fastnn.torch._native: this activation's backward needs x");
  std::lock_guard<std::mutex> lock(g_spec_mutex);
  g_act.push_back({act, fastnn::ActParams{p[0], p[1], p[2], p[3], p[4], p[5], p[6], static_cast<int>(approximate)},
                   from_y, axis.value_or(kNoAxis)});
  return static_cast<int64_t>(g_act.size()) - 1;
}

// kind: an elementwise loss code (csrc/cpu/kernels.h, Loss), or -1 cross_entropy, -2 nll.
int64_t register_loss(int64_t kind, double delta, double beta, double eps, bool log_target, bool log_input, bool full,
                      int64_t ignore_index, double label_smoothing) {
  LossSpec s{};
  if (kind == -1 || kind == -2) {
    s.kind = kind == -1 ? LossKind::cross_entropy : LossKind::nll;
    s.cls = fastnn::ClassArgs{kind == -2, ignore_index, label_smoothing};
  } else if (kind >= 0 && kind <= static_cast<int64_t>(fastnn::Loss::log_cosh)) {
    const auto k = static_cast<fastnn::Loss>(kind);
    s.kind = LossKind::elementwise;
    s.ef = {k, delta, beta, eps, log_target, log_input, full, nullptr, 0};
    s.ed = {k, delta, beta, eps, log_target, log_input, full, nullptr, 0};
    s.check_unit = k == fastnn::Loss::bce;
  } else {
    throw std::invalid_argument("fastnn.torch._native: bad loss code");
  }
  std::lock_guard<std::mutex> lock(g_spec_mutex);
  g_loss.push_back(s);
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
