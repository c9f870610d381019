// `scratchnet train`: the flags, the per-model defaults, and the Trainer.
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <optional>
#include <thread>

#include "kernels/cpu/threads.h"
#include "models/models.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "train/distributed.h"
#include "train/trainer.h"

namespace scratchnet::tools {

namespace {

struct TrainArgs {
  train::TrainConfig config;
  // Flags whose default depends on the model; applied when not given.
  int epochs = 0, batch_size = 0, image_size = 0;
  float lr = 0.0f;
  bool no_cuda_graph = false;
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
  s += "Outputs in --out DIR, rewritten after every epoch: train_state.safetensors\n"
       "(everything --resume needs), model.safetensors (PyTorch state_dict keys),\n"
       "model_best.safetensors (the best test accuracy so far), metrics.csv,\n"
       "config.json, training_curves.png. A crash or Ctrl-C at any moment leaves the\n"
       "run resumable from its last finished epoch: scratchnet train --resume DIR.\n"
       "A --batch-size larger than the training set is clamped to its size, with a\n"
       "notice. Training stops when a batch's loss is NaN, infinite or above\n"
       "--max-loss (default 23026 = 10^4 x ln 10, the loss of a uniform guess).";
  return s;
}

// Under mpirun/srun: starts MPI (train/distributed.h) and gives each rank of
// a machine its share of the cores unless --threads says otherwise.
void start_ranks(const CLI::App& cmd) {
  const int launched = dist::launched_size();
  if (launched > 1 && !dist::compiled())  // one rank without MPI: a plain process
    throw UsageError("this process is one of " + std::to_string(launched) +
                     " started by mpirun/srun, but this scratchnet was built without MPI: "
                     "install libopenmpi-dev and rebuild (tools/build.sh; SCRATCHNET_MPI=ON makes "
                     "a missing MPI an error), or run it without mpirun");
  dist::init();
  if (dist::active() && !cmd.count("--threads")) {
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    kernels::set_cpu_threads(
        std::min(kernels::cpu_threads(), std::max(1, cores / dist::local_size())));
  }
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto args = std::make_shared<TrainArgs>();
  train::TrainConfig& c = args->config;
  CLI::App* cmd = app.add_subcommand("train", "Train a model on Fashion-MNIST");
  cmd->footer(defaults_table());
  cmd->add_option("--model,-m", c.model, "Architecture (with --resume: the run's)")
      ->check(model_validator());
  cmd->add_option("--epochs", args->epochs,
                  "Total number of epochs (a resumed run counts the "
                  "epochs done before)")
      ->check(integer_in(1, train::kMaxEpochs));
  cmd->add_option("--batch-size,-b", args->batch_size,
                  "Examples per step (larger than the training set: clamped to it, with a notice)")
      ->check(integer_in(1, INT32_MAX));
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
      ->check(integer_in(1, train::kMaxEpochs));
  cmd->add_option("--lr-gamma", c.schedule.gamma, "step schedule: the decay factor")
      ->check(positive())
      ->capture_default_str();
  cmd->add_option("--warmup-epochs", c.schedule.warmup_epochs,
                  "Linear warm-up from ~0 to --lr over this many epochs (fractions allowed), "
                  "before the schedule")
      ->check(non_negative())
      ->capture_default_str();
  cmd->add_option("--resize", args->image_size, "Input size in pixels (images resized bilinearly)")
      ->check(integer_in(1, 4096));
  cmd->add_option("--width-divisor", c.width_divisor,
                  "Divide every channel count by D (VGG: a lighter model for small GPUs/CPUs)")
      ->check(integer_in(1, 4096))
      ->capture_default_str();
  cmd->add_option("--device", c.device, "Where to train")
      ->check(device_validator())
      ->capture_default_str();
  cmd->add_option("--data", c.data_dir,
                  "Directory with the Fashion-MNIST IDX files (default: $SCRATCHNET_DATA, else "
                  "/usr/share/datasets/fashion-mnist)");
  add_threads_option(*cmd);
  cmd->add_option("--seed", c.seed, "Seed of every random draw (init, shuffle, dropout)")
      ->check(unsigned_64())
      ->capture_default_str();
  cmd->add_option("--train-limit", c.train_limit, "Use only the first N training images (0: all)")
      ->check(integer_in(0, INT64_MAX))
      ->capture_default_str();
  cmd->add_option("--test-limit", c.test_limit, "Use only the first N test images (0: all)")
      ->check(integer_in(0, INT64_MAX))
      ->capture_default_str();
  cmd->add_option("--max-loss", c.max_loss,
                  "Stop when a batch's loss exceeds this (divergence; 0: no bound)")
      ->check(non_negative())
      ->capture_default_str();
  cmd->add_option("--out,-o", c.out_dir,
                  "Run directory (default: runs/<model>-<YYYYmmdd-HHMMSS>); a new run needs a "
                  "directory without one");
  cmd->add_option("--resume", c.resume,
                  "Continue a run in its directory (give the directory or a file in it); "
                  "nothing else is needed: its settings are kept unless given again, "
                  "--epochs counts the epochs done before");
  cmd->add_flag("--check-ranks", c.check_ranks,
                "Under mpirun: after every step, check that all ranks hold bitwise the same "
                "weights (slower; for debugging a cluster)");
  cmd->add_flag("--sync-bn", c.sync_bn,
                "Under mpirun: batch norm statistics over the whole batch of every rank (as "
                "one process computes them) instead of per rank; costs a small all-reduce per "
                "batch-norm layer, forward and backward");
  cmd->add_flag("--no-cuda-graph", args->no_cuda_graph,
                "On CUDA, run every step eagerly. By default, after 2 warm-up steps the whole "
                "step (forward, loss, backward, SGD) is captured once as a CUDA graph and "
                "replayed (every lr schedule, dropout included); the last, smaller batch of "
                "an epoch and runs under mpirun always run eagerly; a capture that fails "
                "falls back to eager steps with a one-line note saying why");
  cmd->add_flag("--allow-changes", c.allow_changes,
                "With --resume: allow new --batch-size, --resize, --width-divisor, "
                "--train-limit or --test-limit (recorded in config.json)");

  cmd->callback([args, cmd] {
    start_ranks(*cmd);
    train::TrainConfig cfg = args->config;
    cfg.cuda_graph = !args->no_cuda_graph;
    std::optional<train::TrainConfig> saved;
    if (cfg.resume.empty()) {
      if (cfg.model.empty()) throw UsageError("--model is required (or --resume RUN_DIR)");
      if (cfg.allow_changes) throw UsageError("--allow-changes applies to --resume only");
    } else {
      // A resumed run keeps its settings unless a flag changes them.
      saved = train::saved_config(cfg.resume);
      if (!cfg.model.empty() && cfg.model != saved->model)
        throw UsageError(saved->out_dir + " is a " + saved->model + " run; it cannot continue as " +
                         cfg.model + " (drop --model, or start a new run with another --out)");
      cfg.model = saved->model;
    }
    const auto d = models::defaults(cfg.model);
    cfg.epochs = cmd->count("--epochs") ? args->epochs : d.epochs;
    cfg.batch_size = cmd->count("--batch-size") ? args->batch_size : d.batch_size;
    cfg.lr = cmd->count("--lr") ? args->lr : d.lr;
    cfg.image_size = cmd->count("--resize") ? args->image_size : d.image_size;
    if (saved) {
      auto keep = [&](const char* flag, auto& value, const auto& old) {
        if (!cmd->count(flag)) value = old;
      };
      keep("--epochs", cfg.epochs, saved->epochs);
      keep("--batch-size", cfg.batch_size, saved->batch_size);
      keep("--lr", cfg.lr, saved->lr);
      keep("--momentum", cfg.momentum, saved->momentum);
      keep("--weight-decay", cfg.weight_decay, saved->weight_decay);
      keep("--lr-schedule", cfg.schedule.kind, saved->schedule.kind);
      keep("--lr-step-epochs", cfg.schedule.step_epochs, saved->schedule.step_epochs);
      keep("--lr-gamma", cfg.schedule.gamma, saved->schedule.gamma);
      keep("--warmup-epochs", cfg.schedule.warmup_epochs, saved->schedule.warmup_epochs);
      keep("--resize", cfg.image_size, saved->image_size);
      keep("--width-divisor", cfg.width_divisor, saved->width_divisor);
      keep("--device", cfg.device, saved->device);
      keep("--data", cfg.data_dir, saved->data_dir);
      keep("--train-limit", cfg.train_limit, saved->train_limit);
      keep("--test-limit", cfg.test_limit, saved->test_limit);
      keep("--max-loss", cfg.max_loss, saved->max_loss);
    }
    check_model_args(cfg.model, cfg.image_size, cfg.width_divisor);
    try {
      train::check_lr_schedule(cfg.schedule, cfg.epochs);
    } catch (const ValueError& e) {
      throw UsageError(e.what());
    }
    // Rank 0 speaks for the job; the others train silently.
    std::ostream silent(nullptr);
    std::ostream& log = dist::is_root() ? std::cout : silent;
    train::Trainer trainer(cfg, log, dist::is_root() && train::is_terminal(STDOUT_FILENO));
    const auto rows = trainer.run();
    if (!rows.empty() && dist::is_root())
      std::cout << "done: test acc " << train::fixed4(rows.back().test_acc) << ", test loss "
                << train::fixed4(rows.back().test_loss) << " after epoch " << rows.back().epoch
                << "; results in " << trainer.out_dir() << "\n";
  });
}

}  // namespace scratchnet::tools
