// ops.cc — fastnn's CPU kernels as TensorFlow ops (the tensorflow backend of fastnn.keras).
//
// Why: tf.numpy_function runs Python inside the step (three calls per Dense forward +
// backward, each holding the GIL). These ops run in TF's executor like its own
// kernels. fastnn/keras/_tf.py builds this file on first use against the installed
// TensorFlow (tf.sysconfig's flags), loads it with tf.load_op_library and wraps the ops in
// tf.custom_gradient. Each op turns TF's tensors into front-end views and calls fastnn._C's
// front end (csrc/front/front.h, through its table csrc/cpu/api.h): the checks, kernels
// and bits of the Python API.
//
// T: float16, bfloat16, float32, float64 (16-bit natively: see FASTNN_REGISTER below).
// Ops (inputs -> outputs; attributes). act / kind and p: ActSpec.code / numeric or
// LossSpec.code / numeric, the 8 doubles as their 64-bit patterns in an int list (TF float
// attributes are 32-bit; a parameter such as 0.1 must reach the kernel as the double the
// other routes pass).
//   FastnnDenseFwd   x (..., in), w (in, out), b (out,) or (0,) -> y, z: nz * T   (act, p, has_b, nz)
//   FastnnDenseBwdW  dy, x, w, r -> dw, db: nb * T, dpre: nd * T                  (act, p, from_y)
//   FastnnDenseBwdX  dpre (..., out), w (in, out) -> dx (..., in)
//   FastnnActFwd     x -> y                                                        (act, p)
//   FastnnActBwd     dy, r -> dx                                                   (act, p, from_y)
//   FastnnLossFwd    pred, target -> per-element (per-row) loss                    (kind, p)
//   FastnnLossBwd    g, pred, target -> dpred                                      (kind, p)
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <string>
#include <vector>

#include "cpu/api.h"
#include "tensorflow/core/framework/allocation_description.pb.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace F = fastnn::front;
using tensorflow::DEVICE_CPU;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

namespace {

const fastnn::CpuApi* g_api = nullptr;

absl::Status bad(const std::string& what) { return absl::InvalidArgumentError("fastnn (tf op): " + what); }
absl::Status done(const F::Status& s) { return s.ok() ? absl::OkStatus() : bad(s.msg); }

// ---- tensors <-> the front end ------------------------------------------------------------
F::DType dtype_of(tensorflow::DataType t) {
  switch (t) {
    case tensorflow::DT_FLOAT: return F::DType::f32;
    case tensorflow::DT_DOUBLE: return F::DType::f64;
    case tensorflow::DT_HALF: return F::DType::f16;  // IEEE binary16 bits, as fastnn::f16
    case tensorflow::DT_BFLOAT16: return F::DType::bf16;  // bfloat16 bits, as fastnn::bf16
    case tensorflow::DT_INT32: return F::DType::i32;
    case tensorflow::DT_INT64: return F::DType::i64;
    default: return F::DType::other;
  }
}
// A view of t; holds the shape the view points to (not copyable).
struct View {
  tensorflow::gtl::InlinedVector<int64_t, 4> dims;
  F::View v;
  explicit View(const Tensor& t) : dims(t.shape().dim_sizes()) {
    v = F::View{const_cast<char*>(t.tensor_data().data()), dtype_of(t.dtype()), t.dims(), dims.data()};
  }
  View(const View&) = delete;
  View& operator=(const View&) = delete;
};

// An output tensor the op allocated (null: not allocated), as an optional view.
struct Out {
  std::unique_ptr<View> view;
  explicit Out(const Tensor* t) {
    if (t) view = std::make_unique<View>(*t);
  }
  const F::View* p() const { return view ? &view->v : nullptr; }
};

// Outputs follow the front end's allocation policy (csrc/cpu/api.h, pooled_or): a large
// one is a block of fastnn's buffer cache, given back when TensorFlow drops the tensor
// (TF's CPU allocator hands out fresh pages, whose first-touch faults cost more than a
// memory-bound kernel's work).
class PoolBuffer : public tensorflow::TensorBuffer {
 public:
  PoolBuffer(void* p, size_t bytes, size_t block, void (*release)(void*, size_t))
      : TensorBuffer(p), bytes_(bytes), block_(block), release_(release) {}
  ~PoolBuffer() override { release_(data(), block_); }
  size_t size() const override { return bytes_; }
  TensorBuffer* root_buffer() override { return this; }
  void FillAllocationDescription(tensorflow::AllocationDescription* proto) const override {
    proto->set_requested_bytes(static_cast<int64_t>(bytes_));
    proto->set_allocated_bytes(static_cast<int64_t>(block_));
    proto->set_allocator_name("fastnn_output_cache");
  }

 private:
  size_t bytes_, block_;
  void (*release_)(void*, size_t);
};

absl::Status alloc(OpKernelContext* c, int index, const TensorShape& shape, Tensor** out) {
  const auto dt = c->expected_output_dtype(index);
  const size_t bytes = static_cast<size_t>(shape.num_elements()) * tensorflow::DataTypeSize(dt);
  const auto plain = [&] { return c->allocate_output(index, shape, out); };
  try {
    return F::pooled_or(*g_api, bytes, plain, [&](void* p, size_t block, void (*release)(void*, size_t)) {
      auto* buf = new PoolBuffer(p, bytes, block, release);
      Tensor t(dt, shape, buf);
      buf->Unref();  // the tensor holds the reference now
      c->set_output(index, t);
      *out = c->mutable_output(index);
      return absl::OkStatus();
    });
  } catch (const std::bad_alloc&) {
    return plain();  // TF's allocator reports what it cannot do
  }
}

// Inside these ops fastnn's parallel parts run on TensorFlow's own executor threads (the
// op's runner), not on fastnn's pool. TF's idle executor threads spin for work after each
// op; a fastnn pool thread woken then shares a core with one of them. The 1024 -> 1024 ->
// 1 Keras step at batch 1024, fastnn's time over stock's (examples/keras_mlp.py --large):
// 1.03-1.04 on fastnn's pool, 1.00-1.01 on the runner, 1.12-1.19 on TF's intra-op pool.
// FASTNN_TF_SHARED_THREADS=0 turns it off. The runner takes the front end's runner_executor, which needs independent
// parts: fastnn.keras never turns on OpenBLAS's threads callback here.
using TfRunner = std::function<void(std::function<void()>)>;

void post(void* rctx, void (*task)(void*), void* arg) { (*static_cast<TfRunner*>(rctx))([task, arg] { task(arg); }); }

int worker_threads(OpKernelContext* c) {
  const auto* w = c->device()->tensorflow_cpu_worker_threads();
  return w ? w->num_threads : 1;
}

bool shared_threads(OpKernelContext* c) {
  static const bool enabled = [] {
    const char* e = std::getenv("FASTNN_TF_SHARED_THREADS");
    return !(e && std::string(e) == "0");
  }();
  TfRunner* r = c->runner();
  return enabled && r && *r && worker_threads(c) > 1;
}

struct TfThreads {  // for the scope of one op's kernels, on this thread
  F::Runner runner;
  F::ThreadScope scope;
  explicit TfThreads(OpKernelContext* c)
      : runner{&post, c->runner()},
        scope(*g_api, shared_threads(c), g_api->runner_executor, &runner, worker_threads(c), false) {}
};

// The 8 doubles of attribute "p" (bit patterns).
absl::Status numeric(OpKernelConstruction* c, std::vector<double>* p) {
  std::vector<int64_t> bits;
  TF_RETURN_IF_ERROR(c->GetAttr("p", &bits));
  p->resize(bits.size());
  if (!bits.empty()) std::memcpy(p->data(), bits.data(), bits.size() * sizeof(double));
  return absl::OkStatus();
}

// The activation every Dense / activation op carries.
absl::Status act_attrs(OpKernelConstruction* c, F::ActArgs* a) {
  int64_t code = 0;
  std::vector<double> p;
  TF_RETURN_IF_ERROR(c->GetAttr("act", &code));
  TF_RETURN_IF_ERROR(numeric(c, &p));
  return done(g_api->decode_act(code, p.data(), p.size(), a));
}

class DenseFwdOp : public OpKernel {
 public:
  explicit DenseFwdOp(OpKernelConstruction* c) : OpKernel(c) {
    OP_REQUIRES_OK(c, act_attrs(c, &a_));
    OP_REQUIRES_OK(c, c->GetAttr("has_b", &has_b_));
  }
  void Compute(OpKernelContext* c) override {
    const Tensor &x = c->input(0), &w = c->input(1), &b = c->input(2);
    OP_REQUIRES(c, x.dims() >= 1 && w.dims() == 2, bad("dense: x must be at least 1-D and w 2-D"));
    TensorShape ys = x.shape();
    ys.set_dim(ys.dims() - 1, w.dim_size(1));
    Tensor *y = nullptr, *z = nullptr;
    OP_REQUIRES_OK(c, alloc(c, 0, ys, &y));
    if (c->num_outputs() > 1) OP_REQUIRES_OK(c, alloc(c, 1, ys, &z));
    const View xv(x), wv(w), bv(b), yv(*y);
    const Out zo(z);
    TfThreads threads(c);
    OP_REQUIRES_OK(c, done(g_api->dense_forward(a_, xv.v, wv.v, false, has_b_ ? &bv.v : nullptr, yv.v, zo.p())));
  }

 private:
  F::ActArgs a_{};
  bool has_b_ = false;
};

class DenseBwdWOp : public OpKernel {
 public:
  explicit DenseBwdWOp(OpKernelConstruction* c) : OpKernel(c) {
    OP_REQUIRES_OK(c, act_attrs(c, &a_));
    OP_REQUIRES_OK(c, c->GetAttr("from_y", &from_y_));
    OP_REQUIRES_OK(c, c->GetAttr("nb", &nb_));
    OP_REQUIRES_OK(c, c->GetAttr("nd", &nd_));
    OP_REQUIRES(c, nd_ == (a_.act == fastnn::Act::linear ? 0 : 1), bad("dpre is an output unless linear"));
  }
  void Compute(OpKernelContext* c) override {
    const Tensor &dy = c->input(0), &x = c->input(1), &w = c->input(2), &r = c->input(3);
    OP_REQUIRES(c, w.dims() == 2, bad("dense backward: w must be 2-D"));
    Tensor *dw = nullptr, *db = nullptr, *dpre = nullptr;
    OP_REQUIRES_OK(c, alloc(c, 0, w.shape(), &dw));
    if (nb_) OP_REQUIRES_OK(c, alloc(c, 1, TensorShape({w.dim_size(1)}), &db));
    // dpre only when an op downstream reads it (a first layer's is not: no dx): without it
    // the product makes the activation gradient inside its packing and writes none.
    if (nd_ && c->output_required(1 + nb_)) OP_REQUIRES_OK(c, alloc(c, 1 + nb_, dy.shape(), &dpre));
    const View dyv(dy), xv(x), wv(w), rv(r), dwv(*dw);
    const Out dbo(db), dpo(dpre);
    TfThreads threads(c);
    OP_REQUIRES_OK(c, done(g_api->dense_backward(a_, from_y_, dyv.v, xv.v, wv.v, false, &rv.v, nullptr, &dwv.v,
                                                 dbo.p(), dpo.p())));
  }

 private:
  F::ActArgs a_{};
  bool from_y_ = false;
  int64_t nb_ = 0, nd_ = 0;
};

// dx (..., in) = dpre (..., out) @ w^T: w (in, out) row-major is a torch-layout ("oi")
// weight of a layer out -> in.
class DenseBwdXOp : public OpKernel {
 public:
  using OpKernel::OpKernel;
  void Compute(OpKernelContext* c) override {
    const Tensor &dpre = c->input(0), &w = c->input(1);
    OP_REQUIRES(c, dpre.dims() >= 1 && w.dims() == 2, bad("dense dx: dy must be at least 1-D and w 2-D"));
    TensorShape xs = dpre.shape();
    xs.set_dim(xs.dims() - 1, w.dim_size(0));
    Tensor* dx = nullptr;
    OP_REQUIRES_OK(c, alloc(c, 0, xs, &dx));
    const View dv(dpre), wv(w), dxv(*dx);
    const F::ActArgs linear{fastnn::Act::linear, {}};
    TfThreads threads(c);
    OP_REQUIRES_OK(c, done(g_api->dense_forward(linear, dv.v, wv.v, true, nullptr, dxv.v, nullptr)));
  }
};

// Activations along the last axis; backward: from_y reads y, else x.
class ActOp : public OpKernel {
 public:
  ActOp(OpKernelConstruction* c, bool backward) : OpKernel(c), backward_(backward) {
    OP_REQUIRES_OK(c, act_attrs(c, &a_));
    if (backward_) OP_REQUIRES_OK(c, c->GetAttr("from_y", &from_y_));
  }
  void Compute(OpKernelContext* c) override {
    const Tensor& src = c->input(backward_ ? 1 : 0);
    Tensor* out = nullptr;
    OP_REQUIRES_OK(c, alloc(c, 0, src.shape(), &out));
    const View sv(src), ov(*out);
    TfThreads threads(c);
    if (!backward_) {
      OP_REQUIRES_OK(c, done(g_api->act_forward(a_, sv.v, ov.v, sv.v.last())));
      return;
    }
    const View dyv(c->input(0));
    OP_REQUIRES_OK(c, done(g_api->act_backward(a_, from_y_, sv.v, dyv.v, ov.v, sv.v.last())));
  }

 private:
  F::ActArgs a_{};
  bool backward_, from_y_ = false;
};
struct ActFwdOp : ActOp {
  explicit ActFwdOp(OpKernelConstruction* c) : ActOp(c, false) {}
};
struct ActBwdOp : ActOp {
  explicit ActBwdOp(OpKernelConstruction* c) : ActOp(c, true) {}
};

// Losses, reduction "none" (Keras' BCE rule: any float). pred: T; target: pred's dtype
// (elementwise) or int32 / int64 class indices.
class LossOp : public OpKernel {
 public:
  LossOp(OpKernelConstruction* c, bool backward) : OpKernel(c), backward_(backward) {
    int64_t kind = 0;
    std::vector<double> p;
    OP_REQUIRES_OK(c, c->GetAttr("kind", &kind));
    OP_REQUIRES_OK(c, numeric(c, &p));
    OP_REQUIRES_OK(c, done(g_api->decode_loss(kind, p.data(), p.size(), &d_)));
  }
  void Compute(OpKernelContext* c) override {
    const int off = backward_ ? 1 : 0;
    const Tensor &pred = c->input(off), &target = c->input(off + 1);
    const View pv(pred), tv(target);
    const F::LossCall call{&d_, pv.v, tv.v, nullptr, true};
    OP_REQUIRES_OK(c, done(g_api->loss_check(call)));
    TensorShape os = pred.shape();
    if (!backward_ && !g_api->loss_per_element(call)) os.RemoveLastDims(1);
    Tensor* o = nullptr;
    OP_REQUIRES_OK(c, alloc(c, 0, os, &o));
    const View ov(*o);
    if (!backward_) {
      double sum = 0;
      OP_REQUIRES_OK(c, done(g_api->loss_forward(call, &ov.v, &sum)));
      return;
    }
    const View gv(c->input(0));
    OP_REQUIRES_OK(c, done(g_api->loss_backward(call, &gv.v, 1.0, ov.v, nullptr)));
  }

 private:
  F::LossDesc d_{};
  bool backward_;
};
struct LossFwdOp : LossOp {
  explicit LossFwdOp(OpKernelConstruction* c) : LossOp(c, false) {}
};
struct LossBwdOp : LossOp {
  explicit LossBwdOp(OpKernelConstruction* c) : LossOp(c, true) {}
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

#define FASTNN_ACT_ATTRS .Attr("act: int").Attr("p: list(int)")
#define FASTNN_LOSS_ATTRS .Attr("kind: int").Attr("p: list(int)")

REGISTER_OP("FastnnDenseFwd")
    .Input("x: T").Input("w: T").Input("b: T")
    .Output("y: T").Output("z: nz * T")
    .Attr("T: {half, bfloat16, float, double}") FASTNN_ACT_ATTRS
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
    .Attr("T: {half, bfloat16, float, double}") FASTNN_ACT_ATTRS
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
    .Attr("T: {half, bfloat16, float, double}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle w, dx;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &w));
      TF_RETURN_IF_ERROR(last_replaced(c, c->input(0), c->Dim(w, 0), &dx));
      c->set_output(0, dx);
      return absl::OkStatus();
    });

REGISTER_OP("FastnnActFwd")
    .Input("x: T").Output("y: T")
    .Attr("T: {half, bfloat16, float, double}") FASTNN_ACT_ATTRS
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(0));
      return absl::OkStatus();
    });

REGISTER_OP("FastnnActBwd")
    .Input("dy: T").Input("r: T").Output("dx: T")
    .Attr("T: {half, bfloat16, float, double}") FASTNN_ACT_ATTRS
    .Attr("from_y: bool")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(0));
      return absl::OkStatus();
    });

REGISTER_OP("FastnnLossFwd")
    .Input("pred: T").Input("target: TT").Output("loss: T")
    .Attr("T: {half, bfloat16, float, double}").Attr("TT: {half, bfloat16, float, double, int32, int64}") FASTNN_LOSS_ATTRS
    .SetShapeFn([](InferenceContext* c) {
      tensorflow::DataType tt;
      TF_RETURN_IF_ERROR(c->GetAttr("TT", &tt));
      if (tt != tensorflow::DT_INT32 && tt != tensorflow::DT_INT64) {  // elementwise
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
    .Attr("T: {half, bfloat16, float, double}").Attr("TT: {half, bfloat16, float, double, int32, int64}") FASTNN_LOSS_ATTRS
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(1));
      return absl::OkStatus();
    });

#define FASTNN_KERNEL(op, cls, T) REGISTER_KERNEL_BUILDER(Name(op).Device(DEVICE_CPU).TypeConstraint<T>("T"), cls)
#define FASTNN_LOSS_KERNELS(T, TT)                                                                          \
  REGISTER_KERNEL_BUILDER(                                                                                 \
      Name("FastnnLossFwd").Device(DEVICE_CPU).TypeConstraint<T>("T").TypeConstraint<TT>("TT"), LossFwdOp); \
  REGISTER_KERNEL_BUILDER(                                                                                 \
      Name("FastnnLossBwd").Device(DEVICE_CPU).TypeConstraint<T>("T").TypeConstraint<TT>("TT"), LossBwdOp);
#define FASTNN_REGISTER(T)                         \
  FASTNN_KERNEL("FastnnDenseFwd", DenseFwdOp, T)   \
  FASTNN_KERNEL("FastnnDenseBwdW", DenseBwdWOp, T) \
  FASTNN_KERNEL("FastnnDenseBwdX", DenseBwdXOp, T) \
  FASTNN_KERNEL("FastnnActFwd", ActFwdOp, T)       \
  FASTNN_KERNEL("FastnnActBwd", ActBwdOp, T)       \
  FASTNN_LOSS_KERNELS(T, T)                        \
  FASTNN_LOSS_KERNELS(T, int32_t)                  \
  FASTNN_LOSS_KERNELS(T, int64_t)

// float16 / bfloat16 (Keras' mixed_float16 / mixed_bfloat16): the 16-bit tensors reach the
// kernels as they are; the front end widens them in registers / L1 blocks, accumulates in
// float32 and rounds each output once (docs/lowp.md).
FASTNN_REGISTER(Eigen::half)
FASTNN_REGISTER(tensorflow::bfloat16)
FASTNN_REGISTER(float)
FASTNN_REGISTER(double)

// 0 on success; -1: not fastnn's table or a table of another build (rebuild both).
extern "C" __attribute__((visibility("default"))) int fastnn_tf_init(const void* table) {
  g_api = F::connect(table);
  return g_api ? 0 : -1;
}
