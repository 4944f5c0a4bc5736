// kernels.h — the CPU backend's kernel entry points (raw pointers, C-contiguous data).
//
// Preconditions are the callers' (csrc/bindings.cpp checks sizes and dtypes, the Python
// layer fastnn/_checks.py checks values); every function here is safe to call from
// many threads at once and never allocates Python objects, so it runs without the GIL.
#pragma once

#include <cstdint>
#include <functional>

#include "fastnn/op_table.h"  // Act, Loss: the codes of fastnn/_registry.py (generated)
#include "fastnn/half.h"  // bf16, f16, compute_t, widen / narrow
#include "fastnn/scalar_math.h"
#include "isa.h"  // isa(), have_avx512()

namespace fastnn {

// Parameters of the elementwise losses (unused fields ignored).
template <class T> struct LossArgs {
  Loss kind;                      // an elementwise loss (code < kNumElementwiseLosses)
  double delta, beta, eps;        // huber, smooth_l1, poisson_nll
  bool log_target, log_input, full;  // kl_div, poisson_nll
  const T* pos_weight;            // bce_with_logits: nullptr or pw_len values,
  int64_t pw_len;                 //   element i uses pos_weight[i % pw_len]
};

// ---- activations (activation.cpp) -------------------------------------------------
// x, y, dy, dx have n elements; softmax/log_softmax work on rows of `cols` elements.
template <class T> void act_forward(Act a, const ActParams& p, const T* x, T* y, int64_t n, int64_t cols);
// dx = dy * f'(x), for every activation.
template <class T> void act_backward_x(Act a, const ActParams& p, const T* x, const T* dy, T* dx, int64_t n, int64_t cols);
// dx from the output y: relu (default params), sigmoid, tanh, exponential, softmax, log_softmax.
template <class T> void act_backward_y(Act a, const ActParams& p, const T* y, const T* dy, T* dx, int64_t n, int64_t cols);
bool act_has_y_backward(Act a);
// C (m, n) = alpha op(A) op(B) + beta C, row-major, float32, on fastnn's pool
// (sgemm.cpp): only where isa() is avx2 or avx512. The Dense products of m x n x k use it
// when own_sgemm(m, n, k): it is on (that level, unless FASTNN_GEMM=openblas at
// start-up) and the product has at least the level's minimum multiply-adds
// (kOwnSgemmMinMacs on AVX-512, kOwnSgemmMinMacsAvx2 on AVX2), else OpenBLAS; a minimum
// of INT64_MAX turns it off (own_sgemm_on() false).
// set_own_sgemm(on, min_macs) sets both (min_macs < 0: the level's default; on only takes
// effect where the CPU has AVX2), for tests and benchmarks.
// rows_done (may be null) is called with each range of C's rows [r0, r1) once they are
// final, on the thread that computed them (a forward's bias + activation, in cache).
using RowsDone = std::function<void(int64_t r0, int64_t r1)>;
// b_rows (may be null; then b is read): op(B) (k, n) is not stored but produced, rows
// [p0, p1) at a time into a row-major (p1 - p0) x n buffer by fn, as its packing reads
// them: a backward's activation gradient g = dy * act'(.) made where dW = x^T g packs
// it, never written out. Rows come in fixed groups of `group` rows, each group's rows
// on one thread in order (the bias-gradient sums in fn stay deterministic).
struct BRows {
  int64_t group;
  std::function<void(int64_t p0, int64_t p1, float* rows)> fn;
};
void sgemm_own(bool at, bool bt, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                  const float* b, int64_t ldb, float beta, float* c, int64_t ldc, const RowsDone* rows_done = nullptr,
                  const BRows* b_rows = nullptr);
inline constexpr int64_t kOwnSgemmMinMacs = int64_t(1) << 30;      // the default minimum on AVX-512 (sgemm.cpp)
// The default minimum on AVX2: none (INT64_MAX: OpenBLAS for every product unless
// set_own_sgemm sets one; sgemm.cpp says why).
inline constexpr int64_t kOwnSgemmMinMacsAvx2 = INT64_MAX;
bool own_sgemm(int64_t m, int64_t n, int64_t k);
bool own_sgemm_on();
int64_t own_sgemm_min_macs();
void set_own_sgemm(bool on, int64_t min_macs);

// Block conversions between the 16-bit storage types and float32 (convert.cpp), at the
// best ISA level: exact widening, round-to-nearest-even narrowing (half.h's contract, bit
// for bit). The way 16-bit data enters and leaves the float32 kernels: a block small enough
// for L1 at a time, never a float32 copy of a whole tensor.
void widen_block(const bf16* src, float* dst, int64_t n);
void widen_block(const f16* src, float* dst, int64_t n);
void narrow_block(const float* src, bf16* dst, int64_t n);
void narrow_block(const float* src, f16* dst, int64_t n);

// The 16-bit products (gemm_lp.cpp): C (m, n, float32) = alpha op(A) op(B) + beta C, row-major,
// A of TA and B of TB, each float or a 16-bit type (half.h: bf16, f16), widened to float32
// exactly and accumulated in float32 (torch's contract: products of 16-bit inputs,
// float32 sums). beta == 0: C is not read. rows_done and b_rows as in sgemm_own (b_rows:
// TB is float, the rows come from fn). Instantiated for (T, T), (T, float), (float, T),
// T in {bf16, f16}: the Dense and Dense + cross-entropy products of 16-bit layers, whose
// gradients of the pre-activation stay float32 until the products read them. Runs on
// every ISA level; fastest where isa() has AVX-512 BF16 (bf16 x bf16 products).
template <class TA, class TB>
void gemm_lp(bool at, bool bt, int64_t m, int64_t n, int64_t k, float alpha, const TA* a, int64_t lda, const TB* b,
             int64_t ldb, float beta, float* c, int64_t ldc, const RowsDone* rows_done = nullptr,
             const BRows* b_rows = nullptr);

// Dense epilogue, one block of rows of a (rows, cols) product z:
// z += b (if b), y = act(z) (y may be z). Serial: callers parallelize over blocks.
template <class T> void bias_act_rows(Act a, const ActParams& p, T* z, T* y, const T* b, int64_t rows, int64_t cols);
// Dense backward prologue, one block of rows: g = dy * act'(x = z or y) and
// dbias[j] += sum_i g[i, j] accumulated in double (dbias may be null).
template <class T> void act_grad_rows(Act a, const ActParams& p, bool from_y, const T* zy, const T* dy,
                                      T* g, double* dbias, int64_t rows, int64_t cols);
// out[j] += sum_r g[r, j] (rows x cols), in double.
template <class T> void sum_rows(const T* g, int64_t rows, int64_t cols, double* out);

// ---- losses (loss.cpp) ------------------------------------------------------------
// Elementwise losses over n elements. Forward writes per-element values to out (if not
// null) and returns their sum. Backward: dpred = g * dloss/dpred with g = grad[i] when
// grad is not null, else grad_scalar; dtarget likewise when not null.
template <class T> double loss_forward(const LossArgs<T>& a, const T* pred, const T* target, T* out, int64_t n);
template <class T> void loss_backward(const LossArgs<T>& a, const T* pred, const T* target, const T* grad,
                                      double grad_scalar, T* dpred, T* dtarget, int64_t n);

// Cross-entropy family over (rows, cols) with the class axis last.
struct ClassArgs {
  bool log_probs;        // true: nll (pred are log-probabilities); false: cross_entropy (logits)
  int64_t ignore_index;
  double label_smoothing;
};
// Index targets: loss_i written to out (if not null); returns sum of losses.
template <class T> double class_forward(const ClassArgs& a, const T* pred, const int64_t* target, const T* weight,
                                        T* out, int64_t rows, int64_t cols);
template <class T> void class_backward(const ClassArgs& a, const T* pred, const int64_t* target, const T* weight,
                                       const T* grad, double grad_scalar, T* dpred, int64_t rows, int64_t cols);
// Probability targets (cross_entropy only).
template <class T> double soft_class_forward(const ClassArgs& a, const T* pred, const T* target, const T* weight,
                                             T* out, int64_t rows, int64_t cols);
template <class T> void soft_class_backward(const ClassArgs& a, const T* pred, const T* target, const T* weight,
                                            const T* grad, double grad_scalar, T* dpred, T* dtarget,
                                            int64_t rows, int64_t cols);

// ---- dense (dense.cpp) ------------------------------------------------------------
// x (m, k); w (n, k) if w_oi else (k, n); b (n) or null; y (m, n); z (m, n) or null.
template <class T> void dense_forward(Act a, const ActParams& p, const T* x, const T* w, bool w_oi, const T* b,
                                      T* y, T* z, int64_t m, int64_t k, int64_t n);
// dy (m, n); zy = z (activation's x) or y (from_y); outputs may be null (not wanted).
// g (m, n), when not null and the activation is not linear, receives dy * act'(.) (the
// gradient of the pre-activation; else it lives in a scratch buffer).
template <class T> void dense_backward(Act a, const ActParams& p, bool from_y, const T* dy, const T* x,
                                       const T* w, bool w_oi, const T* zy, T* dx, T* dw, T* db, T* g,
                                       int64_t m, int64_t k, int64_t n);

// ---- fused dense + cross-entropy (dense_ce.cpp) -------------------------------------
// x (n, h); w (c, h) if w_oi else (h, c); b (c) or null; target (n) class indices.
// Returns the sum of the row losses (written to loss_rows when not null). Gradients of
// sum_i g_i loss_i (g_i = grad[i] or grad_scalar) go to dx (n, h), dw, db when not null.
// Holds one (chunk, c) block of logits at a time.
// The beyond-torch parts, all off by default: class_weight (c) and row_weight (n)
// multiply each row's loss as torch's weight and a per-row weight; softcap > 0 caps the
// logits to cap * tanh(L / cap) before the softmax; z_scale adds z_scale * lse^2 to each
// row; lse (n), when not null, receives each row's log-sum-exp (of the capped logits).
template <class T> struct DenseCeExtras {
  const T* class_weight = nullptr;
  const T* row_weight = nullptr;
  double softcap = 0;
  double z_scale = 0;
  T* lse = nullptr;
};
template <class T> double dense_cross_entropy(const T* x, const T* w, bool w_oi, const T* b, const int64_t* target,
                                              int64_t n, int64_t h, int64_t c, int64_t ignore_index, double ls,
                                              const T* grad, double grad_scalar, T* loss_rows, T* dx, T* dw, T* db,
                                              int64_t chunk, const DenseCeExtras<T>& extras);
template <class T> double dense_cross_entropy(const T* x, const T* w, bool w_oi, const T* b, const int64_t* target,
                                              int64_t n, int64_t h, int64_t c, int64_t ignore_index, double ls,
                                              const T* grad, double grad_scalar, T* loss_rows, T* dx, T* dw, T* db,
                                              int64_t chunk) {
  return dense_cross_entropy<T>(x, w, w_oi, b, target, n, h, c, ignore_index, ls, grad, grad_scalar, loss_rows, dx,
                                dw, db, chunk, DenseCeExtras<T>{});
}
// The default chunk (rows) for n rows of c classes.
int64_t dense_ce_chunk(int64_t n, int64_t c, int64_t itemsize);

}  // namespace fastnn
