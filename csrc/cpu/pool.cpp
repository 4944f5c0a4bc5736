// pool.cpp — see pool.h.
#include "pool.h"

#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace fastnn {
namespace pool {
namespace {

size_t limit_from_env() {
  const char* s = std::getenv("FASTNN_CACHE_MB");
  if (!s || !*s) return size_t(1024) << 20;
  char* end = nullptr;
  const long long mb = std::strtoll(s, &end, 10);
  return (end && *end == '\0' && mb >= 0) ? size_t(mb) << 20 : size_t(1024) << 20;
}

struct Cache {
  std::mutex mu;
  std::map<size_t, std::vector<void*>> free_blocks;  // block size -> cached blocks
  size_t cached = 0, limit = limit_from_env(), hits = 0, misses = 0;
};

Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: arrays may be freed during interpreter shutdown
  return *c;
}

size_t round_up(size_t bytes) {
  if (bytes > SIZE_MAX - kAlign) throw std::bad_alloc();
  return (bytes + kAlign - 1) / kAlign * kAlign;
}

}  // namespace

void* acquire(size_t bytes, size_t* block_bytes) {
  const size_t size = round_up(bytes < kMinBytes ? kMinBytes : bytes);
  *block_bytes = size;
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.free_blocks.find(size);
    if (it != c.free_blocks.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.cached -= size;
      ++c.hits;
      return p;
    }
    ++c.misses;
  }
  void* p = std::aligned_alloc(kAlign, size);
  if (!p) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  madvise(p, size, MADV_HUGEPAGE);  // advice only: failure changes nothing but speed
#endif
  return p;
}

void release(void* p, size_t block_bytes) noexcept {
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    if (c.cached + block_bytes <= c.limit) {
      try {
        c.free_blocks[block_bytes].push_back(p);
        c.cached += block_bytes;
        return;
      } catch (...) {  // no memory for the bookkeeping: free the block instead
      }
    }
  }
  std::free(p);
}

size_t empty_cache() noexcept {
  std::map<size_t, std::vector<void*>> blocks;
  size_t freed;
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    blocks.swap(c.free_blocks);
    freed = c.cached;
    c.cached = 0;
  }
  for (auto& kv : blocks)
    for (void* p : kv.second) std::free(p);
  return freed;
}

Stats stats() noexcept {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return {c.cached, c.limit, c.hits, c.misses};
}

void set_limit(size_t bytes) noexcept {
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    c.limit = bytes;
    if (c.cached <= bytes) return;
  }
  empty_cache();
}

}  // namespace pool
}  // namespace fastnn
