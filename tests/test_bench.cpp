// `scratchnet bench`: the shape table against the engine's models, the
// statistics, the --shape parser, and smoke runs of both modes through the
// binary. No timing is asserted (performance targets live in BENCHMARKS.md,
// never in unit tests); the runs check that rows exist, times are positive
// and the GEMM validation passes.
//
// Tolerance rule: the only numeric comparison here is the bench's own GEMM
// validation (|got - want| <= atol + rtol*|want|, atol = rtol =
// 2e-5*sqrt(K/16 + 1), stated in tools/bench_kernels.cpp); these tests read
// its verdict. Everything else is exact (shapes, counts, parsed integers).
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "core/error.h"
#include "layers/summary.h"
#include "models/models.h"
#include "test_files.h"
#include "tools/bench_modes.h"
#include "tools/bench_shapes.h"
#include "tools/bench_timer.h"

namespace fs = std::filesystem;
using namespace scratchnet;
using namespace scratchnet::tools::bench;
using scratchnet::testing::run_binary;
using scratchnet::testing::RunResult;
using scratchnet::testing::slurp;

namespace {

// The module at a dotted PyTorch path ("vgg_block2.conv1", "2.0.conv3").
const Module* find_module(const Module& root, const std::string& path) {
  const Module* m = &root;
  std::stringstream ss(path);
  std::string part;
  while (std::getline(ss, part, '.')) {
    const Module* next = nullptr;
    for (const auto& [name, child] : m->children())
      if (name == part) next = child.get();
    if (!next) return nullptr;
    m = next;
  }
  return m;
}

bool has(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

std::string pair(int a) {
  return "(" + std::to_string(a) + ", " + std::to_string(a) + ")";
}

}  // namespace

namespace {

// The table's rows for one model against the engine's model built at full size.
void check_table(const BenchModel& bm) {
  INFO("model " << bm.name);
  Generator gen(0);
  const auto model = models::make(bm.name, gen, 1);
  models::check_input_size(bm.name, bm.image_size);
  std::map<std::string, Shape> params;
  int64_t engine_params = 0;
  for (const auto& p : model->named_parameters()) {
    params[p.name] = p.tensor.shape();
    engine_params += p.tensor.numel();
  }
  // The engine's own shape trace: output shape per leaf layer, by name.
  std::map<std::string, Shape> out_shape;
  const int N = bm.batch_size, S = bm.image_size;
  for (const auto& info : summarize(*model, {N, 1, S, S})) out_shape[info.name] = info.output_shape;
  const auto layers = model_layers(bm.name);
  REQUIRE(!layers.empty());
  int convs = 0, linears = 0;
  for (const LayerShape& l : layers) {
    INFO("layer " << l.layer << " " << l.shape());
    if (l.kind == Kind::Conv) {
      ++convs;
      const auto& c = l.conv;
      CHECK(c.N == bm.batch_size);
      CHECK(params[l.layer + ".weight"] == Shape{c.K, c.C, c.R, c.S});
      const Module* m = find_module(*model, l.layer);
      REQUIRE(m);
      const std::string d = m->describe();
      CHECK(has(d, "kernel_size=" + pair(c.R)));
      CHECK(has(d, "stride=" + pair(c.stride)));
      CHECK(has(d, "padding=") == (c.pad != 0));
      if (c.pad) CHECK(has(d, "padding=" + pair(c.pad)));
      CHECK(out_shape[l.layer] == Shape{c.N, c.K, c.P, c.Q});
    } else if (l.kind == Kind::Linear) {
      // IN is the flattened output of the walker's previous layer: a wrong
      // stride or padding anywhere above shows up here.
      ++linears;
      CHECK(params[l.layer + ".weight"] == Shape{l.linear.OUT, l.linear.IN});
      CHECK(out_shape[l.layer] == Shape{l.linear.N, l.linear.OUT});
    } else if (l.kind == Kind::BatchNorm) {
      CHECK(params[l.layer + ".weight"] == Shape{l.bn.C});
    } else if (l.kind == Kind::MaxPool || l.kind == Kind::AvgPool) {
      const Module* m = find_module(*model, l.layer);
      REQUIRE(m);
      const std::string d = m->describe();
      CHECK(has(d, l.kind == Kind::MaxPool ? "MaxPool2d(" : "AvgPool2d("));
      CHECK(has(d, "kernel_size=" + std::to_string(l.pool.R) + ", stride=" +
                       std::to_string(l.pool.stride) + ", padding=" + std::to_string(l.pool.pad)));
      CHECK(out_shape[l.layer] == Shape{l.pool.N, l.pool.C, l.pool.P, l.pool.Q});
    } else if (l.kind == Kind::Sigmoid || l.kind == Kind::ReLU || l.kind == Kind::Dropout) {
      // Functional ops of ResNet's Residual have no module ("1.0(relu)").
      if (has(l.layer, "(")) continue;
      const Module* m = find_module(*model, l.layer);
      REQUIRE(m);
      const char* want = l.kind == Kind::Sigmoid ? "Sigmoid"
                         : l.kind == Kind::ReLU  ? "ReLU"
                                                 : "Dropout";
      CHECK(m->describe().rfind(want, 0) == 0);
    }
  }
  CHECK(parameter_count(layers) == engine_params);
  // Every conv and linear weight of the model is in the table.
  int engine_weights = 0;
  for (const auto& [name, shape] : params)
    if (name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0 &&
        (shape.size() == 4 || shape.size() == 2))
      ++engine_weights;
  CHECK(convs + linears == engine_weights);
  CHECK(layers.back().kind == Kind::Sgd);
  CHECK(layers[layers.size() - 2].kind == Kind::CrossEntropy);
  CHECK(layers[layers.size() - 2].hw == 10);
}

bool large_vgg(const std::string& name) {
  return name == "vgg13" || name == "vgg16" || name == "vgg19";
}

}  // namespace

TEST_CASE("bench shape table matches the engine's models layer by layer", "[bench]") {
  for (const auto& bm : bench_models())
    if (!large_vgg(bm.name)) check_table(bm);
}

// VGG-13/16/19 have 133-144M parameters: building them takes seconds.
TEST_CASE("bench shape table matches VGG-13/16/19 layer by layer", "[bench][slow]") {
  for (const auto& bm : bench_models())
    if (large_vgg(bm.name)) check_table(bm);
}

TEST_CASE("bench dedup collapses identical layers and keeps the count", "[bench]") {
  const auto all = model_layers("resnet18", 4, 96);
  const auto rows = dedup(all);
  CHECK(rows.size() < all.size());
  int total = 0;
  for (const auto& r : rows) total += r.count;
  CHECK(total == static_cast<int>(all.size()));
  CHECK_THROWS_AS(model_layers("nosuch"), ValueError);
  CHECK_THROWS_AS(model_layers("alexnet", 2, 64), ShapeError);  // too small for AlexNet
}

TEST_CASE("bench statistics: median, spread and nearest-rank percentiles", "[bench]") {
  const Stats s = summarize({5, 1, 4, 2, 3, 10, 6, 7, 9, 8});
  CHECK(s.repeats == 10);
  CHECK(s.min == 1);
  CHECK(s.max == 10);
  CHECK(s.median == Approx(5.5));
  CHECK(s.p10 == 1);
  CHECK(s.p90 == 9);
  const Stats one = summarize({2.5});
  CHECK(one.median == 2.5);
  CHECK(one.p10 == 2.5);
  CHECK(one.p90 == 2.5);
}

TEST_CASE("bench --shape parser", "[bench]") {
  LayerShape l;
  int mnk[3] = {0, 0, 0};
  CHECK_FALSE(parse_shape("gemm:64,32,16", l, mnk));
  CHECK(mnk[0] == 64);
  CHECK(mnk[2] == 16);
  REQUIRE(parse_shape("conv2d:2,3,32,32,8,3,1,1", l, mnk));
  CHECK(l.kind == Kind::Conv);
  CHECK(l.conv.P == 32);
  REQUIRE(parse_shape("maxpool:2,3,8,8,2,2", l, mnk));
  CHECK(l.pool.P == 4);
  REQUIRE(parse_shape("relu:1000", l, mnk));
  CHECK(l.n == 1000);
  CHECK_THROWS_AS(parse_shape("gemm:1,2", l, mnk), ValueError);
  CHECK_THROWS_AS(parse_shape("gemm:1,x,3", l, mnk), ValueError);
  CHECK_THROWS_AS(parse_shape("conv9:1,2,3", l, mnk), ValueError);
  CHECK_THROWS_AS(parse_shape("relu:-5", l, mnk), ValueError);
  CHECK_THROWS_AS(parse_shape("conv2d:1,1,2,2,1,5", l, mnk), ShapeError);  // kernel > input
}

TEST_CASE("bench kernel mode runs on the CPU and prints json rows", "[bench]") {
  const RunResult r = run_binary(
      "bench --device cpu --op relu --model alexnet --batch-size 2 --repeats 1 --warmup 0 "
      "--format json");
  INFO("exit " << r.code << "\nstdout:\n" << r.out << "\nstderr:\n" << r.err);
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["mode"] == "kernels");
  CHECK(j["device"] == "cpu");
  // Copy bandwidth and the FMA peak of one core (and of all threads, when more than one).
  REQUIRE(j["ceilings"].size() >= 2);
  for (const auto& c : j["ceilings"]) CHECK(c["value"].get<double>() > 0);
  CHECK(j["ceilings"][1]["name"].get<std::string>().rfind("FP32 FMA peak, 1 core, ", 0) == 0);
  REQUIRE(j["rows"].size() >= 2);
  bool fwd = false, bwd = false;
  for (const auto& row : j["rows"]) {
    CHECK(row["op"] == "relu");
    CHECK(row["model"] == "alexnet");
    CHECK(row["time"]["median_ms"].get<double>() > 0);
    CHECK(row["bytes"].get<double>() > 0);
    fwd |= row["pass"] == "fwd";
    bwd |= row["pass"] == "bwd";
  }
  CHECK(fwd);
  CHECK(bwd);
}

TEST_CASE("bench validates GEMM shapes against a double-precision reference", "[bench]") {
  const RunResult r = run_binary(
      "bench --device cpu --shape gemm:67,45,301 --shape linear:3,50,20 --repeats 1 --warmup 0 "
      "--format csv");
  INFO("exit " << r.code << "\nstdout:\n" << r.out << "\nstderr:\n" << r.err);
  REQUIRE(r.code == 0);
  CHECK(has(r.out, "op,pass,model,layer,shape"));
  CHECK(has(r.out, "gemm,fwd,-,custom,M=67 N=45 K=301,1,"));
  CHECK(has(r.out, "ok (max err"));
  CHECK(has(r.out, "linear,bwd_weight,-,custom,N=3 IN=50 OUT=20"));
}

TEST_CASE("bench model-step mode runs a LeNet step on the CPU", "[bench]") {
  const fs::path out =
      fs::temp_directory_path() / ("scratchnet-bench-step-" + std::to_string(::getpid()) + ".json");
  const RunResult r = run_binary(
      "bench --model lenet --steps 1 --warmup 1 --batch-size 8 --device cpu "
      "--format json --out '" +
      out.string() + "'");
  INFO("exit " << r.code << "\nstdout:\n" << r.out << "\nstderr:\n" << r.err);
  REQUIRE(r.code == 0);
  const std::string text = slurp(out);
  fs::remove(out);
  const auto j = nlohmann::json::parse(text);
  CHECK(j["mode"] == "model_step");
  CHECK(j["model"] == "lenet");
  CHECK(j["batch"] == 8);
  CHECK(j["input"] == 28);
  CHECK(j["ms_per_step"].get<double>() > 0);
  CHECK(j["img_per_s"].get<double>() > 0);
  CHECK(j["peak_mem_MiB"].get<double>() > 0);
  // Forward per layer: every layer of LeNet but the SGD row of the table.
  CHECK(j["forward_layers"].size() == model_layers("lenet", 8).size() - 1);
  for (const auto& l : j["forward_layers"]) CHECK(l["ms"].get<double>() >= 0);
  REQUIRE(!j["backward_layers"].empty());
  bool conv = false;
  for (const auto& l : j["backward_layers"]) conv |= has(l["name"].get<std::string>(), "conv2d");
  CHECK(conv);
}

namespace {

// `bench --model lenet` in model-step mode at batch 4, no profile; exit 0 required.
RunResult lenet_step_bench(const std::string& device, int steps, const std::string& format) {
  const RunResult r = run_binary("bench --model lenet --steps " + std::to_string(steps) +
                                 " --warmup 1 --batch-size 4 --no-profile --device " + device +
                                 (format.empty() ? "" : " --format " + format));
  INFO("exit " << r.code << "\nstdout:\n" << r.out << "\nstderr:\n" << r.err);
  REQUIRE(r.code == 0);
  return r;
}

}  // namespace

TEST_CASE("bench model-step csv: one row per way of running the step", "[bench]") {
  const RunResult r = lenet_step_bench("cpu", 1, "csv");
  CHECK(has(r.out,
            "model,batch,input,ms_per_step,p10_ms,p90_ms,img_per_s,peak_mem_MiB,"
            "saved_act_MiB,step\nlenet,4,28,"));
  CHECK(has(r.out, ",eager\n"));
  CHECK(!has(r.out, "cuda_graph"));  // the CPU has no graphs
}

TEST_CASE("bench model-step mode times the CUDA graph replay next to eager steps",
          "[bench][cuda][graph]") {
  // On the emulated target the times mean nothing; the rows and fields do.
  const RunResult csv = lenet_step_bench("cuda", 2, "csv");
  CHECK(has(csv.out, ",eager\nlenet,4,28,"));
  CHECK(has(csv.out, ",cuda_graph\n"));
  const RunResult js = lenet_step_bench("cuda", 2, "json");
  const auto j = nlohmann::json::parse(js.out.substr(js.out.find('{')));
  CHECK(j["ms_per_step"].get<double>() > 0);
  REQUIRE(j["cuda_graph"].is_object());
  CHECK(j["cuda_graph"]["ms_per_step"].get<double>() > 0);
  CHECK(j["cuda_graph"]["time"]["repeats"] == 2);
  CHECK(has(lenet_step_bench("cuda", 1, "").out, "ms/step as a CUDA graph replay"));
}

TEST_CASE("bench rejects bad flags (exit 2) and bad shapes (exit 1)", "[bench]") {
  for (const char* args : {"bench --format xml", "bench --op nosuch", "bench --repeats 0",
                           "bench --model nosuch", "bench --mode sideways"}) {
    const RunResult r = run_binary(args);
    INFO(args << "\nstderr:\n" << r.err);
    CHECK(r.code == 2);
  }
  const RunResult r = run_binary("bench --device cpu --shape conv2d:1,2 --repeats 1 --warmup 0");
  INFO("stderr:\n" << r.err);
  CHECK(r.code == 1);
  CHECK(has(r.err + r.out, "conv2d:1,2"));
}

TEST_CASE("bench's quick default: LeNet's layers, no square GEMM, a table within 120 columns",
          "[bench]") {
  // --op narrows it to two cheap kernels; the defaults under test are the
  // model list, the GEMM list and the table layout.
  for (const char* size_flag : {"--resize 28", "--image-size 28"}) {
    const RunResult r =
        run_binary(std::string("bench --device cpu --mode kernels --op sgd,relu,gemm ") +
                   "--repeats 1 --warmup 0 " + size_flag);
    INFO(size_flag << "\n" << r.out << r.err);
    REQUIRE(r.code == 0);
    CHECK(r.out.find("4096") == std::string::npos);  // no 4096^3 GEMM unless --square-gemm
    CHECK(r.out.find("lenet net.7") != std::string::npos);
    CHECK(r.out.find("alexnet") == std::string::npos);
    std::istringstream lines(r.out);
    std::size_t widest = 0;
    for (std::string line; std::getline(lines, line);) widest = std::max(widest, line.size());
    CHECK(widest <= 120);
    CHECK(r.err.find("bench [") != std::string::npos);  // progress went to stderr
  }
}

TEST_CASE("bench --width-divisor divides VGG's channels like train's", "[bench]") {
  const auto full = model_layers("vgg11", 2, 224, 1);
  const auto quarter = model_layers("vgg11", 2, 224, 4);
  REQUIRE(full.size() == quarter.size());
  CHECK(full[0].conv.K == 64);
  CHECK(quarter[0].conv.K == 16);
  CHECK_THROWS_AS(model_layers("lenet", 2, 28, 4), ValueError);
}
