// emu.h — runs fastnn's CUDA kernels (csrc/cuda/kernels.cu) on the CPU, for tests.
//
// Each CUDA thread of a block is a std::thread; the blocks of a grid run one after the
// other. __syncthreads() is a std::barrier over the block's threads, and a thread that
// returns leaves the barrier (arrive_and_drop), as exited threads do on the GPU.
// __shared__ variables become function-local statics: one copy, shared by the block's
// threads (blocks never overlap). A missing __syncthreads then shows up as a wrong
// result, and under -fsanitize=thread as a reported race. Warp-level intrinsics are not
// emulated (the kernels use none).
#pragma once

#include <barrier>
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

inline void launch(dim3 grid, dim3 block, const std::function<void()>& body) {
  gdim = grid;
  bdim = block;
  const unsigned nt = block.x * block.y * block.z;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        std::barrier<> b(nt);
        bar = &b;
        std::vector<std::thread> threads;
        threads.reserve(nt);
        for (unsigned t = 0; t < nt; ++t)
          threads.emplace_back([&, t] {
            tid = dim3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
            bid = dim3{bx, by, bz};
            body();
            b.arrive_and_drop();
          });
        for (auto& th : threads) th.join();
        bar = nullptr;
      }
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
