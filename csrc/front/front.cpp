// front.cpp — the front end of front/front.h, compiled into fastnn._C: decoding, the checks
// the kernels rely on, dtype dispatch, the loss reductions, the runner executor.
#include "front/front.h"

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "cpu/api.h"

namespace fastnn::front {
namespace {

thread_local std::string t_msg;

Status ok() { return {Err::ok, ""}; }
Status fail(Err e, std::string m) {
  t_msg = std::move(m);
  return {e, t_msg.c_str()};
}
#define FRONT_TRY(expr)          \
  do {                           \
    const Status s_ = (expr);    \
    if (!s_.ok()) return s_;     \
  } while (0)

std::string shape_of(const View& v) {
  std::string s = "(";
  for (int i = 0; i < v.ndim; ++i) s += (i ? ", " : "") + std::to_string(v.shape[i]);
  return s + (v.ndim == 1 ? ",)" : ")");
}

template <class T> constexpr DType dtype_v() { return std::is_same_v<T, float> ? DType::f32 : DType::f64; }

// The first array of a call decides the dtype: float16, bfloat16, float32 or float64.
bool is_float(DType d) { return d == DType::f32 || d == DType::f64 || d == DType::f16 || d == DType::bf16; }
Status any_float_data(const View& v, const char* name) {
  if (is_float(v.dtype)) return ok();
  return fail(Err::type,
              std::string(name) + ": expected float16, bfloat16, float32 or float64 data, got " + dtype_name(v.dtype));
}

// v has dtype dt, is C-contiguous, has `size` elements (size < 0: any) and, for an output, is writable.
Status check(const View& v, const char* name, DType dt, int64_t size, bool write) {
  if (v.dtype != dt)
    return fail(Err::type, std::string(name) + " has dtype " + dtype_name(v.dtype) + ", expected " + dtype_name(dt));
  if (!v.contiguous) return fail(Err::value, std::string(name) + " must be C-contiguous");
  if (size >= 0 && v.size() != size)
    return fail(Err::value, std::string(name) + " has shape " + shape_of(v) + ", expected " + std::to_string(size) +
                                " elements");
  if (write && !v.writable) return fail(Err::value, std::string(name) + " is read-only");
  return ok();
}
Status check_opt(const View* v, const char* name, DType dt, int64_t size, bool write) {
  return v ? check(*v, name, dt, size, write) : ok();
}
Status check_ndim(const View& v, const char* name, int ndim, bool at_least = false) {
  if (at_least ? v.ndim >= ndim : v.ndim == ndim) return ok();
  return fail(Err::value, std::string(name) + " must be " + (at_least ? "at least " : "") + std::to_string(ndim) +
                              "-D, got shape " + shape_of(v));
}
template <class T> T* ptr(const View* v) { return v ? v->as<T>() : nullptr; }

// Runs f(T{}) for the dtype, T float or double (run) or also bf16 / f16 (run_all, whose f
// must compile for the 16-bit storage types); what a kernel throws becomes the Status. A
// dtype outside the set is refused, never run as another.
template <bool kHalf, class F> Status run_dtype(DType dt, F&& f) {
  try {
    if (dt == DType::f32) f(float{});
    else if (dt == DType::f64) f(double{});
    else if constexpr (kHalf) {
      if (dt == DType::bf16) f(bf16{});
      else if (dt == DType::f16) f(f16{});
      else return fail(Err::type, std::string("unsupported dtype ") + dtype_name(dt));
    } else {
      return fail(Err::type, std::string("expected float32 or float64 data, got ") + dtype_name(dt));
    }
    return ok();
  } catch (const std::bad_alloc&) {
    return fail(Err::memory, "out of memory");
  } catch (const std::exception& e) {
    return fail(Err::value, e.what());
  }
}
template <class F> Status run(DType dt, F&& f) { return run_dtype<false>(dt, std::forward<F>(f)); }
template <class F> Status run_all(DType dt, F&& f) { return run_dtype<true>(dt, std::forward<F>(f)); }

bool row_act(Act a) { return a == Act::softmax || a == Act::log_softmax; }

Status rows_fit(const ActArgs& a, int64_t n, int64_t cols) {
  if (row_act(a.act) && (cols <= 0 ? n != 0 : n % cols != 0))
    return fail(Err::value, "softmax row length " + std::to_string(cols) + " does not divide the size " +
                                std::to_string(n));
  return ok();
}

// (w's rows, w's cols) as (n, k) of a layer k -> n: w (n, k) if w_oi else (k, n).
Status dense_dims(const View& x, const View& w, bool w_oi, int64_t* m, int64_t* k, int64_t* n) {
  FRONT_TRY(any_float_data(x, "x"));
  FRONT_TRY(check_ndim(x, "x", 1, true));
  FRONT_TRY(check_ndim(w, "w", 2));
  *m = x.rows(), *k = x.last(), *n = w.shape[w_oi ? 0 : 1];
  if (w.shape[w_oi ? 1 : 0] != *k)
    return fail(Err::value, "w has shape " + shape_of(w) + ", which does not fit x " + shape_of(x) +
                                (w_oi ? " (w is (out, in))" : " (w is (in, out))"));
  return ok();
}

bool index_targets(const LossCall& c) { return c.target.dtype == DType::i64 || c.target.dtype == DType::i32; }

template <class I, class F> void each_index(const View& t, F&& f) {
  const I* p = t.as<I>();
  for (int64_t i = 0, n = t.size(); i < n; ++i) f(static_cast<int64_t>(p[i]));
}
template <class F> void each_index(const View& t, F&& f) {
  if (t.dtype == DType::i64) each_index<int64_t>(t, f);
  else each_index<int32_t>(t, f);
}

template <class T> bool in_unit(const View& v) {
  const T* p = v.as<T>();
  for (int64_t i = 0, n = v.size(); i < n; ++i) {
    const auto x = widen(p[i]);
    if (!(x >= 0 && x <= 1)) return false;  // NaN too
  }
  return true;
}

template <class T> T nan_max(T a, T b) {
  return std::isnan(a) || std::isnan(b) ? std::numeric_limits<T>::quiet_NaN() : (a > b ? a : b);
}

// Keras' probability BCE outside [0, 1]: fastnn/keras/_numpy.py's formula, elementwise, in
// double (NaN where a log is; the numpy route rounds each step to the dtype, so the two
// agree to an ulp or two, not bit for bit). out = loss (g and gs unused) or g * dloss/dpred.
template <class T> double bce_outside(const T* p, const T* t, const T* g, double gs, bool grad, T* out, int64_t n) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double pi = widen(p[i]), ti = widen(t[i]);
    const double v = grad ? (g ? double(widen(g[i])) : gs) * (pi - ti) / nan_max(pi * (1.0 - pi), 1e-12)
                          : -(ti * nan_max(std::log(pi), -100.0) + (1.0 - ti) * nan_max(std::log1p(-pi), -100.0));
    if (out) out[i] = narrow<T>(static_cast<compute_t<T>>(v));
    sum += v;
  }
  return sum;
}

// The kernels take int64 class indices: int32 ones are widened.
struct Indices {
  std::vector<int64_t> wide;
  const int64_t* p;
  explicit Indices(const View& t) {
    if (t.dtype == DType::i64) {
      p = t.as<int64_t>();
    } else {
      const int32_t* q = t.as<int32_t>();
      wide.assign(q, q + t.size());
      p = wide.data();
    }
  }
};

template <class T> LossArgs<T> elementwise_args(const LossCall& c) {
  LossArgs<T> a;
  if constexpr (std::is_same_v<T, double>) {
    a = c.loss->d;
  } else {
    const LossArgs<float>& f = c.loss->f;  // the 16-bit kernels compute in float32
    a = LossArgs<T>{f.kind, f.delta, f.beta, f.eps, f.log_target, f.log_input, f.full, nullptr, 0};
  }
  a.pos_weight = ptr<T>(c.weight);
  a.pw_len = c.weight ? c.weight->size() : 0;
  return a;
}

// One element / row per value of the loss: how many there are.
int64_t per_count(const LossCall& c) { return c.loss->is_class ? c.pred.rows() : c.pred.size(); }

// The claimed parts of one runner_executor call; shared with the runner's tasks, which may
// start after the call returned (and then find no part left).
struct Claims {
  std::atomic<int> next{0}, done{0};
  int n = 0;
  JobFn job = nullptr;
  void* jctx = nullptr;
  std::mutex m;
  std::condition_variable cv;
  void work() {
    for (int i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) {
      job(jctx, i);
      if (done.fetch_add(1, std::memory_order_acq_rel) + 1 == n) {
        std::lock_guard<std::mutex> lk(m);
        cv.notify_all();
      }
    }
  }
};

}  // namespace

const char* dtype_name(DType d) {
  switch (d) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::i32: return "int32";
    case DType::i64: return "int64";
    case DType::f16: return "float16";
    case DType::bf16: return "bfloat16";
    default: return "an unsupported dtype";
  }
}

// ---- decoding -------------------------------------------------------------------------

Status decode_act(int64_t code, const double* v, size_t count, ActArgs* out) {
  if (code < 0 || code >= kNumActivations) return fail(Err::value, "bad activation code " + std::to_string(code));
  if (!v || count != kNumNumeric)
    return fail(Err::value, "activation parameters must be 8 numbers, got " + std::to_string(count));
  *out = ActArgs{static_cast<Act>(code), ActParams{v[0], v[1], v[2], v[3], v[4], v[5], v[6], static_cast<int>(v[7])}};
  return ok();
}

Status decode_loss(int64_t code, const double* v, size_t count, LossDesc* out) {
  if (code < 0 || code >= kNumLosses) return fail(Err::value, "bad loss code " + std::to_string(code));
  if (!v || count != kNumNumeric)
    return fail(Err::value, "loss parameters must be 8 numbers, got " + std::to_string(count));
  if (!(std::abs(v[6]) < 9.2e18)) return fail(Err::value, "ignore_index must be an integer");
  const auto kind = static_cast<Loss>(code);
  const bool lt = v[3] != 0, li = v[4] != 0, full = v[5] != 0;
  *out = LossDesc{kind,
                  code >= kNumElementwiseLosses,
                  LossArgs<float>{kind, v[0], v[1], v[2], lt, li, full, nullptr, 0},
                  LossArgs<double>{kind, v[0], v[1], v[2], lt, li, full, nullptr, 0},
                  ClassArgs{kind == Loss::nll, static_cast<int64_t>(v[6]), v[7]}};
  return ok();
}

// ---- activations ----------------------------------------------------------------------

Status act_forward(const ActArgs& a, const View& x, const View& y, int64_t cols) {
  FRONT_TRY(any_float_data(x, "x"));
  const int64_t n = x.size();
  FRONT_TRY(check(x, "x", x.dtype, -1, false));
  FRONT_TRY(check(y, "y", x.dtype, n, true));
  FRONT_TRY(rows_fit(a, n, cols));
  return run_all(x.dtype, [&](auto t) {
    using T = decltype(t);
    fastnn::act_forward<T>(a.act, a.p, x.as<T>(), y.as<T>(), n, cols);
  });
}

Status act_backward(const ActArgs& a, bool from_y, const View& xy, const View& dy, const View& dx, int64_t cols) {
  const char* src = from_y ? "y" : "x";
  FRONT_TRY(any_float_data(xy, src));
  const int64_t n = xy.size();
  FRONT_TRY(check(xy, src, xy.dtype, -1, false));
  FRONT_TRY(check(dy, "dy", xy.dtype, n, false));
  FRONT_TRY(check(dx, "dx", xy.dtype, n, true));
  FRONT_TRY(rows_fit(a, n, cols));
  if (from_y && !act_has_y_backward(a.act)) return fail(Err::value, "this activation's backward needs x, not y");
  return run_all(xy.dtype, [&](auto t) {
    using T = decltype(t);
    (from_y ? fastnn::act_backward_y<T> : fastnn::act_backward_x<T>)(a.act, a.p, xy.as<T>(), dy.as<T>(), dx.as<T>(),
                                                                     n, cols);
  });
}

// ---- Dense ------------------------------------------------------------------------------

Status dense_forward(const ActArgs& a, const View& x, const View& w, bool w_oi, const View* b, const View& y,
                     const View* z) {
  int64_t m, k, n;
  FRONT_TRY(dense_dims(x, w, w_oi, &m, &k, &n));
  const DType dt = x.dtype;
  FRONT_TRY(check(x, "x", dt, m * k, false));
  FRONT_TRY(check(w, "w", dt, n * k, false));
  FRONT_TRY(check_opt(b, "b", dt, n, false));
  FRONT_TRY(check(y, "y", dt, m * n, true));
  FRONT_TRY(check_opt(z, "z", dt, m * n, true));
  return run_all(dt, [&](auto t) {
    using T = decltype(t);
    fastnn::dense_forward<T>(a.act, a.p, x.as<T>(), w.as<T>(), w_oi, ptr<T>(b), y.as<T>(), ptr<T>(z), m, k, n);
  });
}

Status dense_backward(const ActArgs& a, bool from_y, const View& dy, const View& x, const View& w, bool w_oi,
                      const View* zy, const View* dx, const View* dw, const View* db, const View* g) {
  int64_t m, k, n;
  FRONT_TRY(dense_dims(x, w, w_oi, &m, &k, &n));
  const DType dt = x.dtype;
  const bool linear = a.act == Act::linear;
  if (linear) zy = g = nullptr;  // dy is the pre-activation's gradient
  if (!linear && !zy) return fail(Err::value, "the activation's backward needs z or y");
  if (!linear && from_y && !act_has_y_backward(a.act))
    return fail(Err::value, "this activation's backward needs z, not y");
  FRONT_TRY(check(dy, "dy", dt, m * n, false));
  FRONT_TRY(check(x, "x", dt, m * k, false));
  FRONT_TRY(check(w, "w", dt, n * k, false));
  FRONT_TRY(check_opt(zy, from_y ? "y" : "z", dt, m * n, false));
  FRONT_TRY(check_opt(dx, "dx", dt, m * k, true));
  FRONT_TRY(check_opt(dw, "dw", dt, n * k, true));
  FRONT_TRY(check_opt(db, "db", dt, n, true));
  FRONT_TRY(check_opt(g, "dpre", dt, m * n, true));
  return run_all(dt, [&](auto t) {
    using T = decltype(t);
    fastnn::dense_backward<T>(a.act, a.p, from_y, dy.as<T>(), x.as<T>(), w.as<T>(), w_oi, ptr<T>(zy), ptr<T>(dx),
                              ptr<T>(dw), ptr<T>(db), ptr<T>(g), m, k, n);
  });
}

Status dense_cross_entropy(const DenseCeCall& c, double* total) {
  FRONT_TRY(check_ndim(c.x, "x", 2));
  int64_t n, h, ncls;
  FRONT_TRY(dense_dims(c.x, c.w, c.w_oi, &n, &h, &ncls));
  const DType dt = c.x.dtype;
  FRONT_TRY(check(c.x, "x", dt, n * h, false));
  FRONT_TRY(check(c.w, "w", dt, ncls * h, false));
  FRONT_TRY(check_opt(c.b, "b", dt, ncls, false));
  FRONT_TRY(check(c.target, "target", DType::i64, n, false));
  FRONT_TRY(check_opt(c.grad, "grad", dt, n, false));
  FRONT_TRY(check_opt(c.loss_rows, "loss", dt, n, true));
  FRONT_TRY(check_opt(c.dx, "dx", dt, n * h, true));
  FRONT_TRY(check_opt(c.dw, "dw", dt, ncls * h, true));
  FRONT_TRY(check_opt(c.db, "db", dt, ncls, true));
  FRONT_TRY(check_opt(c.class_weight, "class_weight", dt, ncls, false));
  FRONT_TRY(check_opt(c.row_weight, "row_weight", dt, n, false));
  FRONT_TRY(check_opt(c.lse, "lse", dt, n, true));
  if (!(c.softcap >= 0) || !(c.z_scale >= 0) || std::isinf(c.softcap) || std::isinf(c.z_scale))
    return fail(Err::value, "softcap and z_scale must be finite and >= 0");
  // the logits are float32 for the 16-bit types too
  const int64_t chunk = c.chunk > 0 ? c.chunk : dense_ce_chunk(n, ncls, dt == DType::f64 ? 8 : 4);
  return run_all(dt, [&](auto t) {
    using T = decltype(t);
    *total = fastnn::dense_cross_entropy<T>(c.x.as<T>(), c.w.as<T>(), c.w_oi, ptr<T>(c.b), c.target.as<int64_t>(),
                                            n, h, ncls, c.ignore_index, c.label_smoothing, ptr<T>(c.grad),
                                            c.grad_scalar, ptr<T>(c.loss_rows), ptr<T>(c.dx), ptr<T>(c.dw),
                                            ptr<T>(c.db), chunk,
                                            fastnn::DenseCeExtras<T>{ptr<T>(c.class_weight), ptr<T>(c.row_weight),
                                                                     c.softcap, c.z_scale, ptr<T>(c.lse)});
  });
}

// ---- losses -------------------------------------------------------------------------------

bool loss_per_element(const LossCall& c) { return !c.loss->is_class; }

Status loss_check(const LossCall& c) {
  const View &p = c.pred, &t = c.target;
  FRONT_TRY(any_float_data(p, "pred"));
  FRONT_TRY(check(p, "pred", p.dtype, -1, false));
  if (!c.loss->is_class) {
    FRONT_TRY(check(t, "target", p.dtype, p.size(), false));
    FRONT_TRY(check_opt(c.weight, "pos_weight", p.dtype, -1, false));
    if (c.weight && c.weight->size() == 0) return fail(Err::value, "pos_weight is empty");
    return ok();
  }
  FRONT_TRY(check_ndim(p, "pred", 1, true));
  const int64_t rows = p.rows(), cols = p.last();
  FRONT_TRY(check_opt(c.weight, "weight", p.dtype, cols, false));
  if (!index_targets(c)) {  // probabilities
    if (t.dtype != p.dtype)
      return fail(Err::type, std::string("target has dtype ") + dtype_name(t.dtype) +
                                 ", expected int64 or int32 class indices or pred's dtype (probabilities)");
    return check(t, "target", p.dtype, rows * cols, false);
  }
  FRONT_TRY(check(t, "target", t.dtype, rows, false));
  int64_t bad = 0;
  bool found = false;
  const int64_t ignore = c.loss->cls.ignore_index;
  each_index(t, [&](int64_t y) {
    if (!found && y != ignore && (y < 0 || y >= cols)) bad = y, found = true;
  });
  if (found)
    return fail(Err::value, "class index " + std::to_string(bad) + " is out of range [0, " + std::to_string(cols) + ")");
  return ok();
}

Status loss_forward(const LossCall& c, const View* out, double* sum) {
  FRONT_TRY(loss_check(c));
  const View &p = c.pred, &t = c.target;
  FRONT_TRY(check_opt(out, "out", p.dtype, per_count(c), true));
  const bool outside = c.keras_bce && c.loss->kind == Loss::bce && !loss_in_domain(c);
  return run_all(p.dtype, [&](auto z) {
    using T = decltype(z);
    if (outside) {
      *sum = bce_outside<T>(p.as<T>(), t.as<T>(), nullptr, 0.0, false, ptr<T>(out), p.size());
    } else if (!c.loss->is_class) {
      *sum = fastnn::loss_forward<T>(elementwise_args<T>(c), p.as<T>(), t.as<T>(), ptr<T>(out), p.size());
    } else if (index_targets(c)) {
      const Indices idx(t);
      *sum = fastnn::class_forward<T>(c.loss->cls, p.as<T>(), idx.p, ptr<T>(c.weight), ptr<T>(out), p.rows(),
                                      p.last());
    } else {
      *sum = fastnn::soft_class_forward<T>(c.loss->cls, p.as<T>(), t.as<T>(), ptr<T>(c.weight), ptr<T>(out),
                                           p.rows(), p.last());
    }
  });
}

Status loss_backward(const LossCall& c, const View* grad, double gs, const View& dpred, const View* dtarget) {
  FRONT_TRY(loss_check(c));
  const View &p = c.pred, &t = c.target;
  FRONT_TRY(check_opt(grad, "grad", p.dtype, per_count(c), false));
  FRONT_TRY(check(dpred, "dpred", p.dtype, p.size(), true));
  if (c.loss->is_class && index_targets(c)) dtarget = nullptr;  // indices have no gradient
  FRONT_TRY(check_opt(dtarget, "dtarget", p.dtype, p.size(), true));
  const bool outside = c.keras_bce && c.loss->kind == Loss::bce && !loss_in_domain(c);
  return run_all(p.dtype, [&](auto z) {
    using T = decltype(z);
    const T* g = ptr<T>(grad);
    if (outside) {
      bce_outside<T>(p.as<T>(), t.as<T>(), g, gs, true, dpred.as<T>(), p.size());
    } else if (!c.loss->is_class) {
      fastnn::loss_backward<T>(elementwise_args<T>(c), p.as<T>(), t.as<T>(), g, gs, dpred.as<T>(), ptr<T>(dtarget),
                               p.size());
    } else if (index_targets(c)) {
      const Indices idx(t);
      fastnn::class_backward<T>(c.loss->cls, p.as<T>(), idx.p, ptr<T>(c.weight), g, gs, dpred.as<T>(), p.rows(),
                                p.last());
    } else {
      fastnn::soft_class_backward<T>(c.loss->cls, p.as<T>(), t.as<T>(), ptr<T>(c.weight), g, gs, dpred.as<T>(),
                                     ptr<T>(dtarget), p.rows(), p.last());
    }
  });
}

bool loss_in_domain(const LossCall& c) {
  if (c.loss->kind != Loss::bce || c.loss->is_class) return true;
  switch (c.pred.dtype) {
    case DType::f32: return in_unit<float>(c.pred) && in_unit<float>(c.target);
    case DType::f64: return in_unit<double>(c.pred) && in_unit<double>(c.target);
    case DType::bf16: return in_unit<bf16>(c.pred) && in_unit<bf16>(c.target);
    case DType::f16: return in_unit<f16>(c.pred) && in_unit<f16>(c.target);
    default: return true;  // an unchecked call: loss_check refuses it
  }
}

// As fastnn/_loss.py's reductions: "mean" divides by the elements, or for class indices
// by the targets not ignored; "batchmean" (kl_div) by pred.shape[0].
double loss_denominator(const LossCall& c, int reduction) {
  if (reduction != kMean && reduction != kBatchMean) return 1.0;
  if (c.loss->is_class && index_targets(c)) {
    int64_t keep = 0;
    const int64_t ignore = c.loss->cls.ignore_index;
    each_index(c.target, [&](int64_t y) { keep += y != ignore; });
    return static_cast<double>(keep);
  }
  if (c.loss->is_class) return static_cast<double>(c.pred.rows());
  if (reduction == kBatchMean && c.pred.ndim) return static_cast<double>(c.pred.shape[0]);
  return static_cast<double>(c.pred.size());
}

// ---- threads ------------------------------------------------------------------------------

void runner_executor(void* ctx, int n, JobFn job, void* jctx) {
  const auto* r = static_cast<const Runner*>(ctx);
  auto st = std::make_shared<Claims>();
  st->n = n;
  st->job = job;
  st->jctx = jctx;
  for (int t = 1; t < n; ++t)
    r->post(r->rctx, [](void* arg) {
      auto* sp = static_cast<std::shared_ptr<Claims>*>(arg);
      (*sp)->work();
      delete sp;
    }, new std::shared_ptr<Claims>(st));
  st->work();
  std::unique_lock<std::mutex> lk(st->m);
  st->cv.wait(lk, [&] { return st->done.load(std::memory_order_acquire) == n; });
}

}  // namespace fastnn::front
