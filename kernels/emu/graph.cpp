// Stream capture and CUDA graphs on the emulated target (see
// include/cuda_runtime.h): what scratchnet uses to capture a training step
// once and replay it.
//
// A capturing stream keeps a list of nodes (kernel launches with their
// arguments copied, memcpy/memset with theirs); cudaStreamEndCapture moves
// them into a graph, cudaGraphInstantiate copies them into an executable
// graph, and cudaGraphLaunch runs them in order. Streams are synchronous in
// the emulator, so "in order" is exactly stream order, as one captured stream
// gives on a GPU (a linear chain of nodes).
//
// What CUDA refuses during a capture is refused here the same way, so the
// engine's fallback path runs in CI: in global mode (what scratchnet uses) a
// cudaMalloc, cudaFree, cudaMemcpy, cudaMemset or a synchronisation from any
// thread returns cudaErrorStreamCaptureUnsupported and invalidates the
// capture; everything recorded after that, and cudaStreamEndCapture, return
// cudaErrorStreamCaptureInvalidated, and no graph comes out.
#include <algorithm>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/emu/internal.h"

struct CUgraph_st {
  std::vector<sn_emu::Node> nodes;
};
struct CUgraphExec_st {
  std::vector<sn_emu::Node> nodes;
};

namespace sn_emu {

namespace {

// The streams that are capturing now (a handful at most).
struct Captures {
  std::mutex m;
  std::vector<cudaStream_t> streams;
};
Captures& captures() {
  static Captures* c = new Captures;  // outlives every static destructor
  return *c;
}

// Whether a capture in `s` forbids an unsafe call from this thread.
bool prohibits(const StreamState& s) {
  if (s.status != cudaStreamCaptureStatusActive) return false;
  if (s.mode == cudaStreamCaptureModeGlobal) return true;
  return s.mode == cudaStreamCaptureModeThreadLocal && s.thread == std::this_thread::get_id();
}

void invalidate(StreamState& s, const std::string& why) {
  if (s.status == cudaStreamCaptureStatusActive) {
    s.status = cudaStreamCaptureStatusInvalidated;
    s.invalidated_by = why;
  }
}

}  // namespace

bool capturing(cudaStream_t stream) {
  if (stream == nullptr) return false;  // the legacy stream never captures
  Captures& c = captures();
  std::lock_guard<std::mutex> g(c.m);
  return stream->status != cudaStreamCaptureStatusNone;
}

cudaError_t record(cudaStream_t stream, std::string what, std::function<cudaError_t()> run) {
  Captures& c = captures();
  std::lock_guard<std::mutex> g(c.m);
  if (stream->status == cudaStreamCaptureStatusInvalidated)
    return fail(cudaErrorStreamCaptureInvalidated,
                what + ": the capture was invalidated by " + stream->invalidated_by);
  stream->nodes.push_back({std::move(what), std::move(run)});
  return cudaSuccess;
}

cudaError_t refuse_if_capturing(const char* call) {
  Captures& c = captures();
  std::lock_guard<std::mutex> g(c.m);
  bool refused = false;
  for (cudaStream_t s : c.streams)
    if (prohibits(*s)) {
      invalidate(*s, std::string(call) + " during the capture");
      refused = true;
    }
  if (!refused) return cudaSuccess;
  return fail(cudaErrorStreamCaptureUnsupported,
              std::string(call) + " is not permitted while a stream is capturing");
}

cudaError_t refuse_sync(cudaStream_t stream, const char* call) {
  if (stream == nullptr) return refuse_if_capturing(call);
  Captures& c = captures();
  std::lock_guard<std::mutex> g(c.m);
  if (stream->status == cudaStreamCaptureStatusNone) return cudaSuccess;
  invalidate(*stream, std::string(call) + " of the capturing stream");
  return fail(cudaErrorStreamCaptureUnsupported,
              std::string(call) + ": the stream is capturing (a graph cannot wait for itself)");
}

void reset_captures() {
  Captures& c = captures();
  std::lock_guard<std::mutex> g(c.m);
  for (cudaStream_t s : c.streams) {
    s->status = cudaStreamCaptureStatusNone;
    s->nodes.clear();
  }
  c.streams.clear();
}

}  // namespace sn_emu

using sn_emu::fail;

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  if (stream == nullptr)
    return fail(cudaErrorStreamCaptureUnsupported,
                "cudaStreamBeginCapture: the legacy default stream cannot be captured");
  if (mode != cudaStreamCaptureModeGlobal && mode != cudaStreamCaptureModeThreadLocal &&
      mode != cudaStreamCaptureModeRelaxed)
    return fail(cudaErrorInvalidValue, "cudaStreamBeginCapture: unknown capture mode");
  if (sn_emu::sticky() != cudaSuccess) return fail(sn_emu::sticky());
  sn_emu::Captures& c = sn_emu::captures();
  std::lock_guard<std::mutex> g(c.m);
  if (stream->status != cudaStreamCaptureStatusNone)
    return fail(cudaErrorIllegalState, "cudaStreamBeginCapture: the stream is capturing already");
  stream->status = cudaStreamCaptureStatusActive;
  stream->mode = mode;
  stream->thread = std::this_thread::get_id();
  stream->invalidated_by.clear();
  stream->nodes.clear();
  c.streams.push_back(stream);
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  if (graph == nullptr) return fail(cudaErrorInvalidValue, "cudaStreamEndCapture: null graph");
  *graph = nullptr;
  if (stream == nullptr)
    return fail(cudaErrorIllegalState, "cudaStreamEndCapture: the legacy stream never captures");
  sn_emu::Captures& c = sn_emu::captures();
  std::lock_guard<std::mutex> g(c.m);
  if (stream->status == cudaStreamCaptureStatusNone)
    return fail(cudaErrorIllegalState, "cudaStreamEndCapture: the stream is not capturing");
  if (stream->mode != cudaStreamCaptureModeRelaxed && stream->thread != std::this_thread::get_id())
    return fail(cudaErrorStreamCaptureWrongThread, "cudaStreamEndCapture");
  const bool valid = stream->status == cudaStreamCaptureStatusActive;
  const std::string why = stream->invalidated_by;
  std::vector<sn_emu::Node> nodes = std::move(stream->nodes);
  stream->nodes.clear();
  stream->status = cudaStreamCaptureStatusNone;
  c.streams.erase(std::find(c.streams.begin(), c.streams.end(), stream));
  if (!valid)
    return fail(cudaErrorStreamCaptureInvalidated,
                "cudaStreamEndCapture: the capture was "
                "invalidated by " +
                    why);
  *graph = new CUgraph_st{std::move(nodes)};
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  if (status == nullptr) return fail(cudaErrorInvalidValue, "cudaStreamIsCapturing: null pointer");
  *status = cudaStreamCaptureStatusNone;
  if (stream == nullptr) return cudaSuccess;
  sn_emu::Captures& c = sn_emu::captures();
  std::lock_guard<std::mutex> g(c.m);
  *status = stream->status;
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  if (exec == nullptr) return fail(cudaErrorInvalidValue, "cudaGraphInstantiate: null pointer");
  *exec = nullptr;
  if (graph == nullptr) return fail(cudaErrorInvalidValue, "cudaGraphInstantiate: null graph");
  if (const cudaError_t e = sn_emu::refuse_if_capturing("cudaGraphInstantiate"); e != cudaSuccess)
    return e;
  if (sn_emu::sticky() != cudaSuccess) return fail(sn_emu::sticky());
  *exec = new CUgraphExec_st{graph->nodes};  // a copy: the graph may be destroyed next
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (exec == nullptr) return fail(cudaErrorInvalidResourceHandle, "cudaGraphLaunch: null graph");
  if (sn_emu::sticky() != cudaSuccess) return fail(sn_emu::sticky());
  if (sn_emu::capturing(stream))  // a graph inside a capture: one node that runs all of it
    return sn_emu::record(stream, "cudaGraphLaunch", [exec] {
      for (const sn_emu::Node& n : exec->nodes)
        if (const cudaError_t e = n.run(); e != cudaSuccess) return e;
      return cudaSuccess;
    });
  for (const sn_emu::Node& n : exec->nodes)
    if (const cudaError_t e = n.run(); e != cudaSuccess) return e;  // a kernel's is sticky
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}

cudaError_t cudaGraphGetNodes(cudaGraph_t graph, cudaGraphNode_t* nodes, std::size_t* count) {
  if (graph == nullptr || count == nullptr)
    return fail(cudaErrorInvalidValue, "cudaGraphGetNodes: null argument");
  if (nodes != nullptr)
    return fail(cudaErrorInvalidValue, "cudaGraphGetNodes: the emulator only counts nodes");
  *count = graph->nodes.size();
  return cudaSuccess;
}
