// front.h — fastnn's one C++ front end: what every bridge (the pybind11 module fastnn._C,
// fastnn.torch's autograd nodes, the TensorFlow ops, the XLA FFI handlers) hands its
// framework's tensors to.
//
// A bridge fills a View per tensor (C-contiguous data, dtype, shape borrowed from its
// framework's tensor), decodes the activation / loss once (code + 8 doubles, as
// fastnn/_checks.py's ActSpec.numeric / LossSpec.numeric), and calls an entry point below.
// The entry point checks every shape, dtype and size the kernel relies on (no caller can
// make a kernel read or write out of bounds, class indices included), dispatches on the
// dtype and runs the kernel. Errors come back as a Status, never as an exception (the
// entry points are reached across shared libraries through the CpuApi table, cpu/api.h);
// the bridge turns it into its framework's error type, prefixed with its own name.
//
// Everything here runs without touching a Python object: the pybind11 bridge calls it with
// the GIL released. fastnn._C (csrc/bindings.cpp) calls these functions directly; the
// bridges built outside it include cpu/api.h, which adds the table of them and what every
// such bridge needs around a call (connect, ThreadScope, the pooled_or output policy).
#pragma once

#include <cstddef>
#include <cstdint>

#include "fastnn/half.h"  // bf16, f16: the 16-bit storage types
#include "cpu/kernels.h"  // Act, Loss and their counts: fastnn/op_table.h (generated)
#include "cpu/parallel.h"
#include "cpu/pool.h"

namespace fastnn::front {

// ---- tensors ------------------------------------------------------------------------
// f16 / bf16: IEEE binary16 and bfloat16 storage (fastnn/half.h: computed in float32,
// rounded once at each output).
enum class DType : int { f32, f64, i32, i64, f16, bf16, other };
const char* dtype_name(DType d);

// One tensor as a bridge sees it. The shape is borrowed (the framework's own array of
// ndim sizes, alive for the call). contiguous / writable are what the bridge knows; the
// front end refuses non-contiguous inputs and read-only outputs.
struct View {
  void* data = nullptr;
  DType dtype = DType::other;
  int ndim = 0;
  const int64_t* shape = nullptr;
  bool contiguous = true, writable = true;

  int64_t size() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
  int64_t rows() const {  // prod(shape[:-1]): the matrix rows of (..., last)
    int64_t m = 1;
    for (int i = 0; i + 1 < ndim; ++i) m *= shape[i];
    return m;
  }
  int64_t last() const { return ndim ? shape[ndim - 1] : 1; }
  template <class T> T* as() const { return static_cast<T*>(data); }
};

// ---- errors -------------------------------------------------------------------------
enum class Err : int { ok, value, type, memory };
// msg: "" when ok, else the message (thread-local in fastnn._C: valid until this thread's
// next front-end call; bridges copy it at once).
struct Status {
  Err err;
  const char* msg;
  bool ok() const { return err == Err::ok; }
};

// ---- decoded operations ---------------------------------------------------------------
// numeric = ActSpec.numeric: (negative_slope, max_value, threshold, alpha, beta, min_val,
// max_val, approximate), the fields of ActParams in order.
struct ActArgs {
  Act act;
  ActParams p;
};
// numeric = LossSpec.numeric: (delta, beta, eps, log_target, log_input, full, ignore_index,
// label_smoothing); one loss code space, class losses after the elementwise ones.
struct LossDesc {
  Loss kind;
  bool is_class;
  LossArgs<float> f;  // elementwise (pos_weight set per call)
  LossArgs<double> d;
  ClassArgs cls;      // class losses
};
inline constexpr int kNumNumeric = 8;

// The reductions of fastnn.torch's nodes (fastnn/torch/_native.py's reduction_code).
enum Reduction : int { kNone = 0, kMean = 1, kSum = 2, kBatchMean = 3 };

// A loss call: pred and target, plus the optional weight array (bce_with_logits'
// pos_weight, element i using pos_weight[i % len]; class losses' per-class weight).
//   elementwise: target has pred's dtype and size.
//   class: pred (..., C); target int32 / int64 class indices of pred.rows() elements (each
//   in [0, C) or the ignore index), or (cross_entropy) probabilities of pred's size.
// keras_bce: Keras' probability BCE takes any float; outside [0, 1] (NaN included) it is
// computed with fastnn/keras/_numpy.py's formula in double instead of the kernel's.
struct LossCall {
  const LossDesc* loss;
  View pred, target;
  const View* weight = nullptr;
  bool keras_bce = false;
};

// ---- entry points (front.cpp; other shared libraries reach them through cpu/api.h) ----
Status decode_act(int64_t code, const double* numeric, size_t count, ActArgs* out);
Status decode_loss(int64_t code, const double* numeric, size_t count, LossDesc* out);

// y = f(x); softmax / log_softmax over rows of `cols` (x.size() a multiple of it).
Status act_forward(const ActArgs& a, const View& x, const View& y, int64_t cols);
// dx = dy * f'(xy): xy is x, or y when from_y (an activation with a y-backward).
Status act_backward(const ActArgs& a, bool from_y, const View& xy, const View& dy, const View& dx, int64_t cols);

// y = act(x @ W + b), x (..., k) as m = x.rows() rows; w (n, k) if w_oi else (k, n);
// b (n) or null; y (m * n elements); z (the pre-activation, m * n) or null.
Status dense_forward(const ActArgs& a, const View& x, const View& w, bool w_oi, const View* b, const View& y,
                     const View* z);
// dy (m * n); zy: z (or y when from_y), ignored for linear; outputs null when not wanted;
// g (m * n, ignored for linear) receives dy * act'(.) when not null.
Status dense_backward(const ActArgs& a, bool from_y, const View& dy, const View& x, const View& w, bool w_oi,
                      const View* zy, const View* dx, const View* dw, const View* db, const View* g);

// Fused Dense + cross_entropy (cpu/kernels.h, dense_cross_entropy): x (n, h), w (c, h)
// if w_oi else (h, c), int64 target (n), outputs null when not wanted; chunk <= 0: the
// default.
struct DenseCeCall {
  View x, w;
  bool w_oi;
  const View* b;
  View target;
  int64_t ignore_index;
  double label_smoothing;
  const View* grad;
  double grad_scalar;
  const View *loss_rows, *dx, *dw, *db;
  int64_t chunk;
  // beyond torch (cpu/kernels.h, DenseCeExtras), null / 0 when off: class_weight (c),
  // row_weight (n), the soft cap (> 0), the z-loss scale, lse (n) out
  const View *class_weight = nullptr, *row_weight = nullptr, *lse = nullptr;
  double softcap = 0, z_scale = 0;
};
Status dense_cross_entropy(const DenseCeCall& c, double* total);

// Checks the call (shapes, dtypes, class indices): what every loss entry point checks first.
Status loss_check(const LossCall& c);
// True when the loss has a value per element (elementwise losses), false when per row
// (class losses): the shape of reduction "none" is pred's, or pred's without its last axis.
bool loss_per_element(const LossCall& c);
// The loss per element / row into out (may be null) and its sum into *sum.
Status loss_forward(const LossCall& c, const View* out, double* sum);
// dpred = g * dloss/dpred, g = grad[i] (per element / row) or grad_scalar; dtarget
// likewise (elementwise losses and soft targets) when not null.
Status loss_backward(const LossCall& c, const View* grad, double grad_scalar, const View& dpred,
                     const View* dtarget);
// False for bce with pred or target outside [0, 1] (NaN included): the public API refuses
// them (fastnn.torch's nodes leave such calls to it).
bool loss_in_domain(const LossCall& c);
// The divisor of "mean" / "batchmean" (1 for none / sum): elements, or class targets not
// ignored, or pred.shape[0] for batchmean. A checked call.
double loss_denominator(const LossCall& c, int reduction);
// The reduced value of a loss whose per-element / per-row values sum to `sum`, and the
// gradient scale of each of them given the reduced value's gradient g.
inline double loss_reduce(double sum, int reduction, double denom) { return reduction == kSum ? sum : sum / denom; }
inline double loss_grad_scale(double g, int reduction, double denom) {
  return reduction == kMean || reduction == kBatchMean ? g / denom : g;
}

// The generic executor of a framework that offers a runner ("run this task on one of my
// threads"): ctx is a Runner. The calling thread claims parts too and finishes alone if
// no runner thread comes, so no part waits on a thread that never started; the parts must
// therefore be independent (fastnn's parallel_for parts are; OpenBLAS's jobs, which wait
// for one another, are not: a bridge using this executor leaves the BLAS callback off).
struct Runner {
  void (*post)(void* rctx, void (*task)(void* arg), void* arg);
  void* rctx;
};
void runner_executor(void* ctx, int n, JobFn job, void* jctx);

}  // namespace fastnn::front
