// The training step as a CUDA graph (train/step_graph.h): a run with graphs
// on gives bit for bit the run with graphs off (the same kernels on the same
// data in the same order; a replay only skips the host), through batch norm's
// buffers and host counter, learning-rate schedules and dropout (both read
// from device scalars the host writes before each replay), the last ragged
// batch, and a capture that fails. [cuda]: on
// the emulated target the capture, the refusals and the replays are the
// emulator's (kernels/emu/graph.cpp); on a GPU, CUDA's.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/ops.h"
#include "layers/all.h"
#include "train/step_graph.h"
#include "trainer_fixtures.h"

using namespace scratchnet;
using Catch::Matchers::Contains;

namespace {

const Device kGpu = Device::cuda(0);

// Sets an environment variable for one scope.
struct EnvVar {
  EnvVar(const char* name, const char* value) : name(name) { setenv(name, value, 1); }
  ~EnvVar() { unsetenv(name); }
  const char* name;
};

enum class Kind { Dense, Dropout, Residual };

// Small models of the kinds that matter: linear + batch norm (device buffers
// and the host counter num_batches_tracked) + ReLU (+ dropout) + linear on
// (N, 16); or a ResNet block (conv, BN2d, residual add) on (N, 1, 8, 8).
std::shared_ptr<Module> small_model(Generator& gen, Kind kind) {
  auto m = std::make_shared<Sequential>();
  if (kind == Kind::Residual) {
    m->add(std::make_shared<Conv2d>(gen, 1, 4, 3, 1, 1));
    m->add(std::make_shared<BatchNorm2d>(4));
    m->add(std::make_shared<ReLU>());
    m->add(std::make_shared<Residual>(gen, 4, 6, true));
    m->add(std::make_shared<AdaptiveAvgPool2d>());
    m->add(std::make_shared<Flatten>());
    m->add(std::make_shared<Linear>(gen, 6, 10));
    return m;
  }
  const bool with_dropout = kind == Kind::Dropout;
  m->add(std::make_shared<Linear>(gen, 16, 12));
  m->add(std::make_shared<BatchNorm>(12, false));
  m->add(std::make_shared<ReLU>());
  if (with_dropout) m->add(std::make_shared<Dropout>(0.3f, gen));
  m->add(std::make_shared<Linear>(gen, 12, 10));
  return m;
}

struct RunResult {
  std::vector<float> losses;
  std::vector<int32_t> correct;
  std::vector<float> params, momentum;
  std::vector<std::vector<float>> buffers;
  std::vector<int64_t> counters;
  int64_t opt_steps = 0;
  uint64_t gen_offset = 0;
  int captures = 0;
  int64_t replays = 0;
  std::string off_reason, log;
};

// `lrs.size()` steps of the small model on fixed batches (batch 8; a step
// with `ragged` set uses a batch of 5, run eagerly as the trainer does).
RunResult run_small(bool graph, Kind kind, const std::vector<float>& lrs,
                    const std::vector<bool>& ragged = {}) {
  Generator gen(3);
  auto model = small_model(gen, kind);
  model->to(kGpu);
  model->train();
  train::SgdConfig sc;
  sc.lr = lrs.at(0);
  sc.momentum = 0.9f;
  sc.weight_decay = 1e-3f;
  train::SGD opt(pack_parameters(*model), sc);
  std::ostringstream log;
  RunResult r;
  {
    train::StepGraph sg(graph, *model, opt, gen, log);
    const int steps = static_cast<int>(lrs.size());
    Tensor losses = Tensor::zeros({steps}, kGpu),
           correct = Tensor::zeros({steps}, kGpu, DType::I32);
    auto slot = [](const Tensor& t, int i) {
      return Tensor::view_of(t.storage(), t.offset_bytes() + 4 * static_cast<std::size_t>(i), {},
                             t.dtype());
    };
    const train::StepGraph::Body body = [&](const Tensor& x, const Tensor& y, const Tensor& lo,
                                            const Tensor& co) {
      opt.zero_grad();
      Tensor logits = (*model)(x);
      Tensor loss = cross_entropy(logits, y);
      loss.backward();
      Tensor(lo).copy_(loss);
      Tensor(co).copy_(count_correct(logits, y));
      opt.step();
    };
    Generator data(100);
    // Tensors allocated between steps and kept: a replay must not write into
    // them (the graph's blocks are its own; these sizes are the step's).
    std::vector<Tensor> kept;
    for (int i = 0; i < steps; ++i) {
      const bool small = i < static_cast<int>(ragged.size()) && ragged[i];
      const int n = small ? 5 : 8;
      const Shape shape = kind == Kind::Residual ? Shape{n, 1, 8, 8} : Shape{n, 16};
      Tensor x = Tensor::from_vector(data.uniform(shape_numel(shape), -2.0f, 2.0f), shape).to(kGpu);
      std::vector<int32_t> labels(n);
      for (int k = 0; k < n; ++k) labels[k] = static_cast<int32_t>((k * 3 + i) % 10);
      Tensor y = Tensor::from_vector(labels, {n}).to(kGpu);
      opt.set_lr(lrs[i]);
      if (sg.active() && !small) {
        sg.step(x, y, lrs[i], body, slot(losses, i), slot(correct, i));
      } else {
        body(x, y, slot(losses, i), slot(correct, i));
      }
      for (int k = 0; k < 6; ++k) kept.push_back(Tensor::full({8, 12}, float(i * 10 + k), kGpu));
    }
    for (std::size_t k = 0; k < kept.size(); ++k) {
      INFO("tensor kept after step " << k / 6);
      REQUIRE(kept[k].to_vector<float>() == std::vector<float>(96, float(k / 6 * 10 + k % 6)));
    }
    r.losses = losses.to_vector<float>();
    r.correct = correct.to_vector<int32_t>();
    r.captures = sg.captures();
    r.replays = sg.replays();
    r.off_reason = sg.off_reason();
  }
  CHECK(CachingAllocator::of(kGpu).graph_pool_blocks() == 0);  // handed back with the graph
  r.params = opt.slab().params.to_vector<float>();
  for (const auto& b : opt.momentum_buffers()) {
    const auto v = b.tensor.to_vector<float>();
    r.momentum.insert(r.momentum.end(), v.begin(), v.end());
  }
  for (const auto& nb : model->named_buffers()) {
    if (nb.tensor.dtype() == DType::F32)
      r.buffers.push_back(nb.tensor.to_vector<float>());
    else
      r.counters.push_back(nb.tensor.host<int64_t>()[0]);
  }
  r.opt_steps = opt.step_count();
  r.gen_offset = gen.offset();
  r.log = log.str();
  return r;
}

void require_same_run(const RunResult& a, const RunResult& b) {
  REQUIRE(a.losses.size() == b.losses.size());
  for (std::size_t i = 0; i < a.losses.size(); ++i) {
    INFO("step " << i);
    REQUIRE(a.losses[i] == b.losses[i]);  // bit for bit: the same kernels on the same data
    REQUIRE(a.correct[i] == b.correct[i]);
  }
  REQUIRE(a.params == b.params);
  REQUIRE(a.momentum == b.momentum);
  REQUIRE(a.buffers == b.buffers);
  REQUIRE(a.counters == b.counters);
  REQUIRE(a.opt_steps == b.opt_steps);
  REQUIRE(a.gen_offset == b.gen_offset);
}

}  // namespace

TEST_CASE("a replayed step graph trains bit for bit as eager steps (batch norm)", "[cuda][graph]") {
  const std::vector<float> lrs(7, 0.1f);
  const RunResult eager = run_small(false, Kind::Dense, lrs);
  const RunResult graph = run_small(true, Kind::Dense, lrs);
  require_same_run(eager, graph);
  // 2 warm-up steps, 1 captured (and launched), 4 replays.
  CHECK(graph.captures == 1);
  CHECK(graph.replays == 4);
  CHECK(graph.off_reason.empty());
  CHECK(graph.counters == std::vector<int64_t>{7});  // num_batches_tracked counts replays too
  CHECK(eager.captures == 0);
}

TEST_CASE("a replayed step graph of a ResNet block trains bit for bit as eager steps",
          "[cuda][graph]") {
  const std::vector<float> lrs(6, 0.05f);
  const RunResult graph = run_small(true, Kind::Residual, lrs);
  require_same_run(run_small(false, Kind::Residual, lrs), graph);
  CHECK(graph.captures == 1);
  CHECK(graph.replays == 3);
  CHECK(graph.counters == std::vector<int64_t>(3, 6));  // three batch norms
}

TEST_CASE("one graph replays every learning rate of a schedule", "[cuda][graph]") {
  // The rate is read from a device scalar written before each replay: a
  // change neither re-captures nor runs eagerly.
  const std::vector<float> lrs = GENERATE(
      std::vector<float>{0.1f, 0.1f, 0.1f, 0.1f, 0.05f, 0.05f, 0.05f, 0.05f},  // step
      std::vector<float>{0.1f, 0.09f, 0.08f, 0.07f, 0.06f, 0.05f});  // a new rate every step
  const RunResult graph = run_small(true, Kind::Dense, lrs);
  require_same_run(run_small(false, Kind::Dense, lrs), graph);
  // 2 warm-up steps, 1 captured, the rest replayed.
  CHECK(graph.captures == 1);
  CHECK(graph.replays == static_cast<int64_t>(lrs.size()) - 3);
  CHECK(graph.off_reason.empty());
}

TEST_CASE("smaller batches run eagerly between replays", "[cuda][graph]") {
  const std::vector<float> lrs(9, 0.1f);
  const std::vector<bool> ragged = {false, false, false, false, true, false, false, true, false};
  const RunResult graph = run_small(true, Kind::Dense, lrs, ragged);
  require_same_run(run_small(false, Kind::Dense, lrs, ragged), graph);
  CHECK(graph.captures == 1);
  CHECK(graph.replays == 4);
}

TEST_CASE("a step with dropout replays with fresh masks, bit for bit as eager steps",
          "[cuda][graph][dropout]") {
  // The masks' stream offsets come from a device word the host writes before
  // each replay; a graph that froze them would repeat step 3's mask and part
  // from the eager run at step 4. A cosine-like rate rides along.
  const std::vector<float> lrs = {0.1f, 0.1f, 0.09f, 0.08f, 0.08f, 0.07f, 0.05f, 0.04f};
  const std::vector<bool> ragged = {false, false, false, false, false, true, false, false};
  const RunResult eager = run_small(false, Kind::Dropout, lrs, ragged);
  const RunResult graph = run_small(true, Kind::Dropout, lrs, ragged);
  require_same_run(eager, graph);  // losses, weights, momentum, BN, the generator's offset
  CHECK(graph.captures == 1);
  CHECK(graph.replays == 4);  // steps 4, 5, 7, 8 (6 is ragged, eager in between)
  CHECK(graph.off_reason.empty());
  CHECK_THAT(graph.log, !Contains("CUDA graph off"));
}

TEST_CASE("a capture that fails falls back to eager steps, saying why", "[cuda][graph]") {
  const std::vector<float> lrs(6, 0.1f);
  const RunResult eager = run_small(false, Kind::Dense, lrs);
  struct Hook {
    const char* name;    // SCRATCHNET_GRAPH_TEST_FAIL
    const char* reason;  // what the note names
  };
  const Hook hook = GENERATE(
      Hook{"alloc", "cudaMalloc"},  // an allocation the cache cannot serve during the capture
      Hook{"sync", "cudaStreamSynchronize"});  // a host synchronisation inside the step
  INFO("SCRATCHNET_GRAPH_TEST_FAIL=" << hook.name);
  {
    EnvVar fail("SCRATCHNET_GRAPH_TEST_FAIL", hook.name);
    const RunResult graph = run_small(true, Kind::Dense, lrs);
    require_same_run(eager, graph);
    CHECK(graph.captures == 0);
    CHECK_THAT(graph.off_reason, Contains(hook.reason));
    CHECK_THAT(graph.off_reason, Contains("capturing"));
  }
  // The stream works on (no capture left open, no stale error).
  CHECK_FALSE(cuda::capturing());
  Tensor t = Tensor::full({4}, 2.0f, kGpu);
  CHECK(t.to_vector<float>() == std::vector<float>(4, 2.0f));
}

// --- the trainer -----------------------------------------------------------------------------

namespace {

struct TrainerRun {
  std::vector<train::MetricsRow> rows;
  std::vector<float> params;
  std::string log;
  int captures = 0;
  int64_t replays = 0;
};

TrainerRun train_lenet(train::TrainConfig c) {
  std::ostringstream log;
  train::Trainer t(c, log, false);
  TrainerRun r;
  r.rows = t.run();
  for (const auto& p : t.model().named_parameters()) {
    const auto v = p.tensor.to_vector<float>();
    r.params.insert(r.params.end(), v.begin(), v.end());
  }
  if (t.step_graph()) {
    r.captures = t.step_graph()->captures();
    r.replays = t.step_graph()->replays();
  }
  r.log = log.str();
  return r;
}

void require_same_training(const TrainerRun& a, const TrainerRun& b) {
  REQUIRE(a.rows.size() == b.rows.size());
  for (std::size_t i = 0; i < a.rows.size(); ++i) {
    INFO("epoch " << i + 1);
    CHECK(a.rows[i].train_loss == b.rows[i].train_loss);
    CHECK(a.rows[i].train_acc == b.rows[i].train_acc);
    CHECK(a.rows[i].test_loss == b.rows[i].test_loss);
    CHECK(a.rows[i].test_acc == b.rows[i].test_acc);
    CHECK(a.rows[i].lr == b.rows[i].lr);
  }
  REQUIRE(a.params == b.params);
}

}  // namespace

TEST_CASE("LeNet trains the same with and without the step graph",
          "[cuda][graph][trainer][model]") {
  testing::SyntheticData data;
  testing::TempDir out_on("graph-on"), out_off("graph-off");
  train::TrainConfig c = testing::small_config(data.dir.path.string(), "");
  c.device = "cuda";
  c.train_limit = 200;  // batches of 64, 64, 64 and a ragged 8
  c.test_limit = 64;
  c.epochs = 2;
  SECTION("a constant rate") {}
  SECTION("a step schedule (a new rate every epoch)") {
    c.schedule.kind = "step";
    c.schedule.step_epochs = 1;
    c.schedule.gamma = 0.5;
    c.epochs = 3;
  }
  SECTION("cosine with a warm-up epoch (a new rate every step)") {
    c.schedule.kind = "cosine";
    c.schedule.warmup_epochs = 1;
    c.epochs = 2;
  }
  train::TrainConfig on = c, off = c;
  on.out_dir = (out_on.path / "run").string();
  off.out_dir = (out_off.path / "run").string();
  off.cuda_graph = false;
  const TrainerRun eager = train_lenet(off), graph = train_lenet(on);
  require_same_training(eager, graph);
  CHECK(eager.captures == 0);
  CHECK(graph.captures == 1);                // once per run, whatever the schedule
  CHECK(graph.replays == 3 * c.epochs - 3);  // 3 full batches an epoch, 2 warm-up, 1 capture
  CHECK_THAT(graph.log, Contains("CUDA graph of the step after 2 warm-up steps"));
  CHECK_THAT(eager.log, !Contains("CUDA graph"));
}

TEST_CASE("the trainer falls back to eager steps with a one-line note when capture fails",
          "[cuda][graph][trainer][model]") {
  testing::SyntheticData data;
  testing::TempDir out_on("graph-fail"), out_off("graph-fail-off");
  train::TrainConfig c = testing::small_config(data.dir.path.string(), "");
  c.device = "cuda";
  c.train_limit = 200;
  c.test_limit = 64;
  c.epochs = 1;
  train::TrainConfig on = c, off = c;
  on.out_dir = (out_on.path / "run").string();
  off.out_dir = (out_off.path / "run").string();
  off.cuda_graph = false;
  const TrainerRun eager = train_lenet(off);
  EnvVar fail("SCRATCHNET_GRAPH_TEST_FAIL", "sync");
  const TrainerRun graph = train_lenet(on);
  require_same_training(eager, graph);
  CHECK(graph.captures == 0);
  CHECK_THAT(graph.log, Contains("note: CUDA graph off, training on with eager steps: the "
                                 "capture failed: "));
}
