// The buffers of one benchmark case (see Arena in bench_ops.h).
#include <algorithm>
#include <cstring>

#include "core/cuda.h"
#include "core/rng.h"
#include "tools/bench_ops.h"

namespace scratchnet::tools::bench {

void* Arena::alloc(std::size_t bytes) {
  owned_.push_back(std::make_unique<Storage>(device_, std::max<std::size_t>(bytes, 4)));
  return owned_.back()->data();
}

void* Arena::bytes(std::size_t n) {
  return alloc(n);
}

float* Arena::random(int64_t n, uint64_t seed, float lo, float hi) {
  auto* p = static_cast<float*>(alloc(static_cast<std::size_t>(n) * sizeof(float)));
  // A random chunk, then doubling copies of it: filling gigabytes with fresh
  // Philox numbers on the host would take longer than the benchmark.
  const int64_t chunk = std::min<int64_t>(n, 1 << 16);
  Generator g(seed);
  const std::vector<float> v = g.uniform(chunk, lo, hi);
  const std::size_t cb = static_cast<std::size_t>(chunk) * sizeof(float);
  if (device_.is_cuda())
    cuda::memcpy_h2d(p, v.data(), cb);
  else
    std::memcpy(p, v.data(), cb);
  for (int64_t have = chunk; have < n;) {
    const int64_t len = std::min(have, n - have);
    const std::size_t b = static_cast<std::size_t>(len) * sizeof(float);
    if (device_.is_cuda())
      cuda::memcpy_d2d(p + have, p, b);
    else
      std::memcpy(p + have, p, b);
    have += len;
  }
  return p;
}

float* Arena::zeros(int64_t n) {
  auto* p = static_cast<float*>(alloc(static_cast<std::size_t>(n) * sizeof(float)));
  if (device_.is_cuda())
    cuda::memset_zero(p, static_cast<std::size_t>(n) * sizeof(float));
  else
    std::memset(p, 0, static_cast<std::size_t>(n) * sizeof(float));
  return p;
}

int32_t* Arena::labels(int64_t n, int classes, uint64_t seed) {
  Generator g(seed);
  std::vector<int32_t> v(static_cast<std::size_t>(n));
  const std::vector<float> u = g.uniform(n, 0.0f, static_cast<float>(classes));
  for (std::size_t i = 0; i < v.size(); ++i)
    v[i] = std::min(classes - 1, static_cast<int32_t>(u[i]));
  auto* p = static_cast<int32_t*>(alloc(v.size() * sizeof(int32_t)));
  if (device_.is_cuda())
    cuda::memcpy_h2d(p, v.data(), v.size() * sizeof(int32_t));
  else
    std::memcpy(p, v.data(), v.size() * sizeof(int32_t));
  return p;
}

std::vector<float> Arena::download(const float* p, int64_t n) const {
  std::vector<float> v(static_cast<std::size_t>(n));
  if (device_.is_cuda())
    cuda::memcpy_d2h(v.data(), p, v.size() * sizeof(float));
  else
    std::memcpy(v.data(), p, v.size() * sizeof(float));
  return v;
}

}  // namespace scratchnet::tools::bench
