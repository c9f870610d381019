#include "core/cuda.h"

#include "core/error.h"

#ifdef SCRATCHNET_WITH_CUDA
#include <atomic>
#include <cstdio>
#include <mutex>

#include "kernels/cuda/check.h"

namespace scratchnet::cuda {

bool compiled() {
  return true;
}

int device_count() {
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();  // clear the sticky "no driver / no device" error
      return 0;
    }
    return n;
  }();
  return count;
}

bool available() {
  return device_count() > 0;
}

static void require_gpu() {
  if (!available()) throw DeviceError("no CUDA GPU is visible to this process; use --device cpu");
}

static std::atomic<int> chosen_device{-1};

void use_device(int index) {
  require_gpu();
  if (index < 0 || index >= device_count())
    throw DeviceError("device cuda:" + std::to_string(index) + ": no such GPU (" +
                      std::to_string(device_count()) + " visible); use --device cpu or cuda:0");
  int expected = -1;
  if (!chosen_device.compare_exchange_strong(expected, index) && expected != index)
    throw DeviceError("device cuda:" + std::to_string(index) +
                      ": this process already uses cuda:" + std::to_string(expected) +
                      "; scratchnet runs on one GPU per process (start another process)");
}

int current_device() {
  const int d = chosen_device.load();
  return d < 0 ? 0 : d;
}

// The CUDA runtime's current device is per host thread.
static void bind_thread() {
  thread_local int bound = -1;
  const int d = current_device();
  if (bound != d) {
    SN_CUDA_CHECK(cudaSetDevice(d));
    bound = d;
  }
}

std::string device_name(int index) {
  require_gpu();
  cudaDeviceProp prop{};
  SN_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  return prop.name;
}

kernels::Stream stream() {
  static std::once_flag once;
  static cudaStream_t s = nullptr;
  std::call_once(once, [] {
    require_gpu();
    use_device(current_device());  // the stream belongs to the chosen GPU from now on
    bind_thread();
    SN_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  });
  bind_thread();
  return s;
}

void synchronize() {
  SN_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

void* malloc_device(std::size_t bytes) {
  require_gpu();
  bind_thread();
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    return nullptr;
  }
  // Named: during a CUDA graph capture this is the refusal the fallback reports.
  if (err != cudaSuccess) kernels::throw_cuda_error(err, "cudaMalloc", __FILE__, __LINE__);
  return p;
}

void free_device(void* p) {
  bind_thread();
  SN_CUDA_CHECK(cudaFree(p));
}

void memcpy_h2d(void* dst, const void* src, std::size_t bytes) {
  // From pageable memory the copy is staged before returning, so src may be
  // freed right after; ordered on the engine stream.
  SN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()));
  SN_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

void memcpy_d2h(void* dst, const void* src, std::size_t bytes) {
  SN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()));
  SN_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

void memcpy_d2d(void* dst, const void* src, std::size_t bytes) {
  SN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream()));
}

void memset_zero(void* dst, std::size_t bytes) {
  SN_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, stream()));
}

void mem_info(std::size_t* free_bytes, std::size_t* total_bytes) {
  bind_thread();
  SN_CUDA_CHECK(cudaMemGetInfo(free_bytes, total_bytes));
}

// --- graphs ---

bool capturing() {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  SN_CUDA_CHECK(cudaStreamIsCapturing(stream(), &status));
  return status != cudaStreamCaptureStatusNone;
}

void begin_capture() {
  // Global mode: a cudaMalloc or sync from any thread during the capture is
  // an error rather than a silent hazard, so the engine's "graph-ready"
  // promises (no allocation, no sync in a step) are checked by the capture.
  SN_CUDA_CHECK(cudaStreamBeginCapture(stream(), cudaStreamCaptureModeGlobal));
}

Graph end_capture() {
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream(), &graph);
  if (ended != cudaSuccess) {
    if (graph != nullptr) cudaGraphDestroy(graph);
    SN_CUDA_CHECK(ended);  // throws, naming why (an invalidated capture says by what)
  }
  if (graph == nullptr) throw DeviceError("CUDA graph capture recorded no graph");
  Graph g;
  cudaGraphExec_t exec = nullptr;
  const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
  const cudaError_t destroyed = cudaGraphDestroy(graph);  // the executable graph keeps a copy
  SN_CUDA_CHECK(made);
  g.exec_ = exec;
  SN_CUDA_CHECK(destroyed);
  return g;
}

void abort_capture() noexcept {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  cudaStream_t s = nullptr;
  try {
    s = stream();
  } catch (...) {
    return;
  }
  if (cudaStreamIsCapturing(s, &status) == cudaSuccess && status != cudaStreamCaptureStatusNone) {
    cudaGraph_t graph = nullptr;
    // Expected to fail (cudaErrorStreamCaptureInvalidated) when an unsafe call
    // ended the capture's use; either way its work is dropped.
    if (cudaStreamEndCapture(s, &graph) == cudaSuccess && graph != nullptr) {
      const cudaError_t err = cudaGraphDestroy(graph);
      if (err != cudaSuccess)
        std::fprintf(stderr, "scratchnet: cudaGraphDestroy failed: %s\n", cudaGetErrorString(err));
    }
  }
  cudaGetLastError();  // the refused call's error is handled here, not by the next launch
}

Graph::~Graph() {
  reset();
}

Graph::Graph(Graph&& other) noexcept : exec_(other.exec_) {
  other.exec_ = nullptr;
}

Graph& Graph::operator=(Graph&& other) noexcept {
  if (this != &other) {
    reset();
    exec_ = other.exec_;
    other.exec_ = nullptr;
  }
  return *this;
}

void Graph::launch() {
  if (exec_ == nullptr) throw DeviceError("CUDA graph: launch of an empty graph");
  SN_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), stream()));
}

void Graph::reset() {
  if (exec_ == nullptr) return;
  const cudaError_t err = cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
  exec_ = nullptr;
  if (err != cudaSuccess)
    std::fprintf(stderr, "scratchnet: cudaGraphExecDestroy failed: %s\n", cudaGetErrorString(err));
}

}  // namespace scratchnet::cuda

#else  // built without CUDA

namespace scratchnet::cuda {

[[noreturn]] static void no_cuda() {
  throw DeviceError("this scratchnet was built without CUDA; use --device cpu");
}

bool compiled() {
  return false;
}
bool available() {
  return false;
}
int device_count() {
  return 0;
}
std::string device_name(int) {
  no_cuda();
}
void use_device(int) {
  no_cuda();
}
int current_device() {
  return 0;
}
kernels::Stream stream() {
  no_cuda();
}
void synchronize() {
  no_cuda();
}
void* malloc_device(std::size_t) {
  no_cuda();
}
void free_device(void*) {
  no_cuda();
}
void memcpy_h2d(void*, const void*, std::size_t) {
  no_cuda();
}
void memcpy_d2h(void*, const void*, std::size_t) {
  no_cuda();
}
void memcpy_d2d(void*, const void*, std::size_t) {
  no_cuda();
}
void memset_zero(void*, std::size_t) {
  no_cuda();
}
void mem_info(std::size_t*, std::size_t*) {
  no_cuda();
}
bool capturing() {
  return false;
}
void begin_capture() {
  no_cuda();
}
Graph end_capture() {
  no_cuda();
}
void abort_capture() noexcept {}
Graph::~Graph() = default;
Graph::Graph(Graph&& other) noexcept : exec_(other.exec_) {
  other.exec_ = nullptr;
}
Graph& Graph::operator=(Graph&& other) noexcept {
  exec_ = other.exec_;
  other.exec_ = nullptr;
  return *this;
}
void Graph::launch() {
  no_cuda();
}
void Graph::reset() {
  exec_ = nullptr;
}

}  // namespace scratchnet::cuda

#endif
