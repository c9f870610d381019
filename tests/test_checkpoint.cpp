// What a run directory guarantees: one atomic checkpoint per epoch, whatever
// fails while it is written; one writer at a time; one run per directory;
// settings that change what the metrics mean refused on resume unless
// allowed, and recorded. (test_run_guards.cpp: what a run refuses to read or
// keep.)
//
// No numerical tolerances: a resumed CPU run must equal an uninterrupted one
// bit for bit (same kernels, same inputs, same order), compared with ==.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "test_files.h"
#include "train/atomic_file.h"
#include "train/run_dir.h"
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

std::map<std::string, std::vector<float>> weights_of(Module& m) {
  std::map<std::string, std::vector<float>> out;
  for (const auto& t : m.state_dict())
    if (t.tensor.dtype() == DType::F32) out[t.name] = t.tensor.to_vector();
  return out;
}

const char* op_name(FileOp op) {
  switch (op) {
    case FileOp::Create:
      return "create";
    case FileOp::Write:
      return "write";
    case FileOp::Sync:
      return "fsync";
    case FileOp::Rename:
      return "rename";
  }
  return "?";
}

// One system call of a checkpoint: its kind, the file's name and which
// occurrence of that (kind, name) it is.
struct FaultPoint {
  FileOp op;
  std::string file;
  int occurrence;
};

}  // namespace

TEST_CASE("a failure at any step of a checkpoint leaves the run resumable at the last epoch",
          "[checkpoint]") {
  SyntheticData data;
  auto base = small_config(data.dir.file(), "");
  base.train_limit = 128;  // 2 steps an epoch: every fault point is tried, quickly
  base.test_limit = 64;

  // The reference: two epochs, uninterrupted.
  TempDir full("ckpt-full");
  auto straight = base;
  straight.out_dir = full.file();
  std::ostringstream log;
  train::Trainer reference(straight, log, false);
  const auto want_rows = reference.run();
  const auto want = weights_of(reference.model());

  // Epoch 1, kept as a template to copy for every fault.
  TempDir one("ckpt-one");
  auto first = base;
  first.out_dir = one.file();
  first.epochs = 1;
  train_run(first);

  // Every system call that resuming to epoch 2 makes on the files.
  std::vector<FaultPoint> points;
  {
    TempDir probe("ckpt-probe");
    fs::copy(one.path, probe.path,
             fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    std::map<std::pair<int, std::string>, int> seen;
    FaultInjection record([&](FileOp op, const std::string& path) {
      const std::string file = fs::path(path).filename().string();
      const int n = seen[{static_cast<int>(op), file}]++;
      // Every call but the later writes of a file (the first write stands
      // for them: same code path, different bytes).
      if (op != FileOp::Write || n == 0) points.push_back({op, file, n});
      return false;
    });
    train_run(resume_config(base, probe.file(), 2));
  }
  // The state, the exports, the csv, the config and the plot, each created,
  // written, synced and renamed.
  for (const char* f : {"train_state.safetensors", "model.safetensors", "metrics.csv",
                        "config.json", "training_curves.png"})
    for (FileOp op : {FileOp::Create, FileOp::Write, FileOp::Sync, FileOp::Rename}) {
      INFO(f << " " << op_name(op));
      CHECK(std::any_of(points.begin(), points.end(),
                        [&](const FaultPoint& p) { return p.file == f && p.op == op; }));
    }

  for (const auto& point : points) {
    INFO("failing " << op_name(point.op) << " #" << point.occurrence << " of " << point.file);
    TempDir run("ckpt-fault");
    fs::copy(one.path, run.path,
             fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    {
      std::map<std::pair<int, std::string>, int> seen;
      FaultInjection fail([&](FileOp op, const std::string& path) {
        const std::string file = fs::path(path).filename().string();
        const int n = seen[{static_cast<int>(op), file}]++;
        return op == point.op && file == point.file && n == point.occurrence;
      });
      CHECK_THROWS_AS(train_run(resume_config(base, run.file(), 2)), IoError);
    }
    // No temporary is left behind, and the state on disk is a whole epoch.
    for (const auto& e : fs::directory_iterator(run.path)) CHECK(e.path().extension() != ".tmp");
    const auto state = safetensors::read_metadata(run.file("train_state.safetensors"));
    const std::string epoch = state.at("epoch");
    CHECK((epoch == "1" || epoch == "2"));

    // Resuming finishes the run exactly as the uninterrupted one.
    std::ostringstream log2;
    train::Trainer again(resume_config(base, run.file(), 2), log2, false);
    const auto rows = again.run();
    REQUIRE(rows.size() == 2);
    CHECK(rows[1].train_loss == want_rows[1].train_loss);
    CHECK(rows[1].test_acc == want_rows[1].test_acc);
    CHECK(weights_of(again.model()) == want);
    // The exports caught up with the state.
    CHECK(safetensors::read_metadata(run.file("model.safetensors")).at("epoch") == "2");
    const auto csv = slurp(run.path / "metrics.csv");
    CHECK(std::count(csv.begin(), csv.end(), '\n') == 3);
    CHECK(!fs::exists(run.path / "training_curves.png.tmp"));
  }
}

TEST_CASE("the state file is self-contained; model_best follows the best test accuracy",
          "[checkpoint]") {
  SyntheticData data;
  TempDir out("ckpt-self");
  auto c = small_config(data.dir.file(), out.file());
  const auto rows = train_run(c);
  // Only the state: the weights come from it.
  fs::remove(out.path / "model.safetensors");
  fs::remove(out.path / "model_best.safetensors");
  std::ostringstream log;
  train::Trainer t(resume_config(c, out.file(), 2), log, false);
  CHECK(t.start_epoch() == 3);
  CHECK(log.str().find("rewriting the files derived from it") != std::string::npos);
  const auto model = safetensors::load(out.file("model.safetensors"));
  CHECK(model.metadata.at("epoch") == "2");
  const auto state = safetensors::load(out.file("train_state.safetensors"));
  for (const auto& nt : model.tensors) {
    const auto it =
        std::find_if(state.tensors.begin(), state.tensors.end(),
                     [&](const NamedTensor& s) { return s.name == "model." + nt.name; });
    REQUIRE(it != state.tensors.end());
    if (nt.tensor.dtype() == DType::F32) CHECK(it->tensor.to_vector() == nt.tensor.to_vector());
  }
  const int best = rows[1].test_acc > rows[0].test_acc ? 2 : 1;
  if (best == 2) {
    CHECK(safetensors::read_metadata(out.file("model_best.safetensors")).at("epoch") == "2");
  } else {
    // Epoch 1 was the best, and its export is gone: not made up from epoch 2.
    CHECK(!fs::exists(out.path / "model_best.safetensors"));
  }
}

TEST_CASE("model_best.safetensors holds the epoch with the best test accuracy", "[checkpoint]") {
  SyntheticData data;
  TempDir out("ckpt-best");
  auto c = small_config(data.dir.file(), out.file());
  c.epochs = 3;
  const auto rows = train_run(c);
  int best = 1;
  for (const auto& r : rows)
    if (r.test_acc > rows[static_cast<std::size_t>(best - 1)].test_acc) best = r.epoch;
  const auto m = safetensors::read_metadata(out.file("model_best.safetensors"));
  CHECK(m.at("epoch") == std::to_string(best));
  CHECK(m.at("model") == "lenet");
  CHECK(m.count("test_acc") == 1);
}

TEST_CASE("a second writer of a run directory fails at once, naming the holder", "[checkpoint]") {
  SyntheticData data;
  TempDir out("ckpt-lock");
  auto c = small_config(data.dir.file(), out.file());
  c.epochs = 1;
  std::ostringstream log;
  {
    train::Trainer first(c, log, false);
    try {
      train::Trainer second(c, log, false);
      FAIL("a second Trainer wrote into the same directory");
    } catch (const train::RunLocked& e) {
      const std::string msg = e.what();
      INFO(msg);
      CHECK(msg.find("another scratchnet train (pid " + std::to_string(::getpid()) + ")") !=
            std::string::npos);
      CHECK(msg.find(out.file()) != std::string::npos);
    }
    // Resuming it before its first epoch ends says who holds it, not "no state".
    CHECK_THROWS_AS(train::saved_config(out.file()), train::RunLocked);
  }
  // Killed before its first epoch ended: nothing to resume, and it says so; a
  // new run may start there.
  try {
    train::saved_config(out.file());
    FAIL("resumed a run that never finished an epoch");
  } catch (const IoError& e) {
    CHECK(std::string(e.what()).find("no epoch of the run") != std::string::npos);
  }
  {
    train::Trainer first(c, log, false);
    first.run();
  }
  // The lock dies with its holder.
  train::Trainer next(resume_config(c, out.file(), 2), log, false);
  CHECK(next.run().size() == 2);
}

TEST_CASE("--resume RUN --out OTHER is refused; OTHER is untouched", "[checkpoint]") {
  SyntheticData data;
  TempDir run("ckpt-run"), other("ckpt-other");
  auto c = small_config(data.dir.file(), run.file());
  c.epochs = 1;
  train_run(c);
  auto o = c;
  o.out_dir = other.file();
  o.seed = 99;
  train_run(o);
  const std::string before = slurp(other.path / "train_state.safetensors");

  auto r = resume_config(c, run.file(), 2);
  r.out_dir = other.file();
  try {
    train_run(r);
    FAIL("resumed into another run's directory");
  } catch (const ValueError& e) {
    CHECK(std::string(e.what()).find("in its own directory") != std::string::npos);
  }
  CHECK(slurp(other.path / "train_state.safetensors") == before);
  // --out naming the run itself is fine.
  r.out_dir = run.file();
  CHECK(train_run(r).size() == 2);
}

TEST_CASE("resume refuses changes to what the metrics mean unless allowed, and records them",
          "[checkpoint]") {
  SyntheticData data;
  TempDir out("ckpt-changes");
  auto c = small_config(data.dir.file(), out.file());
  c.epochs = 1;
  train_run(c);

  auto r = resume_config(c, out.file(), 2);
  r.batch_size = 32;
  r.train_limit = 256;
  try {
    train_run(r);
    FAIL("resumed with another batch size");
  } catch (const ValueError& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK(msg.find("--batch-size 64 -> 32") != std::string::npos);
    CHECK(msg.find("--train-limit 0 -> 256") != std::string::npos);
    CHECK(msg.find("--allow-changes") != std::string::npos);
  }
  auto other = resume_config(c, out.file(), 2);
  other.model = "alexnet";
  other.image_size = 224;
  try {
    train_run(other);
    FAIL("resumed as another model");
  } catch (const ValueError& e) {
    CHECK(std::string(e.what()).find("is a lenet run") != std::string::npos);
  }

  r.allow_changes = true;
  r.lr = 0.25f;
  CHECK(train_run(r).size() == 2);
  const auto config = nlohmann::json::parse(slurp(out.path / "config.json"));
  REQUIRE(config.at("changes").size() == 1);
  const auto& change = config.at("changes")[0];
  CHECK(change.at("from_epoch") == 2);
  CHECK(change.at("changed").at("batch_size").at("from") == 64);
  CHECK(change.at("changed").at("batch_size").at("to") == 32);
  CHECK(change.at("changed").at("lr").at("to") == 0.25);
  CHECK(config.at("batch_size") == 32);

  // The history survives the next resume, which changes nothing.
  auto again = resume_config(r, out.file(), 3);
  again.allow_changes = false;
  CHECK(train_run(again).size() == 3);
  CHECK(nlohmann::json::parse(slurp(out.path / "config.json")).at("changes").size() == 1);
}
