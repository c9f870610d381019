#include "core/autograd.h"
#include "core/ops.h"
#include "kernels/philox.h"
#include "test_helpers.h"

using namespace scratchnet;

TEST_CASE("philox matches the Random123 known-answer vector", "[core][rng]") {
  // Random123's kat_vectors: philox4x32_10, counter 0, key 0.
  auto r = kernels::philox4x32_10(0, 0, 0, 0, 0);
  CHECK(r.v[0] == 0x6627e8d5u);
  CHECK(r.v[1] == 0xe169c58du);
  CHECK(r.v[2] == 0xbc57ac4cu);
  CHECK(r.v[3] == 0x9b00dbd8u);
}

TEST_CASE("generator permutations are reproducible and complete", "[core][rng]") {
  Generator a(7), b(7);
  auto pa = a.permutation(1000), pb = b.permutation(1000);
  CHECK(pa == pb);
  std::vector<int> seen(1000, 0);
  for (int v : pa) seen.at(v)++;
  for (int c : seen) CHECK(c == 1);
  CHECK(a.permutation(1000) != pa);  // the next stream differs
}

TEST_CASE("tensor basics and errors", "[core][tensor]") {
  Tensor t = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(t.numel() == 6);
  CHECK(t.size(-1) == 3);
  CHECK_THROWS_AS(t.size(2), ShapeError);
  CHECK_THROWS_AS(t.data<int32_t>(), Error);
  CHECK_THROWS_AS(Tensor::from_vector<float>({1, 2}, {3}), ShapeError);
  Tensor r = t.reshape({3, 2});
  CHECK(r.to_vector() == t.to_vector());
  CHECK_THROWS_AS(t.reshape({4, 2}), ShapeError);
  CHECK(shape_str({2, 3}) == "(2, 3)");
}

TEST_CASE("caching allocator reuses freed blocks", "[core][allocator]") {
  auto& alloc = CachingAllocator::of(Device::cpu());
  { Tensor a = Tensor::empty({1000, 1000}); }
  const auto before = alloc.stats();
  { Tensor b = Tensor::empty({1000, 1000}); }
  const auto after = alloc.stats();
  CHECK(after.system_allocs == before.system_allocs);
  CHECK(after.cache_hits > before.cache_hits);
  CHECK(after.peak_in_use >= 4000000u);
}

TEST_CASE("autograd accumulates through shared inputs and reshape", "[core][autograd]") {
  Tensor x = Tensor::from_vector<float>({-1, 2, -3, 4}, {2, 2}).set_requires_grad(true);
  Tensor y = add(relu(x), x.reshape({4}).reshape({2, 2}));  // d/dx = (x > 0) + 1
  y.backward(Tensor::full({2, 2}, 1.0f));
  CHECK(x.grad().to_vector() == std::vector<float>{1, 2, 1, 2});
  CHECK_THROWS_AS(y.backward(Tensor::full({2, 2}, 1.0f)), Error);  // graph freed
  {
    NoGradGuard ng;
    Tensor z = relu(x);
    CHECK_FALSE(z.requires_grad());
  }
}
