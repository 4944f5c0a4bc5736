// parallel.cpp — a small persistent thread pool (no OpenMP: torch and OpenBLAS bring
// their own runtimes, and a third one in the same process is how oversubscription and
// fork hangs start). Workers sleep on a condition variable between calls
// (or spin first: FASTNN_SPIN_US).
#include "parallel.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

extern "C" {
#include <cblas.h>
}

namespace fastnn {
namespace {

int detect_threads() {
  if (const char* env = std::getenv("FASTNN_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n >= 1) return std::min(n, 256);
  }
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

// How long a worker (and a caller waiting for its parts) spins before it sleeps: 0 (off)
// unless FASTNN_SPIN_US says otherwise. Spinning skips the futex wake of a sleeping
// worker, which back-to-back mid-size elementwise calls pay, but a spinning worker takes a
// core from OpenBLAS's threads in the products that follow, and layers matter more
// (python -m fastnn.bench --ops activation,dense with FASTNN_SPIN_US=30: docs/performance.md).
int64_t spin_ns() {
  static const int64_t ns = [] {
    const char* env = std::getenv("FASTNN_SPIN_US");
    const long us = env ? std::atol(env) : 0;
    return static_cast<int64_t>(std::max(0L, std::min(us, 100000L))) * 1000;
  }();
  return ns;
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// true once ready() holds, false if it still does not after spin_ns().
template <class F> bool spin_until(F ready) {
  const int64_t limit = spin_ns();
  if (limit <= 0) return ready();
  const auto t0 = std::chrono::steady_clock::now();
  for (unsigned i = 1;; ++i) {
    if (ready()) return true;
    cpu_relax();
    if ((i & 63) == 0 && std::chrono::steady_clock::now() - t0 > std::chrono::nanoseconds(limit)) return ready();
  }
}

class Pool {
 public:
  explicit Pool(int workers) : pid_(getpid()) {
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this, i] { loop(i + 1); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.detach();  // at exit: never join inside a dying process
  }
  int workers() const { return static_cast<int>(threads_.size()); }
  bool usable() const { return getpid() == pid_; }  // a forked child has no workers

  // Runs job(part) for part in [0, parts); the caller runs part 0. Returns false
  // (doing nothing) when the pool is busy with another caller's job.
  bool run(int parts, const std::function<void(int)>& job) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    {
      std::lock_guard<std::mutex> lk(m_);
      job_ = &job;
      parts_ = parts;
      pending_.store(parts - 1, std::memory_order_relaxed);
      ++generation_;
      published_.store(generation_, std::memory_order_release);
    }
    cv_.notify_all();  // no system call when every worker is still spinning
    job(0);
    if (!spin_until([this] { return pending_.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock<std::mutex> lk(m_);
      done_cv_.wait(lk, [this] { return pending_.load(std::memory_order_acquire) == 0; });
    }
    std::lock_guard<std::mutex> lk(m_);
    job_ = nullptr;
    return true;
  }

 private:
  void loop(int index) {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int)>* job;
      spin_until([&] { return published_.load(std::memory_order_acquire) != seen; });
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        if (index >= parts_) continue;
        job = job_;
      }
      (*job)(index);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lk(m_);  // the caller checks pending_ under m_: no lost wake-up
        done_cv_.notify_one();
      }
    }
  }

  std::vector<std::thread> threads_;
  std::mutex busy_, m_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int)>* job_ = nullptr;  // these three: under m_
  int parts_ = 0;
  uint64_t generation_ = 0;
  std::atomic<uint64_t> published_{0};  // generation_, for the workers' spin
  std::atomic<int> pending_{0};         // parts not yet done
  bool stop_ = false;
  pid_t pid_;
};

std::atomic<int> g_threads{0};

struct ThreadExecutor {
  Executor exec = nullptr;
  void* ctx = nullptr;
  int max_threads = 0;
};
thread_local ThreadExecutor t_exec;
// set_default_executor: the executor, its context and team-size query; t_home marks the
// thread that installed it.
std::atomic<Executor> g_def_exec{nullptr};
std::atomic<void*> g_def_ctx{nullptr};
std::atomic<int (*)(void*)> g_def_threads{nullptr};
thread_local bool t_home = false;

// The executor this thread's parallel parts run on now: its scope's, else the default one
// on the home thread while usable, else none (fastnn's pool).
ThreadExecutor current_exec() {
  if (t_exec.exec || !t_home) return t_exec;
  const Executor e = g_def_exec.load(std::memory_order_acquire);
  if (!e) return {};
  const int n = g_def_threads.load(std::memory_order_relaxed)(g_def_ctx.load(std::memory_order_relaxed));
  return n > 1 ? ThreadExecutor{e, g_def_ctx.load(std::memory_order_relaxed), n} : ThreadExecutor{};
}
std::atomic<int64_t> g_executor_runs{0}, g_blas_callbacks{0};  // thread_counters()

void call_job(void* jctx, int i) { (*static_cast<const std::function<void(int)>*>(jctx))(i); }

// OpenBLAS's threads callback: its n jobs synchronize with one another (a GEMM's parts
// share packed panels), so they must all run at once: run_concurrent guarantees that.
void blas_jobs(int /*sync*/, openblas_dojob_callback dojob, int numjobs, size_t elsize, void* jobdata,
               int dojob_data) {
  char* base = static_cast<char*>(jobdata);
  g_blas_callbacks.fetch_add(1, std::memory_order_relaxed);
  run_concurrent(numjobs, [&](int i) { dojob(i, base + static_cast<size_t>(i) * elsize, dojob_data); });
}

Pool& pool() {
  // Workers are created once, for the machine's CPU count; set_num_threads only
  // lowers how many of them a call uses.
  static Pool* p = new Pool(detect_threads() - 1);  // leaked on purpose: see ~Pool
  return *p;
}

}  // namespace

int num_threads() {
  int n = g_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : detect_threads();
}

void set_num_threads(int n) { g_threads.store(std::max(1, n), std::memory_order_relaxed); }

void set_thread_executor(Executor exec, void* ctx, int max_threads) {
  t_exec = exec && max_threads > 1 ? ThreadExecutor{exec, ctx, max_threads} : ThreadExecutor{};
}

void set_default_executor(Executor exec, void* ctx, int (*max_threads)(void* ctx)) {
  static std::mutex m;
  static bool blas = false;  // this default holds one use_blas_callback(true)
  std::lock_guard<std::mutex> lk(m);
  const bool has = exec && max_threads;
  if (has) {
    g_def_threads.store(max_threads, std::memory_order_relaxed);
    g_def_ctx.store(ctx, std::memory_order_relaxed);
  }
  g_def_exec.store(has ? exec : nullptr, std::memory_order_release);
  t_home = has;
  // OpenBLAS's jobs through the callback only where the executor has a team now (else
  // OpenBLAS keeps its own warm server threads: use_blas_callback's comment).
  const bool want = has && max_threads(ctx) > 1;
  if (want != blas) use_blas_callback(want);
  blas = want;
}

std::pair<int64_t, int64_t> thread_counters() {
  return {g_executor_runs.load(std::memory_order_relaxed), g_blas_callbacks.load(std::memory_order_relaxed)};
}

void use_blas_callback(bool on) {
  static std::mutex m;
  static int users = 0;
  std::lock_guard<std::mutex> lk(m);
  users = std::max(0, users + (on ? 1 : -1));
  if (users == (on ? 1 : 0)) scipy_openblas_set_threads_callback_function(on ? &blas_jobs : nullptr);
}

void run_concurrent(int n, const std::function<void(int)>& job) {
  if (n <= 1) {
    if (n == 1) job(0);
    return;
  }
  if (const ThreadExecutor ex = current_exec(); ex.exec && n <= ex.max_threads) {
    g_executor_runs.fetch_add(1, std::memory_order_relaxed);
    ex.exec(ex.ctx, n, &call_job, const_cast<void*>(static_cast<const void*>(&job)));
    return;
  }
  Pool& p = pool();
  if (n <= p.workers() + 1 && p.usable() && p.run(n, job)) return;
  std::vector<std::thread> extra;  // rare: the pool is busy (a nested call) or too small
  for (int i = 1; i < n; ++i) extra.emplace_back([&job, i] { job(i); });
  job(0);
  for (auto& t : extra) t.join();
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  int64_t parts = std::min<int64_t>(num_threads(), (n + grain - 1) / grain);
  if (parts <= 1) {
    fn(0, n);
    return;
  }
  Pool& p = pool();
  const ThreadExecutor ex = current_exec();
  parts = std::min<int64_t>(parts, ex.exec ? ex.max_threads : p.workers() + 1);
  // Even split, each part a multiple of `grain` except the last (so chunked reductions
  // that use `grain` as their chunk never straddle two parts).
  const int64_t chunks = (n + grain - 1) / grain;
  auto job = [&](int part) {
    const int64_t c0 = chunks * part / parts, c1 = chunks * (part + 1) / parts;
    const int64_t b = c0 * grain, e = std::min(n, c1 * grain);
    if (b < e) fn(b, e);
  };
  if (parts <= 1) {
    fn(0, n);
  } else if (ex.exec) {
    g_executor_runs.fetch_add(1, std::memory_order_relaxed);
    const std::function<void(int)> part_job = job;
    ex.exec(ex.ctx, static_cast<int>(parts), &call_job, const_cast<void*>(static_cast<const void*>(&part_job)));
  } else if (!p.usable() || !p.run(static_cast<int>(parts), job)) {
    fn(0, n);
  }
}

}  // namespace fastnn
