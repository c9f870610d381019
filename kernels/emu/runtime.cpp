// The emulator's SIMT runtime: runs a kernel launch on the CPU (see simt.h for
// the model). A block is a set of Boost.Context fibers, one per CUDA thread,
// run by one CPU thread; blocks are spread over a small pool of CPU threads.
//
// Scheduling of a block, in passes: each pass resumes every runnable thread
// once, in the configured order (forward, reverse or shuffled), and each runs
// until it reaches a barrier, a warp collective or its end. Between passes,
// the warp collectives whose whole mask has arrived complete, and the block
// barrier opens when every thread still running waits at it. A pass that ends
// with no thread runnable and nothing to complete is a deadlock, reported
// with where each thread waits. Kernel-side errors (a deadlock, a warp mask
// that leaves out the caller or names exited threads, __trap) fail the launch
// with cudaErrorLaunchFailure, sticky as on a GPU, and a message on stderr.
#include <dlfcn.h>
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <boost/context/fiber.hpp>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "kernels/emu/internal.h"

// Under AddressSanitizer a stack goes back to the pool unpoisoned, so no
// redzone of a fiber's last frames can outlive it into the next fiber's.
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define SN_EMU_UNPOISON_STACK(sc) \
  ASAN_UNPOISON_MEMORY_REGION(static_cast<char*>((sc).sp) - (sc).size, (sc).size)
#else
#define SN_EMU_UNPOISON_STACK(sc) ((void)(sc))
#endif

thread_local uint3 threadIdx{0, 0, 0};
thread_local uint3 blockIdx{0, 0, 0};
thread_local uint3 blockDim{1, 1, 1};
thread_local uint3 gridDim{1, 1, 1};

namespace sn_emu {

namespace ctx = boost::context;

namespace {

// --- fiber stacks: reused, one guard page each --------------------------------------
class StackPool {
 public:
  explicit StackPool(std::size_t bytes) {
    const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    bytes_ = (bytes + page - 1) / page * page;
    guard_ = page;
  }
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;
  ~StackPool() {
    for (auto& sc : free_) munmap(static_cast<char*>(sc.sp) - sc.size - guard_, sc.size + guard_);
  }
  ctx::stack_context allocate() {
    if (!free_.empty()) {
      ctx::stack_context sc = free_.back();
      free_.pop_back();
      return sc;
    }
    void* p = mmap(nullptr, bytes_ + guard_, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    mprotect(p, guard_, PROT_NONE);  // an overflow faults instead of corrupting a neighbour
    ctx::stack_context sc;
    sc.size = bytes_;
    sc.sp = static_cast<char*>(p) + guard_ + bytes_;
    return sc;
  }
  void deallocate(ctx::stack_context& sc) noexcept {
    SN_EMU_UNPOISON_STACK(sc);
    free_.push_back(sc);
  }

 private:
  std::size_t bytes_ = 0, guard_ = 0;
  std::vector<ctx::stack_context> free_;
};

struct PoolAllocator {
  StackPool* pool;
  ctx::stack_context allocate() { return pool->allocate(); }
  void deallocate(ctx::stack_context& sc) noexcept { pool->deallocate(sc); }
};

// --- one CUDA thread -------------------------------------------------------------------
// Unstarted: not yet begun; Runnable: suspended and ready to go on.
enum class State : uint8_t { Unstarted, Runnable, Barrier, Warp, Done };

struct Lane {
  ctx::fiber fiber;  // the fiber this thread is suspended in (while it waits)
  uint3 tid{0, 0, 0};
  unsigned index = 0;
  State state = State::Unstarted;
  // a pending warp collective or barrier reduction
  WarpOp op = WarpOp::Sync;
  unsigned mask = 0;
  uint64_t in = 0, out = 0;
  int arg = 0, width = 32;
};

// The fibers are persistent: each runs CUDA threads one after another. A
// thread that ends hands its fiber straight to the next unstarted thread of
// the pass (no switch at all for kernels without barriers); a thread that
// waits keeps its fiber, and the scheduler takes an idle one (or makes one)
// for the next unstarted thread.
struct Block {
  const LaunchDesc* launch = nullptr;
  std::vector<Lane> lanes;
  unsigned n = 0;
  std::vector<unsigned> order;  // this pass's order of the threads
  std::size_t cursor = 0;       // the next position of `order` to look at
  Lane* current = nullptr;      // the thread running now
  ctx::fiber* sched = nullptr;  // in the running fiber: how to get back to the scheduler
  // What the fiber that just switched back to the scheduler is: idle, or
  // suspended in `current`.
  bool yielded_idle = false;
  bool quit = false;  // idle fibers return (the CPU thread is ending)
  unsigned assign = 0;  // the thread an idle fiber is resumed for
  std::string error;    // the first kernel-side error of this block
};

thread_local Block* tl_block = nullptr;

const char* op_name(WarpOp op) {
  switch (op) {
    case WarpOp::Sync:
      return "__syncwarp";
    case WarpOp::ShflIdx:
      return "__shfl_sync";
    case WarpOp::ShflUp:
      return "__shfl_up_sync";
    case WarpOp::ShflDown:
      return "__shfl_down_sync";
    case WarpOp::ShflXor:
      return "__shfl_xor_sync";
    case WarpOp::Ballot:
      return "__ballot_sync";
    case WarpOp::All:
      return "__all_sync";
    case WarpOp::Any:
      return "__any_sync";
  }
  return "?";
}

std::string hex(unsigned v) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%08x", v);
  return b;
}

std::string where(const Block& b, const Lane* l) {
  const LaunchDesc& d = *b.launch;
  std::string s = std::string("kernel ") + d.name + ", block (" + std::to_string(blockIdx.x) + "," +
                  std::to_string(blockIdx.y) + "," + std::to_string(blockIdx.z) + ")";
  if (l)
    s += ", thread (" + std::to_string(l->tid.x) + "," + std::to_string(l->tid.y) + "," +
         std::to_string(l->tid.z) + ")";
  return s + ": ";
}

Lane& self(const char* what) {
  if (tl_block == nullptr || tl_block->current == nullptr) {
    std::fprintf(stderr, "scratchnet emulator: %s called outside a kernel\n", what);
    std::abort();  // a programming error in the emulator's caller, not user input
  }
  return *tl_block->current;
}

// Back to the scheduler until it resumes this thread. The position after
// this thread is where the pass goes on.
void suspend(Lane& l) {
  Block& b = *tl_block;
  ++b.cursor;
  b.yielded_idle = false;
  ctx::fiber& s = *b.sched;
  s = std::move(s).resume();
  b.sched = &s;
  b.current = &l;
  threadIdx = l.tid;
}

// A kernel-side error: recorded, and this thread never runs again (the
// scheduler abandons the block, unwinding every fiber).
void trap(Lane& l, const std::string& what) {
  Block& b = *tl_block;
  if (b.error.empty()) b.error = where(b, &l) + what;
  for (;;) suspend(l);
}

// "0-31, 64" from the lanes whose state matches.
template <class Pred>
std::string ranges(const Block& b, Pred pred) {
  std::string s;
  unsigned i = 0;
  while (i < b.n) {
    if (!pred(b.lanes[i])) {
      ++i;
      continue;
    }
    unsigned j = i;
    while (j + 1 < b.n && pred(b.lanes[j + 1])) ++j;
    s += (s.empty() ? "" : ", ") + std::to_string(i) + (j > i ? "-" + std::to_string(j) : "");
    i = j + 1;
  }
  return s;
}

// Completes the warp collectives whose masks have fully arrived. Returns
// false (with b.error set) on a mask that can never complete.
bool resolve_warps(Block& b) {
  for (unsigned w0 = 0; w0 < b.n; w0 += 32) {
    const unsigned lanes_in_warp = std::min(32u, b.n - w0);
    for (unsigned i = 0; i < lanes_in_warp; ++i) {
      Lane& first = b.lanes[w0 + i];
      if (first.state != State::Warp) continue;
      const unsigned mask = first.mask;
      if (lanes_in_warp < 32 && (mask >> lanes_in_warp) != 0) {
        b.error = where(b, &first) + op_name(first.op) + " mask " + hex(mask) +
                  " names lanes that do not exist (this warp has " + std::to_string(lanes_in_warp) +
                  " threads)";
        return false;
      }
      for (unsigned j = 0; j < lanes_in_warp; ++j) {
        if (!(mask >> j & 1u)) continue;
        const Lane& o = b.lanes[w0 + j];
        std::string why;
        if (o.state == State::Done)
          why = "has exited";
        else if (o.state == State::Barrier)
          why = "waits at __syncthreads";
        else if (o.op != first.op || o.mask != mask)
          why = std::string("waits at ") + op_name(o.op) + " with mask " + hex(o.mask);
        if (!why.empty()) {
          b.error = where(b, &first) + op_name(first.op) + " with mask " + hex(mask) +
                    " can never complete: lane " + std::to_string(j) + " " + why;
          return false;
        }
      }
      const int width = first.width;
      if (width < 1 || width > 32 || (width & (width - 1)) != 0) {
        b.error = where(b, &first) + op_name(first.op) + " width " + std::to_string(width) +
                  " is not a power of two in [1, 32]";
        return false;
      }
      // Every lane of the mask is here: compute each one's result.
      uint64_t vote = 0;
      for (unsigned j = 0; j < lanes_in_warp; ++j)
        if (mask >> j & 1u) vote |= static_cast<uint64_t>(b.lanes[w0 + j].in != 0) << j;
      const uint64_t members = mask & (lanes_in_warp == 32 ? ~0u : (1u << lanes_in_warp) - 1);
      for (unsigned j = 0; j < lanes_in_warp; ++j) {
        if (!(mask >> j & 1u)) continue;
        Lane& l = b.lanes[w0 + j];
        const int base = static_cast<int>(j) & ~(width - 1), local = static_cast<int>(j) - base;
        int src = static_cast<int>(j);
        switch (l.op) {
          case WarpOp::ShflIdx:
            src = base + ((l.arg % width) + width) % width;
            break;
          case WarpOp::ShflUp:
            src = local >= l.arg ? static_cast<int>(j) - l.arg : src;
            break;
          case WarpOp::ShflDown:
            src = local + l.arg < width ? static_cast<int>(j) + l.arg : src;
            break;
          case WarpOp::ShflXor: {
            const int x = static_cast<int>(j) ^ l.arg;
            src = x < base + width ? x : src;
            break;
          }
          default:
            break;
        }
        switch (l.op) {
          case WarpOp::Ballot:
            l.out = vote;
            break;
          case WarpOp::All:
            l.out = vote == members;
            break;
          case WarpOp::Any:
            l.out = vote != 0;
            break;
          case WarpOp::Sync:
            l.out = 0;
            break;
          default:
            // Reading a lane outside the mask is undefined on a GPU: poison.
            l.out = (src >= 0 && src < static_cast<int>(lanes_in_warp) && (mask >> src & 1u))
                        ? b.lanes[w0 + src].in
                        : ~uint64_t{0};
        }
      }
      for (unsigned j = 0; j < lanes_in_warp; ++j)
        if (mask >> j & 1u) b.lanes[w0 + j].state = State::Runnable;
    }
  }
  return true;
}

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// --- the shared memory of the block: the kernels' module's thread-locals ----------------
struct TlsRange {
  char* begin = nullptr;
  std::size_t size = 0;
  std::string error;
};

TlsRange find_shared_segment(const void* kernel) {
  struct Search {
    uintptr_t addr;
    TlsRange r;
    bool found = false;
    std::string name;
  } s{reinterpret_cast<uintptr_t>(kernel), {}, false, {}};
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) -> int {
        auto* s = static_cast<Search*>(data);
        bool holds = false;
        const ElfW(Phdr)* tls = nullptr;
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& ph = info->dlpi_phdr[i];
          const uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
          if (ph.p_type == PT_LOAD && s->addr >= lo && s->addr < lo + ph.p_memsz) holds = true;
          if (ph.p_type == PT_TLS) tls = &ph;
        }
        if (!holds) return 0;
        s->found = true;
        s->name = info->dlpi_name ? info->dlpi_name : "";
        if (tls != nullptr) {
          if (tls->p_filesz != 0)
            s->r.error =
                "has initialised thread-local data; only __shared__ variables may be "
                "thread-local in the kernels' library";
          else if (info->dlpi_tls_data == nullptr)
            s->r.error = "has no thread-local block on this thread";
          s->r.begin = static_cast<char*>(info->dlpi_tls_data);
          s->r.size = tls->p_memsz;
        }
        return 1;
      },
      &s);
  if (!s.found) {
    s.r.error = "kernel address is in no loaded object";
  } else if (s.name.empty()) {
    s.r.error =
        "kernels are linked into the program; they must be their own shared library "
        "(libscratchnet_cuda.so) so that its thread-locals are the shared memory";
  } else {
    // The runtime's own thread-locals must never be poisoned.
    const uintptr_t mine = reinterpret_cast<uintptr_t>(&threadIdx);
    if (s.r.begin && mine >= reinterpret_cast<uintptr_t>(s.r.begin) &&
        mine < reinterpret_cast<uintptr_t>(s.r.begin) + s.r.size)
      s.r.error = "kernels share a library with the emulator's runtime";
  }
  if (!s.r.error.empty()) s.r.error = "emulated kernels' library " + s.name + ": " + s.r.error;
  return s.r;
}

// Per CPU thread and kernel (looked up once: dladdr takes a lock).
const TlsRange& shared_segment(const void* kernel) {
  thread_local std::deque<std::pair<const void*, TlsRange>> by_module;  // stable addresses
  thread_local std::vector<std::pair<const void*, const TlsRange*>> by_kernel;
  for (const auto& e : by_kernel)
    if (e.first == kernel) return *e.second;
  Dl_info info{};
  const void* base = dladdr(kernel, &info) ? info.dli_fbase : kernel;
  const TlsRange* r = nullptr;
  for (const auto& e : by_module)
    if (e.first == base) r = &e.second;
  if (r == nullptr) {
    by_module.emplace_back(base, find_shared_segment(kernel));
    r = &by_module.back().second;
  }
  by_kernel.emplace_back(kernel, r);
  return *r;
}

// --- running one block ---------------------------------------------------------------------
ctx::fiber fiber_main(ctx::fiber&& sched);

struct Worker {
  StackPool stacks{config().stack_bytes};
  Block block;
  std::vector<ctx::fiber> idle;  // fibers with no thread, kept from block to block
  Worker() = default;
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  // Idle fibers end by returning, not by being unwound (see run_block).
  ~Worker() {
    Block* outer = tl_block;
    tl_block = &block;
    block.quit = true;
    for (ctx::fiber& f : idle) f = std::move(f).resume();
    tl_block = outer;
  }
};

Worker& worker() {
  thread_local Worker w;
  return w;
}

// Runs the thread `b.current` to its end, in whatever fiber this is.
void run_thread(Block& b) {
  Lane& l = *b.current;
  threadIdx = l.tid;
  try {
    b.launch->run(b.launch->pack);
  } catch (const ctx::detail::forced_unwind&) {
    throw;
  } catch (const std::exception& e) {
    if (b.error.empty()) b.error = where(b, &l) + "threw " + e.what();
  }
  l.state = State::Done;
}

// The body of every fiber: run the assigned thread; then, while the next
// thread of the pass is an unstarted one, run it too; then go idle.
ctx::fiber fiber_main(ctx::fiber&& sched) {
  ctx::fiber s = std::move(sched);
  for (;;) {
    Block& b = *tl_block;
    if (b.quit) return s;
    b.sched = &s;
    b.current = &b.lanes[b.assign];
    for (;;) {
      run_thread(b);
      ++b.cursor;
      while (b.cursor < b.n && b.lanes[b.order[b.cursor]].state != State::Unstarted &&
             b.lanes[b.order[b.cursor]].state != State::Runnable)
        ++b.cursor;
      if (!b.error.empty() || b.cursor >= b.n ||
          b.lanes[b.order[b.cursor]].state != State::Unstarted)
        break;
      b.current = &b.lanes[b.order[b.cursor]];
      b.current->state = State::Runnable;
    }
    b.current = nullptr;
    b.yielded_idle = true;
    s = std::move(s).resume();
  }
}

void make_order(Block& b, const Config& cfg, uint64_t& rng) {
  for (unsigned i = 0; i < b.n; ++i) b.order[i] = cfg.order == Order::Reverse ? b.n - 1 - i : i;
  if (cfg.order == Order::Shuffle)
    for (unsigned i = b.n; i > 1; --i) std::swap(b.order[i - 1], b.order[splitmix(rng) % i]);
}

// One pass: every thread that can run, runs until it waits or ends.
void run_pass(Worker& wk, Block& b) {
  b.cursor = 0;
  while (b.cursor < b.n && b.error.empty()) {
    Lane& l = b.lanes[b.order[b.cursor]];
    ctx::fiber f;
    if (l.state == State::Runnable) {
      f = std::move(l.fiber);
    } else if (l.state == State::Unstarted) {
      l.state = State::Runnable;
      b.assign = l.index;
      if (!wk.idle.empty()) {
        f = std::move(wk.idle.back());
        wk.idle.pop_back();
      } else {
        f = ctx::fiber(std::allocator_arg, PoolAllocator{&wk.stacks}, fiber_main);
      }
    } else {
      ++b.cursor;
      continue;
    }
    b.current = &l;
    ctx::fiber back = std::move(f).resume();
    if (b.yielded_idle)
      wk.idle.push_back(std::move(back));
    else
      b.current->fiber = std::move(back);
    b.current = nullptr;
  }
}

// Returns the error of the block, empty when it ran to the end.
std::string run_block(const LaunchDesc& d, uint64_t linear) {
  Worker& wk = worker();
  Block& b = wk.block;
  const TlsRange& shm = shared_segment(d.kernel);
  if (!shm.error.empty()) return shm.error;

  blockDim = d.block;
  gridDim = d.grid;
  blockIdx = {static_cast<unsigned>(linear % d.grid.x),
              static_cast<unsigned>(linear / d.grid.x % d.grid.y),
              static_cast<unsigned>(linear / (uint64_t{d.grid.x} * d.grid.y))};
  if (shm.size) std::memset(shm.begin, 0xff, shm.size);  // stale shared data is NaN

  b.launch = &d;
  b.n = d.block.x * d.block.y * d.block.z;
  b.error.clear();
  b.current = nullptr;
  b.lanes.resize(b.n);
  b.order.resize(b.n);
  for (unsigned i = 0; i < b.n; ++i) {
    Lane& l = b.lanes[i];
    l.index = i;
    l.tid = {i % d.block.x, i / d.block.x % d.block.y, i / (d.block.x * d.block.y)};
    l.state = State::Unstarted;
  }
  Block* outer = tl_block;
  tl_block = &b;

  const Config& cfg = config();
  uint64_t rng = cfg.seed * 0x2545f4914f6cdd1dull + linear;
  for (;;) {
    make_order(b, cfg, rng);
    run_pass(wk, b);
    if (!b.error.empty() || !resolve_warps(b)) break;
    unsigned live = 0, at_barrier = 0, runnable = 0;
    for (const Lane& l : b.lanes) {
      live += l.state != State::Done;
      at_barrier += l.state == State::Barrier;
      runnable += l.state == State::Runnable;
    }
    if (live == 0) break;
    if (runnable) continue;
    if (at_barrier == live) {
      // The barrier opens; the reducing forms see every live thread's predicate.
      uint64_t count = 0;
      for (const Lane& l : b.lanes) count += l.state == State::Barrier && l.in != 0;
      for (Lane& l : b.lanes) {
        if (l.state != State::Barrier) continue;
        l.out = l.arg == 0 ? count : l.arg == 1 ? count == live : count != 0;
        l.state = State::Runnable;
      }
      continue;
    }
    b.error = where(b, nullptr) + "deadlock: threads [" +
              ranges(b, [](const Lane& l) { return l.state == State::Barrier; }) +
              "] wait at __syncthreads, threads [" +
              ranges(b, [](const Lane& l) { return l.state == State::Warp; }) +
              "] wait in warp collectives that cannot complete, threads [" +
              ranges(b, [](const Lane& l) { return l.state == State::Done; }) + "] have exited";
    break;
  }
  std::string err = b.error;
  if (!err.empty()) {
    // The threads left suspended never run again. Their fibers are kept, not
    // unwound: unwinding throws on a fiber's stack, which AddressSanitizer
    // cannot follow (it then reports errors that are not there). A failed
    // launch is sticky, so this happens at most a few times per process.
    static std::mutex m;
    static auto& abandoned = *new std::vector<ctx::fiber>;  // reachable, never destroyed
    std::lock_guard<std::mutex> g(m);
    for (Lane& l : b.lanes)
      if (l.fiber) abandoned.push_back(std::move(l.fiber));
  }
  tl_block = outer;
  return err;
}

// --- the pool of CPU threads that run blocks ------------------------------------------------
class BlockPool {
 public:
  explicit BlockPool(int threads) {
    for (int i = 1; i < threads; ++i) std::thread([this] { work(); }).detach();
  }
  // Calls fn(i) for i in [0, total) on this thread and the pool's, stopping
  // early when fn returns false. Returns when every call has returned.
  void run(uint64_t total, const std::function<bool(uint64_t)>& fn) {
    std::unique_lock<std::mutex> lk(m_);
    job_ = &fn;
    total_ = total;
    next_.store(0);
    stop_.store(false);
    ++generation_;
    cv_.notify_all();
    lk.unlock();
    drain(fn);
    lk.lock();
    done_cv_.wait(lk, [this] { return busy_ == 0; });
    job_ = nullptr;
  }

 private:
  void drain(const std::function<bool(uint64_t)>& fn) {
    for (;;) {
      if (stop_.load()) return;
      const uint64_t i = next_.fetch_add(1);
      if (i >= total_) return;
      if (!fn(i)) stop_.store(true);
    }
  }
  void work() {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lk(m_);
    for (;;) {
      cv_.wait(lk, [&] { return generation_ != seen && job_ != nullptr; });
      seen = generation_;
      const auto* fn = job_;
      ++busy_;
      lk.unlock();
      drain(*fn);
      lk.lock();
      if (--busy_ == 0) done_cv_.notify_all();
    }
  }
  std::mutex m_;
  std::condition_variable cv_, done_cv_;
  const std::function<bool(uint64_t)>* job_ = nullptr;
  uint64_t total_ = 0, generation_ = 0;
  int busy_ = 0;
  std::atomic<uint64_t> next_{0};
  std::atomic<bool> stop_{false};
};

std::string check_config(const LaunchDesc& d) {
  const dim3 g = d.grid, b = d.block;
  const uint64_t threads = uint64_t{b.x} * b.y * b.z;
  auto dims = [](dim3 v) {
    return "(" + std::to_string(v.x) + "," + std::to_string(v.y) + "," + std::to_string(v.z) + ")";
  };
  if (b.x == 0 || b.y == 0 || b.z == 0 || b.x > 1024 || b.y > 1024 || b.z > 64 || threads > 1024)
    return "block " + dims(b) + ": each of x, y must be in [1, 1024], z in [1, 64], " +
           "and at most 1024 threads in all";
  if (g.x == 0 || g.y == 0 || g.z == 0 || g.x > 0x7fffffffu || g.y > 65535 || g.z > 65535)
    return "grid " + dims(g) + ": x must be in [1, 2^31-1], y and z in [1, 65535]";
  if (d.dynamic_smem > 48 * 1024)
    return std::to_string(d.dynamic_smem) + " bytes of dynamic shared memory, at most 49152";
  return {};
}

}  // namespace

// --- called by the kernels (simt.h) ------------------------------------------------------------
namespace detail {

void syncthreads() {
  Lane& l = self("__syncthreads");
  l.state = State::Barrier;
  l.in = 0;
  l.arg = 0;
  suspend(l);
}

int syncthreads_reduce(int pred, int kind) {
  Lane& l = self("__syncthreads_count/and/or");
  l.state = State::Barrier;
  l.in = pred != 0;
  l.arg = kind;
  suspend(l);
  return static_cast<int>(l.out);
}

uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int arg, int width) {
  Lane& l = self(op_name(op));
  const unsigned lane = l.index % 32;
  if (!(mask >> lane & 1u))
    trap(l, std::string(op_name(op)) + " mask " + hex(mask) + " leaves out the calling lane " +
                std::to_string(lane));
  l.state = State::Warp;
  l.op = op;
  l.mask = mask;
  l.in = value;
  l.arg = arg;
  l.width = width;
  suspend(l);
  return l.out;
}

void device_trap(const char* what) {
  trap(self(what), what);
}

}  // namespace detail

int launch(const LaunchDesc& d) {
  if (!config().error.empty()) return fail(cudaErrorInvalidValue, config().error);
  if (sticky() != cudaSuccess) return fail(sticky());
  const std::string bad = check_config(d);
  if (!bad.empty()) return fail(cudaErrorInvalidConfiguration, d.name + (": " + bad));

  static std::mutex launch_mutex;  // one launch at a time, as on one stream
  std::lock_guard<std::mutex> lock(launch_mutex);
  const uint64_t blocks = uint64_t{d.grid.x} * d.grid.y * d.grid.z;
  std::mutex err_m;
  std::string first_error;
  const std::function<bool(uint64_t)> one = [&](uint64_t i) {
    std::string e = run_block(d, i);
    if (e.empty()) return true;
    std::lock_guard<std::mutex> g(err_m);
    if (first_error.empty()) first_error = std::move(e);
    return false;
  };
  const int threads = config().threads;
  if (threads <= 1 || blocks == 1) {
    for (uint64_t i = 0; i < blocks && one(i); ++i) {
    }
  } else {
    static BlockPool* pool = new BlockPool(threads);  // lives until exit, never joined
    pool->run(blocks, one);
  }
  if (first_error.empty()) return cudaSuccess;
  std::fprintf(stderr, "scratchnet emulator: %s\n", first_error.c_str());
  return fail_sticky(cudaErrorLaunchFailure, first_error);
}

bool stream_capturing(CUstream_st* stream) {
  return capturing(stream);
}

int record_launch(CUstream_st* stream, const LaunchDesc& d, std::shared_ptr<const void> pack) {
  // As on a GPU, a launch that could never run fails now, not at replay.
  if (!config().error.empty()) return fail(cudaErrorInvalidValue, config().error);
  if (sticky() != cudaSuccess) return fail(sticky());
  const std::string bad = check_config(d);
  if (!bad.empty()) return fail(cudaErrorInvalidConfiguration, d.name + (": " + bad));
  return record(stream, std::string("kernel ") + d.name,
                [d, pack = std::move(pack)] { return static_cast<cudaError_t>(launch(d)); });
}

}  // namespace sn_emu
