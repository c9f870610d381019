// `scratchnet eval`: test accuracy of a trained model, per class, and the
// confusion matrix.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "models/models.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "train/data.h"
#include "train/trainer.h"

namespace scratchnet::tools {

namespace {

struct EvalArgs {
  std::string model, weights, device = "auto", data_dir;
  int image_size = 0, width_divisor = 0, batch_size = 256;
  int test_limit = 0;
  bool json = false;
};

void report(const std::string& model, const train::Predictions& p, Device device, bool json) {
  constexpr int kClasses = static_cast<int>(data::kClassNames.size());
  std::vector<std::vector<int64_t>> confusion(kClasses, std::vector<int64_t>(kClasses, 0));
  int64_t hits = 0;
  for (std::size_t i = 0; i < p.label.size(); ++i) {
    const int t = p.label[i], q = p.predicted[i];
    if (t < 0 || t >= kClasses || q < 0 || q >= kClasses)
      throw Error("eval: class index out of range (label " + std::to_string(t) + ", predicted " +
                  std::to_string(q) + ")");
    ++confusion[t][q];
    hits += t == q;
  }
  const auto n = static_cast<int64_t>(p.label.size());
  if (json) {
    nlohmann::json classes = nlohmann::json::array();
    for (int c = 0; c < kClasses; ++c) {
      int64_t total = 0;
      for (int q = 0; q < kClasses; ++q) total += confusion[c][q];
      classes.push_back({{"class", c},
                         {"name", data::kClassNames[c]},
                         {"accuracy", total ? static_cast<double>(confusion[c][c]) / total : 0.0},
                         {"correct", confusion[c][c]},
                         {"total", total}});
    }
    const nlohmann::json j = {{"model", model},
                              {"device", device.str()},
                              {"test_images", n},
                              {"correct", hits},
                              {"accuracy", n ? static_cast<double>(hits) / n : 0.0},
                              {"per_class", classes},
                              {"confusion", confusion}};
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("%s on %lld test images (%s): accuracy %.4f (%lld/%lld)\n\n", model.c_str(),
              static_cast<long long>(n), device.str().c_str(),
              n ? static_cast<double>(hits) / n : 0.0, static_cast<long long>(hits),
              static_cast<long long>(n));
  std::printf("per-class accuracy:\n");
  for (int c = 0; c < kClasses; ++c) {
    int64_t total = 0;
    for (int q = 0; q < kClasses; ++q) total += confusion[c][q];
    std::printf("  %d %-12s %.4f (%lld/%lld)\n", c, data::kClassNames[c],
                total ? static_cast<double>(confusion[c][c]) / total : 0.0,
                static_cast<long long>(confusion[c][c]), static_cast<long long>(total));
  }
  std::printf("\nconfusion matrix (rows: true class, columns: predicted class):\n");
  std::printf("  %-14s", "");
  for (int q = 0; q < kClasses; ++q) std::printf("%6d", q);
  std::printf("\n");
  for (int t = 0; t < kClasses; ++t) {
    std::printf("  %d %-12s", t, data::kClassNames[t]);
    for (int q = 0; q < kClasses; ++q)
      std::printf("%6lld", static_cast<long long>(confusion[t][q]));
    std::printf("\n");
  }
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* cmd = app.add_subcommand("eval",
                                     "Test accuracy, per-class accuracy and the "
                                     "confusion matrix of trained weights");
  cmd->add_option("--model,-m", a->model, "Architecture")->required()->check(model_validator());
  cmd->add_option("--weights,-w", a->weights, "model.safetensors of a run (or PyTorch's)")
      ->required();
  cmd->add_option("--device", a->device, "Where to run")
      ->check(device_validator())
      ->capture_default_str();
  cmd->add_option("--data", a->data_dir,
                  "Directory with the Fashion-MNIST IDX files (default: $SCRATCHNET_DATA, else "
                  "/usr/share/datasets/fashion-mnist)");
  add_checkpoint_size_options(*cmd, a->image_size, a->width_divisor);
  add_threads_option(*cmd);
  cmd->add_flag("--json", a->json,
                "Print the results as one JSON object (accuracy, per_class, confusion: rows "
                "true class, columns predicted)");
  cmd->add_option("--batch-size,-b", a->batch_size, "Examples per forward pass")
      ->check(positive())
      ->capture_default_str();
  cmd->add_option("--test-limit", a->test_limit, "Use only the first N test images (0: all)")
      ->check(non_negative())
      ->capture_default_str();
  cmd->callback([a] {
    const Device device = parse_device(a->device);
    // Data first: a bad --data is reported before the model is built.
    const std::string dir = a->data_dir.empty() ? data::default_data_dir() : a->data_dir;
    const data::Split split = data::load_split(dir, false, device, a->test_limit);
    LoadedModel m =
        load_trained_model(a->model, a->weights, a->image_size, a->width_divisor, device);
    data::Loader loader(split, a->batch_size, m.image_size, false);
    report(a->model, train::predict_all(*m.model, loader), device, a->json);
  });
}

}  // namespace scratchnet::tools
