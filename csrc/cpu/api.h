// api.h — fastnn._C's front end (front/front.h) as a table of function pointers, for the
// bridges built outside fastnn._C, plus the small pieces each of them needs around it.
//
// fastnn._C exports one CpuApi as the PyCapsule fastnn._C._cpu_api (name "fastnn._C.cpu_api").
// fastnn.torch's nodes (csrc/torch/native.cpp), the TensorFlow ops (csrc/tf/ops.cc) and the
// XLA FFI handlers (csrc/jax/ffi.cpp) are built on first use against their framework and
// call the front end through it: the very checks and kernels the Python API runs, without
// linking a second copy of them. connect() refuses a table of another build (version, size
// or op table differ: rebuild both) instead of misreading it.
#pragma once

#include <cstddef>
#include <new>

#include "front/front.h"

namespace fastnn {

inline constexpr int kCpuApiVersion = 6;

struct CpuApi {
  int version;             // kCpuApiVersion
  int size;                // sizeof(CpuApi)
  unsigned op_table_hash;  // kOpTableHash: the activation and loss codes agree
  // the front end (front/front.h)
  front::Status (*decode_act)(int64_t, const double*, size_t, front::ActArgs*);
  front::Status (*decode_loss)(int64_t, const double*, size_t, front::LossDesc*);
  front::Status (*act_forward)(const front::ActArgs&, const front::View&, const front::View&, int64_t);
  front::Status (*act_backward)(const front::ActArgs&, bool, const front::View&, const front::View&,
                                const front::View&, int64_t);
  front::Status (*dense_forward)(const front::ActArgs&, const front::View&, const front::View&, bool,
                                 const front::View*, const front::View&, const front::View*);
  front::Status (*dense_backward)(const front::ActArgs&, bool, const front::View&, const front::View&,
                                  const front::View&, bool, const front::View*, const front::View*,
                                  const front::View*, const front::View*, const front::View*);
  front::Status (*loss_check)(const front::LossCall&);
  bool (*loss_per_element)(const front::LossCall&);
  front::Status (*loss_forward)(const front::LossCall&, const front::View*, double*);
  front::Status (*loss_backward)(const front::LossCall&, const front::View*, double, const front::View&,
                                 const front::View*);
  bool (*loss_in_domain)(const front::LossCall&);
  double (*loss_denominator)(const front::LossCall&, int);
  bool (*act_has_y_backward)(Act);
  // The output buffer cache (cpu/pool.h): blocks of >= pool::kMinBytes.
  void* (*pool_acquire)(size_t bytes, size_t* block_bytes);
  void (*pool_release)(void* p, size_t block_bytes);
  // Threads (cpu/parallel.h): a host executor for the calling thread; OpenBLAS's jobs through it.
  void (*set_thread_executor)(Executor exec, void* ctx, int max_threads);
  void (*use_blas_callback)(bool on);
  Executor runner_executor;  // front::runner_executor
  void (*set_default_executor)(Executor exec, void* ctx, int (*max_threads)(void* ctx));  // version 6
};

// The table fastnn._C exports (bindings.cpp).
inline const CpuApi& cpu_api() {
  static const CpuApi api{kCpuApiVersion,          sizeof(CpuApi),          kOpTableHash,
                          &front::decode_act,      &front::decode_loss,     &front::act_forward,
                          &front::act_backward,    &front::dense_forward,   &front::dense_backward,
                          &front::loss_check,      &front::loss_per_element, &front::loss_forward,
                          &front::loss_backward,   &front::loss_in_domain,  &front::loss_denominator,
                          &act_has_y_backward,     &pool::acquire,          &pool::release,
                          &set_thread_executor,    &use_blas_callback,      &front::runner_executor,
                          &set_default_executor};
  return api;
}

namespace front {

// The table behind `table` if it is fastnn._C's of this build, else nullptr.
inline const CpuApi* connect(const void* table) {
  const auto* api = static_cast<const CpuApi*>(table);
  if (!api || api->version != kCpuApiVersion || api->size != static_cast<int>(sizeof(CpuApi)) ||
      api->op_table_hash != kOpTableHash)
    return nullptr;
  return api;
}

// For the scope of one node / op on this thread, fastnn's parallel parts (and with `blas`,
// OpenBLAS's jobs) run on the framework's executor instead of fastnn's pool; `on` false:
// nothing changes.
class ThreadScope {
 public:
  ThreadScope(const CpuApi& api, bool on, Executor exec, void* ctx, int threads, bool blas)
      : api_(api), on_(on), blas_(on && blas) {
    if (!on_) return;
    api_.set_thread_executor(exec, ctx, threads);
    if (blas_) api_.use_blas_callback(true);
  }
  ~ThreadScope() {
    if (blas_) api_.use_blas_callback(false);
    if (on_) api_.set_thread_executor(nullptr, nullptr, 0);
  }
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;

 private:
  const CpuApi& api_;
  bool on_, blas_;
};

// Bytes of `count` elements of `item` bytes; throws std::bad_alloc past SIZE_MAX.
inline size_t checked_bytes(size_t count, size_t item) {
  if (item && count > SIZE_MAX / item) throw std::bad_alloc();
  return count * item;
}

// The output allocation policy of every bridge: an output of >= pool::kMinBytes comes from
// fastnn's buffer cache (cpu/pool.h: reused memory, no first-touch page faults, which cost
// more than a memory-bound kernel's work), else from the framework's allocator, plain().
// wrap(p, block, release) makes the framework's tensor own the block: release(p, block)
// when it is freed; if wrap throws, the block goes back here.
template <class Plain, class Wrap>
auto pooled_or(const CpuApi& api, size_t bytes, Plain&& plain, Wrap&& wrap) -> decltype(plain()) {
  if (bytes < pool::kMinBytes) return plain();
  size_t block = 0;
  void* p = api.pool_acquire(bytes, &block);
  try {
    return wrap(p, block, api.pool_release);
  } catch (...) {
    api.pool_release(p, block);
    throw;
  }
}

}  // namespace front
}  // namespace fastnn
