// scalar_math_check.cu — compile-only check that scalar_math.h is valid CUDA device
// code (CI: nvcc -c). Instantiates every formula for float and double in a kernel;
// the CuPy backend's kernels include the same header.
#include "fastnn/scalar_math.h"

using namespace fastnn;

#define FASTNN_ACTS(X)                                                                      \
  X(linear) X(relu) X(relu6) X(leaky_relu) X(elu) X(selu) X(celu) X(gelu) X(silu) X(mish) \
  X(sigmoid) X(hard_sigmoid) X(hard_silu) X(tanh) X(softplus) X(softsign) X(log_sigmoid)  \
  X(hard_tanh) X(exponential)

template <class T> __global__ void every_formula(const T* x, const T* t, T* out, ActParams p, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const T v = x[i], u = t[i];
  T s = 0;
#define ACT(f) s += sm::f##_fwd<T>(v, p) + sm::f##_bwd<T>(v, u, p);
  FASTNN_ACTS(ACT)
#undef ACT
  s += sm::relu_bwd_y<T>(v, u, p) + sm::sigmoid_bwd_y<T>(v, u, p) + sm::tanh_bwd_y<T>(v, u, p) +
       sm::exponential_bwd_y<T>(v, u, p);
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
  out[i] = s;
}

template __global__ void every_formula<float>(const float*, const float*, float*, ActParams, int);
template __global__ void every_formula<double>(const double*, const double*, double*, ActParams, int);
