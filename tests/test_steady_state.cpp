// A training step after warm-up asks the system for no memory: every block
// comes from the caching allocator, and bytes in use return to the same level
// after each step (nothing leaks across steps). On the GPU this is the "no
// cudaMalloc after warm-up" property that keeps a step capturable as a CUDA
// graph; the same test runs there under [cuda].
#include "core/cuda.h"
#include "models/models.h"
#include "test_helpers.h"
#include "train/optimizer.h"

using namespace scratchnet;

namespace {

void check_steady_state(const std::string& name, int image_size, Device device) {
  Generator gen(3);
  auto model = models::make(name, gen, name.rfind("vgg", 0) == 0 ? 16 : 1);
  model->to(device);
  train::SGD opt(pack_parameters(*model), {0.01f, 0.9f, 1e-4f, false});
  const int batch = image_size > 64 ? 2 : 8;  // keeps the CPU run short
  Tensor x = testing::random_tensor({batch, 1, image_size, image_size}, 5, 0.0f, 1.0f, device);
  std::vector<int32_t> labels(batch);
  for (int i = 0; i < batch; ++i) labels[i] = i % 10;
  Tensor y = Tensor::from_vector(labels, {batch}, device);

  auto step = [&] {
    opt.zero_grad();
    Tensor loss = cross_entropy((*model)(x), y);
    loss.backward();
    opt.step();
  };
  auto& alloc = CachingAllocator::of(device);
  for (int i = 0; i < 2; ++i) step();  // warm-up: the cache fills
  if (device.is_cuda()) cuda::synchronize();
  const AllocatorStats warm = alloc.stats();
  for (int i = 0; i < 3; ++i) {
    step();
    const AllocatorStats now = alloc.stats();
    INFO(name << " on " << device.str() << ", step " << i + 3);
    CHECK(now.system_allocs == warm.system_allocs);
    CHECK(now.in_use == warm.in_use);
  }
}

}  // namespace

TEST_CASE("a CPU training step after warm-up allocates nothing new", "[allocator][trainer]") {
  check_steady_state("lenet", 28, Device::cpu());
  check_steady_state("resnet18", 32, Device::cpu());
  check_steady_state("vgg11", 224, Device::cpu());  // width / 16: dropout included
}

TEST_CASE("a CUDA training step after warm-up makes no cudaMalloc", "[cuda][allocator]") {
  check_steady_state("lenet", 28, Device::cuda());
  check_steady_state("resnet18", 64, Device::cuda());
  check_steady_state("vgg11", 224, Device::cuda());
}
