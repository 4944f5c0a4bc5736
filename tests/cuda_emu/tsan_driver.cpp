// tsan_driver.cpp — every CUDA kernel of csrc/cuda (kernels.cu) on the CPU emulator, under
// -fsanitize=thread (tests/test_cuda_emu_tsan.py builds and runs it; Python itself cannot
// host a TSan library here). Each kernel runs with several blocks of 32 or 64 threads on
// small shapes (rows longer than a block, grid-stride loops that wrap, aligned and
// misaligned data) and is compared with a serial loop over the same scalar_math.h
// formulas. A data race (a missing __syncthreads) is reported by TSan; a wrong result
// by the comparison. The 16-bit instances of the block-reducing kernels run too (run_half).
// Exit status: the number of failed checks (0 = all good).
#include "emu.h"
#include "cuda/kernels.cu"

#include <cmath>
#include <cstdio>
#include <random>
#include <type_traits>
#include <vector>

static int failures = 0;

template <class T> static bool near(T a, T b, double tol) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  if (std::isinf(a) || std::isinf(b)) return a == b;
  return std::fabs(double(a) - double(b)) <= tol * (1.0 + std::fabs(double(b)));
}
template <class T> static void expect(const std::vector<T>& got, const std::vector<T>& ref, double tol,
                                      const char* what, int code = -1) {
  for (size_t i = 0; i < ref.size(); ++i)
    if (!near(got[i], ref[i], tol)) {
      std::printf("FAIL %s (code %d, %s) at %zu: %.9g vs %.9g\n", what, code, sizeof(T) == 4 ? "f32" : "f64", i,
                  double(got[i]), double(ref[i]));
      ++failures;
      return;
    }
}

template <class T> static void run_all() {
  using namespace fk;
  std::mt19937 gen(7);
  std::normal_distribution<double> nd(0.0, 2.0);
  const double tol = sizeof(T) == 4 ? 2e-5 : 1e-12;
  auto randv = [&](size_t n) { std::vector<T> v(n); for (auto& e : v) e = T(nd(gen)); return v; };
  const ActParams p{0.0, INFINITY, 0.0, 1.0, 1.0, -1.0, 1.0, 0};
  const long long n = 1001;

  // elementwise activations, forward and backward (aligned data, then a misaligned view)
  for (int off = 0; off < 2; ++off) {
    std::vector<T> xs = randv(n + 1), dys = randv(n + 1), ys(n + 1), dxs(n + 1);
    const T *x = xs.data() + off, *dy = dys.data() + off;
    T *y = ys.data() + off, *dx = dxs.data() + off;
    for (int code = 0; code < fastnn::kNumElementwiseActivations; ++code) {
      emu::launch({3, 1, 1}, {32, 1, 1}, [&] { act_forward<T>(x, y, n, code, 0.0, INFINITY, 0.0, 1.0, 1.0, -1.0, 1.0, 0); });
      std::vector<T> got(y, y + n), ref(n);
      for (long long i = 0; i < n; ++i) ref[i] = act_fwd<T>(code, x[i], p);
      expect(got, ref, 0.0, "act_forward", code);
      emu::launch({3, 1, 1}, {32, 1, 1}, [&] { act_backward<T>(x, dy, dx, n, code, 0, 0.0, INFINITY, 0.0, 1.0, 1.0, -1.0, 1.0, 0); });
      for (long long i = 0; i < n; ++i) ref[i] = act_bwd<T>(code, x[i], dy[i], p);
      expect(std::vector<T>(dx, dx + n), ref, 0.0, "act_backward", code);
    }
    #define Y_CODE(f) int(Act::f),
    for (int code : {FASTNN_Y_BACKWARD_ACTIVATIONS(Y_CODE)}) {
#undef Y_CODE
      emu::launch({2, 1, 1}, {64, 1, 1}, [&] { act_backward<T>(x, dy, dx, n, code, 1, 0.0, INFINITY, 0.0, 1.0, 1.0, -1.0, 1.0, 0); });
      std::vector<T> ref(n);
      for (long long i = 0; i < n; ++i) ref[i] = act_bwd_y<T>(code, x[i], dy[i], p);
      expect(std::vector<T>(dx, dx + n), ref, 0.0, "act_backward from y", code);
    }
  }

  // softmax / log_softmax rows (cols > 4 blocks: unrolled, packed and tail loops), then the
  // serial two-pass reference
  for (long long cols : {300LL, 33LL}) {
    const long long rows = 5;
    std::vector<T> x = randv(rows * cols), dy = randv(rows * cols), y(rows * cols), dx(rows * cols);
    x[3] = T(INFINITY) * T(-1);
    for (int lg = 0; lg < 2; ++lg) {
      emu::launch({2, 1, 1}, {64, 1, 1}, [&] { softmax_forward<T>(x.data(), y.data(), rows, cols, lg); });
      std::vector<T> ref(rows * cols), gref(rows * cols);
      for (long long r = 0; r < rows; ++r) {
        const T* xr = &x[r * cols];
        double mx = -INFINITY, s = 0;
        for (long long j = 0; j < cols; ++j) mx = std::max(mx, double(xr[j]));
        for (long long j = 0; j < cols; ++j) s += std::exp(double(xr[j]) - mx);
        double sd = 0, sdy = 0;
        for (long long j = 0; j < cols; ++j) {
          const double yj = lg ? double(xr[j]) - mx - std::log(s) : std::exp(double(xr[j]) - mx) / s;
          ref[r * cols + j] = T(yj);
          sd += double(dy[r * cols + j]) * yj;
          sdy += double(dy[r * cols + j]);
        }
        for (long long j = 0; j < cols; ++j) {
          const double yj = ref[r * cols + j], d = dy[r * cols + j];
          gref[r * cols + j] = T(lg ? d - std::exp(yj) * sdy : yj * (d - sd));
        }
      }
      expect(y, ref, tol, lg ? "log_softmax_forward" : "softmax_forward");
      for (int from_x = 0; from_x < 2; ++from_x) {
        const T* src = from_x ? x.data() : y.data();
        emu::launch({3, 1, 1}, {32, 1, 1}, [&] { softmax_backward<T>(src, dy.data(), dx.data(), rows, cols, lg, from_x); });
        expect(dx, gref, 20 * tol, "softmax_backward", from_x);
      }
    }
  }

  // dense epilogue (bias + relu, keep_z) and prologue (relu' + bias-gradient partials)
  {
    const long long rows = 37, cols = 45, rpc = 10, nch = 4;
    std::vector<T> z0 = randv(rows * cols), b = randv(cols), dy = randv(rows * cols);
    std::vector<T> z = z0, y(rows * cols), g(rows * cols), db(cols);
    emu::launch({2, 3, 1}, {32, 1, 1}, [&] { bias_act<T>(z.data(), y.data(), b.data(), rows, cols, int(Act::relu), 0.0, INFINITY, 0.0, 1.0, 1.0, -1.0, 1.0, 0); });
    std::vector<T> zr(rows * cols), yr(rows * cols), gr(rows * cols), dbr(cols, T(0));
    for (long long i = 0; i < rows * cols; ++i) { zr[i] = z0[i] + b[i % cols]; yr[i] = act_fwd<T>(int(Act::relu), zr[i], p); }
    expect(z, zr, 0.0, "bias_act z");
    expect(y, yr, 0.0, "bias_act y");
    std::vector<double> partial(nch * cols);
    emu::launch({2, unsigned(nch), 1}, {32, 1, 1}, [&] { act_grad<T>(z.data(), dy.data(), g.data(), nullptr, partial.data(), rows, cols, rpc, int(Act::relu), 0, 0.0, INFINITY, 0.0, 1.0, 1.0, -1.0, 1.0, 0); });
    emu::launch({2, 1, 1}, {32, 1, 1}, [&] { col_reduce<T>(partial.data(), nch, cols, db.data()); });
    std::vector<double> dbd(cols, 0.0);
    for (long long i = 0; i < rows * cols; ++i) { gr[i] = act_bwd<T>(int(Act::relu), zr[i], dy[i], p); dbd[i % cols] += gr[i]; }
    for (long long c = 0; c < cols; ++c) dbr[c] = T(dbd[c]);
    expect(g, gr, 0.0, "act_grad g");
    expect(db, dbr, tol, "act_grad + col_reduce db");
  }

  // elementwise losses: per-element values, block partial sums + sum_all, gradients
  for (int code = 0; code < fastnn::kNumElementwiseLosses; ++code) {
    std::vector<T> pr = randv(n), tg = randv(n), out(n), dp(n), dt(n), pw = randv(3);
    if (code == int(Loss::bce) || code == int(Loss::kl_div) || code == int(Loss::poisson_nll))
      for (auto& v : pr) v = T(1) / (T(1) + std::exp(-v));
    if (code == int(Loss::bce) || code == int(Loss::kl_div))
      for (auto& v : tg) v = T(1) / (T(1) + std::exp(-v));
    std::vector<double> partial(3), total(1);
    const T* pwp = code == int(Loss::bce_with_logits) ? pw.data() : nullptr;
    emu::launch({3, 1, 1}, {32, 1, 1}, [&] { loss_forward<T>(pr.data(), tg.data(), out.data(), n, code, 1.0, 1.0, 1e-8, 0, 1, 1, pwp, 3, partial.data()); });
    emu::launch({1, 1, 1}, {64, 1, 1}, [&] { sum_all<double>(partial.data(), 3, total.data()); });
    const LossScalars<T> a{T(1), T(1), T(1e-8), false, true, true};
    std::vector<T> ref(n), dref(n), tref(n);
    double s = 0;
    for (long long i = 0; i < n; ++i) {
      const T w = pwp ? pw[i % 3] : T(1);
      ref[i] = loss_val<T>(code, pr[i], tg[i], a, w);
      s += ref[i];
      dref[i] = T(0.5) * loss_dpred<T>(code, pr[i], tg[i], a, w);
      tref[i] = T(0.5) * loss_dtarget<T>(code, pr[i], tg[i], a, w);
    }
    expect(out, ref, 0.0, "loss_forward values", code);
    expect(std::vector<double>{total[0]}, std::vector<double>{s}, 1e-12, "loss_forward sum", code);
    emu::launch({3, 1, 1}, {32, 1, 1}, [&] { loss_backward<T>(pr.data(), tg.data(), nullptr, 0.5, dp.data(), dt.data(), n, code, 1.0, 1.0, 1e-8, 0, 1, 1, pwp, 3); });
    expect(dp, dref, 0.0, "loss_backward dpred", code);
    expect(dt, tref, 0.0, "loss_backward dtarget", code);
  }

  // cross_entropy / nll rows with weights, label smoothing, an ignored row; probability targets
  {
    const long long rows = 7, cols = 150;
    std::vector<T> x = randv(rows * cols), w = randv(cols), loss(rows), dx(rows * cols), t = randv(rows * cols),
                   dt(rows * cols), g = randv(rows);
    for (auto& v : w) v = std::fabs(v);
    std::vector<long long> y(rows);
    for (long long r = 0; r < rows; ++r) y[r] = (r * 37) % cols;
    y[2] = -100;
    const double ls = 0.1;
    for (int nll = 0; nll < 2; ++nll) {
      emu::launch({3, 1, 1}, {64, 1, 1}, [&] { class_rows<T>(x.data(), y.data(), w.data(), g.data(), 0.0, loss.data(), dx.data(), rows, cols, nll, -100, nll ? 0.0 : ls); });
      std::vector<T> lref(rows), gref(rows * cols);
      double W = 0;
      for (long long j = 0; j < cols; ++j) W += w[j];
      for (long long r = 0; r < rows; ++r) {
        const T* xr = &x[r * cols];
        if (y[r] == -100) { lref[r] = 0; for (long long j = 0; j < cols; ++j) gref[r * cols + j] = 0; continue; }
        const double wy = w[y[r]], gr = g[r];
        if (nll) {
          lref[r] = T(-wy * xr[y[r]]);
          for (long long j = 0; j < cols; ++j) gref[r * cols + j] = T(j == y[r] ? -gr * wy : 0.0);
          continue;
        }
        double mx = -INFINITY, s = 0, sw = 0;
        for (long long j = 0; j < cols; ++j) mx = std::max(mx, double(xr[j]));
        for (long long j = 0; j < cols; ++j) s += std::exp(xr[j] - mx);
        const double lse = mx + std::log(s);
        for (long long j = 0; j < cols; ++j) sw += w[j] * (lse - xr[j]);
        lref[r] = T((1 - ls) * wy * (lse - xr[y[r]]) + ls / cols * sw);
        for (long long j = 0; j < cols; ++j) {
          const double pj = std::exp(xr[j] - lse);
          gref[r * cols + j] = T(gr * ((1 - ls) * wy * (pj - (j == y[r])) + ls / cols * (W * pj - w[j])));
        }
      }
      expect(loss, lref, 20 * tol, nll ? "nll rows loss" : "cross_entropy rows loss");
      expect(dx, gref, 20 * tol, nll ? "nll rows grad" : "cross_entropy rows grad");
    }
    for (auto& v : t) v = std::fabs(v);
    emu::launch({2, 1, 1}, {32, 1, 1}, [&] { soft_rows<T>(x.data(), t.data(), w.data(), g.data(), 0.0, loss.data(), dx.data(), dt.data(), rows, cols, ls); });
    std::vector<T> lref(rows), gref(rows * cols), tref(rows * cols);
    for (long long r = 0; r < rows; ++r) {
      const T *xr = &x[r * cols], *tr = &t[r * cols];
      double mx = -INFINITY, s = 0, v = 0, wt = 0;
      for (long long j = 0; j < cols; ++j) mx = std::max(mx, double(xr[j]));
      for (long long j = 0; j < cols; ++j) s += std::exp(xr[j] - mx);
      const double lse = mx + std::log(s);
      for (long long j = 0; j < cols; ++j) {
        const double tj = (1 - ls) * tr[j] + ls / cols;
        v -= w[j] * tj * (xr[j] - lse);
        wt += w[j] * tj;
      }
      lref[r] = T(v);
      for (long long j = 0; j < cols; ++j) {
        const double tj = (1 - ls) * tr[j] + ls / cols;
        gref[r * cols + j] = T(g[r] * (std::exp(xr[j] - lse) * wt - w[j] * tj));
        tref[r * cols + j] = T(-g[r] * (1 - ls) * w[j] * (xr[j] - lse));
      }
    }
    expect(loss, lref, 50 * tol, "soft rows loss");
    expect(dx, gref, 50 * tol, "soft rows grad");
    expect(dt, tref, 50 * tol, "soft rows target grad");
  }
}

// The 16-bit instances of the block-reducing kernels (8-element packs, float statistics,
// one rounding per output) against the float instances on the same widened inputs: the
// two differ only by the rounding of the stored outputs (and the order of float sums), so
// each 16-bit output must be within 2 ulps of the float output. TSan watches the races.
template <class S> static void run_half(const char* name) {
  using namespace fk;
  std::mt19937 gen(11);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  const float rel = std::is_same_v<S, __half> ? 2 * 0x1p-10f : 2 * 0x1p-7f;  // 2 ulps
  auto check = [&](const std::vector<S>& got, const std::vector<float>& ref, const char* what) {
    for (size_t i = 0; i < ref.size(); ++i) {
      const float g = Num<S>::ld(got[i]);
      if (!(std::fabs(g - ref[i]) <= rel * std::fabs(ref[i]) + 1e-6f)) {
        std::printf("FAIL %s (%s) at %zu: %.9g vs %.9g\n", what, name, i, double(g), double(ref[i]));
        ++failures;
        return;
      }
    }
  };
  const long long rows = 5, cols = 300;  // rows of more than 4 blocks of 64: every loop of row_max_sum
  std::vector<S> x(rows * cols), y(rows * cols), dx(rows * cols), loss(rows);
  std::vector<float> xf(rows * cols), yf(rows * cols), dxf(rows * cols), lossf(rows);
  for (long long i = 0; i < rows * cols; ++i) {
    x[i] = Num<S>::st(nd(gen));
    xf[i] = Num<S>::ld(x[i]);
  }
  for (int lg = 0; lg < 2; ++lg) {
    emu::launch({2, 1, 1}, {64, 1, 1}, [&] { softmax_forward<S>(x.data(), y.data(), rows, cols, lg); });
    emu::launch({2, 1, 1}, {64, 1, 1}, [&] { softmax_forward<float>(xf.data(), yf.data(), rows, cols, lg); });
    check(y, yf, lg ? "log_softmax_forward" : "softmax_forward");
  }
  std::vector<long long> t = {3, 299, -100, 0, 150};
  emu::launch({3, 1, 1}, {64, 1, 1}, [&] { class_rows<S>(x.data(), t.data(), nullptr, nullptr, 1.0, loss.data(), dx.data(), rows, cols, 0, -100, 0.1); });
  emu::launch({3, 1, 1}, {64, 1, 1}, [&] { class_rows<float>(xf.data(), t.data(), nullptr, nullptr, 1.0, lossf.data(), dxf.data(), rows, cols, 0, -100, 0.1); });
  check(loss, lossf, "class_rows loss");
  check(dx, dxf, "class_rows grad");
  // the fused epilogue from a float32 product: y = relu(acc + b), z = acc + b
  std::vector<S> b(cols), z(rows * cols);
  std::vector<float> bf(cols), zf(rows * cols);
  for (long long j = 0; j < cols; ++j) bf[j] = Num<S>::ld(b[j] = Num<S>::st(nd(gen)));
  emu::launch({10, 3, 1}, {32, 1, 1}, [&] { bias_act_acc<S>(xf.data(), z.data(), y.data(), b.data(), rows, cols, int(Act::gelu), 0.0, INFINITY, 0.0, 1.0, 1.0, -1.0, 1.0, 0); });
  const ActParams p{0.0, INFINITY, 0.0, 1.0, 1.0, -1.0, 1.0, 0};
  for (long long i = 0; i < rows * cols; ++i) {
    zf[i] = xf[i] + bf[i % cols];
    yf[i] = act_fwd<float>(int(Act::gelu), zf[i], p);
  }
  check(z, zf, "bias_act_acc z");
  check(y, yf, "bias_act_acc y");
}

int main() {
  run_all<float>();
  run_all<double>();
  run_half<__half>("f16");
  run_half<__nv_bfloat16>("bf16");
  std::printf("tsan_driver: %d failed checks\n", failures);
  return failures;
}
