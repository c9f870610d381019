// The emulated CUDA runtime API (see include/cuda_runtime.h): devices,
// memory, streams, events and errors, on the CPU. Stream capture and graphs
// are in graph.cpp; here, each call that CUDA refuses during a capture asks
// refuse_if_capturing first, and work on a capturing stream is recorded.
//
// Device memory is host memory from aligned_alloc, tracked so that copies and
// memsets are checked as the runtime checks them (a host pointer where device
// memory belongs, or a copy running past its allocation, is
// cudaErrorInvalidValue). New allocations are filled with 0xFF bytes (NaN),
// so a kernel that reads memory nothing wrote shows it. Under
// AddressSanitizer the rounding slack of each allocation is poisoned.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "kernels/emu/internal.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define SN_EMU_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define SN_EMU_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define SN_EMU_POISON(p, n) ((void)(p), (void)(n))
#define SN_EMU_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

struct CUevent_st {
  std::chrono::steady_clock::time_point at;
  bool recorded = false;
};

namespace sn_emu {

namespace {

bool parse_int(const char* s, long long lo, long long hi, long long* out) {
  char* end = nullptr;
  const long long v = std::strtoll(s, &end, 10);
  if (end == s || *end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

Config read_config() {
  Config c;
  const unsigned hw = std::thread::hardware_concurrency();
  c.threads = hw == 0 ? 1 : static_cast<int>(hw);
  long long v = 0;
  if (const char* s = std::getenv("SCRATCHNET_EMU_ORDER"); s && *s) {
    const std::string o = s;
    if (o == "forward")
      c.order = Order::Forward;
    else if (o == "reverse")
      c.order = Order::Reverse;
    else if (o == "shuffle")
      c.order = Order::Shuffle;
    else
      c.error = "SCRATCHNET_EMU_ORDER must be forward, reverse or shuffle, got '" + o + "'";
  }
  if (const char* s = std::getenv("SCRATCHNET_EMU_SEED"); s && *s) {
    if (parse_int(s, 0, (1LL << 62), &v))
      c.seed = static_cast<uint64_t>(v);
    else
      c.error = std::string("SCRATCHNET_EMU_SEED must be an integer >= 0, got '") + s + "'";
  }
  if (const char* s = std::getenv("SCRATCHNET_EMU_THREADS"); s && *s) {
    if (parse_int(s, 1, 1024, &v))
      c.threads = static_cast<int>(v);
    else
      c.error = std::string("SCRATCHNET_EMU_THREADS must be in [1, 1024], got '") + s + "'";
  }
  if (const char* s = std::getenv("SCRATCHNET_EMU_DEVICES"); s && *s) {
    if (parse_int(s, 1, 16, &v))
      c.devices = static_cast<int>(v);
    else
      c.error = std::string("SCRATCHNET_EMU_DEVICES must be in [1, 16], got '") + s + "'";
  }
  if (const char* s = std::getenv("SCRATCHNET_EMU_STACK_KB"); s && *s) {
    if (parse_int(s, 16, 1 << 20, &v))
      c.stack_bytes = static_cast<std::size_t>(v) * 1024;
    else
      c.error = std::string("SCRATCHNET_EMU_STACK_KB must be in [16, 1048576], got '") + s + "'";
  }
  if (!c.error.empty()) std::fprintf(stderr, "scratchnet emulator: %s\n", c.error.c_str());
  return c;
}

struct Errors {
  std::mutex m;
  cudaError_t sticky = cudaSuccess;
  std::string sticky_detail;
};
Errors& errors() {
  static Errors* e = new Errors;  // outlives every static destructor
  return *e;
}
thread_local cudaError_t tl_last = cudaSuccess;
thread_local cudaError_t tl_detail_code = cudaSuccess;
thread_local std::string tl_detail;  // what the emulator knows of the last tl_detail_code
thread_local int tl_device = 0;

struct Memory {
  std::mutex m;
  std::map<uintptr_t, std::size_t> blocks;  // start -> requested bytes
  std::size_t in_use = 0;
};
Memory& memory() {
  static Memory* mem = new Memory;
  return *mem;
}

constexpr std::size_t kAlign = 256;  // as cudaMalloc guarantees

std::size_t rounded(std::size_t n) {
  return (n + kAlign - 1) / kAlign * kAlign;
}

// Whether [p, p + n) lies inside one allocation.
bool is_device_range(const void* p, std::size_t n) {
  Memory& mem = memory();
  std::lock_guard<std::mutex> g(mem.m);
  const auto a = reinterpret_cast<uintptr_t>(p);
  auto it = mem.blocks.upper_bound(a);
  if (it == mem.blocks.begin()) return false;
  --it;
  return a >= it->first && a - it->first <= it->second && n <= it->second - (a - it->first);
}

std::string ptr(const void* p) {
  char b[32];
  std::snprintf(b, sizeof b, "%p", p);
  return b;
}

cudaError_t check_copy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind,
                       const char* call) {
  if (sticky() != cudaSuccess) return fail(sticky());
  if (bytes == 0) return cudaSuccess;
  if (dst == nullptr || src == nullptr)
    return fail(cudaErrorInvalidValue, std::string(call) + ": null pointer");
  const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault)
    return fail(cudaErrorInvalidMemcpyDirection, call);
  if (dst_dev && !is_device_range(dst, bytes))
    return fail(cudaErrorInvalidValue, std::string(call) + ": destination " + ptr(dst) + " + " +
                                           std::to_string(bytes) +
                                           " bytes is not inside one device allocation");
  if (src_dev && !is_device_range(src, bytes))
    return fail(cudaErrorInvalidValue, std::string(call) + ": source " + ptr(src) + " + " +
                                           std::to_string(bytes) +
                                           " bytes is not inside one device allocation");
  return cudaSuccess;
}

std::size_t physical_bytes(int which) {
  const long pages = sysconf(which), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<std::size_t>(pages) * static_cast<std::size_t>(page)
                               : std::size_t{1} << 34;
}

}  // namespace

const Config& config() {
  static const Config c = read_config();
  return c;
}

const char* order_name(Order o) {
  return o == Order::Forward ? "forward" : o == Order::Reverse ? "reverse" : "shuffle";
}

cudaError_t fail(cudaError_t err, const std::string& detail) {
  if (err != cudaSuccess) {
    tl_last = err;
    tl_detail_code = err;
    tl_detail = detail;
    if (detail.empty() && err == sticky()) tl_detail = errors().sticky_detail;
  }
  return err;
}

cudaError_t fail_sticky(cudaError_t err, const std::string& detail) {
  Errors& e = errors();
  {
    std::lock_guard<std::mutex> g(e.m);
    if (e.sticky == cudaSuccess) {
      e.sticky = err;
      e.sticky_detail = detail;
    }
  }
  return fail(err, detail);
}

cudaError_t sticky() {
  Errors& e = errors();
  std::lock_guard<std::mutex> g(e.m);
  return e.sticky;
}

}  // namespace sn_emu

using sn_emu::fail;
using sn_emu::sticky;

// --- devices -------------------------------------------------------------------------------
cudaError_t cudaGetDeviceCount(int* count) {
  if (count == nullptr) return fail(cudaErrorInvalidValue, "cudaGetDeviceCount: null pointer");
  if (!sn_emu::config().error.empty()) {
    *count = 0;
    return fail(cudaErrorInitializationError, sn_emu::config().error);
  }
  *count = sn_emu::config().devices;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  if (device == nullptr) return fail(cudaErrorInvalidValue, "cudaGetDevice: null pointer");
  *device = sn_emu::tl_device;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= sn_emu::config().devices)
    return fail(cudaErrorInvalidDevice, "device " + std::to_string(device) + " of " +
                                            std::to_string(sn_emu::config().devices));
  sn_emu::tl_device = device;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (prop == nullptr) return fail(cudaErrorInvalidValue, "cudaGetDeviceProperties: null pointer");
  if (device < 0 || device >= sn_emu::config().devices) return fail(cudaErrorInvalidDevice);
  *prop = cudaDeviceProp{};
  std::snprintf(prop->name, sizeof prop->name, "scratchnet emulated CUDA device (CPU, %d threads)",
                sn_emu::config().threads);
  prop->totalGlobalMem = sn_emu::physical_bytes(_SC_PHYS_PAGES);
  prop->sharedMemPerBlock = 48 * 1024;
  prop->sharedMemPerBlockOptin = 227 * 1024;
  prop->regsPerBlock = 65536;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = 1024;
  prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 0x7fffffff;
  prop->maxGridSize[1] = 65535;
  prop->maxGridSize[2] = 65535;
  prop->major = 9;
  prop->minor = 0;
  prop->multiProcessorCount = sn_emu::config().threads;
  prop->l2CacheSize = 4 << 20;
  prop->maxThreadsPerMultiProcessor = 2048;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  cudaDeviceProp p;
  if (value == nullptr) return fail(cudaErrorInvalidValue, "cudaDeviceGetAttribute: null pointer");
  if (const cudaError_t e = cudaGetDeviceProperties(&p, device); e != cudaSuccess) return e;
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock:
      *value = p.maxThreadsPerBlock;
      break;
    case cudaDevAttrMaxSharedMemoryPerBlock:
      *value = static_cast<int>(p.sharedMemPerBlock);
      break;
    case cudaDevAttrWarpSize:
      *value = p.warpSize;
      break;
    case cudaDevAttrMultiProcessorCount:
      *value = p.multiProcessorCount;
      break;
    case cudaDevAttrComputeCapabilityMajor:
      *value = p.major;
      break;
    case cudaDevAttrComputeCapabilityMinor:
      *value = p.minor;
      break;
    case cudaDevAttrL2CacheSize:
      *value = p.l2CacheSize;
      break;
    default:
      return fail(cudaErrorInvalidValue, "cudaDeviceGetAttribute: unknown attribute");
  }
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() {
  if (const cudaError_t e = sn_emu::refuse_sync(nullptr, "cudaDeviceSynchronize"); e != cudaSuccess)
    return e;
  return fail(sticky());
}

cudaError_t cudaDeviceReset() {
  {
    sn_emu::Memory& mem = sn_emu::memory();
    std::lock_guard<std::mutex> g(mem.m);
    for (const auto& [start, bytes] : mem.blocks) {
      SN_EMU_UNPOISON(reinterpret_cast<char*>(start) + bytes, sn_emu::rounded(bytes) - bytes);
      std::free(reinterpret_cast<void*>(start));
    }
    mem.blocks.clear();
    mem.in_use = 0;
  }
  sn_emu::reset_captures();
  sn_emu::Errors& e = sn_emu::errors();
  {
    std::lock_guard<std::mutex> g(e.m);
    e.sticky = cudaSuccess;
    e.sticky_detail.clear();
  }
  sn_emu::tl_last = cudaSuccess;
  return cudaSuccess;
}

cudaError_t cudaGetLastError() {
  const cudaError_t e = sn_emu::tl_last;
  sn_emu::tl_last = sticky();  // a sticky error cannot be cleared
  return e;
}

cudaError_t cudaPeekAtLastError() {
  return sn_emu::tl_last;
}

const char* cudaGetErrorName(cudaError_t err) {
  switch (err) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorInvalidValue:
      return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError:
      return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration:
      return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer:
      return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection:
      return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorNoDevice:
      return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice:
      return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle:
      return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady:
      return "cudaErrorNotReady";
    case cudaErrorLaunchFailure:
      return "cudaErrorLaunchFailure";
    case cudaErrorIllegalState:
      return "cudaErrorIllegalState";
    case cudaErrorStreamCaptureUnsupported:
      return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated:
      return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureWrongThread:
      return "cudaErrorStreamCaptureWrongThread";
  }
  return "cudaErrorUnknown";
}

// The runtime's text, plus what the emulator knows about the last failure
// of this kind on this thread.
const char* cudaGetErrorString(cudaError_t err) {
  const char* base = "unknown error";
  switch (err) {
    case cudaSuccess:
      base = "no error";
      break;
    case cudaErrorInvalidValue:
      base = "invalid argument";
      break;
    case cudaErrorMemoryAllocation:
      base = "out of memory";
      break;
    case cudaErrorInitializationError:
      base = "initialization error";
      break;
    case cudaErrorInvalidConfiguration:
      base = "invalid configuration argument";
      break;
    case cudaErrorInvalidDevicePointer:
      base = "invalid device pointer";
      break;
    case cudaErrorInvalidMemcpyDirection:
      base = "invalid copy direction for memcpy";
      break;
    case cudaErrorNoDevice:
      base = "no CUDA-capable device is detected";
      break;
    case cudaErrorInvalidDevice:
      base = "invalid device ordinal";
      break;
    case cudaErrorInvalidResourceHandle:
      base = "invalid resource handle";
      break;
    case cudaErrorNotReady:
      base = "device not ready";
      break;
    case cudaErrorLaunchFailure:
      base = "unspecified launch failure";
      break;
    case cudaErrorIllegalState:
      base = "the operation cannot be performed in the present state";
      break;
    case cudaErrorStreamCaptureUnsupported:
      base = "operation not permitted when stream is capturing";
      break;
    case cudaErrorStreamCaptureInvalidated:
      base = "operation failed due to a previous error during capture";
      break;
    case cudaErrorStreamCaptureWrongThread:
      base = "attempt to terminate a thread-local capture sequence from another thread";
      break;
  }
  thread_local std::string text;
  text = base;
  std::string detail = err == sn_emu::tl_detail_code ? sn_emu::tl_detail : "";
  if (detail.empty() && err == sticky()) detail = sn_emu::errors().sticky_detail;
  if (!detail.empty()) text += std::string(" [emulator: ") + detail + "]";
  return text.c_str();
}

// --- memory --------------------------------------------------------------------------------
cudaError_t cudaMalloc(void** out, std::size_t bytes) {
  if (out == nullptr) return fail(cudaErrorInvalidValue, "cudaMalloc: null pointer");
  *out = nullptr;
  if (const cudaError_t e = sn_emu::refuse_if_capturing("cudaMalloc"); e != cudaSuccess) return e;
  if (sticky() != cudaSuccess) return fail(sticky());
  if (bytes == 0) return cudaSuccess;
  if (bytes > (std::size_t{1} << 46)) return fail(cudaErrorMemoryAllocation);
  void* p = std::aligned_alloc(sn_emu::kAlign, sn_emu::rounded(bytes));
  if (p == nullptr) return fail(cudaErrorMemoryAllocation);
  std::memset(p, 0xff, sn_emu::rounded(bytes));
  SN_EMU_POISON(static_cast<char*>(p) + bytes, sn_emu::rounded(bytes) - bytes);
  sn_emu::Memory& mem = sn_emu::memory();
  std::lock_guard<std::mutex> g(mem.m);
  mem.blocks[reinterpret_cast<uintptr_t>(p)] = bytes;
  mem.in_use += sn_emu::rounded(bytes);
  *out = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void* p) {
  if (p == nullptr) return cudaSuccess;
  if (const cudaError_t e = sn_emu::refuse_if_capturing("cudaFree"); e != cudaSuccess) return e;
  sn_emu::Memory& mem = sn_emu::memory();
  std::size_t bytes = 0;
  {
    std::lock_guard<std::mutex> g(mem.m);
    auto it = mem.blocks.find(reinterpret_cast<uintptr_t>(p));
    if (it == mem.blocks.end())
      return fail(cudaErrorInvalidValue,
                  "cudaFree: " + sn_emu::ptr(p) + " is not the start of a device allocation");
    bytes = it->second;
    mem.in_use -= sn_emu::rounded(bytes);
    mem.blocks.erase(it);
  }
  SN_EMU_UNPOISON(static_cast<char*>(p) + bytes, sn_emu::rounded(bytes) - bytes);
  std::free(p);
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(std::size_t* free_bytes, std::size_t* total_bytes) {
  if (free_bytes == nullptr || total_bytes == nullptr)
    return fail(cudaErrorInvalidValue, "cudaMemGetInfo: null pointer");
  *total_bytes = sn_emu::physical_bytes(_SC_PHYS_PAGES);
  *free_bytes = sn_emu::physical_bytes(_SC_AVPHYS_PAGES);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind) {
  if (const cudaError_t e = sn_emu::refuse_if_capturing("cudaMemcpy"); e != cudaSuccess) return e;
  if (const cudaError_t e = sn_emu::check_copy(dst, src, bytes, kind, "cudaMemcpy");
      e != cudaSuccess || bytes == 0)
    return e;
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  if (const cudaError_t e = sn_emu::check_copy(dst, src, bytes, kind, "cudaMemcpyAsync");
      e != cudaSuccess || bytes == 0)
    return e;
  if (sn_emu::capturing(stream))
    // The copy reads src when the graph runs, as on a GPU.
    return sn_emu::record(stream, "cudaMemcpyAsync", [dst, src, bytes] {
      if (sticky() != cudaSuccess) return fail(sticky());
      std::memmove(dst, src, bytes);
      return cudaSuccess;
    });
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}

namespace sn_emu {
namespace {
cudaError_t check_memset(void* dst, std::size_t bytes, const char* call) {
  if (sticky() != cudaSuccess) return fail(sticky());
  if (bytes == 0) return cudaSuccess;
  if (!is_device_range(dst, bytes))
    return fail(cudaErrorInvalidValue, std::string(call) + ": " + ptr(dst) + " + " +
                                           std::to_string(bytes) +
                                           " bytes is not inside one device allocation");
  return cudaSuccess;
}
}  // namespace
}  // namespace sn_emu

cudaError_t cudaMemset(void* dst, int value, std::size_t bytes) {
  if (const cudaError_t e = sn_emu::refuse_if_capturing("cudaMemset"); e != cudaSuccess) return e;
  if (const cudaError_t e = sn_emu::check_memset(dst, bytes, "cudaMemset");
      e != cudaSuccess || bytes == 0)
    return e;
  std::memset(dst, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* dst, int value, std::size_t bytes, cudaStream_t stream) {
  if (const cudaError_t e = sn_emu::check_memset(dst, bytes, "cudaMemsetAsync");
      e != cudaSuccess || bytes == 0)
    return e;
  if (sn_emu::capturing(stream))
    return sn_emu::record(stream, "cudaMemsetAsync", [dst, value, bytes] {
      if (sticky() != cudaSuccess) return fail(sticky());
      std::memset(dst, value, bytes);
      return cudaSuccess;
    });
  std::memset(dst, value, bytes);
  return cudaSuccess;
}

// --- streams and events: all work is done by the time a call returns -------------------------
cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  return cudaStreamCreateWithFlags(stream, cudaStreamDefault);
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags) {
  if (stream == nullptr) return fail(cudaErrorInvalidValue, "cudaStreamCreate: null pointer");
  if (sticky() != cudaSuccess) return fail(sticky());
  *stream = new CUstream_st;
  (*stream)->flags = flags;
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (sn_emu::capturing(stream))
    return fail(cudaErrorStreamCaptureUnsupported, "cudaStreamDestroy: the stream is capturing");
  delete stream;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (const cudaError_t e = sn_emu::refuse_sync(stream, "cudaStreamSynchronize"); e != cudaSuccess)
    return e;
  return fail(sticky());
}

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  return cudaEventCreateWithFlags(event, cudaEventDefault);
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned) {
  if (event == nullptr) return fail(cudaErrorInvalidValue, "cudaEventCreate: null pointer");
  *event = new CUevent_st;
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete event;
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (event == nullptr) return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord: null event");
  if (sn_emu::capturing(stream))
    return sn_emu::record(stream, "cudaEventRecord", [event] {
      event->at = std::chrono::steady_clock::now();
      event->recorded = true;
      return fail(sticky());
    });
  event->at = std::chrono::steady_clock::now();
  event->recorded = true;
  return fail(sticky());
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (event == nullptr) return fail(cudaErrorInvalidResourceHandle, "cudaEventSynchronize");
  return fail(sticky());
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (ms == nullptr || start == nullptr || end == nullptr)
    return fail(cudaErrorInvalidValue, "cudaEventElapsedTime: null argument");
  if (!start->recorded || !end->recorded)
    return fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: event never recorded");
  *ms = std::chrono::duration<float, std::milli>(end->at - start->at).count();
  return cudaSuccess;
}
