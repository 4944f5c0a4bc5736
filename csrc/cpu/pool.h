// pool.h — a cache of large output buffers for the CPU backend.
//
// Why: a fresh 64 MB output costs ~16k first-touch page faults (the kernel zeroes every
// page the first time it is written), which take longer than a memory-bound kernel such
// as relu over the same 16M floats (the "no cache" rows of python -m fastnn.bench --ops
// activation). torch and numpy pay this on every call (their large allocations are fresh
// mmaps). Buffers handed back to this pool are reused by the next output of the same
// size class, already faulted in.
//
// Blocks of >= kMinBytes, rounded up to 2 MiB, 2 MiB-aligned, advised as huge pages.
// A freed block stays cached while the cache holds <= limit bytes (FASTNN_CACHE_MB,
// default 1024; 0 turns caching off), else it goes back to the system. Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fastnn {
namespace pool {

inline constexpr size_t kMinBytes = size_t(1) << 20;  // below: plain malloc is as good
inline constexpr size_t kAlign = size_t(2) << 20;     // one x86-64 huge page

// A block of at least `bytes` (>= kMinBytes); throws std::bad_alloc.
void* acquire(size_t bytes, size_t* block_bytes);
// Back to the cache (or to the system past the limit).
void release(void* p, size_t block_bytes) noexcept;
// Frees every cached block; returns the bytes freed.
size_t empty_cache() noexcept;

struct Stats {
  size_t cached_bytes, limit_bytes, hits, misses;
};
Stats stats() noexcept;
void set_limit(size_t bytes) noexcept;

}  // namespace pool
}  // namespace fastnn
