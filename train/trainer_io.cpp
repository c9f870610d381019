// The Trainer's files: the run's config, the per-epoch checkpoints, and
// reading them back for --resume. A checkpoint is two safetensors files,
// each written atomically: model.safetensors (PyTorch's state_dict keys, so
// torch can load it) and train_state.safetensors (momentum buffers, and in
// its metadata the epoch, optimizer step count, generator state, metrics
// history and settings). Both carry the epoch, so a mismatched pair (a crash
// between the two renames) is detected on resume.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <ostream>

#include "core/cuda.h"
#include "train/atomic_file.h"
#include "train/data.h"
#include "train/plot.h"
#include "train/safetensors.h"
#include "train/trainer.h"

namespace scratchnet::train {

namespace fs = std::filesystem;

namespace {

constexpr const char* kModelFile = kModelFileName;
constexpr const char* kStateFile = kStateFileName;
constexpr const char* kMomentumPrefix = "momentum_buffer.";

const std::string& meta(const std::map<std::string, std::string>& m, const std::string& key,
                        const std::string& file) {
  auto it = m.find(key);
  if (it == m.end())
    throw IoError(file + ": metadata has no \"" + key +
                  "\" (not a scratchnet checkpoint, or written by another version)");
  return it->second;
}

uint64_t meta_u64(const std::map<std::string, std::string>& m, const std::string& key,
                  const std::string& file) {
  const std::string& s = meta(m, key, file);
  try {
    std::size_t used = 0;
    const unsigned long long v = std::stoull(s, &used);
    if (used == s.size() && s[0] != '-') return v;
  } catch (const std::exception&) {
  }
  throw IoError(file + ": metadata \"" + key + "\" is not a non-negative integer: \"" + s + "\"");
}

struct CheckpointPaths {
  fs::path model, state;
};

// A run directory or its model.safetensors -> both checkpoint files, which
// must exist (IoError saying what is missing).
CheckpointPaths checkpoint_paths(const std::string& path) {
  fs::path model_path(path);
  if (fs::is_directory(model_path)) model_path /= kModelFile;
  if (!model_path.has_parent_path()) model_path = fs::path(".") / model_path;
  const fs::path state_path = model_path.parent_path() / kStateFile;
  if (!fs::exists(model_path))
    throw IoError("resume: " + model_path.string() +
                  " does not exist (give a run directory or its " + kModelFile + ")");
  if (!fs::exists(state_path))
    throw IoError("resume: " + state_path.string() +
                  " is missing; without it the optimizer and "
                  "RNG state are unknown (start a new run instead)");
  return {model_path, state_path};
}

// A float as the short decimal the user typed (0.9, not 0.8999999761581421).
double decimal(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.7g", static_cast<double>(v));
  return std::strtod(buf, nullptr);
}

}  // namespace

void Trainer::resume_from(const std::string& path) {
  const auto [model_path, state_path] = checkpoint_paths(path);
  const fs::path dir = model_path.parent_path();
  const safetensors::File weights = safetensors::load(model_path.string());
  const safetensors::File state = safetensors::load(state_path.string());
  const std::string mfile = model_path.string(), sfile = state_path.string();
  const std::string& saved_model = meta(weights.metadata, "model", mfile);
  if (saved_model != config_.model)
    throw ValueError("resume: " + mfile + " holds a " + saved_model + ", not a " + config_.model +
                     " (pass --model " + saved_model + ")");
  const uint64_t epoch = meta_u64(state.metadata, "epoch", sfile);
  if (meta_u64(weights.metadata, "epoch", mfile) != epoch)
    throw IoError("resume: " + mfile + " and " + sfile +
                  " are from different epochs (an interrupted write?); start a new run");
  safetensors::load_into(*model_, weights, mfile);

  std::vector<NamedTensor> buffers;
  const std::string prefix = kMomentumPrefix;
  for (const auto& t : state.tensors)
    if (t.name.rfind(prefix, 0) == 0) buffers.push_back({t.name.substr(prefix.size()), t.tensor});
  opt_->load_state(buffers, static_cast<int64_t>(meta_u64(state.metadata, "steps", sfile)));
  gen_.set_state(meta_u64(state.metadata, "rng_seed", sfile),
                 meta_u64(state.metadata, "rng_offset", sfile));
  history_ = metrics_from_json(meta(state.metadata, "metrics", sfile), sfile);
  if (history_.size() > epoch) history_.resize(epoch);
  epochs_done_ = static_cast<int>(epoch);
  if (config_.out_dir.empty()) config_.out_dir = dir.string();
  log_ << "resuming " << config_.model << " from " << dir.string() << " after epoch " << epoch
       << "\n";
}

std::string Trainer::config_json() const {
  const TrainConfig& c = config_;
  nlohmann::json j = {
      {"model", c.model},
      {"epochs", c.epochs},
      {"batch_size", c.batch_size},
      {"lr", decimal(c.lr)},
      {"momentum", decimal(c.momentum)},
      {"weight_decay", decimal(c.weight_decay)},
      {"lr_schedule", c.schedule.kind},
      {"lr_step_epochs", c.schedule.step_epochs},
      {"lr_gamma", c.schedule.gamma},
      {"warmup_epochs", c.schedule.warmup_epochs},
      {"image_size", c.image_size},
      {"width_divisor", c.width_divisor},
      {"device", c.device},
      {"device_used", device_.str()},
      {"device_name", device_.is_cuda() ? cuda::device_name(device_.index) : std::string("cpu")},
      {"data_dir", c.data_dir},
      {"seed", c.seed},
      {"train_limit", c.train_limit},
      {"test_limit", c.test_limit},
      {"train_examples", train_loader_->count()},
      {"test_examples", test_loader_->count()},
      {"out_dir", out_dir_},
      {"resume", c.resume},
      {"scratchnet_version", SCRATCHNET_VERSION},
  };
  return j.dump(2) + "\n";
}

void Trainer::write_config() const {
  write_file_atomically((fs::path(out_dir_) / "config.json").string(), config_json());
}

TrainConfig saved_config(const std::string& resume_path) {
  const auto paths = checkpoint_paths(resume_path);
  const std::string file = paths.state.string();
  const safetensors::File state = safetensors::load(file);
  TrainConfig c;
  try {
    const auto j = nlohmann::json::parse(meta(state.metadata, "config", file));
    c.model = j.at("model").get<std::string>();
    c.epochs = j.at("epochs").get<int>();
    c.batch_size = j.at("batch_size").get<int>();
    c.lr = j.at("lr").get<float>();
    c.momentum = j.at("momentum").get<float>();
    c.weight_decay = j.at("weight_decay").get<float>();
    // Recorded since 0.2; a run saved before had a constant learning rate.
    c.schedule.kind = j.value("lr_schedule", std::string("constant"));
    c.schedule.step_epochs = j.value("lr_step_epochs", 0);
    c.schedule.gamma = j.value("lr_gamma", 0.1);
    c.schedule.warmup_epochs = j.value("warmup_epochs", 0.0);
    c.image_size = j.at("image_size").get<int>();
    c.width_divisor = j.at("width_divisor").get<int>();
    c.device = j.at("device").get<std::string>();
    c.data_dir = j.at("data_dir").get<std::string>();
    c.seed = j.at("seed").get<uint64_t>();
    c.train_limit = j.at("train_limit").get<int64_t>();
    c.test_limit = j.at("test_limit").get<int64_t>();
    c.out_dir = j.at("out_dir").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    throw IoError(file + ": malformed \"config\" metadata (" + e.what() + ")");
  }
  c.resume = resume_path;
  return c;
}

void Trainer::write_curves(const std::filesystem::path& dir) const {
  plot::Figure f;
  f.title = config_.model + " on Fashion-MNIST";
  char settings[256];
  std::snprintf(settings, sizeof settings, "batch %d, lr %g%s, %d epoch%s, %s", config_.batch_size,
                static_cast<double>(config_.lr),
                config_.schedule.kind == "constant" ? "" : (" " + config_.schedule.kind).c_str(),
                config_.epochs, config_.epochs == 1 ? "" : "s", device_.str().c_str());
  f.subtitle = settings;
  if (!history_.empty()) {
    const MetricsRow& last = history_.back();
    f.subtitle += "; after epoch " + std::to_string(last.epoch) + ": test acc " +
                  fixed4(last.test_acc) + ", test loss " + fixed4(last.test_loss);
  }
  plot::Panel loss{"loss (cross-entropy)", {{"train loss", {}}, {"test loss", {}}}, false};
  plot::Panel acc{"accuracy", {{"train acc", {}}, {"test acc", {}}}, true};
  for (const auto& r : history_) {
    loss.series[0].y.push_back(r.train_loss);
    loss.series[1].y.push_back(r.test_loss);
    acc.series[0].y.push_back(r.train_acc);
    acc.series[1].y.push_back(r.test_acc);
  }
  f.panels = {loss, acc};
  plot::write_figure(f, (dir / "training_curves.png").string(),
                     (dir / "training_curves.svg").string());
}

void Trainer::write_checkpoint(int epoch) {
  const fs::path dir(out_dir_);
  std::vector<NamedTensor> weights;
  for (auto& t : model_->state_dict()) weights.push_back({t.name, t.tensor});
  safetensors::save((dir / kModelFile).string(), weights,
                    {{"format", "pt"},
                     {"model", config_.model},
                     {"epoch", std::to_string(epoch)},
                     // So that eval and predict rebuild the same model at the same size.
                     {"image_size", std::to_string(config_.image_size)},
                     {"width_divisor", std::to_string(config_.width_divisor)}});

  std::vector<NamedTensor> buffers;
  for (auto& b : opt_->momentum_buffers()) buffers.push_back({kMomentumPrefix + b.name, b.tensor});
  safetensors::save((dir / kStateFile).string(), buffers,
                    {{"format", "scratchnet-train-state"},
                     {"model", config_.model},
                     {"epoch", std::to_string(epoch)},
                     {"steps", std::to_string(opt_->step_count())},
                     {"rng_seed", std::to_string(gen_.seed())},
                     {"rng_offset", std::to_string(gen_.offset())},
                     {"metrics", metrics_to_json(history_)},
                     {"config", config_json()},
                     {"scratchnet_version", SCRATCHNET_VERSION}});

  write_file_atomically((dir / "metrics.csv").string(), metrics_csv(history_));
  write_file_atomically((dir / "metrics_columns.txt").string(), metrics_columns_text());
  write_curves(dir);
}

}  // namespace scratchnet::train
