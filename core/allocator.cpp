#include "core/allocator.h"

#include <cstdlib>
#include <vector>

#include "core/cuda.h"
#include "core/error.h"

// Under AddressSanitizer a block's rounding slack and every cached (freed)
// block are poisoned, so an overrun past a tensor or a use after its storage
// died is reported, on the CPU and on the emulated GPU alike (both are host
// memory there; SCRATCHNET_SANITIZE is refused for real CUDA builds).
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define SN_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define SN_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define SN_POISON(p, n) ((void)(p), (void)(n))
#define SN_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace scratchnet {

namespace {
constexpr std::size_t kAlign = 256;
constexpr std::size_t kSmall = 1 << 20;      // below: round to 512 B
constexpr std::size_t kLargeStep = 2 << 20;  // above: round to 2 MiB

std::string mib(std::size_t bytes) {
  return std::to_string(bytes / (1024 * 1024)) + " MiB";
}
}  // namespace

std::size_t CachingAllocator::round_size(std::size_t bytes) {
  if (bytes == 0) bytes = 1;
  const std::size_t step = bytes < kSmall ? 512 : kLargeStep;
  return (bytes + step - 1) / step * step;
}

CachingAllocator::~CachingAllocator() {
  // Process exit: the CUDA context may already be gone, so CUDA blocks are
  // left to the driver; host blocks are returned.
  if (device_.is_cpu()) {
    for (auto& kv : free_) system_free(kv.second, kv.first);
    for (auto& kv : live_) system_free(kv.first, kv.second);
  }
}

void* CachingAllocator::system_alloc(std::size_t bytes) {
  ++stats_.system_allocs;
  if (device_.is_cpu()) return std::aligned_alloc(kAlign, bytes);
  return cuda::malloc_device(bytes);
}

void CachingAllocator::system_free(void* ptr, std::size_t bytes) {
  SN_UNPOISON(ptr, bytes);
  if (device_.is_cpu())
    std::free(ptr);
  else
    cuda::free_device(ptr);
}

void* CachingAllocator::allocate(std::size_t bytes) {
  const std::size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  // Best fit among cached blocks, but on a GPU never a block more than twice
  // the request: that would strand device memory (the CPU: see below).
  void* ptr = nullptr;
  std::size_t got = size;
  if (graph_capture_) {
    auto g = graph_free_.lower_bound(size);
    if (g != graph_free_.end() && g->first <= 2 * size) {
      ptr = g->second;
      got = g->first;
      graph_free_.erase(g);
      ++stats_.cache_hits;
      live_.emplace(ptr, got);
      stats_.in_use += got;
      stats_.live_blocks += 1;
      if (stats_.in_use > stats_.peak_in_use) stats_.peak_in_use = stats_.in_use;
      return ptr;  // unpoisoned whole (see below)
    }
  }
  auto it = free_.lower_bound(size);
  // On the CPU a cached block is resident whatever it serves: taking a larger
  // one than twice the request (the smallest there is) costs no memory, where
  // asking the system would add the whole request. On a GPU the 2x cap
  // stands: a stranded half there is capacity another tensor may need.
  const bool fits = it != free_.end() && (it->first <= 2 * size || device_.is_cpu());
  if (fits) {
    ptr = it->second;
    got = it->first;
    free_.erase(it);
    ++stats_.cache_hits;
  } else {
    ptr = system_alloc(size);
    if (ptr == nullptr && !free_.empty()) {
      // Give the cache back and try once more.
      if (device_.is_cuda()) cuda::synchronize();
      for (auto& kv : free_) {
        system_free(kv.second, kv.first);
        stats_.reserved -= kv.first;
      }
      free_.clear();
      ptr = system_alloc(size);
    }
    if (ptr == nullptr) {
      std::string msg = "out of memory on " + device_.str() + ": asked for " + mib(size) +
                        " with " + mib(stats_.in_use) + " in use by tensors";
      if (device_.is_cuda()) {
        std::size_t free_b = 0, total_b = 0;
        cuda::mem_info(&free_b, &total_b);
        msg += " (" + mib(free_b) + " free of " + mib(total_b) + ")";
      }
      msg += "; try a smaller --batch-size";
      throw OutOfMemoryError(msg, size, stats_.in_use);
    }
    stats_.reserved += size;
  }
  if (graph_capture_) {
    // A graph's block is read and written by every replay, whatever tensor
    // the host thinks holds it now: never poisoned while the graph lives.
    graph_blocks_.emplace(ptr, got);
    SN_UNPOISON(ptr, got);
  } else {
    SN_UNPOISON(ptr, bytes);
    SN_POISON(static_cast<char*>(ptr) + bytes, got - bytes);
  }
  live_.emplace(ptr, got);
  stats_.in_use += got;
  stats_.live_blocks += 1;
  if (stats_.in_use > stats_.peak_in_use) stats_.peak_in_use = stats_.in_use;
  return ptr;
}

void CachingAllocator::deallocate(void* ptr) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(ptr);
  if (it == live_.end()) return;  // not ours: a bug elsewhere, but never a double free
  stats_.in_use -= it->second;
  stats_.live_blocks -= 1;
  if (graph_blocks_.count(ptr)) {
    graph_free_.emplace(it->second, ptr);
  } else {
    SN_POISON(ptr, it->second);
    free_.emplace(it->second, ptr);
  }
  live_.erase(it);
}

void CachingAllocator::begin_graph_capture() {
  std::lock_guard<std::mutex> lock(mu_);
  if (graph_capture_ || !graph_blocks_.empty())
    throw Error("allocator: a CUDA graph pool exists already (one captured graph at a time)");
  graph_capture_ = true;
}

void CachingAllocator::end_graph_capture() {
  std::lock_guard<std::mutex> lock(mu_);
  graph_capture_ = false;
}

void CachingAllocator::release_graph_pool() {
  std::lock_guard<std::mutex> lock(mu_);
  graph_capture_ = false;
  for (auto& kv : graph_free_) {
    SN_POISON(kv.second, kv.first);
    free_.emplace(kv.first, kv.second);
  }
  graph_free_.clear();
  graph_blocks_.clear();  // live ones go to the shared cache when their tensor dies
}

std::size_t CachingAllocator::graph_pool_blocks() const {
  std::lock_guard<std::mutex> lock(mu_);
  return graph_blocks_.size();
}

void CachingAllocator::release_cached() {
  std::lock_guard<std::mutex> lock(mu_);
  if (device_.is_cuda() && !free_.empty()) cuda::synchronize();
  for (auto& kv : free_) {
    system_free(kv.second, kv.first);
    stats_.reserved -= kv.first;
  }
  free_.clear();
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.peak_in_use = stats_.in_use;
}

CachingAllocator& CachingAllocator::of(Device device) {
  // The device registry: one allocator per device, created on first use and
  // intentionally never destroyed before exit (tensors in static objects may
  // outlive any ordering we could pick).
  static std::mutex mu;
  // Leaked on purpose (never destroyed): see above.
  static auto& cpu_and_cuda = *new std::vector<std::unique_ptr<CachingAllocator>>(1 + 16);
  std::lock_guard<std::mutex> lock(mu);
  std::size_t slot = device.is_cpu() ? 0 : 1 + static_cast<std::size_t>(device.index);
  if (slot >= cpu_and_cuda.size())
    throw DeviceError("device " + device.str() + ": index out of range");
  if (!cpu_and_cuda[slot]) {
    if (device.is_cuda()) cuda::use_device(device.index);  // refuses a second GPU
    cpu_and_cuda[slot] = std::make_unique<CachingAllocator>(device);
  }
  return *cpu_and_cuda[slot];
}

Storage::Storage(Device device, std::size_t bytes)
    : device_(device), bytes_(bytes), ptr_(CachingAllocator::of(device).allocate(bytes)) {}

Storage::~Storage() {
  CachingAllocator::of(device_).deallocate(ptr_);
}

}  // namespace scratchnet
