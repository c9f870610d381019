// The `scratchnet` binary on the paths where trust is at stake, run as users
// run it (std::system), on the small synthetic data set of the trainer tests:
// resuming from a folder, a run directory that belongs to one run, integers
// at the edge, non-finite weights, and predict on good, bad and hostile
// images (every file tried, one line per failure, exit 1, nothing crashes).
//
// No numerical tolerances here: the checks are exit codes, files and text.
#include <stb_image_write.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "test_files.h"
#include "train/image.h"
#include "train/safetensors.h"
#include "trainer_fixtures.h"

namespace fs = std::filesystem;
using namespace scratchnet;
using scratchnet::testing::run_binary;
using scratchnet::testing::RunResult;
using scratchnet::testing::slurp;
using scratchnet::testing::SyntheticData;
using scratchnet::testing::TempDir;

namespace {

bool has(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

int count_lines(const std::string& s) {
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

bool printable(const std::string& s) {
  for (char c : s)
    if (c != '\n' && (c < 0x20 || c >= 0x7f)) return false;
  return true;
}

// A one-epoch LeNet run on the synthetic data, in tmp/run.
struct SmallRun {
  SyntheticData data;
  TempDir tmp{"cli-run"};
  std::string dir = tmp.file("run");
  std::string flags = "--device cpu --data '" + data.dir.file() + "'";
  SmallRun() {
    const RunResult r = run_binary("train --model lenet --epochs 1 --batch-size 64 " + flags +
                                   " --out '" + dir + "'");
    INFO(r.out << r.err);
    REQUIRE(r.code == 0);
  }
};

void write_grey_png(const std::string& path, int w, int h, uint8_t background, uint8_t item) {
  std::vector<uint8_t> px(static_cast<std::size_t>(w) * h, background);
  for (int y = h / 4; y < 3 * h / 4; ++y)
    for (int x = w / 4; x < 3 * w / 4; ++x) px[static_cast<std::size_t>(y) * w + x] = item;
  REQUIRE(stbi_write_png(path.c_str(), w, h, 1, px.data(), w) != 0);
}

}  // namespace

TEST_CASE("train --resume RUN needs nothing else; another model or batch size is refused",
          "[cli][resume]") {
  SmallRun run;
  RunResult r = run_binary("train --resume '" + run.dir + "' --epochs 2");
  INFO(r.out << r.err);
  CHECK(r.code == 0);
  CHECK(has(r.out, "epoch 2/2"));

  r = run_binary("train --resume '" + run.dir + "' --model alexnet --epochs 3");
  CHECK(r.code == 2);
  CHECK(has(r.err, "is a lenet run"));

  r = run_binary("train --resume '" + run.dir + "' --batch-size 32 --epochs 3");
  CHECK(r.code == 1);
  CHECK(count_lines(r.err) == 1);
  CHECK(has(r.err, "--batch-size 64 -> 32"));
  CHECK(has(r.err, "--allow-changes"));

  r = run_binary("train --resume '" + run.dir + "' --batch-size 32 --epochs 3 --allow-changes");
  CHECK(r.code == 0);
  const auto config = nlohmann::json::parse(slurp(fs::path(run.dir) / "config.json"));
  REQUIRE(config.at("changes").size() == 1);
  CHECK(config.at("changes")[0].at("from_epoch") == 3);
  CHECK(config.at("changes")[0].at("changed").at("batch_size").at("to") == 32);

  r = run_binary("train --model lenet --allow-changes --epochs 1 " + run.flags);
  CHECK(r.code == 2);
}

TEST_CASE("train --resume RUN --out OTHER refuses and leaves OTHER alone", "[cli][resume]") {
  SmallRun run;
  const std::string other = run.tmp.file("other");
  RunResult r =
      run_binary("train --model lenet --epochs 1 --seed 5 " + run.flags + " --out '" + other + "'");
  REQUIRE(r.code == 0);
  const std::string before = slurp(fs::path(other) / "model.safetensors");
  r = run_binary("train --resume '" + run.dir + "' --out '" + other + "' --epochs 2");
  CHECK(r.code == 1);
  CHECK(count_lines(r.err) == 1);
  CHECK(has(r.err, "in its own directory"));
  CHECK(slurp(fs::path(other) / "model.safetensors") == before);
}

TEST_CASE("integers are checked at the command line in their own type", "[cli][limits]") {
  SmallRun run;
  for (const char* bad : {"--seed -1", "--seed 18446744073709551616", "--seed 1e23",
                          "--batch-size 2147483648", "--batch-size -5", "--epochs 2147483648",
                          "--epochs 1.5", "--train-limit 1e23", "--resize 28x"}) {
    const RunResult r =
        run_binary(std::string("train --model lenet ") + bad + " " + run.flags + " --out x");
    INFO(bad << ": " << r.err);
    CHECK(r.code == 2);
    CHECK(has(r.err, "integer"));
  }
  for (const char* bad : {"eval --model lenet --weights w --resize 1e2",
                          "predict --model lenet --weights w --width-divisor 2.0 x.png",
                          "summary --model lenet --resize 28.0"}) {
    const RunResult r = run_binary(bad);
    INFO(bad << ": " << r.err);
    CHECK(r.code == 2);
    CHECK(has(r.err, "integer"));
  }
  RunResult r =
      run_binary("train --model lenet --epochs 1 --seed 18446744073709551615 " + run.flags +
                 " --batch-size 2147483647 --out '" + run.tmp.file("big") + "'");
  INFO(r.out << r.err);
  CHECK(r.code == 0);
  CHECK(has(r.out, "is larger than the 512 training images; using 512"));
  CHECK(!has(r.out, "loss 0.0000"));
  r = run_binary("eval --model lenet --weights '" + run.dir + "' --batch-size 2147483647 " +
                 run.flags);
  CHECK(r.code == 0);
  CHECK(has(r.out, "on 256 test images"));
  CHECK(has(r.err, "is larger than the 256 test images"));
}

TEST_CASE("eval takes a run directory or its state file as weights; NaN weights are refused",
          "[cli][weights]") {
  SmallRun run;
  const RunResult by_file =
      run_binary("eval --model lenet --weights '" + run.dir + "/model.safetensors' " + run.flags);
  REQUIRE(by_file.code == 0);
  const std::string line = by_file.out.substr(0, by_file.out.find('\n'));
  for (const std::string& w :
       {run.dir, run.dir + "/train_state.safetensors", run.dir + "/model_best.safetensors"}) {
    const RunResult r = run_binary("eval --model lenet --weights '" + w + "' " + run.flags);
    INFO(w << ": " << r.err);
    CHECK(r.code == 0);
    CHECK(r.out.substr(0, r.out.find('\n')) == line);
  }

  // A run cut short before its first export: the weights are in the state.
  const std::string bare = run.tmp.file("bare");
  fs::copy(run.dir, bare);
  fs::remove(fs::path(bare) / "model.safetensors");
  fs::remove(fs::path(bare) / "model_best.safetensors");
  const RunResult from_state =
      run_binary("eval --model lenet --weights '" + bare + "' " + run.flags);
  CHECK(from_state.code == 0);
  CHECK(from_state.out.substr(0, from_state.out.find('\n')) == line);

  // A copy of the weights with NaN and Inf in conv1's weight.
  auto f = safetensors::load(run.dir + "/model.safetensors");
  for (auto& nt : f.tensors)
    if (nt.name == "net.0.weight") {
      auto v = nt.tensor.to_vector();
      v[0] = v[3] = std::numeric_limits<float>::quiet_NaN();
      v[1] = -std::numeric_limits<float>::infinity();
      nt.tensor = Tensor::from_vector(v, nt.tensor.shape());
    }
  const std::string bad = run.tmp.file("nan.safetensors");
  safetensors::save(bad, f.tensors, f.metadata);
  RunResult r = run_binary("eval --model lenet --weights '" + bad + "' " + run.flags);
  CHECK(r.code == 1);
  CHECK(count_lines(r.err) == 1);
  CHECK(has(r.err, "2 NaN and 1 infinite values in net.0.weight"));
  const std::string png = run.tmp.file("item.png");
  write_grey_png(png, 28, 28, 0, 200);
  r = run_binary("predict --model lenet --device cpu --weights '" + bad + "' '" + png + "'");
  CHECK(r.code == 1);
  CHECK(has(r.err, "NaN"));
  CHECK(!has(r.out, "nan"));
}

TEST_CASE("predict classifies every readable file and reports each bad one on its own line",
          "[cli][predict]") {
  SmallRun run;
  const std::string a = run.tmp.file("a.png"), c = run.tmp.file("c.png");
  write_grey_png(a, 28, 28, 0, 220);
  write_grey_png(c, 40, 30, 10, 180);
  // A truncated Softimage PIC named .png (it crashed stb_image's PIC decoder),
  // a PNG with control bytes for a chunk type, a truncated PNG, text.
  const std::string pic = run.tmp.file("pic.png"), garbled = run.tmp.file("garbled.png"),
                    cut = run.tmp.file("cut.png"), txt = run.tmp.file("notes.txt");
  std::ofstream(pic, std::ios::binary) << std::string("\x53\x80\xf6\x34PICT\0\0\0\0\0\x10", 14);
  std::string png = slurp(a);
  std::string g = png;
  g[37] = '\x1b';
  g[38] = '\x07';
  std::ofstream(garbled, std::ios::binary) << g;
  std::ofstream(cut, std::ios::binary) << png.substr(0, png.size() - 20);
  std::ofstream(txt) << "not an image\n";

  const RunResult r =
      run_binary("predict --model lenet --device cpu --weights '" + run.dir + "' '" + a + "' '" +
                 pic + "' '" + garbled + "' '" + cut + "' '" + txt + "' '" + c + "'");
  INFO(r.out << r.err);
  CHECK(r.code == 1);
  CHECK(has(r.out, a + ":"));
  CHECK(has(r.out, c + ":"));
  CHECK(count_lines(r.out) == 8);  // two images, a name and three classes each
  CHECK(count_lines(r.err) == 5);  // four bad files and the summary
  for (const auto& bad : {pic, garbled, cut, txt}) CHECK(has(r.err, "error: " + bad + ": "));
  CHECK(has(r.err, "\\x1b\\x07"));
  CHECK(has(r.err, "truncated PNG"));
  CHECK(has(r.err, "4 of 6 images could not be classified"));
  CHECK(printable(r.err));
}

TEST_CASE("predict letterboxes, warns about a light border, saves its input, prints JSON",
          "[cli][predict]") {
  SmallRun run;
  // A wide dark item on a light background: 84x42, so 28x14 after letterboxing.
  const std::string photo = run.tmp.file("photo.png"), seen = run.tmp.file("seen.png");
  write_grey_png(photo, 84, 42, 240, 20);
  RunResult r = run_binary("predict --model lenet --device cpu --weights '" + run.dir +
                           "' --save-input '" + seen + "' '" + photo + "'");
  INFO(r.out << r.err);
  CHECK(r.code == 0);
  CHECK(has(r.err, "warning: " + photo + ": the border of the image is light"));
  CHECK(has(r.err, "try --invert"));
  image::Grey g = image::read_grey(seen);
  REQUIRE(g.width == 28);
  REQUIRE(g.height == 28);
  // Letterboxed: black bars above and below the 28x14 band, the band light
  // at its edge and dark in the middle.
  CHECK(g.at(14, 0) == 0.0f);
  CHECK(g.at(14, 27) == 0.0f);
  CHECK(g.at(0, 14) > 0.9f);
  CHECK(g.at(14, 14) < 0.1f);

  r = run_binary("predict --model lenet --device cpu --weights '" + run.dir +
                 "' --invert --json --topk 5 --save-input '" + run.tmp.file("seen") + "' '" +
                 photo + "' '" + run.tmp.file("missing.png") + "'");
  CHECK(r.code == 1);
  const auto j = nlohmann::json::parse(r.out);
  REQUIRE(j.at("results").size() == 2);
  const auto& first = j.at("results")[0];
  CHECK(first.at("file") == photo);
  REQUIRE(first.at("top").size() == 5);
  double last = 1.0;
  for (const auto& t : first.at("top")) {
    CHECK(t.at("probability") <= last);
    last = t.at("probability");
  }
  CHECK(first.at("warnings").empty());  // inverted: a dark border
  CHECK(j.at("results")[1].count("error") == 1);
  // Several images: --save-input is a directory of <name>-input.png.
  g = image::read_grey(run.tmp.file("seen/photo-input.png"));
  CHECK(g.at(14, 0) == 0.0f);  // the bars stay black
  CHECK(g.at(0, 14) < 0.1f);   // the background, inverted
  CHECK(g.at(14, 14) > 0.9f);  // the item, inverted

  r = run_binary("predict --model lenet --device cpu --weights '" + run.dir + "' --topk 11 '" +
                 photo + "'");
  CHECK(r.code == 2);
}
