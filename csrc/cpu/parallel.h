// parallel.h — the CPU backend's thread pool and ISA dispatch helpers.
//
// parallel_for(n, grain, fn) splits [0, n) into contiguous parts of at least `grain`
// items and runs fn(begin, end) on them, the caller taking part 0. One persistent pool
// per process (FASTNN_NUM_THREADS threads, default: the CPUs this process may use). If
// another Python thread is already using the pool, the call runs serially in its own
// thread: results never depend on that, because every reduction here is split into
// fixed-size chunks independent of the thread count (see chunked_sum in loss.cpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

namespace fastnn {

// Kernel entry points are compiled once per ISA level and dispatched at run time by
// FASTNN_ISA_FN (isa.h); inner loops are always_inline templates so that each copy is
// compiled with its level's ISA.
#define FASTNN_INLINE inline __attribute__((always_inline))

int num_threads();          // threads the pool may use, the caller included
void set_num_threads(int);  // 1 disables threading; takes effect on the next call

// Run fn(begin, end) over [0, n) in parallel parts of at least `grain` items.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

// Run job(i) for every i in [0, n), each on its own thread, all at once (the jobs may wait
// for one another, as OpenBLAS's GEMM jobs do): on this thread's executor if one is set,
// else on the pool, else (pool busy, or more jobs than workers) on threads started for it.
void run_concurrent(int n, const std::function<void(int)>& job);

// A host framework's thread pool, for the calling thread only (a thread_local):
// exec(ctx, n, job, jctx) must run job(jctx, i) for i in [0, n) each on its own thread,
// concurrently, and return when all are done; n <= max_threads. While set, parallel_for
// and OpenBLAS's jobs (see use_blas_callback) run on it instead of fastnn's pool and
// OpenBLAS's own threads. fastnn.torch's C++ nodes set torch's intra-op pool: its threads
// are the ones spinning after torch's last op, so they start at once instead of
// competing for the cores with fastnn's threads. nullptr restores the default.
using JobFn = void (*)(void* jctx, int i);
using Executor = void (*)(void* ctx, int n, JobFn job, void* jctx);
void set_thread_executor(Executor exec, void* ctx, int max_threads);

// The executor of the calling thread (the "home" thread) whenever no set_thread_executor
// scope is open on it: fastnn.torch's extension installs torch's intra-op pool here when it
// loads (on the thread that loads it, normally Python's main thread), so that fastnn's
// numpy API called between torch ops on that thread runs on torch's warm threads too
// instead of waking fastnn's pool or OpenBLAS's server next to torch's spinning workers.
// max_threads(ctx) is asked per call: the executor's team size then, or <= 1 where it
// must not be used (inside one of its parallel regions). If its team has more than one
// thread when it is installed, OpenBLAS's jobs go through its threads callback
// (use_blas_callback) on every thread from then on: on the home thread to this executor,
// elsewhere to fastnn's pool. exec nullptr removes it.
// Results are the same bits as on fastnn's pool (the same parts; OpenBLAS's jobs the same).
void set_default_executor(Executor exec, void* ctx, int (*max_threads)(void* ctx));

// OpenBLAS hands its threads' jobs to run_concurrent (its threads callback) instead of
// running them on its own thread server while at least one use_blas_callback(true) is not
// yet matched by a use_blas_callback(false). Global (any thread's GEMMs), so users turn it
// on only around their calls: OpenBLAS's own server keeps its warm threads for the rest
// (fastnn's pool wakes slower than OpenBLAS's warm threads: docs/performance.md, "Threads and pools").
void use_blas_callback(bool on);

// (calls run on a thread executor, OpenBLAS callbacks received) since the process started:
// what tests check to see where the work went.
std::pair<int64_t, int64_t> thread_counters();

// Sum of f(b, e) over fixed chunks [b, e) of `chunk` items, in chunk order: the same
// bits whatever the number of threads or the pool's state (deterministic reductions).
// Threads get parts of at least `min_part` items (a whole number of chunks).
template <class F> double chunked_sum(int64_t n, int64_t chunk, F f, int64_t min_part = 0) {
  if (n <= 0) return 0.0;
  std::vector<double> partial((n + chunk - 1) / chunk, 0.0);
  const int64_t grain = chunk * std::max<int64_t>(1, min_part / chunk);
  parallel_for(n, grain, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; c += chunk) partial[c / chunk] = f(c, std::min(c + chunk, e));
  });
  double s = 0.0;
  for (double v : partial) s += v;
  return s;
}

}  // namespace fastnn
