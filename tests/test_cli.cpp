// The `scratchnet` binary end to end, run as users run it (std::system):
// help, exit codes for bad usage (2) and runtime failures (1, one line on
// stderr), and a small train -> eval -> summary -> predict round on the real
// Fashion-MNIST (the first 512 training / 256 test images), with a resume.
//
// No numerical tolerances here: the checks are exit codes, files and text.
#include <stb_image_write.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "test_files.h"
#include "tools/suggest.h"
#include "train/data.h"

namespace fs = std::filesystem;
using scratchnet::testing::run_binary;
using scratchnet::testing::RunResult;
using scratchnet::testing::slurp;
using scratchnet::testing::TempDir;

namespace {

int count_lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

bool has(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("every subcommand has --help and exits 0", "[cli]") {
  for (const char* cmd : {"", "train ", "eval ", "predict ", "summary "}) {
    const RunResult r = run_binary(std::string(cmd) + "--help");
    INFO(cmd << r.out << r.err);
    CHECK(r.code == 0);
    CHECK(has(r.out, "Usage:"));
  }
  CHECK(has(run_binary("train --help").out, "lenet"));
  CHECK(has(run_binary("predict --help").out, "--invert"));
}

TEST_CASE("bad usage exits 2 with a message", "[cli]") {
  for (const char* args :
       {"", "frobnicate", "train", "train --model nosuch", "train --model lenet --epochs 0",
        "train --model lenet --epochs ten", "train --model lenet --lr -1",
        "train --model lenet --momentum 1.5", "train --model lenet --device tpu",
        "train --model lenet --frobnicate", "train --model lenet --resize 64",
        "train --model resnet18 --width-divisor 4", "eval --model lenet",
        "predict --model lenet --weights x.safetensors", "summary --model nosuch"}) {
    const RunResult r = run_binary(args);
    INFO("scratchnet " << args << "\nstdout: " << r.out << "\nstderr: " << r.err);
    CHECK(r.code == 2);
    CHECK(!r.err.empty());
  }
}

TEST_CASE("a missing data directory exits 1 with one error line", "[cli]") {
  TempDir tmp("cli-nodata");
  const RunResult r = run_binary("train --model lenet --device cpu --data '" + tmp.file("missing") +
                                 "' --out '" + tmp.file("run") + "'");
  INFO(r.err);
  CHECK(r.code == 1);
  CHECK(count_lines(r.err) == 1);
  CHECK(r.err.rfind("error: ", 0) == 0);
  CHECK(has(r.err, "missing"));
  CHECK(!fs::exists(tmp.path / "run"));  // nothing created before the data was found
}

TEST_CASE("train, eval, summary and predict work end to end on a small subset", "[cli]") {
  TempDir tmp("cli-smoke");
  const std::string run_dir = tmp.file("run");
  const std::string data = scratchnet::data::default_data_dir();
  RunResult r = run_binary(
      "train --model lenet --epochs 1 --train-limit 512 --test-limit 256 --device cpu "
      "--data '" +
      data + "' --out '" + run_dir + "'");
  REQUIRE(r.code == 0);
  CHECK(has(r.out, "epoch 1/1"));
  for (const char* f : {"metrics.csv", "config.json", "training_curves.png", "model.safetensors"})
    CHECK(fs::exists(tmp.path / "run" / f));
  CHECK(count_lines(slurp(tmp.path / "run" / "metrics.csv")) == 2);
  CHECK(has(slurp(tmp.path / "run" / "config.json"), "\"model\": \"lenet\""));

  // Resuming keeps the run's settings (the 512-image subset) unless a flag
  // changes them; --epochs counts the epoch already done.
  r = run_binary("train --model lenet --resume '" + run_dir + "' --epochs 2");
  REQUIRE(r.code == 0);
  CHECK(has(r.out, "epoch 2/2"));
  CHECK(count_lines(slurp(tmp.path / "run" / "metrics.csv")) == 3);
  CHECK(has(slurp(tmp.path / "run" / "config.json"), "\"train_limit\": 512"));
  // The final line uses the epoch lines' 4 decimals.
  CHECK(has(r.out, "done: test acc 0."));
  const auto done_at = r.out.find("done: test acc ");
  REQUIRE(done_at != std::string::npos);
  CHECK(r.out.substr(done_at + 15, 7).find(',') == 6);  // "0.1234,"

  // Asking for no more epochs than are done says what --epochs means.
  r = run_binary("train --model lenet --resume '" + run_dir + "' --epochs 2");
  CHECK(r.code == 0);
  CHECK(has(r.out, "the run has finished 2 epochs and --epochs is 2"));

  const std::string weights = "'" + run_dir + "/model.safetensors'";
  r = run_binary("eval --model lenet --device cpu --test-limit 256 --data '" + data +
                 "' --weights " + weights);
  CHECK(r.code == 0);
  CHECK(has(r.out, "on 256 test images"));
  CHECK(has(r.out, "confusion matrix"));
  CHECK(has(r.out, "Ankle boot"));

  r = run_binary("eval --model lenet --device cpu --test-limit 256 --json --data '" + data +
                 "' --weights " + weights);
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j.at("test_images") == 256);
  CHECK(j.at("per_class").size() == 10);
  int64_t in_matrix = 0, diagonal = 0;
  for (std::size_t t = 0; t < 10; ++t)
    for (std::size_t q = 0; q < 10; ++q) {
      in_matrix += j.at("confusion").at(t).at(q).get<int64_t>();
      if (t == q) diagonal += j.at("confusion").at(t).at(q).get<int64_t>();
    }
  CHECK(in_matrix == 256);
  CHECK(j.at("correct") == diagonal);
  CHECK(j.at("accuracy").get<double>() == static_cast<double>(diagonal) / 256.0);

  r = run_binary("eval --model resnet18 --device cpu --test-limit 256 --weights " + weights);
  CHECK(r.code == 1);
  CHECK(count_lines(r.err) == 1);

  r = run_binary("summary --model lenet");
  CHECK(r.code == 0);
  CHECK(has(r.out, "61,706"));
  CHECK(has(r.out, "(1, 10)"));

  // A 40x30 grey image (resized to 28x28 by predict), and a text file.
  std::vector<uint8_t> px(40 * 30);
  for (std::size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((i * 37) % 256);
  const std::string png = tmp.file("item.png");
  REQUIRE(stbi_write_png(png.c_str(), 40, 30, 1, px.data(), 40) != 0);
  r = run_binary("predict --model lenet --device cpu --weights " + weights + " '" + png + "'");
  CHECK(r.code == 0);
  int classes = 0;
  for (const char* name : scratchnet::data::kClassNames)
    classes += has(r.out, std::string(name) + " ");
  CHECK(classes == 3);
  CHECK(count_lines(r.out) == 4);
  CHECK(has(r.out, "%"));

  const std::string txt = tmp.file("notes.txt");
  std::ofstream(txt) << "not an image\n";
  r = run_binary("predict --model lenet --device cpu --weights " + weights + " '" + txt + "'");
  CHECK(r.code == 1);
  CHECK(count_lines(r.err) == 1);
  CHECK(has(r.err, "notes.txt"));
}

TEST_CASE("help, --version and 'did you mean' for commands and flags", "[cli]") {
  RunResult r = run_binary("help");
  CHECK(r.code == 0);
  CHECK(has(r.out, "Usage: scratchnet"));
  CHECK(has(r.out, "train"));
  r = run_binary("help train");
  CHECK(r.code == 0);
  CHECK(has(r.out, "--epochs"));
  CHECK(has(r.out, "--lr-schedule"));

  r = run_binary("--version");
  CHECK(r.code == 0);
  CHECK(r.out.rfind("scratchnet " SCRATCHNET_VERSION " (commit ", 0) == 0);
#if defined(SCRATCHNET_CUDA_EMULATED)
  CHECK(has(r.out, "emulator"));
#elif defined(SCRATCHNET_WITH_CUDA)
  CHECK(has(r.out, "CUDA kernels compiled in"));
#else
  CHECK(has(r.out, "without CUDA"));
#endif

  const std::pair<const char*, const char*> typos[] = {
      {"trian", "did you mean train?"},
      {"evl --model lenet", "did you mean eval?"},
      {"hlep", "did you mean help?"},
      {"--verison", "did you mean --version?"},
      {"train --model lenet --epoch 1", "did you mean --epochs?"},
      {"train --model lenet --learning-rate 0.1", ""},
      {"eval --model lenet --weigths x.safetensors", "did you mean --weights?"},
      {"bench --resise 64", "did you mean --resize?"},
  };
  for (const auto& [args, hint] : typos) {
    r = run_binary(args);
    INFO("scratchnet " << args << "\nstderr: " << r.err);
    CHECK(r.code == 2);
    CHECK(r.err.rfind("error: unknown ", 0) == 0);
    if (*hint)
      CHECK(has(r.err, hint));
    else
      CHECK(!has(r.err, "did you mean"));
  }
}

TEST_CASE("edit distance and the closest name", "[cli]") {
  using scratchnet::tools::closest;
  using scratchnet::tools::edit_distance;
  CHECK(edit_distance("trian", "train") == 1);  // a swap counts once
  CHECK(edit_distance("", "abc") == 3);
  CHECK(edit_distance("kitten", "sitting") == 3);
  const std::vector<std::string> flags = {"--epochs", "--batch-size", "--lr", "--lr-schedule"};
  CHECK(closest("--epoch", flags) == "--epochs");
  CHECK(closest("--batchsize", flags) == "--batch-size");
  CHECK(closest("--lr-sched", flags) == "--lr-schedule");  // a prefix of one name
  CHECK(closest("--momentum", flags).empty());
}

TEST_CASE("train follows a step schedule and records lr and test loss per epoch", "[cli]") {
  TempDir tmp("cli-schedule");
  const RunResult r = run_binary(
      "train --model lenet --epochs 2 --train-limit 256 --test-limit 128 --device cpu "
      "--lr 0.8 --lr-schedule step --lr-step-epochs 1 --lr-gamma 0.5 --threads 1 --data '" +
      scratchnet::data::default_data_dir() + "' --out '" + tmp.file("run") + "'");
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  CHECK(has(r.out, "lr 0.8 (step x0.5 every 1 epochs)"));
  CHECK(has(r.out, "1 CPU thread (OpenMP wait policy passive)"));
  CHECK(has(r.out, "test loss "));
  const std::string csv = slurp(tmp.path / "run" / "metrics.csv");
  INFO(csv);
  // epoch,train_loss,train_acc,test_loss,test_acc,lr,...: the lr field of each row.
  std::vector<std::string> lrs;
  std::istringstream lines(csv);
  std::string line;
  std::getline(lines, line);
  CHECK(line.rfind("epoch,train_loss,train_acc,test_loss,test_acc,lr,", 0) == 0);
  while (std::getline(lines, line)) {
    std::vector<std::string> f;
    std::istringstream cells(line);
    for (std::string c; std::getline(cells, c, ',');) f.push_back(c);
    REQUIRE(f.size() == 9);
    CHECK(!f[3].empty());  // test loss
    lrs.push_back(f[5]);
  }
  CHECK(lrs == std::vector<std::string>{"0.8", "0.4"});
  CHECK(fs::exists(tmp.path / "run" / "metrics_columns.txt"));
  CHECK(fs::exists(tmp.path / "run" / "training_curves.svg"));
}
