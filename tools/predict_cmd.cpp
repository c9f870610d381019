// `scratchnet predict`: classify image files with trained weights. Each image
// is read as greyscale (stb_image), scaled to [0, 1], optionally inverted,
// resized with the same bilinear resize as the training data, and the top
// three classes are printed with their softmax probabilities.
#include <stb_image.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <numeric>

#include "core/autograd.h"
#include "core/ops.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "train/data.h"

namespace scratchnet::tools {

namespace {

struct PredictArgs {
  std::string model, weights, device = "auto";
  std::vector<std::string> images;
  int image_size = 0, width_divisor = 0;
  bool invert = false;
};

// (1, 1, H, W) in [0, 1] on the host.
Tensor read_image(const std::string& path, bool invert) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw IoError("predict: " + path + " does not exist or is not a file");
  int w = 0, h = 0, channels = 0;
  std::unique_ptr<stbi_uc, void (*)(void*)> px(stbi_load(path.c_str(), &w, &h, &channels, 1),
                                               stbi_image_free);
  if (!px)
    throw IoError("predict: " + path + " is not a readable image (" + stbi_failure_reason() +
                  "); PNG, JPEG, BMP, GIF, TGA and PNM files are supported");
  std::vector<float> v(static_cast<std::size_t>(w) * static_cast<std::size_t>(h));
  for (std::size_t i = 0; i < v.size(); ++i) {
    const float x = static_cast<float>(px.get()[i]) / 255.0f;
    v[i] = invert ? 1.0f - x : x;
  }
  return Tensor::from_vector(v, {1, 1, h, w});
}

}  // namespace

void add_predict_command(CLI::App& app) {
  auto a = std::make_shared<PredictArgs>();
  CLI::App* cmd = app.add_subcommand("predict", "Classify image files with trained weights");
  cmd->footer(
      "Images are read as greyscale and resized to the model's input size. Fashion-MNIST items "
      "are light on a dark background: for a photo of a dark item on a light background, pass "
      "--invert.");
  cmd->add_option("--model,-m", a->model, "Architecture")->required()->check(model_validator());
  cmd->add_option("--weights,-w", a->weights, "model.safetensors of a run (or PyTorch's)")
      ->required();
  cmd->add_option("images", a->images, "Image files (PNG, JPEG, BMP, ...)")->required();
  cmd->add_option("--device", a->device, "Where to run")
      ->check(device_validator())
      ->capture_default_str();
  add_checkpoint_size_options(*cmd, a->image_size, a->width_divisor);
  cmd->add_flag("--invert", a->invert, "Use 1 - x: for dark items on a light background");
  cmd->callback([a] {
    const Device device = parse_device(a->device);
    LoadedModel m =
        load_trained_model(a->model, a->weights, a->image_size, a->width_divisor, device);
    NoGradGuard no_grad;
    for (const auto& path : a->images) {
      Tensor x = read_image(path, a->invert).to(device);
      if (x.size(2) != m.image_size || x.size(3) != m.image_size)
        x = resize_bilinear(x, m.image_size, m.image_size);
      const std::vector<float> logits = (*m.model)(x).to_vector();
      // Softmax in double with the maximum subtracted: never overflows.
      const float top = *std::max_element(logits.begin(), logits.end());
      std::vector<double> prob(logits.size());
      double sum = 0;
      for (std::size_t i = 0; i < logits.size(); ++i) sum += prob[i] = std::exp(logits[i] - top);
      for (double& q : prob) q /= sum;
      std::vector<int> order(prob.size());
      std::iota(order.begin(), order.end(), 0);
      const std::size_t k = std::min<std::size_t>(3, order.size());
      std::partial_sort(order.begin(), order.begin() + k, order.end(),
                        [&](int i, int j) { return prob[i] > prob[j]; });
      std::printf("%s:\n", path.c_str());
      for (std::size_t r = 0; r < k; ++r) {
        const int c = order[r];
        const char* name =
            c < static_cast<int>(data::kClassNames.size()) ? data::kClassNames[c] : "?";
        std::printf("  %-12s %6.2f%%\n", name, 100.0 * prob[c]);
      }
    }
  });
}

}  // namespace scratchnet::tools
