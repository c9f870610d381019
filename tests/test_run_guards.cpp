// What a run refuses to read or keep: numbers from a state file outside
// their type, non-finite weights, a loss that diverges (NaN, Inf or above
// --max-loss), and a batch larger than the data (clamped, with a notice).
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "test_files.h"
#include "train/safetensors.h"
#include "train/trainer.h"
#include "trainer_fixtures.h"

namespace fs = std::filesystem;
using namespace scratchnet;
using scratchnet::testing::resume_config;
using scratchnet::testing::slurp;
using scratchnet::testing::small_config;
using scratchnet::testing::SyntheticData;
using scratchnet::testing::TempDir;
using scratchnet::testing::train_run;

namespace {

// Rewrites a state file with one metadata value or one tensor changed.
void patch_state(const std::string& path, const std::string& key, const std::string& value) {
  auto f = safetensors::load(path);
  f.metadata[key] = value;
  safetensors::save(path, f.tensors, f.metadata);
}

}  // namespace

TEST_CASE("epoch numbers and counts from a state file are checked in their own type",
          "[checkpoint]") {
  SyntheticData data;
  TempDir out("ckpt-ints");
  auto c = small_config(data.dir.file(), out.file());
  c.epochs = 1;
  train_run(c);
  const std::string state = out.file("train_state.safetensors");
  const std::string good = slurp(state);
  for (const auto& [key, value] :
       std::vector<std::pair<std::string, std::string>>{{"epoch", "2147483648"},
                                                        {"epoch", "4294967297"},
                                                        {"epoch", "-1"},
                                                        {"epoch", "1e3"},
                                                        {"steps", "18446744073709551615"},
                                                        {"rng_offset", "18446744073709551616"}}) {
    INFO(key << " = " << value);
    patch_state(state, key, value);
    try {
      train_run(resume_config(c, out.file(), 2));
      FAIL("resumed");
    } catch (const IoError& e) {
      CHECK(std::string(e.what()).find("\"" + key + "\"") != std::string::npos);
    }
    std::ofstream(state, std::ios::binary | std::ios::trunc) << good;
  }
  // The metrics history's epochs and the settings' integers too.
  auto f = safetensors::load(state);
  auto cfg = nlohmann::json::parse(f.metadata.at("config"));
  cfg["batch_size"] = 4294967360ULL;  // 2^32 + 64 would wrap to 64
  patch_state(state, "config", cfg.dump());
  CHECK_THROWS_AS(train_run(resume_config(c, out.file(), 2)), IoError);
  std::ofstream(state, std::ios::binary | std::ios::trunc) << good;
  auto metrics = nlohmann::json::parse(f.metadata.at("metrics"));
  metrics[0]["epoch"] = 4294967297ULL;
  patch_state(state, "metrics", metrics.dump());
  CHECK_THROWS_AS(train_run(resume_config(c, out.file(), 2)), ValueError);
  std::ofstream(state, std::ios::binary | std::ios::trunc) << good;
  CHECK(train_run(resume_config(c, out.file(), 2)).size() == 2);
}

TEST_CASE("non-finite weights are refused naming the tensor and the count", "[checkpoint]") {
  safetensors::File f;
  std::vector<float> v(10, 1.0f);
  v[2] = v[5] = v[7] = std::numeric_limits<float>::quiet_NaN();
  v[9] = std::numeric_limits<float>::infinity();
  f.tensors.push_back({"fine", Tensor::from_vector(std::vector<float>(4, 0.5f), {4})});
  f.tensors.push_back({"conv1.weight", Tensor::from_vector(v, {10})});
  f.tensors.push_back({"conv2.weight", Tensor::from_vector(v, {10})});
  try {
    safetensors::require_finite(f, "w.safetensors");
    FAIL("accepted NaN weights");
  } catch (const IoError& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK(msg.find("3 NaN and 1 infinite values in conv1.weight (and 1 more tensors)") !=
          std::string::npos);
  }
  f.tensors.resize(1);
  CHECK_NOTHROW(safetensors::require_finite(f, "w.safetensors"));

  // A resume from NaN weights stops before training.
  SyntheticData data;
  TempDir out("ckpt-nan");
  auto c = small_config(data.dir.file(), out.file());
  c.epochs = 1;
  train_run(c);
  const std::string state = out.file("train_state.safetensors");
  auto s = safetensors::load(state);
  for (auto& nt : s.tensors)
    if (nt.name == "model.net.0.weight") {
      auto w = nt.tensor.to_vector();
      w[0] = std::numeric_limits<float>::quiet_NaN();
      nt.tensor = Tensor::from_vector(w, nt.tensor.shape());
    }
  safetensors::save(state, s.tensors, s.metadata);
  try {
    train_run(resume_config(c, out.file(), 2));
    FAIL("resumed NaN weights");
  } catch (const IoError& e) {
    CHECK(std::string(e.what()).find("1 NaN values in net.0.weight") != std::string::npos);
  }
}

TEST_CASE("a loss above --max-loss stops training; 0 turns the bound off", "[checkpoint]") {
  SyntheticData data;
  TempDir out("ckpt-bound");
  auto c = small_config(data.dir.file(), out.file());
  c.epochs = 1;
  c.max_loss = 1.0;  // the first batch's loss is about ln 10 = 2.3
  try {
    train_run(c);
    FAIL("a loss above the bound did not stop training");
  } catch (const train::TrainingDiverged& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK(msg.find("above the divergence bound 1 (--max-loss)") != std::string::npos);
    CHECK(msg.find("epoch 1, batch 1;") != std::string::npos);
    CHECK(msg.find("no checkpoint was written") != std::string::npos);
  }
  CHECK(!fs::exists(out.path / "train_state.safetensors"));
  TempDir off("ckpt-bound-off");
  c.out_dir = off.file();
  c.max_loss = 0;
  CHECK(train_run(c).size() == 1);
  CHECK(train::kDefaultMaxLoss == Approx(1e4 * std::log(10.0)));
}

TEST_CASE("a huge learning rate stops at the default bound and keeps the last checkpoint",
          "[checkpoint]") {
  SyntheticData data;
  TempDir out("ckpt-lr");
  auto c = small_config(data.dir.file(), out.file());
  c.epochs = 1;
  train_run(c);
  const std::string before = slurp(out.path / "train_state.safetensors");
  auto r = resume_config(c, out.file(), 2);
  r.lr = 1e6f;
  try {
    train_run(r);
    FAIL("lr 1e6 trained on");
  } catch (const train::TrainingDiverged& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK(msg.find("epoch 2, batch ") != std::string::npos);
    CHECK(msg.find("checkpoint of epoch 1") != std::string::npos);
  }
  CHECK(slurp(out.path / "train_state.safetensors") == before);
}

TEST_CASE("a batch larger than the training set is clamped to it, with a notice", "[checkpoint]") {
  SyntheticData data;
  TempDir out("ckpt-batch");
  auto c = small_config(data.dir.file(), out.file());
  c.epochs = 1;
  c.batch_size = 2147483647;
  std::ostringstream log;
  train::Trainer t(c, log, false);
  const auto rows = t.run();
  INFO(log.str());
  CHECK(log.str().find("note: --batch-size 2147483647 is larger than the 512 training images; "
                       "using 512") != std::string::npos);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].train_loss > 0.5);  // a real step happened (not "loss 0")
  CHECK(safetensors::read_metadata(out.file("train_state.safetensors")).at("steps") == "1");
  CHECK(nlohmann::json::parse(slurp(out.path / "config.json")).at("batch_size") == 512);
}

TEST_CASE("file content reaches error messages only escaped", "[checkpoint][text]") {
  TempDir tmp("guards-escape");
  // A header that is not JSON (the parser quotes the raw byte 0xff it read),
  // and a tensor whose name holds an escape sequence.
  const std::vector<std::pair<std::string, std::string>> cases{
      {std::string("{\"a\xff\x1b", 5), "\\xff"},
      {"{\"w\\u001b[31m\": {\"dtype\": \"Q9\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
       "\\x1b[31m"}};
  for (const auto& [header, escaped] : cases) {
    std::string bytes(8, '\0');
    for (std::size_t i = 0; i < 8; ++i) bytes[i] = static_cast<char>(header.size() >> (8 * i));
    bytes += header + std::string(4, '\0');
    const std::string path = tmp.file("bad.safetensors");
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
    try {
      safetensors::load(path);
      FAIL("loaded");
    } catch (const IoError& e) {
      const std::string msg = e.what();
      INFO(msg);
      for (char c : msg) CHECK((c >= 0x20 && c < 0x7f));
      CHECK(msg.find(escaped) != std::string::npos);
    }
  }
}
