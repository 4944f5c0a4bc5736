// parallel.cpp — a small persistent thread pool (no OpenMP: torch and OpenBLAS bring
// their own runtimes, and a third one in the same process is how oversubscription and
// fork hangs start). Workers sleep on a condition variable between calls.
#include "parallel.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

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
      pending_ = parts - 1;
      ++generation_;
    }
    cv_.notify_all();
    job(0);
    std::unique_lock<std::mutex> lk(m_);
    done_cv_.wait(lk, [this] { return pending_ == 0; });
    job_ = nullptr;
    return true;
  }

 private:
  void loop(int index) {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int)>* job;
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        if (index >= parts_) continue;
        job = job_;
      }
      (*job)(index);
      std::lock_guard<std::mutex> lk(m_);
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }

  std::vector<std::thread> threads_;
  std::mutex busy_, m_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int)>* job_ = nullptr;
  int parts_ = 0, pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  pid_t pid_;
};

std::atomic<int> g_threads{0};

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

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  int64_t parts = std::min<int64_t>(num_threads(), (n + grain - 1) / grain);
  if (parts <= 1) {
    fn(0, n);
    return;
  }
  Pool& p = pool();
  parts = std::min<int64_t>(parts, p.workers() + 1);
  // Even split, each part a multiple of `grain` except the last (so chunked reductions
  // that use `grain` as their chunk never straddle two parts).
  const int64_t chunks = (n + grain - 1) / grain;
  auto job = [&](int part) {
    const int64_t c0 = chunks * part / parts, c1 = chunks * (part + 1) / parts;
    const int64_t b = c0 * grain, e = std::min(n, c1 * grain);
    if (b < e) fn(b, e);
  };
  if (parts <= 1 || !p.usable() || !p.run(static_cast<int>(parts), job)) fn(0, n);
}

}  // namespace fastnn
