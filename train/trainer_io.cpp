// The Trainer's files: the run's config, the per-epoch checkpoint and its
// exports, and reading them back for --resume (see trainer.h for the order
// and what a crash at any point leaves).
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <ostream>

#include "core/cuda.h"
#include "core/text.h"
#include "train/atomic_file.h"
#include "train/data.h"
#include "train/distributed.h"
#include "train/plot.h"
#include "train/run_dir.h"
#include "train/safetensors.h"
#include "train/trainer.h"

namespace scratchnet::train {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kWeightPrefix = "model.";
constexpr const char* kMomentumPrefix = "momentum_buffer.";

const std::string& meta(const std::map<std::string, std::string>& m, const std::string& key,
                        const std::string& file) {
  auto it = m.find(key);
  if (it == m.end())
    throw IoError(file + ": metadata has no \"" + key +
                  "\" (not a scratchnet checkpoint, or written by another version)");
  return it->second;
}

// An integer in 0..hi from the metadata, checked in its own type.
uint64_t meta_uint(const std::map<std::string, std::string>& m, const std::string& key,
                   const std::string& file, uint64_t hi) {
  const std::string& s = meta(m, key, file);
  if (const auto v = parse_unsigned(s, hi)) return *v;
  throw IoError(file + ": metadata \"" + key + "\" is not an integer in 0.." + std::to_string(hi) +
                ": \"" + escape_bytes(s) + "\"");
}

// An integer of a JSON object in [lo, hi]: nlohmann's get<int>() would wrap
// 2^32 + 1 to 1 without a word.
int64_t json_int(const json& j, const char* key, int64_t lo, int64_t hi, const std::string& file) {
  const json& v = j.at(key);
  if (v.is_number_unsigned() && v.get<uint64_t>() <= static_cast<uint64_t>(hi) &&
      static_cast<int64_t>(v.get<uint64_t>()) >= lo)
    return static_cast<int64_t>(v.get<uint64_t>());
  if (v.is_number_integer() && !v.is_number_unsigned() && v.get<int64_t>() >= lo &&
      v.get<int64_t>() <= hi)
    return v.get<int64_t>();
  throw IoError(file + ": setting \"" + key + "\" is not an integer in " + std::to_string(lo) +
                ".." + std::to_string(hi) + ": " + escape_bytes(v.dump()));
}

fs::path state_path_of(const std::string& dir) {
  const fs::path p = fs::path(dir) / kStateFileName;
  if (!fs::exists(p)) {
    // No epoch finished yet: say so when a training is writing there now.
    if (fs::exists(fs::path(dir) / kLockFileName)) RunLock probe(dir);  // throws RunLocked
    if (fs::exists(fs::path(dir) / "config.json"))
      throw IoError("resume: no epoch of the run in " + dir +
                    " had finished, so there is nothing to resume; start it again (train "
                    "--model ... --out " +
                    dir + ")");
    throw IoError("resume: " + p.string() +
                  " is missing; without it the weights, optimizer and RNG state are unknown "
                  "(not a run directory? start a new run instead)");
  }
  return p;
}

// The settings saved in a state file's "config" metadata.
TrainConfig config_from_json(const std::string& text, const std::string& file) {
  TrainConfig c;
  try {
    const auto j = json::parse(text);
    c.model = j.at("model").get<std::string>();
    c.epochs = static_cast<int>(json_int(j, "epochs", 1, kMaxEpochs, file));
    c.batch_size = static_cast<int>(json_int(j, "batch_size", 1, INT32_MAX, file));
    c.lr = j.at("lr").get<float>();
    c.momentum = j.at("momentum").get<float>();
    c.weight_decay = j.at("weight_decay").get<float>();
    // Recorded since 0.2; a run saved before had a constant learning rate.
    c.schedule.kind = j.value("lr_schedule", std::string("constant"));
    c.schedule.step_epochs =
        j.contains("lr_step_epochs")
            ? static_cast<int>(json_int(j, "lr_step_epochs", 0, kMaxEpochs, file))
            : 0;
    c.schedule.gamma = j.value("lr_gamma", 0.1);
    c.schedule.warmup_epochs = j.value("warmup_epochs", 0.0);
    c.image_size = static_cast<int>(json_int(j, "image_size", 1, 4096, file));
    c.width_divisor = static_cast<int>(json_int(j, "width_divisor", 1, 4096, file));
    c.device = j.at("device").get<std::string>();
    c.data_dir = j.at("data_dir").get<std::string>();
    c.seed = j.at("seed").get<uint64_t>();
    c.train_limit = json_int(j, "train_limit", 0, INT64_MAX, file);
    c.test_limit = json_int(j, "test_limit", 0, INT64_MAX, file);
    c.out_dir = j.at("out_dir").get<std::string>();
    if (j.contains("max_loss")) c.max_loss = j.at("max_loss").get<double>();
  } catch (const json::exception& e) {
    throw IoError(file + ": malformed \"config\" metadata (" + escape_bytes(e.what(), 200) + ")");
  }
  return c;
}

// A float as the short decimal the user typed (0.9, not 0.8999999761581421).
double decimal(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.7g", static_cast<double>(v));
  return std::strtod(buf, nullptr);
}

// Settings whose change makes the metrics of later epochs incomparable with
// the earlier ones, then those that only steer the optimisation: both are
// recorded, only the first kind needs --allow-changes.
json settings_of(const TrainConfig& c, bool meaning) {
  if (meaning)
    return {{"batch_size", c.batch_size},
            {"image_size", c.image_size},
            {"width_divisor", c.width_divisor},
            {"train_limit", c.train_limit},
            {"test_limit", c.test_limit}};
  return {{"lr", decimal(c.lr)},
          {"lr_schedule", c.schedule.kind},
          {"lr_step_epochs", c.schedule.step_epochs},
          {"lr_gamma", c.schedule.gamma},
          {"warmup_epochs", c.schedule.warmup_epochs},
          {"momentum", decimal(c.momentum)},
          {"weight_decay", decimal(c.weight_decay)},
          {"device", c.device},
          {"data_dir", c.data_dir},
          {"max_loss", c.max_loss}};
}

std::string flag_of(const std::string& key) {
  std::string f = "--" + key;
  for (char& ch : f)
    if (ch == '_') ch = '-';
  return f == "--image-size" ? "--resize" : f;
}

}  // namespace

void Trainer::resume_from(const std::string& dir) {
  const fs::path state_path = state_path_of(dir);
  const std::string sfile = state_path.string();
  const safetensors::File state = safetensors::load(sfile);
  const std::string& saved_model = meta(state.metadata, "model", sfile);
  if (saved_model != config_.model)
    throw ValueError("resume: " + dir + " is a " + escape_bytes(saved_model) + " run; --model " +
                     config_.model +
                     " cannot continue it (drop --model, or start a new run "
                     "with another --out)");
  const auto epoch = static_cast<int>(meta_uint(state.metadata, "epoch", sfile, kMaxEpochs));

  // Changed settings: refused when they change what the metrics mean,
  // unless allowed; recorded either way.
  const TrainConfig saved = config_from_json(meta(state.metadata, "config", sfile), sfile);
  json changes = json::array();
  if (const auto it = state.metadata.find("changes"); it != state.metadata.end()) {
    changes = json::parse(it->second, nullptr, false);
    if (!changes.is_array()) throw IoError(sfile + ": malformed \"changes\" metadata");
  }
  json changed = json::object();
  std::string refused;
  for (const bool meaning : {true, false}) {
    const json before = settings_of(saved, meaning), now = settings_of(config_, meaning);
    for (const auto& [key, value] : now.items()) {
      if (before.at(key) == value) continue;
      changed[key] = {{"from", before.at(key)}, {"to", value}};
      if (meaning)
        refused += (refused.empty() ? "" : ", ") + flag_of(key) + " " +
                   escape_bytes(before.at(key).dump()) + " -> " + escape_bytes(value.dump());
    }
  }
  if (!refused.empty() && !config_.allow_changes)
    throw ValueError("resume: " + refused + " would change what the metrics of " + dir +
                     " mean (epochs before and after would not compare); pass --allow-changes "
                     "to continue anyway (the change is recorded in config.json), or start a "
                     "new run");
  if (!changed.empty()) {
    changes.push_back({{"from_epoch", epoch + 1}, {"changed", changed}});
    log_ << "note: settings changed from epoch " << epoch + 1 << ": " << changed.dump()
         << " (recorded in config.json)\n";
  }
  changes_ = changes.dump();

  // The weights: in the state file itself; an older run kept them only in
  // model.safetensors, which must then be of the same epoch.
  safetensors::File weights;
  std::vector<NamedTensor> buffers;
  const std::string wp = kWeightPrefix, mp = kMomentumPrefix;
  for (const auto& t : state.tensors) {
    if (t.name.rfind(wp, 0) == 0) weights.tensors.push_back({t.name.substr(wp.size()), t.tensor});
    if (t.name.rfind(mp, 0) == 0) buffers.push_back({t.name.substr(mp.size()), t.tensor});
  }
  std::string wfile = sfile;
  if (weights.tensors.empty()) {
    wfile = (fs::path(dir) / kModelFileName).string();
    weights = safetensors::load(wfile);
    if (meta_uint(weights.metadata, "epoch", wfile, kMaxEpochs) != static_cast<uint64_t>(epoch))
      throw IoError("resume: " + wfile + " and " + sfile +
                    " are from different epochs (a run of an older scratchnet interrupted while "
                    "writing its checkpoint); start a new run");
  }
  safetensors::require_finite(weights, wfile);
  safetensors::require_finite(state, sfile);
  safetensors::load_into(*model_, weights, wfile);

  opt_->load_state(buffers, static_cast<int64_t>(meta_uint(state.metadata, "steps", sfile,
                                                           static_cast<uint64_t>(INT64_MAX))));
  gen_.set_state(meta_uint(state.metadata, "rng_seed", sfile, UINT64_MAX),
                 meta_uint(state.metadata, "rng_offset", sfile, UINT64_MAX));
  history_ = metrics_from_json(meta(state.metadata, "metrics", sfile), sfile);
  if (history_.size() > static_cast<std::size_t>(epoch)) history_.resize(epoch);
  for (std::size_t i = 0; i < history_.size(); ++i)
    if (history_[i].epoch != static_cast<int>(i) + 1)
      throw IoError(sfile + ": the metrics history is out of order (row " + std::to_string(i + 1) +
                    " says epoch " + std::to_string(history_[i].epoch) + ")");
  epochs_done_ = epoch;
  log_ << "resuming " << config_.model << " from " << dir << " after epoch " << epoch << "\n";
}

std::string Trainer::config_json() const {
  const TrainConfig& c = config_;
  json j = {
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
      {"max_loss", c.max_loss},
      {"ranks", dist::size()},
      {"out_dir", out_dir_},
      {"resume", c.resume},
      {"changes", json::parse(changes_)},
      {"scratchnet_version", SCRATCHNET_VERSION},
  };
  return j.dump(2) + "\n";
}

void Trainer::write_config() const {
  write_file_atomically((fs::path(out_dir_) / "config.json").string(), config_json());
}

TrainConfig saved_config(const std::string& resume_path) {
  const std::string dir = run_dir_of(resume_path, "resume");
  const std::string file = state_path_of(dir).string();
  TrainConfig c = config_from_json(meta(safetensors::read_metadata(file), "config", file), file);
  c.resume = resume_path;
  c.out_dir = dir;
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

int Trainer::best_epoch() const {
  int best = 0;
  for (const auto& r : history_)
    if (best == 0 || r.test_acc > history_[static_cast<std::size_t>(best - 1)].test_acc)
      best = r.epoch;
  return best;
}

void Trainer::write_weights(const std::string& file, int epoch) const {
  std::vector<NamedTensor> weights;
  for (auto& t : model_->state_dict()) weights.push_back({t.name, t.tensor});
  std::map<std::string, std::string> m{
      {"format", "pt"},
      {"model", config_.model},
      {"epoch", std::to_string(epoch)},
      // So that eval and predict rebuild the same model at the same size.
      {"image_size", std::to_string(config_.image_size)},
      {"width_divisor", std::to_string(config_.width_divisor)}};
  if (epoch >= 1 && static_cast<std::size_t>(epoch) <= history_.size())
    m["test_acc"] = std::to_string(history_[static_cast<std::size_t>(epoch - 1)].test_acc);
  safetensors::save((fs::path(out_dir_) / file).string(), weights, m);
}

void Trainer::write_checkpoint(int epoch) {
  // The commit point of the epoch: one file, one rename.
  std::vector<NamedTensor> tensors;
  for (auto& t : model_->state_dict()) tensors.push_back({kWeightPrefix + t.name, t.tensor});
  for (auto& b : opt_->momentum_buffers()) tensors.push_back({kMomentumPrefix + b.name, b.tensor});
  safetensors::save((fs::path(out_dir_) / kStateFileName).string(), tensors,
                    {{"format", "scratchnet-train-state"},
                     {"model", config_.model},
                     {"epoch", std::to_string(epoch)},
                     {"steps", std::to_string(opt_->step_count())},
                     {"rng_seed", std::to_string(gen_.seed())},
                     {"rng_offset", std::to_string(gen_.offset())},
                     {"metrics", metrics_to_json(history_)},
                     {"config", config_json()},
                     {"changes", changes_},
                     {"image_size", std::to_string(config_.image_size)},
                     {"width_divisor", std::to_string(config_.width_divisor)},
                     {"scratchnet_version", SCRATCHNET_VERSION}});
  write_exports(epoch);
}

void Trainer::write_exports(int epoch) {
  write_weights(kModelFileName, epoch);
  if (best_epoch() == epoch) write_weights(kBestFileName, epoch);
  write_reports();
}

void Trainer::write_reports() const {
  const fs::path dir(out_dir_);
  write_file_atomically((dir / "metrics.csv").string(), metrics_csv(history_));
  write_file_atomically((dir / "metrics_columns.txt").string(), metrics_columns_text());
  write_config();
  write_curves(dir);
}

// After a crash between the state and its exports: the exports of the
// state's epoch, written again from the weights just resumed. The reports
// (metrics.csv, config.json, the plot) are small: always rewritten.
void Trainer::repair_exports() {
  if (epochs_done_ < 1) return;
  auto behind = [&](const char* file) {
    try {
      const auto m = safetensors::read_metadata((fs::path(out_dir_) / file).string());
      const auto it = m.find("epoch");
      return it == m.end() || it->second != std::to_string(epochs_done_);
    } catch (const IoError&) {
      return true;  // missing or unreadable: write it again
    }
  };
  const bool model = behind(kModelFileName);
  const bool best = best_epoch() == epochs_done_ && behind(kBestFileName);
  if (model || best)
    log_ << "note: " << out_dir_ << " was interrupted after the checkpoint of epoch "
         << epochs_done_ << "; rewriting the files derived from it\n";
  if (model) write_weights(kModelFileName, epochs_done_);
  if (best) write_weights(kBestFileName, epochs_done_);
  write_reports();
}

}  // namespace scratchnet::train
