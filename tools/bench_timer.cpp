// Timing for `scratchnet bench` (see bench_timer.h).
#include "tools/bench_timer.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "core/cuda.h"
#include "core/error.h"

#ifdef SCRATCHNET_WITH_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/check.h"
#endif

namespace scratchnet::tools::bench {

Stats summarize(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  auto rank = [&](double q) {
    const auto i = static_cast<std::size_t>(std::ceil(q * static_cast<double>(n)));
    return v[std::min(n - 1, i == 0 ? 0 : i - 1)];
  };
  s.median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  s.min = v.front();
  s.max = v.back();
  s.p10 = rank(0.10);
  s.p90 = rank(0.90);
  s.repeats = static_cast<int>(n);
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / static_cast<double>(n);
  return s;
}

Timer::Timer(Device device) : device_(device) {
  if (!device.is_cuda()) {
    long llc = 0;
#ifdef _SC_LEVEL3_CACHE_SIZE
    llc = sysconf(_SC_LEVEL3_CACHE_SIZE);  // 0 or -1 where the VM does not say
#endif
    l2_bytes_ = llc > 0 ? static_cast<std::size_t>(llc) : 0;
    // Virtual machines may report the whole host's L3 (hundreds of MiB) while
    // a core sees one slice of it: 64 to 128 MiB covers the slices we meet.
    flush_bytes_ = std::clamp<std::size_t>(2 * l2_bytes_ + (1u << 20), 64u << 20, 128u << 20);
    return;
  }
#ifdef SCRATCHNET_WITH_CUDA
  int l2 = 0;
  SN_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device.index));
  l2_bytes_ = static_cast<std::size_t>(l2);
  // More than twice L2 (and at least 64 MiB, should the attribute read 0).
  flush_bytes_ = std::max<std::size_t>(2 * l2_bytes_ + (1u << 20), 64u << 20);
  cudaEvent_t a = nullptr, b = nullptr;
  SN_CUDA_CHECK(cudaEventCreate(&a));
  SN_CUDA_CHECK(cudaEventCreate(&b));
  start_ = a, stop_ = b;
#else
  throw DeviceError("bench: this build has no CUDA; use --device cpu");
#endif
}

Timer::~Timer() {
#ifdef SCRATCHNET_WITH_CUDA
  // Destructors must not throw: a failed destroy only leaks an event.
  if (start_) cudaEventDestroy(start_);
  if (stop_) cudaEventDestroy(stop_);
#endif
}

void Timer::synchronize() const {
  if (device_.is_cuda()) cuda::synchronize();
}

void Timer::flush() {
  // Allocated on first use: the model-step mode never flushes, and its peak
  // memory figure must not include this buffer.
  if (!flush_buf_) flush_buf_ = std::make_unique<Storage>(device_, flush_bytes_);
  flush_value_ = (flush_value_ + 1) & 0xff;
  if (!device_.is_cuda()) {
    std::memset(flush_buf_->data(), flush_value_, flush_bytes_);
    return;
  }
#ifdef SCRATCHNET_WITH_CUDA
  SN_CUDA_CHECK(cudaMemsetAsync(flush_buf_->data(), flush_value_, flush_bytes_, cuda::stream()));
#endif
}

Stats Timer::time(int warmup, int repeats, const std::function<void()>& fn, bool flush_l2) {
  if (repeats < 1)
    throw ValueError("bench: --repeats must be >= 1, got " + std::to_string(repeats));
  for (int i = 0; i < warmup; ++i) fn();
  synchronize();
  std::vector<double> ms;
  ms.reserve(static_cast<std::size_t>(repeats));
  for (int i = 0; i < repeats; ++i) {
    if (device_.is_cuda()) {
#ifdef SCRATCHNET_WITH_CUDA
      if (flush_l2) flush();
      SN_CUDA_CHECK(cudaEventRecord(start_, cuda::stream()));
      fn();
      SN_CUDA_CHECK(cudaEventRecord(stop_, cuda::stream()));
      SN_CUDA_CHECK(cudaEventSynchronize(stop_));
      float t = 0;
      SN_CUDA_CHECK(cudaEventElapsedTime(&t, start_, stop_));
      ms.push_back(t);
#endif
    } else {
      if (flush_l2) flush();
      const auto t0 = std::chrono::steady_clock::now();
      fn();
      const auto t1 = std::chrono::steady_clock::now();
      ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
  }
  return summarize(std::move(ms));
}

Stats Timer::time_sequence(int n, const std::function<void()>& fn) {
  if (n < 1) throw ValueError("bench: --steps must be >= 1, got " + std::to_string(n));
  std::vector<double> ms;
  if (!device_.is_cuda()) {
    for (int i = 0; i < n; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      fn();
      ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    return summarize(std::move(ms));
  }
#ifdef SCRATCHNET_WITH_CUDA
  // Owned by a vector of unique handles so a throwing step leaks nothing.
  struct EventDeleter {
    void operator()(CUevent_st* e) const { cudaEventDestroy(e); }
  };
  std::vector<std::unique_ptr<CUevent_st, EventDeleter>> ev;
  for (int i = 0; i <= n; ++i) {
    cudaEvent_t e = nullptr;
    SN_CUDA_CHECK(cudaEventCreate(&e));
    ev.emplace_back(e);
  }
  SN_CUDA_CHECK(cudaEventRecord(ev[0].get(), cuda::stream()));
  for (int i = 0; i < n; ++i) {
    fn();
    SN_CUDA_CHECK(cudaEventRecord(ev[std::size_t(i) + 1].get(), cuda::stream()));
  }
  SN_CUDA_CHECK(cudaEventSynchronize(ev.back().get()));
  for (int i = 0; i < n; ++i) {
    float t = 0;
    SN_CUDA_CHECK(cudaEventElapsedTime(&t, ev[std::size_t(i)].get(), ev[std::size_t(i) + 1].get()));
    ms.push_back(t);
  }
#endif
  return summarize(std::move(ms));
}

}  // namespace scratchnet::tools::bench
