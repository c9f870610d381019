// Saved-activation memory (issue 12, "Memory"): each op's node saves only what
// its backward needs, and what it saved dies when its backward has run.
//
// Two independent measures are compared with a number written out from the
// architecture:
//   - saved_memory(loss) (core/autograd.h): the distinct storages in the
//     nodes' saved lists, parameters left out;
//   - the allocator's count of live blocks: after forward + loss it has grown
//     by exactly the saved storages (less the batch and labels, which were
//     live before), plus the loss itself. This catches a node that keeps a
//     tensor alive outside its saved list (as every node used to keep its
//     inputs: each ReLU kept the conv output before it, each max pool its
//     input, each add both operands).
// The expected storages are listed one by one (Ledger), with which op saves
// each and why, so a reader can check them against the models' code.
#include <list>
#include <string>
#include <utility>
#include <vector>

#include "core/allocator.h"
#include "core/autograd.h"
#include "core/ops.h"
#include "models/models.h"
#include "test_helpers.h"
#include "tools/bench_modes.h"
#include "tools/bench_rss.h"

using namespace scratchnet;
using namespace scratchnet::testing;

namespace {

constexpr std::size_t kF32 = sizeof(float), kI32 = sizeof(int32_t);

// The storages an architecture must keep for its backward, by name.
struct Ledger {
  std::vector<std::pair<std::string, std::size_t>> items;
  void add(const std::string& what, int64_t elements, std::size_t element_size) {
    items.emplace_back(what, static_cast<std::size_t>(elements) * element_size);
  }
  std::size_t bytes() const {
    std::size_t b = 0;
    for (const auto& i : items) b += i.second;
    return b;
  }
  std::size_t count() const { return items.size(); }
};

int out_size(int h, int kernel, int stride, int pad) {
  return (h + 2 * pad - kernel) / stride + 1;
}

// Shared tail: cross-entropy saves its softmax probabilities and the labels.
void add_loss(Ledger& l, int n) {
  l.add("cross_entropy: softmax probabilities (N, 10)", int64_t{n} * 10, kF32);
  l.add("cross_entropy: labels (N) int32", n, kI32);
}

// LeNet (28x28): sigmoid saves its output, average pooling nothing, conv and
// linear their input.
Ledger lenet_ledger(int n) {
  Ledger l;
  l.add("input batch (conv1's input)", int64_t{n} * 1 * 28 * 28, kF32);
  l.add("sigmoid 1 output", int64_t{n} * 6 * 28 * 28, kF32);  // conv1 output dies
  l.add("avg pool 1 output (conv2's input)", int64_t{n} * 6 * 14 * 14, kF32);
  l.add("sigmoid 2 output", int64_t{n} * 16 * 10 * 10, kF32);
  l.add("avg pool 2 output (linear1's input, flattened view)", int64_t{n} * 16 * 5 * 5, kF32);
  l.add("sigmoid 3 output (linear2's input)", int64_t{n} * 120, kF32);
  l.add("sigmoid 4 output (linear3's input)", int64_t{n} * 84, kF32);
  add_loss(l, n);
  return l;
}

// VGG-11 with channels divided by `divisor`. Per conv + ReLU: the ReLU's
// output (saved by the ReLU and, the same storage, by the next conv); the
// conv's output dies once the ReLU has run. Per 2x2 max pool: its argmax as
// int32 and its output (the next conv's input); not its input. The head:
// linear1 saves the last pool's output (flattened view, same storage); each
// ReLU its output; dropout only a seed, its output being the next linear's
// input.
Ledger vgg11_ledger(int n, int hw, int divisor) {
  const std::vector<std::pair<int, int>> arch{{1, 64}, {1, 128}, {2, 256}, {2, 512}, {2, 512}};
  Ledger l;
  l.add("input batch (the first conv's input)", int64_t{n} * hw * hw, kF32);
  int h = hw;
  for (std::size_t b = 0; b < arch.size(); ++b) {
    const int c = arch[b].second / divisor;
    const std::string blk = "vgg_block" + std::to_string(b);
    for (int j = 0; j < arch[b].first; ++j)
      l.add(blk + ".relu" + std::to_string(j) + " output", int64_t{n} * c * h * h, kF32);
    h = out_size(h, 2, 2, 0);
    l.add(blk + ".max_pool argmax int32", int64_t{n} * c * h * h, kI32);
    l.add(blk + ".max_pool output (next layer's input)", int64_t{n} * c * h * h, kF32);
  }
  l.add("last ReLU 1 output", int64_t{n} * 4096, kF32);
  l.add("last Dropout 1 output (linear2's input)", int64_t{n} * 4096, kF32);
  l.add("last ReLU 2 output", int64_t{n} * 4096, kF32);
  l.add("last Dropout 2 output (linear3's input)", int64_t{n} * 4096, kF32);
  add_loss(l, n);
  return l;
}

// ResNet-18 (fusion on, the default: layers/module.h). Batch norm saves its
// input and its batch mean and 1/std (C each; gamma is a parameter); fused
// with the ReLU after it (batch_norm_relu: the stem and each bn1) also its
// output, the ReLU mask, which is what the separate ReLU saved before: the
// same bytes fused or not. Per residual: bn1's input (conv1's output), the
// bn1+ReLU output (conv2's input), bn2's input (conv2's output) and the
// add_relu output (the next block's input, saved by its conv1 / conv3, and
// by add_relu for its mask). Saved by nobody: bn2's output and conv3's
// output (add_relu reads them), and, unfused, the pre-ReLU tensors (with
// fusion they are never allocated).
Ledger resnet18_ledger(int n, int hw) {
  Ledger l;
  auto bn = [&](const std::string& name, int c, int h) {
    l.add(name + " input", int64_t{n} * c * h * h, kF32);
    l.add(name + " batch mean", c, kF32);
    l.add(name + " batch 1/std", c, kF32);
  };
  l.add("input batch (stem conv's input)", int64_t{n} * hw * hw, kF32);
  int h = out_size(hw, 7, 2, 3);
  bn("stem bn", 64, h);
  l.add("stem bn+relu output", int64_t{n} * 64 * h * h, kF32);
  h = out_size(h, 3, 2, 1);
  l.add("stem max_pool argmax int32", int64_t{n} * 64 * h * h, kI32);
  l.add("stem max_pool output (first residual's input)", int64_t{n} * 64 * h * h, kF32);
  const int channels[4] = {64, 128, 256, 512};
  for (int stage = 0; stage < 4; ++stage) {
    const int c = channels[stage];
    for (int r = 0; r < 2; ++r) {
      const std::string res = std::to_string(stage + 1) + "." + std::to_string(r);
      h = out_size(h, 3, (r == 0 && stage > 0) ? 2 : 1, 1);
      bn(res + ".bn1", c, h);
      l.add(res + " bn1+relu output (conv2's input)", int64_t{n} * c * h * h, kF32);
      bn(res + ".bn2", c, h);
      l.add(res + " add_relu output (the next layer's input)", int64_t{n} * c * h * h, kF32);
    }
  }
  l.add("global avg pool output (linear's input)", int64_t{n} * 512, kF32);
  add_loss(l, n);
  return l;
}

std::size_t live_blocks() {
  return CachingAllocator::of(Device::cpu()).stats().live_blocks;
}

// Builds `name`, runs one training forward + loss at batch n, and checks both
// measures against the ledger; then backward, after which nothing is saved
// and only the parameters' new gradients (and the loss) remain allocated.
void check_model(const std::string& name, int divisor, int n, int hw, const Ledger& want) {
  static std::list<Generator> generators;  // VGG's Dropout keeps a reference
  generators.emplace_back(7);
  std::shared_ptr<Module> model = models::make(name, generators.back(), divisor);
  model->train();
  Generator data(3);
  const Tensor X =
      Tensor::from_vector(data.uniform(int64_t{n} * hw * hw, 0.0f, 1.0f), {n, 1, hw, hw});
  std::vector<int32_t> labels(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) labels[std::size_t(i)] = i % 10;
  const Tensor Y = Tensor::from_vector(labels, {n});
  std::size_t params = 0;
  for (const auto& p : model->named_parameters()) {
    REQUIRE_FALSE(p.tensor.grad().defined());
    ++params;
  }

  const std::size_t before = live_blocks();
  Tensor loss = cross_entropy(model->forward(X), Y);
  const std::size_t after_forward = live_blocks();
  const SavedMemory saved = saved_memory(loss);

  for (const auto& i : want.items) UNSCOPED_INFO(i.first << ": " << i.second << " B");
  INFO(name << " batch " << n << " input " << hw << ": want " << want.bytes() << " B in "
            << want.count() << " storages, saved_memory " << saved.bytes << " B in "
            << saved.storages << ", allocator +" << (after_forward - before) << " blocks");
  CHECK(saved.bytes == want.bytes());
  CHECK(saved.storages == want.count());
  // Every live block the forward left is a saved storage (batch and labels were
  // live already) or the loss.
  CHECK(after_forward - before == want.count() - 2 + 1);

  loss.backward();
  CHECK(saved_memory(loss).storages == 0);
  CHECK(saved_memory(loss).bytes == 0);
  // What is left: one gradient per parameter, and the loss.
  CHECK(live_blocks() - before == params + 1);
}

}  // namespace

TEST_CASE("relu saves its output, and its input dies with the forward", "[memory]") {
  const Tensor w = random_tensor({4, 1000}, 1).set_requires_grad(true);
  const std::size_t before = live_blocks();
  Tensor y;
  {
    const Tensor a = add(w, w);  // a non-leaf, as a conv output is
    y = relu(a);
    CHECK(live_blocks() - before == 2);
  }
  CHECK(live_blocks() - before == 1);  // a is gone: the graph does not hold it
  const SavedMemory s = saved_memory(y);
  CHECK(s.storages == 1);
  CHECK(s.bytes == 4000 * kF32);  // y itself
  CHECK(s.allocated == CachingAllocator::round_size(4000 * kF32));
  y.backward(Tensor::full({4, 1000}, 1.0f));
  CHECK(saved_memory(y).storages == 0);
  // The gradient still matches: d(relu(2w))/dw = 2 where w > 0, else 0.
  const auto wv = w.to_vector(), gv = w.grad().to_vector();
  for (std::size_t i = 0; i < wv.size(); ++i) REQUIRE(gv[i] == (wv[i] > 0 ? 2.0f : 0.0f));
}

TEST_CASE("max pool saves an int32 argmax, not its input; add saves nothing", "[memory]") {
  const Tensor w = random_tensor({2, 3, 8, 8}, 2).set_requires_grad(true);
  const std::size_t before = live_blocks();
  Tensor y;
  {
    const Tensor a = add(w, w);
    y = max_pool2d(a, 2, 2);
  }
  CHECK(live_blocks() - before == 2);  // the output and the argmax
  const SavedMemory s = saved_memory(y);
  CHECK(s.storages == 1);
  CHECK(s.bytes == std::size_t{2 * 3 * 4 * 4} * kI32);
  Tensor z = add(y, y);
  CHECK(saved_memory(z).bytes == s.bytes);  // add adds nothing to what is saved
}

TEST_CASE("batch norm saves its input and statistics, conv its input", "[memory]") {
  Tensor x = random_tensor({2, 3, 5, 5}, 3).set_requires_grad(true);
  const Tensor w = random_tensor({4, 3, 3, 3}, 4).set_requires_grad(true);
  const Tensor gamma = Tensor::full({4}, 1.0f).set_requires_grad(true);
  const Tensor beta = Tensor::zeros({4}).set_requires_grad(true);
  const Tensor rm = Tensor::zeros({4}), rv = Tensor::full({4}, 1.0f);
  const Tensor h = add(x, x);  // non-leaf input: conv must save it
  const Tensor c = conv2d(h, w, Tensor(), 1, 1);
  const Tensor y = batch_norm(c, gamma, beta, rm, rv, true);
  const SavedMemory s = saved_memory(y);
  // conv: h (its weight is a parameter, left out); bn: c, mean, 1/std (gamma
  // is a parameter).
  CHECK(s.storages == 4);
  CHECK(s.bytes == (std::size_t{2 * 3 * 5 * 5} + 2 * 4 * 5 * 5 + 4 + 4) * kF32);
}

TEST_CASE("LeNet saves what its architecture needs, and backward frees it", "[memory]") {
  // 4 x (784 + 4704 + 1176 + 1600 + 400 + 120 + 84 + 10) floats + 4 labels.
  CHECK(lenet_ledger(4).bytes() == 142064);
  check_model("lenet", 1, 4, 28, lenet_ledger(4));
}

TEST_CASE("VGG-11 saves what its architecture needs, and backward frees it", "[memory]") {
  // 224 is the smallest input VGG takes; channels / 8 keep the step small on
  // a CPU (the saved bytes scale with the channels; the ledger divides too).
  const Ledger want = vgg11_ledger(2, 224, 8);
  // By hand (batch 2, channels 8 16 32 64 64, bytes):
  //   input 2*224*224*4                                   401,408
  //   block0 relu 3,211,264; pool argmax + output 2x      802,816
  //   block1 relu 1,605,632; pool 2x                      401,408
  //   block2 relu 2x 802,816; pool 2x                     200,704
  //   block3 relu 2x 401,408; pool 2x                     100,352
  //   block4 relu 2x 100,352; pool 2x                      25,088
  //   head 2 ReLU + 2 Dropout outputs, 4x 2*4096*4         32,768
  //   cross-entropy probabilities 80, labels 8
  //   total 11,019,352 B in 25 storages. The old graph (every node holding its
  //   inputs) also kept the 8 conv outputs (as large as the ReLU outputs), the
  //   head's 2 linear outputs and the logits.
  CHECK(want.bytes() == 11019352);
  CHECK(want.count() == 25);
  check_model("vgg11", 8, 2, 224, want);
}

TEST_CASE("ResNet-18 saves what its architecture needs, and backward frees it", "[memory]") {
  // At 32 px the maps are 16 (stem), 8, 8, 4, 2, 1. Storages: the input; the
  // stem's bn input, mean, 1/std and relu output; the pool's argmax and
  // output; per residual (8) two batch norms x 3 and two ReLU outputs; the
  // pooled features, probabilities and labels: 1 + 4 + 2 + 8 * 8 + 3.
  CHECK(resnet18_ledger(2, 32).count() == 74);
  CHECK(resnet18_ledger(2, 32).bytes() == 862808);
  CHECK(resnet18_ledger(2, 64).bytes() == 3344984);
  check_model("resnet18", 1, 2, 32, resnet18_ledger(2, 32));
  check_model("resnet18", 1, 2, 64, resnet18_ledger(2, 64));
}

TEST_CASE("bench model-step mode reports the saved activations", "[memory][bench]") {
  tools::bench::StepOptions o;
  o.model = "lenet";
  o.batch = 8;
  o.steps = 1;
  o.warmup = 0;
  o.profile = false;
  const auto r = tools::bench::run_step_bench(o);
  CHECK(r.saved_bytes == lenet_ledger(8).bytes());
  CHECK(r.peak_mem_mib > 0);
}

// The resident-set watch behind bench's rss_growth_MiB (and, in Python, the
// PyTorch side of tools/bench_vs_torch_cpu.py): memory touched after start()
// counts once, and its peak stays counted after it is freed.
TEST_CASE("RssWatch counts memory touched after it starts, and keeps the peak", "[memory][bench]") {
  INFO("reads /proc/self/status: Linux only, as the benchmark");
  REQUIRE(tools::bench::proc_status_mib("VmRSS") > 0);
  tools::bench::RssWatch watch;
  watch.start();
  constexpr std::size_t kBytes = std::size_t{64} << 20;
  {
    std::vector<char> block(kBytes, 1);  // every page touched
    CHECK(watch.growth_mib() >= 63.0);
  }
  // Freed (a block this size goes back to the system at once), but the peak stays.
  CHECK(watch.growth_mib() >= 63.0);
  if (watch.hwm_reset()) {
    tools::bench::RssWatch again;
    again.start();  // the peak starts over: 64 MiB are not counted twice
    CHECK(again.growth_mib() < 32.0);
  }
}

// On the CPU a request that no cached block within twice its size fits takes
// the smallest larger cached block: that block is resident anyway, a system
// allocation would add the whole request to the resident set (VGG-11 (224, 8):
// the step's RSS growth 758 -> 680 MiB, LeNet (28, 256) 23.4 -> 21.4).
TEST_CASE("CPU allocator serves a request from a cached block over twice its size", "[memory][allocator]") {
  auto& alloc = CachingAllocator::of(Device::cpu());
  alloc.release_cached();
  { Tensor big = Tensor::empty({16, 1024, 1024}); }  // 64 MiB, cached
  const AllocatorStats before = alloc.stats();
  {
    Tensor small = Tensor::empty({1024, 1024});  // 4 MiB: 16x smaller
    const AllocatorStats now = alloc.stats();
    CHECK(now.system_allocs == before.system_allocs);
    CHECK(now.cache_hits == before.cache_hits + 1);
    CHECK(now.reserved == before.reserved);
  }
  alloc.release_cached();
}
