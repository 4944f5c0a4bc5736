// ops.cc — fastnn's CPU kernels as TensorFlow ops (the tensorflow backend of fastnn.keras).
//
// Why: tf.numpy_function runs Python inside the step (~60-100 us per call, three per
// Dense forward + backward, with the GIL). These ops run in TF's executor like its own
// kernels. fastnn/keras/_tf_ops.py builds this file on first use against the installed
// TensorFlow (tf.sysconfig's flags), loads it with tf.load_op_library and wraps the ops in
// tf.custom_gradient. The work is csrc/host/ops.h's (shared with the jax FFI handlers),
// on fastnn._C's kernels through its C++ table: the bits of the Python API.
//
// Ops (inputs -> outputs; attributes). Doubles travel as their 64-bit patterns in int
// lists (TF float attributes are 32-bit; an activation parameter such as 0.1 must reach
// the kernel as the double the other routes pass).
//   FastnnDenseFwd   x (..., in), w (in, out), b (out,) or (0,) -> y, z: nz * T   (act, p, approx, has_b, nz)
//   FastnnDenseBwdW  dy, x, w, r -> dw, db: nb * T, dpre: nd * T                  (act, p, approx, from_y)
//   FastnnDenseBwdX  dpre (..., out), w (in, out) -> dx (..., in)
//   FastnnActFwd     x -> y                                                        (act, p, approx)
//   FastnnActBwd     dy, r -> dx                                                   (act, p, approx, from_y)
//   FastnnLossFwd    pred, target -> per-element (per-row) loss                    (loss attributes)
//   FastnnLossBwd    g, pred, target -> dpred                                      (loss attributes)
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "host/ops.h"
#include "tensorflow/core/framework/allocation_description.pb.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace H = fastnn::host;
using tensorflow::DEVICE_CPU;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

namespace {

absl::Status bad(const std::string& what) { return absl::InvalidArgumentError("fastnn (tf op): " + what); }

double from_bits(int64_t b) {
  double d;
  std::memcpy(&d, &b, sizeof d);
  return d;
}

int64_t rows(const Tensor& t) {  // prod(shape[:-1])
  int64_t m = 1;
  for (int i = 0; i + 1 < t.dims(); ++i) m *= t.dim_size(i);
  return m;
}
int64_t last(const Tensor& t) { return t.dims() ? t.dim_size(t.dims() - 1) : 1; }
template <class T> const T* in(const Tensor& t) { return reinterpret_cast<const T*>(t.tensor_data().data()); }
template <class T> T* out(Tensor* t) { return reinterpret_cast<T*>(const_cast<char*>(t->tensor_data().data())); }

// Outputs of >= 1 MiB come from fastnn's buffer cache (cpu/pool.h) and go back to it when
// TensorFlow drops the tensor: TF's CPU allocator hands out fresh pages, whose first-touch
// faults cost more than the work of a memory-bound kernel (a 1024x1024x1024 Dense forward
// took 10.8 ms into cached memory, 12.5 ms into fresh).
class PoolBuffer : public tensorflow::TensorBuffer {
 public:
  PoolBuffer(void* p, size_t bytes, size_t block) : TensorBuffer(p), bytes_(bytes), block_(block) {}
  ~PoolBuffer() override { H::table()->pool_release(data(), block_); }
  size_t size() const override { return bytes_; }
  TensorBuffer* root_buffer() override { return this; }
  void FillAllocationDescription(tensorflow::AllocationDescription* proto) const override {
    proto->set_requested_bytes(static_cast<int64_t>(bytes_));
    proto->set_allocated_bytes(static_cast<int64_t>(block_));
    proto->set_allocator_name("fastnn_output_cache");
  }

 private:
  size_t bytes_, block_;
};

template <class T> absl::Status alloc(OpKernelContext* c, int index, const TensorShape& shape, Tensor** out) {
  const size_t bytes = static_cast<size_t>(shape.num_elements()) * sizeof(T);
  if (bytes < fastnn::pool::kMinBytes) return c->allocate_output(index, shape, out);
  size_t block = 0;
  void* p = nullptr;
  try {
    p = H::table()->pool_acquire(bytes, &block);
  } catch (const std::bad_alloc&) {
    return c->allocate_output(index, shape, out);  // TF's allocator reports what it cannot do
  }
  auto* buf = new PoolBuffer(p, bytes, block);
  Tensor t(tensorflow::DataTypeToEnum<T>::v(), shape, buf);
  buf->Unref();  // the tensor holds the reference now
  c->set_output(index, t);
  *out = c->mutable_output(index);
  return absl::OkStatus();
}

// Inside these ops fastnn's parallel parts run on TensorFlow's own executor threads (the
// op's runner), not on fastnn's pool. TF's idle executor threads spin for work after each
// op; a fastnn pool thread woken then shares a core with one of them. Measured, the
// 1024 -> 1024 -> 1 Keras step at batch 1024 (examples/keras_mlp.py --large, fastnn over
// stock): 1.028-1.040 with fastnn's pool, 0.996-1.009 on the runner (the 1024 -> 1
// layer's dx, an outer product, 0.6-0.7 -> 0.16-0.23 ms). TF's intra-op pool instead
// (its device worker threads) measured 1.12-1.19. FASTNN_TF_SHARED_THREADS=0 turns it off.
// The parts are independent (fastnn.keras never turns on OpenBLAS's threads callback,
// whose jobs wait for one another), so the caller claims parts too and finishes alone if
// no runner thread comes: none waits on a part that no thread took. The state is shared:
// a runner task that starts after the call returned finds no part left.
struct ExecState {
  std::atomic<int> next{0}, done{0};
  int n = 0;
  fastnn::JobFn job = nullptr;
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

using Runner = std::function<void(std::function<void()>)>;

void tf_exec(void* ctx, int n, fastnn::JobFn job, void* jctx) {
  auto* runner = static_cast<Runner*>(ctx);
  auto st = std::make_shared<ExecState>();
  st->n = n;
  st->job = job;
  st->jctx = jctx;
  for (int t = 1; t < n; ++t) (*runner)([st] { st->work(); });
  st->work();
  std::unique_lock<std::mutex> lk(st->m);
  st->cv.wait(lk, [&] { return st->done.load(std::memory_order_acquire) == n; });
}

struct TfThreads {  // for the scope of one op's kernels, on this thread
  explicit TfThreads(OpKernelContext* c) {
    static const bool enabled = [] {
      const char* e = std::getenv("FASTNN_TF_SHARED_THREADS");
      return !(e && std::string(e) == "0");
    }();
    const auto* w = c->device()->tensorflow_cpu_worker_threads();
    Runner* r = c->runner();
    if (enabled && r && *r && w && w->num_threads > 1) {
      H::table()->set_thread_executor(&tf_exec, r, w->num_threads);
      on = true;
    }
  }
  ~TfThreads() {
    if (on) H::table()->set_thread_executor(nullptr, nullptr, 0);
  }
  TfThreads(const TfThreads&) = delete;
  TfThreads& operator=(const TfThreads&) = delete;
  bool on = false;
};

// The activation attributes every Dense / activation op carries.
struct ActAttrs {
  fastnn::Act act;
  fastnn::ActParams ap;
  explicit ActAttrs(OpKernelConstruction* c) {
    int64_t code = 0, approx = 0;
    std::vector<int64_t> bits;
    OP_REQUIRES_OK(c, c->GetAttr("act", &code));
    OP_REQUIRES_OK(c, c->GetAttr("p", &bits));
    OP_REQUIRES_OK(c, c->GetAttr("approx", &approx));
    std::vector<double> p(bits.size());
    for (size_t i = 0; i < bits.size(); ++i) p[i] = from_bits(bits[i]);
    const std::string e = H::act_of(code, p.data(), p.size(), approx, &act, &ap);
    OP_REQUIRES(c, e.empty(), bad(e));
  }
};

template <class T> class DenseFwdOp : public OpKernel {
 public:
  explicit DenseFwdOp(OpKernelConstruction* c) : OpKernel(c), a_(c) {
    OP_REQUIRES_OK(c, c->GetAttr("has_b", &has_b_));
  }
  void Compute(OpKernelContext* c) override {
    const Tensor &x = c->input(0), &w = c->input(1), &b = c->input(2);
    OP_REQUIRES(c, w.dims() == 2 && x.dims() >= 1 && w.dim_size(0) == last(x),
                bad("dense: x " + x.shape().DebugString() + " does not match w " + w.shape().DebugString()));
    const int64_t m = rows(x), k = w.dim_size(0), n = w.dim_size(1);
    OP_REQUIRES(c, !has_b_ || b.NumElements() == n, bad("dense: b does not match w"));
    TensorShape ys = x.shape();
    ys.set_dim(ys.dims() - 1, n);
    Tensor *y = nullptr, *z = nullptr;
    OP_REQUIRES_OK(c, alloc<T>(c, 0, ys, &y));
    if (c->num_outputs() > 1) OP_REQUIRES_OK(c, alloc<T>(c, 1, ys, &z));
    TfThreads threads(c);
    H::dense_fwd<T>(a_.act, a_.ap, in<T>(x), in<T>(w), has_b_ ? in<T>(b) : nullptr, out<T>(y),
                    z ? out<T>(z) : nullptr, m, k, n);
  }

 private:
  ActAttrs a_;
  bool has_b_ = false;
};

template <class T> class DenseBwdWOp : public OpKernel {
 public:
  explicit DenseBwdWOp(OpKernelConstruction* c) : OpKernel(c), a_(c) {
    OP_REQUIRES_OK(c, c->GetAttr("from_y", &from_y_));
    OP_REQUIRES_OK(c, c->GetAttr("nb", &nb_));
    OP_REQUIRES_OK(c, c->GetAttr("nd", &nd_));
    OP_REQUIRES(c, !H::needs_x(a_.act, from_y_), bad("this activation's backward needs z"));
    OP_REQUIRES(c, nd_ == (a_.act == fastnn::Act::linear ? 0 : 1), bad("dpre is an output unless linear"));
  }
  void Compute(OpKernelContext* c) override {
    const Tensor &dy = c->input(0), &x = c->input(1), &w = c->input(2), &r = c->input(3);
    OP_REQUIRES(c, w.dims() == 2 && x.dims() >= 1 && w.dim_size(0) == last(x),
                bad("dense backward: x " + x.shape().DebugString() + " does not match w " + w.shape().DebugString()));
    const int64_t m = rows(x), k = w.dim_size(0), n = w.dim_size(1);
    OP_REQUIRES(c, dy.NumElements() == m * n, bad("dense backward: dy has the wrong size"));
    OP_REQUIRES(c, nd_ == 0 || r.NumElements() == m * n, bad("dense backward: r has the wrong size"));
    Tensor *dw = nullptr, *db = nullptr, *dpre = nullptr;
    OP_REQUIRES_OK(c, alloc<T>(c, 0, w.shape(), &dw));
    if (nb_) OP_REQUIRES_OK(c, alloc<T>(c, 1, TensorShape({n}), &db));
    // dpre only when an op downstream reads it (a first layer's is not: no dx): without it
    // the product makes the activation gradient inside its packing and writes none.
    if (nd_ && c->output_required(1 + nb_)) OP_REQUIRES_OK(c, alloc<T>(c, 1 + nb_, dy.shape(), &dpre));
    TfThreads threads(c);
    H::dense_bwd_w<T>(a_.act, a_.ap, from_y_, in<T>(dy), in<T>(x), in<T>(w), in<T>(r), out<T>(dw),
                      db ? out<T>(db) : nullptr, dpre ? out<T>(dpre) : nullptr, m, k, n);
  }

 private:
  ActAttrs a_;
  bool from_y_ = false;
  int64_t nb_ = 0, nd_ = 0;
};

template <class T> class DenseBwdXOp : public OpKernel {
 public:
  using OpKernel::OpKernel;
  void Compute(OpKernelContext* c) override {
    const Tensor &dpre = c->input(0), &w = c->input(1);
    OP_REQUIRES(c, w.dims() == 2 && dpre.dims() >= 1 && w.dim_size(1) == last(dpre),
                bad("dense dx: dy " + dpre.shape().DebugString() + " does not match w " + w.shape().DebugString()));
    const int64_t m = rows(dpre), k = w.dim_size(0), n = w.dim_size(1);
    TensorShape xs = dpre.shape();
    xs.set_dim(xs.dims() - 1, k);
    Tensor* dx = nullptr;
    OP_REQUIRES_OK(c, alloc<T>(c, 0, xs, &dx));
    TfThreads threads(c);
    H::dense_bwd_x<T>(in<T>(dpre), in<T>(w), out<T>(dx), m, k, n);
  }
};

template <class T> class ActFwdOp : public OpKernel {
 public:
  explicit ActFwdOp(OpKernelConstruction* c) : OpKernel(c), a_(c) {}
  void Compute(OpKernelContext* c) override {
    const Tensor& x = c->input(0);
    Tensor* y = nullptr;
    OP_REQUIRES_OK(c, alloc<T>(c, 0, x.shape(), &y));
    TfThreads threads(c);
    H::act_fwd<T>(a_.act, a_.ap, in<T>(x), out<T>(y), x.NumElements(), last(x));
  }

 private:
  ActAttrs a_;
};

template <class T> class ActBwdOp : public OpKernel {
 public:
  explicit ActBwdOp(OpKernelConstruction* c) : OpKernel(c), a_(c) {
    OP_REQUIRES_OK(c, c->GetAttr("from_y", &from_y_));
    OP_REQUIRES(c, !H::needs_x(a_.act, from_y_), bad("this activation's backward needs x"));
  }
  void Compute(OpKernelContext* c) override {
    const Tensor &dy = c->input(0), &r = c->input(1);
    OP_REQUIRES(c, dy.shape() == r.shape(),
                bad("activation backward: dy " + dy.shape().DebugString() + " does not match " + r.shape().DebugString()));
    Tensor* dx = nullptr;
    OP_REQUIRES_OK(c, alloc<T>(c, 0, dy.shape(), &dx));
    TfThreads threads(c);
    H::act_bwd<T>(a_.act, a_.ap, from_y_, in<T>(dy), in<T>(r), out<T>(dx), dy.NumElements(), last(dy));
  }

 private:
  ActAttrs a_;
  bool from_y_ = false;
};

absl::Status loss_attrs(OpKernelConstruction* c, H::LossAttrs* a) {
  std::vector<int64_t> d;  // delta, beta, eps, label_smoothing as bit patterns
  TF_RETURN_IF_ERROR(c->GetAttr("kind", &a->kind));
  TF_RETURN_IF_ERROR(c->GetAttr("d", &d));
  TF_RETURN_IF_ERROR(c->GetAttr("log_target", &a->log_target));
  TF_RETURN_IF_ERROR(c->GetAttr("log_input", &a->log_input));
  TF_RETURN_IF_ERROR(c->GetAttr("full", &a->full));
  TF_RETURN_IF_ERROR(c->GetAttr("ignore_index", &a->ignore_index));
  if (d.size() != 4) return bad("bad loss attributes");
  a->delta = from_bits(d[0]);
  a->beta = from_bits(d[1]);
  a->eps = from_bits(d[2]);
  a->label_smoothing = from_bits(d[3]);
  const std::string e = H::loss_kind_ok(a->kind);
  return e.empty() ? absl::OkStatus() : bad(e);
}

// pred: T; target: TT (T for elementwise losses, int32/int64 class indices otherwise).
template <class T, class TT> class LossOp : public OpKernel {
 public:
  LossOp(OpKernelConstruction* c, bool backward) : OpKernel(c), backward_(backward) {
    OP_REQUIRES_OK(c, loss_attrs(c, &a_));
    const bool elementwise = a_.kind >= 0;
    OP_REQUIRES(c, (elementwise == std::is_same_v<T, TT>),
                bad(elementwise ? "elementwise targets have pred's dtype" : "class targets are int32 / int64"));
  }
  void Compute(OpKernelContext* c) override {
    const int off = backward_ ? 1 : 0;
    const Tensor &pred = c->input(off), &target = c->input(off + 1);
    const T* g = backward_ ? in<T>(c->input(0)) : nullptr;
    const bool elementwise = a_.kind >= 0;
    const int64_t per = elementwise ? pred.NumElements() : rows(pred);
    if (elementwise)
      OP_REQUIRES(c, target.shape() == pred.shape(), bad("loss: target " + target.shape().DebugString() +
                                                         " does not match pred " + pred.shape().DebugString()));
    else
      OP_REQUIRES(c, pred.dims() >= 1 && target.NumElements() == per,
                  bad("loss: target " + target.shape().DebugString() + " does not match pred " +
                      pred.shape().DebugString()));
    OP_REQUIRES(c, !backward_ || c->input(0).NumElements() == per, bad("loss backward: g has the wrong size"));
    TensorShape os = pred.shape();
    if (!elementwise && !backward_) os.RemoveLastDims(1);
    Tensor* o = nullptr;
    OP_REQUIRES_OK(c, alloc<T>(c, 0, os, &o));
    if constexpr (std::is_same_v<T, TT>) {
      H::loss_elementwise<T>(a_, g, in<T>(pred), in<T>(target), out<T>(o), pred.NumElements());
    } else {
      const std::string e = H::loss_class<T, TT>(a_, g, in<T>(pred), in<TT>(target), out<T>(o), rows(pred), last(pred));
      OP_REQUIRES(c, e.empty(), bad(e));
    }
  }

 private:
  H::LossAttrs a_{};
  bool backward_;
};
template <class T, class TT> struct LossFwdOp : LossOp<T, TT> {
  explicit LossFwdOp(OpKernelConstruction* c) : LossOp<T, TT>(c, false) {}
};
template <class T, class TT> struct LossBwdOp : LossOp<T, TT> {
  explicit LossBwdOp(OpKernelConstruction* c) : LossOp<T, TT>(c, true) {}
};

// ---- shapes -------------------------------------------------------------------------------

absl::Status last_replaced(InferenceContext* c, ShapeHandle s, tensorflow::shape_inference::DimensionHandle d,
                           ShapeHandle* out) {
  ShapeHandle prefix;
  TF_RETURN_IF_ERROR(c->WithRankAtLeast(s, 1, &s));
  TF_RETURN_IF_ERROR(c->Subshape(s, 0, -1, &prefix));
  return c->Concatenate(prefix, c->Vector(d), out);
}

}  // namespace

#define FASTNN_ACT_ATTRS .Attr("act: int").Attr("p: list(int)").Attr("approx: int")
#define FASTNN_LOSS_ATTRS                                                                                 \
  .Attr("kind: int").Attr("d: list(int)").Attr("log_target: bool").Attr("log_input: bool").Attr("full: bool") \
      .Attr("ignore_index: int")

REGISTER_OP("FastnnDenseFwd")
    .Input("x: T").Input("w: T").Input("b: T")
    .Output("y: T").Output("z: nz * T")
    .Attr("T: {float, double}") FASTNN_ACT_ATTRS
    .Attr("has_b: bool").Attr("nz: int >= 0")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle w, y;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &w));
      TF_RETURN_IF_ERROR(last_replaced(c, c->input(0), c->Dim(w, 1), &y));
      for (int i = 0; i < c->num_outputs(); ++i) c->set_output(i, y);
      return absl::OkStatus();
    });

REGISTER_OP("FastnnDenseBwdW")
    .Input("dy: T").Input("x: T").Input("w: T").Input("r: T")
    .Output("dw: T").Output("db: nb * T").Output("dpre: nd * T")
    .Attr("T: {float, double}") FASTNN_ACT_ATTRS
    .Attr("from_y: bool").Attr("nb: int >= 0").Attr("nd: int >= 0")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle w;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 2, &w));
      int64_t nb = 0;
      TF_RETURN_IF_ERROR(c->GetAttr("nb", &nb));
      c->set_output(0, w);
      if (nb) c->set_output(1, c->Vector(c->Dim(w, 1)));
      for (int i = 1 + static_cast<int>(nb); i < c->num_outputs(); ++i) c->set_output(i, c->input(0));
      return absl::OkStatus();
    });

REGISTER_OP("FastnnDenseBwdX")
    .Input("dpre: T").Input("w: T")
    .Output("dx: T")
    .Attr("T: {float, double}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle w, dx;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &w));
      TF_RETURN_IF_ERROR(last_replaced(c, c->input(0), c->Dim(w, 0), &dx));
      c->set_output(0, dx);
      return absl::OkStatus();
    });

REGISTER_OP("FastnnActFwd")
    .Input("x: T").Output("y: T")
    .Attr("T: {float, double}") FASTNN_ACT_ATTRS
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(0));
      return absl::OkStatus();
    });

REGISTER_OP("FastnnActBwd")
    .Input("dy: T").Input("r: T").Output("dx: T")
    .Attr("T: {float, double}") FASTNN_ACT_ATTRS
    .Attr("from_y: bool")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(0));
      return absl::OkStatus();
    });

REGISTER_OP("FastnnLossFwd")
    .Input("pred: T").Input("target: TT").Output("loss: T")
    .Attr("T: {float, double}").Attr("TT: {float, double, int32, int64}") FASTNN_LOSS_ATTRS
    .SetShapeFn([](InferenceContext* c) {
      int64_t kind = 0;
      TF_RETURN_IF_ERROR(c->GetAttr("kind", &kind));
      if (kind >= 0) {
        c->set_output(0, c->input(0));
        return absl::OkStatus();
      }
      ShapeHandle p, rows;
      TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(0), 1, &p));
      TF_RETURN_IF_ERROR(c->Subshape(p, 0, -1, &rows));
      c->set_output(0, rows);
      return absl::OkStatus();
    });

REGISTER_OP("FastnnLossBwd")
    .Input("g: T").Input("pred: T").Input("target: TT").Output("dpred: T")
    .Attr("T: {float, double}").Attr("TT: {float, double, int32, int64}") FASTNN_LOSS_ATTRS
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(1));
      return absl::OkStatus();
    });

#define FASTNN_REGISTER(T)                                                                                       \
  REGISTER_KERNEL_BUILDER(Name("FastnnDenseFwd").Device(DEVICE_CPU).TypeConstraint<T>("T"), DenseFwdOp<T>);      \
  REGISTER_KERNEL_BUILDER(Name("FastnnDenseBwdW").Device(DEVICE_CPU).TypeConstraint<T>("T"), DenseBwdWOp<T>);    \
  REGISTER_KERNEL_BUILDER(Name("FastnnDenseBwdX").Device(DEVICE_CPU).TypeConstraint<T>("T"), DenseBwdXOp<T>);    \
  REGISTER_KERNEL_BUILDER(Name("FastnnActFwd").Device(DEVICE_CPU).TypeConstraint<T>("T"), ActFwdOp<T>);          \
  REGISTER_KERNEL_BUILDER(Name("FastnnActBwd").Device(DEVICE_CPU).TypeConstraint<T>("T"), ActBwdOp<T>);          \
  REGISTER_KERNEL_BUILDER(                                                                                       \
      Name("FastnnLossFwd").Device(DEVICE_CPU).TypeConstraint<T>("T").TypeConstraint<T>("TT"), LossFwdOp<T, T>); \
  REGISTER_KERNEL_BUILDER(                                                                                       \
      Name("FastnnLossBwd").Device(DEVICE_CPU).TypeConstraint<T>("T").TypeConstraint<T>("TT"), LossBwdOp<T, T>); \
  FASTNN_REGISTER_CLASS(T, int32_t)                                                                              \
  FASTNN_REGISTER_CLASS(T, int64_t)
#define FASTNN_REGISTER_CLASS(T, I)                                                                                \
  REGISTER_KERNEL_BUILDER(                                                                                         \
      Name("FastnnLossFwd").Device(DEVICE_CPU).TypeConstraint<T>("T").TypeConstraint<I>("TT"), LossFwdOp<T, I>);   \
  REGISTER_KERNEL_BUILDER(                                                                                         \
      Name("FastnnLossBwd").Device(DEVICE_CPU).TypeConstraint<T>("T").TypeConstraint<I>("TT"), LossBwdOp<T, I>);

FASTNN_REGISTER(float)
FASTNN_REGISTER(double)

// 0 on success; -1: not fastnn's table or a table of another version (rebuild both).
extern "C" __attribute__((visibility("default"))) int fastnn_tf_init(const void* table) {
  return H::init(table) ? 0 : -1;
}
