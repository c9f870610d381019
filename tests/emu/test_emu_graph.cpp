// Stream capture and CUDA graphs on the emulated target (kernels/emu/graph.cpp):
// work on a capturing stream is recorded, not run; a graph launch replays it
// in order with the arguments it was captured with; what CUDA refuses during a
// capture (cudaMalloc, synchronisation) is refused with CUDA's error and
// invalidates the capture. The engine's graph fallback depends on these.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "kernels/cuda/check.h"
#include "kernels/error.h"
#include "tests/emu/emu_kernels.h"

namespace {

struct Stream {
  Stream() { SN_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)); }
  ~Stream() { cudaStreamDestroy(s); }
  cudaStream_t s = nullptr;
};

struct Dev {
  explicit Dev(const std::vector<float>& v) : n(v.size()) {
    SN_CUDA_CHECK(cudaMalloc(&p, n * sizeof(float)));
    set(v);
  }
  ~Dev() { cudaFree(p); }
  void set(const std::vector<float>& v) {
    SN_CUDA_CHECK(cudaMemcpy(p, v.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  }
  std::vector<float> get() const {
    std::vector<float> v(n);
    SN_CUDA_CHECK(cudaMemcpy(v.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost));
    return v;
  }
  std::size_t n;
  float* p = nullptr;
};

cudaStreamCaptureStatus status_of(cudaStream_t s) {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  REQUIRE(cudaStreamIsCapturing(s, &st) == cudaSuccess);
  return st;
}

}  // namespace

TEST_CASE("captured work is recorded, not run, and a launch replays it in order", "[emu][graph]") {
  Stream st;
  Dev y({1, 2, 3}), x({10, 20, 30}), z({0, 0, 0});
  std::vector<float> host = {7, 8, 9};
  REQUIRE(status_of(st.s) == cudaStreamCaptureStatusNone);
  REQUIRE(cudaStreamBeginCapture(st.s, cudaStreamCaptureModeGlobal) == cudaSuccess);
  CHECK(status_of(st.s) == cudaStreamCaptureStatusActive);
  float a = 2.0f;
  emutest::scale_add(y.p, x.p, a, 3, st.s);      // y = 2y + x
  a = 100.0f;                                    // arguments were taken by value
  emutest::scale_add(y.p, x.p, -1.0f, 3, st.s);  // then y = -y + x
  SN_CUDA_CHECK(cudaMemcpyAsync(z.p, y.p, 3 * sizeof(float), cudaMemcpyDeviceToDevice, st.s));
  SN_CUDA_CHECK(cudaMemsetAsync(y.p, 0, sizeof(float), st.s));
  SN_CUDA_CHECK(cudaMemcpyAsync(x.p + 2, host.data(), sizeof(float), cudaMemcpyHostToDevice, st.s));
  cudaGraph_t graph = nullptr;
  REQUIRE(cudaStreamEndCapture(st.s, &graph) == cudaSuccess);
  REQUIRE(graph != nullptr);
  CHECK(status_of(st.s) == cudaStreamCaptureStatusNone);
  std::size_t nodes = 0;
  REQUIRE(cudaGraphGetNodes(graph, nullptr, &nodes) == cudaSuccess);
  CHECK(nodes == 5);
  // Nothing ran.
  CHECK(y.get() == std::vector<float>{1, 2, 3});
  CHECK(z.get() == std::vector<float>{0, 0, 0});
  cudaGraphExec_t exec = nullptr;
  REQUIRE(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess);
  REQUIRE(cudaGraphDestroy(graph) == cudaSuccess);  // the executable graph keeps its copy
  REQUIRE(cudaGraphLaunch(exec, st.s) == cudaSuccess);
  REQUIRE(cudaStreamSynchronize(st.s) == cudaSuccess);
  // y: 2y + x = {12, 24, 36}; -y + x = {-2, -4, -6}; z copies it; y[0] = 0;
  // x[2] = host[0] read at replay time.
  CHECK(z.get() == std::vector<float>{-2, -4, -6});
  CHECK(y.get() == std::vector<float>{0, -4, -6});
  CHECK(x.get() == std::vector<float>{10, 20, 7});
  // A second replay works on what the memory holds now, with the same arguments.
  host[0] = 5;
  y.set({1, 1, 1});
  REQUIRE(cudaGraphLaunch(exec, st.s) == cudaSuccess);
  CHECK(z.get() == std::vector<float>{10 - 12, 20 - 22, 7 - 9});
  CHECK(x.get() == std::vector<float>{10, 20, 5});
  REQUIRE(cudaGraphExecDestroy(exec) == cudaSuccess);
  CHECK(cudaGetLastError() == cudaSuccess);
}

TEST_CASE("cudaMalloc during a capture is refused and invalidates it", "[emu][graph]") {
  Stream st;
  Dev y({1}), x({1});
  REQUIRE(cudaStreamBeginCapture(st.s, cudaStreamCaptureModeGlobal) == cudaSuccess);
  emutest::scale_add(y.p, x.p, 2.0f, 1, st.s);
  void* p = nullptr;
  CHECK(cudaMalloc(&p, 256) == cudaErrorStreamCaptureUnsupported);
  CHECK(p == nullptr);
  CHECK(cudaGetLastError() == cudaErrorStreamCaptureUnsupported);
  CHECK(cudaGetLastError() == cudaSuccess);  // not sticky
  CHECK(status_of(st.s) == cudaStreamCaptureStatusInvalidated);
  // Later work on the stream fails; the launch check names it.
  CHECK_THROWS_AS(emutest::scale_add(y.p, x.p, 2.0f, 1, st.s), scratchnet::CudaError);
  cudaGraph_t graph = reinterpret_cast<cudaGraph_t>(&st);
  CHECK(cudaStreamEndCapture(st.s, &graph) == cudaErrorStreamCaptureInvalidated);
  CHECK(graph == nullptr);
  CHECK(std::string(cudaGetErrorString(cudaErrorStreamCaptureInvalidated)).find("cudaMalloc") !=
        std::string::npos);
  cudaGetLastError();
  // The stream works as before, and nothing captured ran.
  CHECK(status_of(st.s) == cudaStreamCaptureStatusNone);
  CHECK(y.get() == std::vector<float>{1});
  emutest::scale_add(y.p, x.p, 2.0f, 1, st.s);
  CHECK(y.get() == std::vector<float>{3});
  SN_CUDA_CHECK(cudaMalloc(&p, 256));
  SN_CUDA_CHECK(cudaFree(p));
}

TEST_CASE("synchronising during a capture is refused", "[emu][graph]") {
  Stream st, other;
  Dev x({1});
  float h = 0;
  SECTION("the capturing stream") {
    REQUIRE(cudaStreamBeginCapture(st.s, cudaStreamCaptureModeGlobal) == cudaSuccess);
    CHECK(cudaStreamSynchronize(st.s) == cudaErrorStreamCaptureUnsupported);
  }
  SECTION("the device") {
    REQUIRE(cudaStreamBeginCapture(st.s, cudaStreamCaptureModeGlobal) == cudaSuccess);
    CHECK(cudaDeviceSynchronize() == cudaErrorStreamCaptureUnsupported);
  }
  SECTION("a blocking copy") {
    REQUIRE(cudaStreamBeginCapture(st.s, cudaStreamCaptureModeGlobal) == cudaSuccess);
    CHECK(cudaMemcpy(&h, x.p, sizeof h, cudaMemcpyDeviceToHost) ==
          cudaErrorStreamCaptureUnsupported);
  }
  SECTION("cudaFree") {
    REQUIRE(cudaStreamBeginCapture(st.s, cudaStreamCaptureModeGlobal) == cudaSuccess);
    CHECK(cudaFree(x.p) == cudaErrorStreamCaptureUnsupported);
  }
  CHECK(status_of(st.s) == cudaStreamCaptureStatusInvalidated);
  cudaGraph_t graph = nullptr;
  CHECK(cudaStreamEndCapture(st.s, &graph) == cudaErrorStreamCaptureInvalidated);
  CHECK(graph == nullptr);
  // Another stream may still synchronise once the capture has ended.
  CHECK(cudaStreamSynchronize(other.s) == cudaSuccess);
  cudaGetLastError();
}

TEST_CASE("relaxed capture allows cudaMalloc; other streams run eagerly", "[emu][graph]") {
  Stream st, other;
  Dev y({1}), x({1});
  REQUIRE(cudaStreamBeginCapture(st.s, cudaStreamCaptureModeRelaxed) == cudaSuccess);
  void* p = nullptr;
  CHECK(cudaMalloc(&p, 256) == cudaSuccess);
  emutest::scale_add(y.p, x.p, 2.0f, 1, other.s);  // not the capturing stream: runs now
  CHECK(status_of(st.s) == cudaStreamCaptureStatusActive);
  cudaGraph_t graph = nullptr;
  REQUIRE(cudaStreamEndCapture(st.s, &graph) == cudaSuccess);
  std::size_t nodes = 1;
  REQUIRE(cudaGraphGetNodes(graph, nullptr, &nodes) == cudaSuccess);
  CHECK(nodes == 0);
  CHECK(y.get() == std::vector<float>{3});
  CHECK(cudaGraphDestroy(graph) == cudaSuccess);
  CHECK(cudaFree(p) == cudaSuccess);
}

TEST_CASE("capture calls in the wrong state are refused", "[emu][graph]") {
  Stream st;
  cudaGraph_t graph = nullptr;
  CHECK(cudaStreamBeginCapture(nullptr, cudaStreamCaptureModeGlobal) ==
        cudaErrorStreamCaptureUnsupported);
  CHECK(cudaStreamEndCapture(st.s, &graph) == cudaErrorIllegalState);
  REQUIRE(cudaStreamBeginCapture(st.s, cudaStreamCaptureModeGlobal) == cudaSuccess);
  CHECK(cudaStreamBeginCapture(st.s, cudaStreamCaptureModeGlobal) == cudaErrorIllegalState);
  REQUIRE(cudaStreamEndCapture(st.s, &graph) == cudaSuccess);
  cudaGraphExec_t exec = nullptr;
  CHECK(cudaGraphInstantiate(&exec, nullptr, 0) == cudaErrorInvalidValue);
  CHECK(cudaGraphLaunch(nullptr, st.s) == cudaErrorInvalidResourceHandle);
  REQUIRE(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess);
  CHECK(cudaGraphLaunch(exec, st.s) == cudaSuccess);  // an empty graph
  CHECK(cudaGraphExecDestroy(exec) == cudaSuccess);
  CHECK(cudaGraphDestroy(graph) == cudaSuccess);
  cudaGetLastError();
}
