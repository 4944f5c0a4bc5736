// emu.h — runs fastnn's CUDA kernels (csrc/cuda/kernels.cu) on the CPU, for tests.
//
// Each CUDA thread of a block is a std::thread (from a persistent pool); the blocks of a
// grid run one after the other. __syncthreads() is a std::barrier over the block's threads, and a thread that
// returns leaves the barrier (arrive_and_drop), as exited threads do on the GPU.
// __shared__ variables become function-local statics: one copy, shared by the block's
// threads (blocks never overlap). A missing __syncthreads then shows up as a wrong
// result, and under -fsanitize=thread as a reported race. Warp-level intrinsics are not
// emulated (the kernels use none).
#pragma once

#include <barrier>
#include <condition_variable>
#include <mutex>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};

namespace emu {
inline thread_local dim3 tid, bid;
inline dim3 bdim, gdim;
inline std::barrier<>* bar = nullptr;

// Persistent worker threads, one per CUDA thread of the largest block seen: creating
// threads per block would dominate the tests' run time.
struct Pool {
  std::vector<std::thread> threads;
  std::mutex mu;
  std::condition_variable start, done;
  unsigned gen = 0, active = 0, remaining = 0;
  const std::function<void()>* body = nullptr;
  dim3 block_idx;
  bool stop = false;

  void ensure(unsigned n) {
    while (threads.size() < n) {
      const unsigned id = static_cast<unsigned>(threads.size());
      threads.emplace_back([this, id] { work(id); });
    }
  }
  void work(unsigned id) {
    unsigned seen = 0;
    std::unique_lock<std::mutex> lk(mu);
    for (;;) {
      start.wait(lk, [&] { return stop || (gen != seen && id < active); });
      if (stop) return;
      seen = gen;
      const std::function<void()>* f = body;
      const dim3 bi = block_idx, bd = bdim;
      lk.unlock();
      tid = dim3{id % bd.x, (id / bd.x) % bd.y, id / (bd.x * bd.y)};
      bid = bi;
      (*f)();
      bar->arrive_and_drop();  // an exited thread no longer takes part in barriers
      lk.lock();
      if (--remaining == 0) done.notify_one();
    }
  }
  void run_block(unsigned nt, dim3 bi, const std::function<void()>& f) {
    ensure(nt);
    std::barrier<> b(nt);
    std::unique_lock<std::mutex> lk(mu);
    bar = &b;
    body = &f;
    block_idx = bi;
    active = nt;
    remaining = nt;
    ++gen;
    start.notify_all();
    done.wait(lk, [&] { return remaining == 0; });
    bar = nullptr;
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(mu);
      stop = true;
    }
    start.notify_all();
    for (auto& t : threads) t.join();
  }
};

// One launch at a time (the grid's state and the __shared__ statics are global): Python
// threads calling kernels concurrently queue here, as launches on one stream would.
inline void launch(dim3 grid, dim3 block, const std::function<void()>& body) {
  static Pool pool;
  static std::mutex launch_mu;
  std::lock_guard<std::mutex> one_at_a_time(launch_mu);
  gdim = grid;
  bdim = block;
  const unsigned nt = block.x * block.y * block.z;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) pool.run_block(nt, dim3{bx, by, bz}, body);
}
}  // namespace emu

#define threadIdx (emu::tid)
#define blockIdx (emu::bid)
#define blockDim (emu::bdim)
#define gridDim (emu::gdim)
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __syncthreads() (emu::bar->arrive_and_wait())

inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}
inline double __longlong_as_double(long long i) {
  double d;
  std::memcpy(&d, &i, sizeof d);
  return d;
}

// ---- CUDA's 16-bit storage types and the intrinsics the kernels use --------------------
// __half / __nv_bfloat16 as 2-byte bit patterns, converted with fastnn/half.h's exact
// conversions (widening exact; narrowing round-to-nearest-even, float16 overflow to inf,
// NaN kept), which are checked bit-exact against numpy float16 and ml_dtypes.bfloat16:
// what __half2float / __float2half_rn / __bfloat162float / __float2bfloat16_rn do on the
// GPU. No arithmetic operators: the kernels compute in float (common.cuh's ld / st), so a
// missing conversion is a compile error here as it would be a silent float path nowhere.
#include "fastnn/half.h"

#define FASTNN_CUDA_16BIT 1
struct __half {
  unsigned short __x;
};
struct __nv_bfloat16 {
  unsigned short __x;
};
static_assert(sizeof(__half) == 2 && sizeof(__nv_bfloat16) == 2, "16-bit storage types");
inline float __half2float(__half h) { return fastnn::f16_to_float(h.__x); }
inline __half __float2half_rn(float f) { return __half{fastnn::float_to_f16(f)}; }
inline float __bfloat162float(__nv_bfloat16 h) { return fastnn::bf16_to_float(h.__x); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16{fastnn::float_to_bf16(f)}; }
