// scalar_math_check.cu — compile-only check that scalar_math.h is valid CUDA device
// code (CI: nvcc -c). Instantiates every formula for float and double in a kernel;
// the CuPy backend's kernels include the same header.
// The op lists are the generated op_table.h's.
#include "fastnn/op_table.h"
#include "fastnn/scalar_math.h"

using namespace fastnn;

template <class T> __global__ void every_formula(const T* x, const T* t, T* out, ActParams p, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const T v = x[i], u = t[i];
  T s = 0;
#define ACT(f) s += sm::f##_fwd<T>(v, p) + sm::f##_bwd<T>(v, u, p);
  FASTNN_ELEMENTWISE_ACTIVATIONS(ACT)
#undef ACT
#define ACT_Y(f) s += sm::f##_bwd_y<T>(v, u, p);
  FASTNN_Y_BACKWARD_ACTIVATIONS(ACT_Y)
#undef ACT_Y
  s += sm::mse_val(v, u) + sm::mse_dpred(v, u) + sm::mae_val(v, u) + sm::mae_dpred(v, u);
  s += sm::huber_val(v, u, T(1)) + sm::huber_dpred(v, u, T(1));
  s += sm::smooth_l1_val(v, u, T(1)) + sm::smooth_l1_dpred(v, u, T(1));
  s += sm::bce_val(v, u) + sm::bce_dpred(v, u) + sm::bce_dtarget(v, u);
  s += sm::bce_logits_val(v, u, T(2)) + sm::bce_logits_dpred(v, u, T(2)) + sm::bce_logits_dtarget(v, u, T(2));
  s += sm::kl_div_val(v, u, true) + sm::kl_div_dpred(v, u, false) + sm::kl_div_dtarget(v, u, false);
  s += sm::poisson_nll_val(v, u, true, true, T(1e-8)) + sm::poisson_nll_dpred(v, u, false, T(1e-8)) +
       sm::poisson_nll_dtarget(v, u, false, true, T(1e-8));
  s += sm::hinge_val(v, u) + sm::hinge_dpred(v, u) + sm::squared_hinge_val(v, u) + sm::squared_hinge_dpred(v, u);
  s += sm::log_cosh_val(v, u) + sm::log_cosh_dpred(v, u);
  const sm::LossScalars<T> a{T(1), T(1), T(1e-8), false, true, false};
#define LOSS(l) s += sm::l##_loss_val(v, u, a, T(2)) + sm::l##_loss_dpred(v, u, a, T(2)) + sm::l##_loss_dtarget(v, u, a, T(2));
  FASTNN_ELEMENTWISE_LOSSES(LOSS)
#undef LOSS
  out[i] = s;
}

template __global__ void every_formula<float>(const float*, const float*, float*, ActParams, int);
template __global__ void every_formula<double>(const double*, const double*, double*, ActParams, int);
