// A caching allocator per device. Freed blocks go back to a free list keyed by
// size and are handed out again for requests of (nearly) the same size, so a
// training step after warm-up makes no cudaMalloc / malloc at all. On the
// CPU, where a cached block is resident memory already, a request that no
// block of up to twice its size fits takes any larger cached block before
// the system is asked (the resident set then does not grow). All work
// runs on one stream, so a block freed on the host may be reused by the next
// kernel without a sync: stream order already protects it.
//
// CUDA graphs (train/step_graph.h): every block handed out while a graph is
// being captured belongs to that graph until release_graph_pool(): the graph
// reads and writes it on every replay, so when its tensor dies it goes to
// the graph's own free list, never to other tensors. Without that, a tensor
// allocated between two replays (a batch, the test pass) could sit in memory
// that the next replay overwrites.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "core/device.h"

namespace scratchnet {

struct AllocatorStats {
  std::size_t in_use = 0;         // bytes held by live blocks (rounded sizes)
  std::size_t live_blocks = 0;    // blocks handed out and not yet returned
  std::size_t peak_in_use = 0;    // maximum of in_use since the last reset
  std::size_t reserved = 0;       // in_use + cached free blocks
  std::size_t system_allocs = 0;  // calls to cudaMalloc / aligned_alloc so far
  std::size_t cache_hits = 0;
};

class CachingAllocator {
 public:
  explicit CachingAllocator(Device device) : device_(device) {}
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // Returns memory for at least `bytes` (aligned to 256). Throws
  // OutOfMemoryError with the request and the bytes in use when the device
  // cannot provide it even after the cache is released.
  void* allocate(std::size_t bytes);
  void deallocate(void* ptr);
  // Returns every cached free block to the system (synchronises CUDA first).
  void release_cached();

  // Blocks handed out from begin_graph_capture() to end_graph_capture()
  // belong to the graph (see above); during the capture, requests are served
  // from the graph's free blocks first, then from the shared cache (the
  // block then joins the graph), then from the system (cudaMalloc, which a
  // capture may refuse: the capture then fails). release_graph_pool(): the
  // graph is gone, its blocks return to the shared cache.
  void begin_graph_capture();
  void end_graph_capture();
  void release_graph_pool();
  std::size_t graph_pool_blocks() const;

  AllocatorStats stats() const;
  void reset_peak();
  Device device() const { return device_; }

  // The allocator of a device (created on first use; lives until exit).
  static CachingAllocator& of(Device device);

  // Rounding of a request to the size class it is cached under.
  static std::size_t round_size(std::size_t bytes);

 private:
  void* system_alloc(std::size_t bytes);
  void system_free(void* ptr, std::size_t bytes);

  Device device_;
  mutable std::mutex mu_;
  std::multimap<std::size_t, void*> free_;       // size -> block
  std::unordered_map<void*, std::size_t> live_;  // block -> size
  bool graph_capture_ = false;
  std::unordered_map<void*, std::size_t> graph_blocks_;  // the graph's blocks -> size
  std::multimap<std::size_t, void*> graph_free_;         // those of them no tensor holds
  AllocatorStats stats_;
};

// RAII owner of one block; the storage behind tensors.
class Storage {
 public:
  Storage(Device device, std::size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return ptr_; }
  std::size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  Device device_;
  std::size_t bytes_;
  void* ptr_;
};

}  // namespace scratchnet
