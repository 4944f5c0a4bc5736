// driver.cpp — the C++ backend's threaded code paths under ThreadSanitizer
// (tests/test_tsan_cpu.py builds csrc/cpu/*.cpp with -fsanitize=thread and runs this; the
// Python process cannot host libtsan here). Every kernel family runs with the pool at 4
// threads on sizes that split into many parts, from two caller threads at once (the
// second finds the pool busy and runs serially), and must give the bits of a
// single-threaded run. OpenBLAS itself is not instrumented (its own threads are kept at 1
// by OPENBLAS_NUM_THREADS=1 in the test), so reports can only come from fastnn's code.
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "kernels.h"
#include "parallel.h"

using namespace fastnn;
static int failures = 0;

template <class T> static void same(const std::vector<T>& a, const std::vector<T>& b, const char* what) {
  if (a.size() != b.size() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) != 0) {
    std::printf("FAIL %s: threaded result differs from the serial one\n", what);
    ++failures;
  }
}

template <class T> struct Run {
  std::vector<T> out;  // every result concatenated, bit patterns compared
  void add(const std::vector<T>& v) { out.insert(out.end(), v.begin(), v.end()); }
  void add(double v) { out.push_back(T(v)); }
};

template <class T> static Run<T> all_kernels(unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<double> nd(0.0, 2.0);
  auto randv = [&](size_t n) { std::vector<T> v(n); for (auto& e : v) e = T(nd(g)); return v; };
  Run<T> r;
  const ActParams p{0.0, INFINITY, 0.0, 1.0, 1.0, -1.0, 1.0, 0};
  const int64_t n = 300000, rows = 600, cols = 500;
  auto x = randv(n), dy = randv(n), y = std::vector<T>(n), dx = std::vector<T>(n);
  for (Act a : {Act::gelu, Act::silu, Act::relu}) {
    act_forward<T>(a, p, x.data(), y.data(), n, n);
    act_backward_x<T>(a, p, x.data(), dy.data(), dx.data(), n, n);
    r.add(y);
    r.add(dx);
  }
  for (Act a : {Act::softmax, Act::log_softmax}) {
    act_forward<T>(a, p, x.data(), y.data(), rows * cols, cols);
    act_backward_y<T>(a, p, y.data(), dy.data(), dx.data(), rows * cols, cols);
    r.add(y);
    r.add(dx);
  }
  LossArgs<T> la{Loss::huber, 1.0, 1.0, 1e-8, false, true, false, nullptr, 1};
  r.add(loss_forward<T>(la, x.data(), dy.data(), y.data(), n));
  loss_backward<T>(la, x.data(), dy.data(), nullptr, 0.5, dx.data(), y.data(), n);
  r.add(dx);
  std::vector<int64_t> t(rows);
  for (int64_t i = 0; i < rows; ++i) t[i] = (i * 7) % cols;
  const ClassArgs ca{false, -100, 0.1};
  std::vector<T> rowloss(rows);
  r.add(class_forward<T>(ca, x.data(), t.data(), nullptr, rowloss.data(), rows, cols));
  class_backward<T>(ca, x.data(), t.data(), nullptr, nullptr, 1.0 / rows, dx.data(), rows, cols);
  r.add(rowloss);
  r.add(dx);
  // dense forward / backward (fused epilogue and bias-gradient prologue run on the pool)
  const int64_t m = 512, k = 96, nn = 80;
  auto xm = randv(m * k), w = randv(nn * k), b = randv(nn), dym = randv(m * nn);
  std::vector<T> ym(m * nn), zm(m * nn), dxm(m * k), dwm(nn * k), dbm(nn);
  dense_forward<T>(Act::gelu, p, xm.data(), w.data(), true, b.data(), ym.data(), zm.data(), m, k, nn);
  dense_backward<T>(Act::gelu, p, false, dym.data(), xm.data(), w.data(), true, zm.data(), dxm.data(), dwm.data(),
                    dbm.data(), nullptr, m, k, nn);
  r.add(ym);
  r.add(dxm);
  r.add(dwm);
  r.add(dbm);
  std::vector<T> dxc(m * k), dwc(nn * k), dbc(nn), lr(m);
  std::vector<int64_t> tm(m);
  for (int64_t i = 0; i < m; ++i) tm[i] = (i * 13) % nn;
  r.add(dense_cross_entropy<T>(xm.data(), w.data(), true, b.data(), tm.data(), m, k, nn, -100, 0.0, nullptr, 1.0,
                               lr.data(), dxc.data(), dwc.data(), dbc.data(), 100));
  r.add(lr);
  r.add(dxc);
  r.add(dwc);
  r.add(dbc);
  return r;
}

static void host_exec(void*, int n, JobFn job, void* jctx);

template <class T> static void check(const char* what) {
  set_num_threads(1);
  const Run<T> serial = all_kernels<T>(1), serial2 = all_kernels<T>(2);
  set_num_threads(4);
  Run<T> a, b;
  std::thread t1([&] { a = all_kernels<T>(1); });
  std::thread t2([&] { b = all_kernels<T>(2); });
  t1.join();
  t2.join();
  same(a.out, serial.out, what);
  same(b.out, serial2.out, what);
  const Run<T> c = all_kernels<T>(1);  // the pool alone, 4 threads
  same(c.out, serial.out, what);
  Run<T> d;  // on a host framework's pool (set_thread_executor), beside a caller on fastnn's pool
  std::thread t3([&] {
    set_thread_executor(&host_exec, nullptr, 3);
    d = all_kernels<T>(1);
    set_thread_executor(nullptr, nullptr, 0);
  });
  std::thread t4([&] { b = all_kernels<T>(2); });
  t3.join();
  t4.join();
  same(d.out, serial.out, what);
  same(b.out, serial2.out, what);
}

// A host pool as fastnn.torch's nodes hand one in: every job on its own thread.
static void host_exec(void*, int n, JobFn job, void* jctx) {
  std::vector<std::thread> ts;
  for (int i = 1; i < n; ++i) ts.emplace_back([=] { job(jctx, i); });
  job(jctx, 0);
  for (auto& t : ts) t.join();
}

// run_concurrent's promise (OpenBLAS's GEMM jobs wait for one another): 4 jobs that each
// wait until all 4 have started, from three callers at once (so the pool is busy for
// some and too small for all: 4 jobs on FASTNN_NUM_THREADS=... workers) and on a host
// executor. A broken promise hangs here (the test's timeout).
static void check_concurrent() {
  set_num_threads(2);
  auto run = [](bool host) {
    if (host) set_thread_executor(&host_exec, nullptr, 4);
    for (int rep = 0; rep < 50; ++rep) {
      std::atomic<int> arrived{0};
      run_concurrent(4, [&](int) {
        arrived.fetch_add(1);
        while (arrived.load() < 4) std::this_thread::yield();
      });
    }
    if (host) set_thread_executor(nullptr, nullptr, 0);
  };
  std::thread t1([&] { run(true); }), t2([&] { run(false); }), t3([&] { run(false); });
  t1.join();
  t2.join();
  t3.join();
  std::printf("tsan_cpu: run_concurrent ok\n");
}

int main() {
  check<float>("float32");
  if (have_avx512()) {  // the Dense products on fastnn's own sgemm, at every size
    set_own_sgemm(true, 0);
    check<float>("float32, fastnn's sgemm");
    set_own_sgemm(true, -1);
    std::printf("tsan_cpu: fastnn's sgemm checked\n");
  }
  check<double>("float64");
  check_concurrent();
  std::printf("tsan_cpu: %d failed checks\n", failures);
  return failures;
}
