// The emulated CUDA target's own tests: that it runs kernels with CUDA's
// semantics, and catches what it promises to catch (README, "The emulated
// CUDA target"). Run in each thread order: some cases assert what that order
// must reveal (a race is caught in one order and hidden in the other). A
// kernel failure is sticky, as on a GPU, so those cases end with
// cudaDeviceReset.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cuda/check.h"
#include "tests/emu/emu_kernels.h"

using Catch::Matchers::Contains;

namespace {

std::string order() {
  const char* v = std::getenv("SCRATCHNET_EMU_ORDER");
  return v && *v ? v : "forward";
}

// A device buffer of n T's, freed at scope end.
template <class T>
struct Buf {
  explicit Buf(std::size_t n) : n(n) { SN_CUDA_CHECK(cudaMalloc(&p, n * sizeof(T))); }
  Buf(const std::vector<T>& v) : Buf(v.size()) {
    SN_CUDA_CHECK(cudaMemcpy(p, v.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  ~Buf() { cudaFree(p); }
  std::vector<T> get() const {
    std::vector<T> v(n);
    SN_CUDA_CHECK(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
  }
  std::size_t n;
  T* p = nullptr;
};

std::vector<float> iota(int n, float start = 1.0f) {
  std::vector<float> v(n);
  for (int i = 0; i < n; ++i) v[i] = start + static_cast<float>(i);
  return v;
}

bool poisoned(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b == 0xffffffffu;
}

// Kernel-side failures are sticky: clear them (the test owns every allocation).
void reset() {
  REQUIRE(cudaDeviceReset() == cudaSuccess);
  REQUIRE(cudaGetLastError() == cudaSuccess);
}

}  // namespace

TEST_CASE("a barrier orders shared-memory writes before reads", "[emu]") {
  const int n = 256;
  Buf<float> in(iota(n)), out(n);
  emutest::neighbour(in.p, out.p, n, true);
  const auto o = out.get();
  for (int t = 0; t + 1 < n; ++t) REQUIRE(o[t] == static_cast<float>(t + 2));
}

TEST_CASE("a missing barrier is caught in the order that exposes it", "[emu]") {
  const int n = 256;
  Buf<float> in(iota(n)), out(n), b(n);
  emutest::neighbour(in.p, out.p, n, false);
  emutest::broadcast_without_barrier(b.p, n);
  const auto o = out.get(), bo = b.get();
  int stale_neighbour = 0, stale_broadcast = 0;
  for (int t = 0; t + 1 < n; ++t) stale_neighbour += poisoned(o[t]);
  for (int t = 0; t < n; ++t) stale_broadcast += poisoned(bo[t]);
  INFO("order " << order());
  if (order() == "forward") {
    // Thread t reads s[t+1] before thread t+1 has run: all but none stale.
    CHECK(stale_neighbour == n - 1);
    CHECK(stale_broadcast == 0);  // thread 0 wrote first
  } else if (order() == "reverse") {
    CHECK(stale_neighbour == 0);      // t+1 ran before t
    CHECK(stale_broadcast == n - 1);  // everyone but thread 0 read before it wrote
  } else {
    CHECK(stale_neighbour + stale_broadcast > 0);
  }
}

TEST_CASE("shared memory is poisoned at every block start", "[emu]") {
  const int n = 128;
  Buf<float> out(n);
  emutest::shared_probe(out.p, n, true);   // leaves 1.0f behind
  emutest::shared_probe(out.p, n, false);  // reads without writing
  for (float v : out.get()) REQUIRE(poisoned(v));
}

TEST_CASE("warp shuffles reduce over exactly their lanes", "[emu]") {
  const int n = 128;
  Buf<float> in(iota(n)), out(n / 32), half(n);
  emutest::warp_sum(in.p, out.p, n, 32);
  const auto o = out.get();
  for (int w = 0; w < n / 32; ++w) {
    float want = 0;
    for (int l = 0; l < 32; ++l) want += static_cast<float>(w * 32 + l + 1);
    REQUIRE(o[w] == want);
  }
  // A halved reduction (the mutation issue 8 names) gives another number.
  emutest::warp_sum(in.p, out.p, n, 16);
  CHECK(out.get()[0] != o[0]);
  emutest::half_warp_sum(in.p, half.p, n);
  const auto h = half.get();
  for (int t = 0; t < n; ++t) {
    float want = 0;
    for (int l = 0; l < 16; ++l) want += static_cast<float>(t / 16 * 16 + l + 1);
    REQUIRE(h[t] == want);
  }
}

TEST_CASE("ballot, any and all see the warp's own threads", "[emu]") {
  Buf<unsigned> out(6);
  emutest::votes(out.p);
  const auto o = out.get();
  // A (16, 4) block: warp 0 = rows y 0 and 1, warp 1 = rows 2 and 3.
  CHECK(o[0] == 0xffff0000u);
  CHECK(o[1] == 1u);
  CHECK(o[2] == 0u);
  CHECK(o[3] == 0u);
  CHECK(o[4] == 0u);
  CHECK(o[5] == 0u);
}

TEST_CASE("threads and blocks are numbered as in CUDA, x fastest", "[emu]") {
  const int threads = 4 * 2 * 3, blocks = 2 * 3;
  Buf<int> out(9 * threads * blocks);
  emutest::ids(out.p);
  const auto o = out.get();
  for (int b = 0; b < blocks; ++b)
    for (int t = 0; t < threads; ++t) {
      const int* r = &o[9 * (b * threads + t)];
      REQUIRE(r[0] == t);
      REQUIRE(r[1] == b);
      REQUIRE(r[2] == t % 32);
      REQUIRE(r[3] == t % 4);
      REQUIRE(r[4] == t / 4 % 2);
      REQUIRE(r[5] == t / 8);
      REQUIRE(r[6] == b % 2);
      REQUIRE(r[7] == b / 2);
      REQUIRE(r[8] == 0);
    }
}

TEST_CASE("atomics count every thread of a many-block grid", "[emu]") {
  Buf<int> c(std::vector<int>{0});
  emutest::count_threads(c.p, 300, 96);
  REQUIRE(c.get()[0] == 300 * 96);
}

TEST_CASE("threads that exit early do not hold up a barrier", "[emu]") {
  const int n = 100;
  Buf<float> out(n);
  emutest::early_exit_then_barrier(out.p, n);
  const auto o = out.get();
  for (int t = 0; t < 32; ++t) REQUIRE(o[t] == 7.0f);
  for (int t = 32; t < n; ++t) REQUIRE(poisoned(o[t]));  // never written: cudaMalloc's fill
}

TEST_CASE("a shuffle whose mask leaves out the caller fails the launch", "[emu]") {
  Buf<float> out(32);
  REQUIRE_THROWS_WITH(
      emutest::shuffle_without_own_lane(out.p),
      Contains("cudaErrorLaunchFailure") && Contains("leaves out the calling lane 0"));
  // Sticky, as on a GPU, until the device is reset.
  std::vector<float> host(32);
  CHECK(cudaMemcpy(host.data(), out.p, 128, cudaMemcpyDeviceToHost) == cudaErrorLaunchFailure);
  out.p = nullptr;  // the reset frees it
  reset();
}

TEST_CASE("a deadlock between a barrier and a warp shuffle is reported", "[emu]") {
  Buf<float> out(32);
  REQUIRE_THROWS_WITH(emutest::deadlock(out.p),
                      Contains("can never complete") && Contains("waits at __syncthreads"));
  out.p = nullptr;
  reset();
}

TEST_CASE("launches a GPU rejects are rejected", "[emu]") {
  emutest::empty(1, 1, 1, 1024, 1, 1);
  emutest::empty(100000, 1, 1, 1, 1, 1);  // many blocks, nothing to do
  const auto bad = Contains("cudaErrorInvalidConfiguration");
  CHECK_THROWS_WITH(emutest::empty(1, 1, 1, 1025, 1, 1), bad);
  CHECK_THROWS_WITH(emutest::empty(1, 1, 1, 32, 32, 2), bad);
  CHECK_THROWS_WITH(emutest::empty(1, 1, 1, 1, 1, 65), bad);
  CHECK_THROWS_WITH(emutest::empty(0, 1, 1, 32, 1, 1), bad);
  CHECK_THROWS_WITH(emutest::empty(1, 65536, 1, 32, 1, 1), bad);
  CHECK_THROWS_WITH(emutest::empty(1, 1, 65536, 32, 1, 1), bad);
  // Not sticky: the next good launch works.
  emutest::empty(1, 1, 1, 32, 1, 1);
}

TEST_CASE("memory calls are checked as the CUDA runtime checks them", "[emu]") {
  Buf<float> d(16);
  std::vector<float> h(32, 0.0f);
  for (float v : d.get()) CHECK(poisoned(v));  // new device memory is not zero
  CHECK(cudaMemcpy(h.data(), d.p, 64, cudaMemcpyDeviceToHost) == cudaSuccess);
  // Past the end of the allocation, or a host pointer as device memory.
  CHECK(cudaMemcpy(h.data(), d.p, 65, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue);
  CHECK(std::string(cudaGetErrorString(cudaGetLastError())).find("not inside one device") !=
        std::string::npos);
  CHECK(cudaMemcpy(h.data(), h.data() + 16, 64, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
  CHECK(cudaMemset(d.p + 8, 0, 64) == cudaErrorInvalidValue);
  CHECK(cudaMemset(d.p + 8, 0, 32) == cudaSuccess);
  CHECK(cudaFree(h.data()) == cudaErrorInvalidValue);
  CHECK(cudaGetLastError() == cudaErrorInvalidValue);
  CHECK(cudaGetLastError() == cudaSuccess);  // not sticky
}

TEST_CASE("devices beyond the count are refused", "[emu]") {
  int count = 0;
  REQUIRE(cudaGetDeviceCount(&count) == cudaSuccess);
  REQUIRE(count >= 1);
  CHECK(cudaSetDevice(count) == cudaErrorInvalidDevice);
  CHECK(cudaSetDevice(-1) == cudaErrorInvalidDevice);
  CHECK(cudaSetDevice(0) == cudaSuccess);
  cudaGetLastError();
}

TEST_CASE("vector types have CUDA's size and alignment", "[emu]") {
  STATIC_REQUIRE(alignof(float4) == 16);
  STATIC_REQUIRE(sizeof(float4) == 16);
  STATIC_REQUIRE(alignof(float2) == 8);
  STATIC_REQUIRE(alignof(int4) == 16);
  STATIC_REQUIRE(alignof(double2) == 16);
}
