// api.h — the CPU kernels as a table of function pointers, for C++ code outside fastnn._C.
//
// fastnn._C exports one CpuApi as the PyCapsule fastnn._C._cpu_api (name "fastnn._C.cpu_api").
// The torch autograd extension (csrc/torch/native.cpp) calls the kernels through it: the
// very code the Python API runs, without linking a second copy of it. A consumer checks
// `version` and `size` before using the table (compiled from the same headers, the two
// agree; a stale build of either side is refused, not misread).
#pragma once

#include <cstddef>

#include "cpu/kernels.h"
#include "cpu/parallel.h"
#include "cpu/pool.h"

namespace fastnn {

inline constexpr int kCpuApiVersion = 4;

template <class T> struct CpuKernels {
  void (*act_forward)(Act, const ActParams&, const T*, T*, int64_t, int64_t);
  void (*act_backward_x)(Act, const ActParams&, const T*, const T*, T*, int64_t, int64_t);
  void (*act_backward_y)(Act, const ActParams&, const T*, const T*, T*, int64_t, int64_t);
  void (*dense_forward)(Act, const ActParams&, const T*, const T*, bool, const T*, T*, T*, int64_t, int64_t,
                        int64_t);
  void (*dense_backward)(Act, const ActParams&, bool, const T*, const T*, const T*, bool, const T*, T*, T*, T*,
                         T*, int64_t, int64_t, int64_t);
  double (*loss_forward)(const LossArgs<T>&, const T*, const T*, T*, int64_t);
  void (*loss_backward)(const LossArgs<T>&, const T*, const T*, const T*, double, T*, T*, int64_t);
  double (*class_forward)(const ClassArgs&, const T*, const int64_t*, const T*, T*, int64_t, int64_t);
  void (*class_backward)(const ClassArgs&, const T*, const int64_t*, const T*, const T*, double, T*, int64_t,
                         int64_t);
};

struct CpuApi {
  int version;  // kCpuApiVersion
  int size;     // sizeof(CpuApi)
  CpuKernels<float> f32;
  CpuKernels<double> f64;
  bool (*act_has_y_backward)(Act);
  // The output buffer cache (cpu/pool.h): blocks of >= pool::kMinBytes.
  void* (*pool_acquire)(size_t bytes, size_t* block_bytes);
  void (*pool_release)(void* p, size_t block_bytes);
  // Threads (cpu/parallel.h): a host pool for the calling thread; OpenBLAS's jobs through it.
  void (*set_thread_executor)(Executor exec, void* ctx, int max_threads);
  void (*use_blas_callback)(bool on);
};

template <class T> constexpr CpuKernels<T> cpu_kernels() {
  return {&act_forward<T>,   &act_backward_x<T>, &act_backward_y<T>, &dense_forward<T>,  &dense_backward<T>,
          &loss_forward<T>,  &loss_backward<T>,  &class_forward<T>,  &class_backward<T>};
}

}  // namespace fastnn
