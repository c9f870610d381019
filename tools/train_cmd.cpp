// `scratchnet train`: the flags, the per-model defaults, and the Trainer.
#include <unistd.h>

#include <iostream>

#include "models/models.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "train/trainer.h"

namespace scratchnet::tools {

namespace {

struct TrainArgs {
  train::TrainConfig config;
  // Flags whose default depends on the model; applied when not given.
  int epochs = 0, batch_size = 0, image_size = 0;
  float lr = 0.0f;
};

std::string defaults_table() {
  std::string s = "Defaults per model (used for flags not given):\n";
  char line[160];
  for (const auto& name : models::names()) {
    const auto d = models::defaults(name);
    std::snprintf(line, sizeof line,
                  "  %-9s --epochs %-3d --batch-size %-4d --lr %-6g --resize %d\n", name.c_str(),
                  d.epochs, d.batch_size, static_cast<double>(d.lr), d.image_size);
    s += line;
  }
  s += "Outputs in --out DIR, rewritten after every epoch: metrics.csv, config.json,\n"
       "training_curves.png, model.safetensors (PyTorch state_dict keys) and\n"
       "train_state.safetensors (for --resume). Ctrl-C stops after the current step;\n"
       "the last finished epoch's checkpoint stays valid.";
  return s;
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto args = std::make_shared<TrainArgs>();
  train::TrainConfig& c = args->config;
  CLI::App* cmd = app.add_subcommand("train", "Train a model on Fashion-MNIST");
  cmd->footer(defaults_table());
  cmd->add_option("--model,-m", c.model, "Architecture")->required()->check(model_validator());
  cmd->add_option("--epochs", args->epochs,
                  "Total number of epochs (a resumed run counts the "
                  "epochs done before)")
      ->check(positive());
  cmd->add_option("--batch-size,-b", args->batch_size, "Examples per step")->check(positive());
  cmd->add_option("--lr", args->lr, "Learning rate")->check(positive());
  cmd->add_option("--momentum", c.momentum,
                  "SGD momentum (the course trains with plain SGD: 0; 0.9 is the usual choice "
                  "otherwise)")
      ->check(unit_interval_validator())
      ->capture_default_str();
  cmd->add_option("--weight-decay", c.weight_decay,
                  "L2 penalty added to the gradient, as torch.optim.SGD's weight_decay (the "
                  "course: 0)")
      ->check(non_negative())
      ->capture_default_str();
  cmd->add_option("--lr-schedule", c.schedule.kind,
                  "Learning rate over the run: constant; step (x --lr-gamma every "
                  "--lr-step-epochs, as StepLR); cosine (down to 0 at the last step)")
      ->check(CLI::IsMember(train::lr_schedule_kinds()))
      ->capture_default_str();
  cmd->add_option("--lr-step-epochs", c.schedule.step_epochs,
                  "step schedule: epochs between decays")
      ->check(positive());
  cmd->add_option("--lr-gamma", c.schedule.gamma, "step schedule: the decay factor")
      ->check(positive())
      ->capture_default_str();
  cmd->add_option("--warmup-epochs", c.schedule.warmup_epochs,
                  "Linear warm-up from ~0 to --lr over this many epochs (fractions allowed), "
                  "before the schedule")
      ->check(non_negative())
      ->capture_default_str();
  cmd->add_option("--resize", args->image_size, "Input size in pixels (images resized bilinearly)")
      ->check(positive());
  cmd->add_option("--width-divisor", c.width_divisor,
                  "Divide every channel count by D (VGG: a lighter model for small GPUs/CPUs)")
      ->check(positive())
      ->capture_default_str();
  cmd->add_option("--device", c.device, "Where to train")
      ->check(device_validator())
      ->capture_default_str();
  cmd->add_option("--data", c.data_dir,
                  "Directory with the Fashion-MNIST IDX files (default: $SCRATCHNET_DATA, else "
                  "/usr/share/datasets/fashion-mnist)");
  add_threads_option(*cmd);
  cmd->add_option("--seed", c.seed, "Seed of every random draw (init, shuffle, dropout)")
      ->capture_default_str();
  cmd->add_option("--train-limit", c.train_limit, "Use only the first N training images (0: all)")
      ->check(non_negative())
      ->capture_default_str();
  cmd->add_option("--test-limit", c.test_limit, "Use only the first N test images (0: all)")
      ->check(non_negative())
      ->capture_default_str();
  cmd->add_option("--out,-o", c.out_dir,
                  "Run directory (default: runs/<model>-<YYYYmmdd-HHMMSS>, or the resumed run's)");
  cmd->add_option("--resume", c.resume,
                  "Continue a run: its directory or its model.safetensors (needs "
                  "train_state.safetensors beside it). Its settings are kept unless given again; "
                  "--epochs counts the epochs done before");

  cmd->callback([args, cmd] {
    train::TrainConfig cfg = args->config;
    const auto d = models::defaults(cfg.model);
    cfg.epochs = cmd->count("--epochs") ? args->epochs : d.epochs;
    cfg.batch_size = cmd->count("--batch-size") ? args->batch_size : d.batch_size;
    cfg.lr = cmd->count("--lr") ? args->lr : d.lr;
    cfg.image_size = cmd->count("--resize") ? args->image_size : d.image_size;
    if (!cfg.resume.empty()) {
      // A resumed run keeps its settings unless a flag changes them.
      const train::TrainConfig saved = train::saved_config(cfg.resume);
      auto keep = [&](const char* flag, auto& value, const auto& old) {
        if (!cmd->count(flag)) value = old;
      };
      keep("--epochs", cfg.epochs, saved.epochs);
      keep("--batch-size", cfg.batch_size, saved.batch_size);
      keep("--lr", cfg.lr, saved.lr);
      keep("--momentum", cfg.momentum, saved.momentum);
      keep("--weight-decay", cfg.weight_decay, saved.weight_decay);
      keep("--lr-schedule", cfg.schedule.kind, saved.schedule.kind);
      keep("--lr-step-epochs", cfg.schedule.step_epochs, saved.schedule.step_epochs);
      keep("--lr-gamma", cfg.schedule.gamma, saved.schedule.gamma);
      keep("--warmup-epochs", cfg.schedule.warmup_epochs, saved.schedule.warmup_epochs);
      keep("--resize", cfg.image_size, saved.image_size);
      keep("--width-divisor", cfg.width_divisor, saved.width_divisor);
      keep("--device", cfg.device, saved.device);
      keep("--data", cfg.data_dir, saved.data_dir);
      keep("--train-limit", cfg.train_limit, saved.train_limit);
      keep("--test-limit", cfg.test_limit, saved.test_limit);
    }
    check_model_args(cfg.model, cfg.image_size, cfg.width_divisor);
    try {
      train::check_lr_schedule(cfg.schedule, cfg.epochs);
    } catch (const ValueError& e) {
      throw UsageError(e.what());
    }
    train::Trainer trainer(cfg, std::cout, train::is_terminal(STDOUT_FILENO));
    const auto rows = trainer.run();
    if (!rows.empty())
      std::cout << "done: test acc " << train::fixed4(rows.back().test_acc) << ", test loss "
                << train::fixed4(rows.back().test_loss) << " after epoch " << rows.back().epoch
                << "; results in " << trainer.out_dir() << "\n";
  });
}

}  // namespace scratchnet::tools
