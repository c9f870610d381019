// `scratchnet predict`: classify image files with trained weights.
//
// Each image goes through what the training data went through: read as grey
// (train/image.h: PNG, JPEG or BMP, checked before decoding), scaled to
// [0, 1], optionally inverted, letterboxed to Fashion-MNIST's 28x28 (aspect
// ratio kept, centred on black, averaged when shrinking), then resized to
// the model's input size with the training data's bilinear resize. The top K
// classes are printed with their softmax probabilities.
//
// Every file is tried: an unreadable one is reported on its own line (stderr)
// and the others are still classified; the exit code is 1 if any failed.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>

#include "core/autograd.h"
#include "core/ops.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "train/data.h"
#include "train/image.h"

namespace scratchnet::tools {

namespace {

constexpr int kFashionSize = 28;  // the size of the images the model learnt from

struct PredictArgs {
  std::string model, weights, device = "auto", save_input;
  std::vector<std::string> images;
  int image_size = 0, width_divisor = 0, topk = 3;
  bool invert = false, json = false;
};

struct Ranked {
  int index;
  double probability;
};

// The image as the model sees it: (1, 1, S, S) on `device`. Warnings about
// the image are appended to `warnings`.
Tensor prepare(const std::string& path, const PredictArgs& a, int size, Device device,
               std::vector<std::string>& warnings) {
  image::Grey g = image::read_grey(path);
  if (a.invert) image::invert(g);
  // Measured before letterboxing, whose black bars would hide a light border.
  const double border = image::border_mean(g);
  g = image::letterbox(g, kFashionSize);
  if (border > 0.5) {
    char msg[256];
    std::snprintf(msg, sizeof msg,
                  "the border of the image is light (mean %.2f) but Fashion-MNIST items are "
                  "light on black: %s",
                  border, a.invert ? "try without --invert" : "try --invert");
    warnings.push_back(msg);
  }
  Tensor x = Tensor::from_vector(g.px, {1, 1, kFashionSize, kFashionSize}).to(device);
  if (size != kFashionSize) x = resize_bilinear(x, size, size);
  return x;
}

// Where --save-input puts the image of `path`: the file itself for a single
// image, else <dir>/<stem>-input.png (the directory created if need be).
std::string save_path(const PredictArgs& a, const std::string& path) {
  std::error_code ec;
  if (a.images.size() == 1 && !std::filesystem::is_directory(a.save_input, ec)) return a.save_input;
  std::filesystem::create_directories(a.save_input, ec);
  if (ec)
    throw IoError("--save-input: cannot create the directory " + a.save_input + ": " +
                  ec.message());
  return (std::filesystem::path(a.save_input) /
          (std::filesystem::path(path).stem().string() + "-input.png"))
      .string();
}

std::vector<Ranked> classify(Module& model, const Tensor& x, int topk) {
  const std::vector<float> logits = model(x).to_vector();
  for (float v : logits)
    if (!std::isfinite(v))
      throw Error("the model's outputs are not finite for this image (NaN or Inf logits)");
  // Softmax in double with the maximum subtracted: never overflows.
  const float top = *std::max_element(logits.begin(), logits.end());
  std::vector<double> prob(logits.size());
  double sum = 0;
  for (std::size_t i = 0; i < logits.size(); ++i) sum += prob[i] = std::exp(logits[i] - top);
  for (double& q : prob) q /= sum;
  std::vector<int> order(prob.size());
  std::iota(order.begin(), order.end(), 0);
  const std::size_t k = std::min<std::size_t>(static_cast<std::size_t>(topk), order.size());
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                    [&](int i, int j) { return prob[i] > prob[j]; });
  std::vector<Ranked> out;
  for (std::size_t r = 0; r < k; ++r) out.push_back({order[r], prob[order[r]]});
  return out;
}

const char* class_name(int c) {
  return c >= 0 && c < static_cast<int>(data::kClassNames.size()) ? data::kClassNames[c] : "?";
}

}  // namespace

void add_predict_command(CLI::App& app) {
  auto a = std::make_shared<PredictArgs>();
  CLI::App* cmd = app.add_subcommand("predict", "Classify image files with trained weights");
  cmd->footer(
      "Each image (PNG, JPEG or BMP) is read as grey, letterboxed to 28x28 like a Fashion-MNIST "
      "item (aspect ratio kept, centred on black, averaged when shrinking), then resized to the "
      "model's input size as in training. Fashion-MNIST items are light on a dark background: "
      "for a photo of a dark item on a light background, pass --invert (a light border is "
      "warned about). Every file is tried; exit code 1 if any could not be classified.");
  cmd->add_option("--model,-m", a->model, "Architecture")->required()->check(model_validator());
  cmd->add_option("--weights,-w", a->weights,
                  "A run directory or a weights file (model.safetensors, "
                  "model_best.safetensors, train_state.safetensors, PyTorch's)")
      ->required();
  cmd->add_option("images", a->images, "Image files (PNG, JPEG, BMP)")->required();
  cmd->add_option("--device", a->device, "Where to run")
      ->check(device_validator())
      ->capture_default_str();
  add_checkpoint_size_options(*cmd, a->image_size, a->width_divisor);
  cmd->add_flag("--invert", a->invert, "Use 1 - x: for dark items on a light background");
  cmd->add_option("--topk,-k", a->topk, "How many classes to show per image")
      ->check(integer_in(1, static_cast<int64_t>(data::kClassNames.size())))
      ->capture_default_str();
  cmd->add_flag("--json", a->json, "Print the results as one JSON document");
  cmd->add_option("--save-input", a->save_input,
                  "Write the image exactly as classified (PNG, the model's input size) to this "
                  "file; with several images, into this directory as <name>-input.png");
  cmd->callback([a] {
    const Device device = parse_device(a->device);
    LoadedModel m =
        load_trained_model(a->model, a->weights, a->image_size, a->width_divisor, device);
    NoGradGuard no_grad;
    nlohmann::json results = nlohmann::json::array();
    int failed = 0;
    for (const auto& path : a->images) {
      nlohmann::json r = {{"file", path}};
      try {
        std::vector<std::string> warnings;
        const Tensor x = prepare(path, *a, m.image_size, device, warnings);
        if (!a->save_input.empty()) {
          image::Grey seen;
          seen.width = seen.height = m.image_size;
          seen.px = x.to_vector();
          image::write_png(seen, save_path(*a, path));
        }
        const auto top = classify(*m.model, x, a->topk);
        for (const auto& w : warnings)
          if (!a->json) std::cerr << "warning: " << path << ": " << w << "\n";
        r["warnings"] = warnings;
        r["top"] = nlohmann::json::array();
        if (!a->json) std::printf("%s:\n", path.c_str());
        for (const auto& t : top) {
          r["top"].push_back(
              {{"class", class_name(t.index)}, {"index", t.index}, {"probability", t.probability}});
          if (!a->json)
            std::printf("  %-12s %6.2f%%\n", class_name(t.index), 100.0 * t.probability);
        }
        std::fflush(stdout);
      } catch (const Error& e) {
        // One image: its error is the one line run_cli prints.
        if (a->images.size() == 1 && !a->json) throw;
        ++failed;
        r["error"] = e.what();
        // One line per unreadable file, and on with the next one.
        std::string line = e.what();
        for (char& ch : line)
          if (ch == '\n' || ch == '\r') ch = ' ';
        std::cerr << "error: " << line << "\n";
      }
      results.push_back(std::move(r));
    }
    if (a->json)
      std::cout << nlohmann::json{{"model", a->model},
                                  {"weights", a->weights},
                                  {"image_size", m.image_size},
                                  {"results", results}}
                       .dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
                << "\n";
    if (failed > 0)
      throw Error(std::to_string(failed) + " of " + std::to_string(a->images.size()) +
                  " images could not be classified (see above)");
  });
}

}  // namespace scratchnet::tools
