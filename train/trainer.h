// The training loop: any model from models::make, on any device, with SGD,
// per-epoch metrics and checkpoints, resume and Ctrl-C.
//
// One step: batch (on the device) -> forward -> cross_entropy -> backward ->
// SGD step. The step's loss and correct-count are copied into per-epoch
// device arrays (one slot per batch, no sync) and read back once per epoch;
// a terminal progress bar may read the losses so far every ~0.5 s. Keeping
// one slot per batch (rather than one running sum) lets a NaN be pinned to
// the batch where it first appeared.
//
// Every random draw (initialisation, shuffles, dropout) comes from one
// Generator whose (seed, offset) is saved after every epoch, so on the CPU a
// resumed run reproduces an uninterrupted one exactly.
//
// Files in the run directory, each written atomically after every epoch, in
// this order:
//   train_state.safetensors  everything a resume needs, in one file: the
//                            weights and buffers ("model." + state_dict key),
//                            the momentum buffers, and in its metadata the
//                            epoch, optimizer steps, generator state, metrics
//                            history and settings. Its rename commits the
//                            epoch: a crash before it leaves the previous
//                            epoch resumable, a crash after it this one.
//   model.safetensors        the weights for eval, predict and PyTorch
//                            (state_dict keys; metadata format/model/epoch)
//   model_best.safetensors   the same, of the epoch with the best test
//                            accuracy so far (written when that is this one)
//   metrics.csv (+ metrics_columns.txt saying what each column holds),
//   config.json, training_curves.png and .svg
// Everything after the state is derived from it; a resume rewrites what a
// crash left behind the state (model.safetensors of an older epoch, ...).
// train.lock (see run_dir.h) keeps a second writer out.
#pragma once
#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/rng.h"
#include "layers/module.h"
#include "train/metrics.h"
#include "train/optimizer.h"
#include "train/schedule.h"

namespace scratchnet::data {
class Loader;
}

namespace scratchnet::train {

inline constexpr const char* kModelFileName = "model.safetensors";
inline constexpr const char* kStateFileName = "train_state.safetensors";
inline constexpr const char* kBestFileName = "model_best.safetensors";

// The largest --epochs, and the largest epoch number read from a file.
inline constexpr int kMaxEpochs = 1000000;
// The default divergence bound: 10^4 times ln(10), the cross-entropy of a
// uniform guess over the 10 classes. A sane run starts near ln(10) and goes
// down; a batch loss above this means the weights have blown up.
inline constexpr double kDefaultMaxLoss = 23025.850929940458;

class RunLock;
class StepGraph;

struct TrainConfig {
  std::string model;  // a models::names() entry
  int epochs = 10;    // total, counting epochs done before a resume
  int batch_size = 256;
  float lr = 0.1f;
  float momentum = 0.0f;
  float weight_decay = 0.0f;
  LrSchedule schedule;    // per-step learning rate from `lr` (constant by default)
  int image_size = 28;    // the data is resized to image_size^2
  int width_divisor = 1;  // channel divisor for the wide models (vgg)
  std::string device = "auto";
  std::string data_dir;  // empty: data::default_data_dir()
  uint64_t seed = 0;
  int64_t train_limit = 0;  // use the first N training images; 0: all
  int64_t test_limit = 0;
  std::string out_dir;  // empty: the resume dir, else runs/<model>-<time>
  std::string resume;   // a run directory or a file in it; empty: new run
  // Training stops (TrainingDiverged) when a batch's loss exceeds this;
  // 0 turns the check off (NaN and Inf always stop training).
  double max_loss = kDefaultMaxLoss;
  // A resume may change settings that change what the metrics mean (batch
  // size, image size, width divisor, train/test limits) only with this; every
  // change is recorded in config.json's "changes".
  bool allow_changes = false;
  // With several ranks: after every step, check that every rank holds
  // bitwise the same weights (and batch-norm buffers with sync_bn, and after
  // the end-of-epoch average); a difference stops training naming the step.
  // Costs a copy and a hash of the weights per step.
  bool check_ranks = false;
  // With several ranks: batch norm takes its training statistics over the
  // whole batch of every rank (as one process would), not per rank.
  bool sync_bn = false;
  // On CUDA with one rank: capture the training step as a CUDA graph after
  // warm-up and replay it (see step_graph.h); false: every step eagerly.
  bool cuda_graph = true;
};

// Ctrl-C during run(): the current step finishes, nothing half-written is
// left, and run() throws this.
class Interrupted : public Error {
 public:
  using Error::Error;
};

// The loss became NaN or infinite, or exceeded max_loss; names the epoch
// and batch.
class TrainingDiverged : public Error {
 public:
  using Error::Error;
};

class Trainer {
 public:
  // Sets everything up: device, model, optimizer, data, the run directory,
  // and the resumed state when config.resume is set. Throws ValueError /
  // IoError / DeviceError on bad settings, files or devices. Progress goes to
  // `log`: a bar when `terminal`, else one plain line per epoch.
  Trainer(TrainConfig config, std::ostream& log, bool terminal);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Trains from the next epoch to config.epochs; returns the whole history
  // (resumed rows included).
  std::vector<MetricsRow> run();

  const TrainConfig& config() const { return config_; }
  const std::string& out_dir() const { return out_dir_; }
  Device device() const { return device_; }
  Module& model() { return *model_; }
  int start_epoch() const { return epochs_done_ + 1; }
  const std::vector<MetricsRow>& history() const { return history_; }
  // The CUDA graph of the step (null unless the run may use one).
  const StepGraph* step_graph() const { return graph_.get(); }

 private:
  MetricsRow train_epoch(int epoch);
  void average_buffers();
  void check_ranks_agree(int epoch, int batch) const;
  void check_losses(const std::vector<float>& losses, int epoch, int first_batch) const;
  void write_checkpoint(int epoch);
  void write_weights(const std::string& file, int epoch) const;
  void write_exports(int epoch);
  void write_reports() const;
  void write_curves(const std::filesystem::path& dir) const;
  void repair_exports();
  int best_epoch() const;
  std::string config_json() const;
  void write_config() const;
  void resume_from(const std::string& dir);

  TrainConfig config_;
  std::ostream& log_;
  bool terminal_;
  Device device_;
  std::string out_dir_;
  Generator gen_;
  std::shared_ptr<Module> model_;
  std::unique_ptr<SGD> opt_;
  std::unique_ptr<data::Loader> train_loader_, test_loader_;
  std::unique_ptr<StepGraph> graph_;  // declared after model_ and opt_: destroyed before them
  int epochs_done_ = 0;
  std::vector<MetricsRow> history_;
  std::string changes_ = "[]";  // JSON array: the settings changed by resumes
  std::unique_ptr<RunLock> lock_;
};

// Top-1 accuracy and mean cross-entropy of `model` over every batch of
// `loader` (which must not shuffle): eval mode, no gradients, per-batch
// counts and losses kept on the device and read once. The model's
// train/eval mode is restored.
struct Evaluation {
  double accuracy = 0.0, loss = 0.0;
};
Evaluation evaluate(Module& model, data::Loader& loader);
inline double evaluate_accuracy(Module& model, data::Loader& loader) {
  return evaluate(model, loader).accuracy;
}

// Per-item predictions for a confusion matrix, read back once at the end.
struct Predictions {
  std::vector<int32_t> predicted, label;
};
Predictions predict_all(Module& model, data::Loader& loader);

// The settings a run was last trained with, from its train_state.safetensors
// (`resume_path` as TrainConfig::resume); resume is set to resume_path and
// out_dir to the run directory. For the command line to fill in what a
// resuming user leaves out.
TrainConfig saved_config(const std::string& resume_path);

// The Ctrl-C flag behind Interrupted, for loops outside the Trainer (eval).
bool stop_requested();

// "runs/<model>-YYYYmmdd-HHMMSS" (with a suffix when that exists already).
std::string default_run_dir(const std::string& model);

}  // namespace scratchnet::train
