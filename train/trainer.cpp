#include "train/trainer.h"

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <ostream>

#include "core/autograd.h"
#include "core/ops.h"
#include "kernels/cpu/threads.h"
#include "models/models.h"
#include "train/data.h"

namespace scratchnet::train {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

volatile std::sig_atomic_t g_stop = 0;

extern "C" void on_sigint(int) {
  g_stop = 1;
}

// Installs the Ctrl-C handler for the lifetime of a run. SA_RESETHAND makes a
// second Ctrl-C kill the process the usual way, for a step that hangs.
class SigintScope {
 public:
  SigintScope() {
    g_stop = 0;
    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    installed_ = sigaction(SIGINT, &sa, &previous_) == 0;
  }
  ~SigintScope() {
    if (installed_) sigaction(SIGINT, &previous_, nullptr);
  }
  SigintScope(const SigintScope&) = delete;
  SigintScope& operator=(const SigintScope&) = delete;

 private:
  struct sigaction previous_ {};
  bool installed_ = false;
};

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// A one-element view of slot i of a per-batch array.
Tensor slot(const Tensor& slots, int i) {
  return Tensor::view_of(
      slots.storage(),
      slots.offset_bytes() + static_cast<std::size_t>(i) * dtype_size(slots.dtype()), {},
      slots.dtype());
}

// The first `n` elements of a (B,) array, read back in one copy.
template <typename T>
std::vector<T> read_prefix(const Tensor& slots, int n) {
  if (n <= 0) return {};
  return Tensor::view_of(slots.storage(), slots.offset_bytes(), {n}, slots.dtype()).to_vector<T>();
}

// Fashion-MNIST has 60000 images; anything above int range means "all".
int limit_arg(int64_t limit) {
  return limit > INT32_MAX ? 0 : static_cast<int>(limit);
}

}  // namespace

bool stop_requested() {
  return g_stop != 0;
}

std::string default_run_dir(const std::string& model) {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
  const std::string base = "runs/" + model + "-" + stamp;
  std::string dir = base;
  for (int i = 2; fs::exists(dir); ++i) dir = base + "-" + std::to_string(i);
  return dir;
}

Evaluation evaluate(Module& model, data::Loader& loader) {
  const bool was_training = model.is_training();
  model.eval();
  NoGradGuard no_grad;
  const int n = loader.num_batches();
  Tensor correct, losses;
  std::vector<int> sizes;
  int64_t total = 0;
  for (int i = 0; i < n; ++i) {
    if (stop_requested()) break;
    data::Batch b = loader.batch(i);
    Tensor logits = model(b.x);
    if (!correct.defined()) {
      correct = Tensor::zeros({n}, logits.device(), DType::I32);
      losses = Tensor::zeros({n}, logits.device());
    }
    slot(correct, i).copy_(count_correct(logits, b.y));
    slot(losses, i).copy_(cross_entropy(logits, b.y));
    sizes.push_back(b.size);
    total += b.size;
  }
  model.train(was_training);
  if (stop_requested()) throw Interrupted("interrupted during the test pass");
  int64_t hits = 0;
  for (int32_t c : read_prefix<int32_t>(correct, n)) hits += c;
  double loss_sum = 0.0;
  const auto loss_v = read_prefix<float>(losses, n);
  for (std::size_t i = 0; i < loss_v.size(); ++i) loss_sum += double(loss_v[i]) * sizes[i];
  Evaluation e;
  if (total > 0) {
    e.accuracy = static_cast<double>(hits) / static_cast<double>(total);
    e.loss = loss_sum / static_cast<double>(total);
  }
  return e;
}

Predictions predict_all(Module& model, data::Loader& loader) {
  const bool was_training = model.is_training();
  model.eval();
  NoGradGuard no_grad;
  const int n = loader.num_batches();
  std::vector<Tensor> preds, labels;  // device tensors; read after the loop
  for (int i = 0; i < n; ++i) {
    if (stop_requested()) break;
    data::Batch b = loader.batch(i);
    preds.push_back(argmax(model(b.x)));
    labels.push_back(b.y);
  }
  model.train(was_training);
  if (stop_requested()) throw Interrupted("interrupted during evaluation");
  Predictions out;
  for (std::size_t i = 0; i < preds.size(); ++i) {
    const auto p = preds[i].to_vector<int32_t>();
    const auto l = labels[i].to_vector<int32_t>();
    out.predicted.insert(out.predicted.end(), p.begin(), p.end());
    out.label.insert(out.label.end(), l.begin(), l.end());
  }
  return out;
}

Trainer::Trainer(TrainConfig config, std::ostream& log, bool terminal)
    : config_(std::move(config)), log_(log), terminal_(terminal), gen_(config_.seed) {
  const TrainConfig& c = config_;
  if (c.epochs < 1)
    throw ValueError("train: --epochs must be >= 1, got " + std::to_string(c.epochs));
  if (c.batch_size < 1)
    throw ValueError("train: --batch-size must be >= 1, got " + std::to_string(c.batch_size));
  if (c.train_limit < 0 || c.test_limit < 0)
    throw ValueError("train: --train-limit and --test-limit must be >= 0 (0 means all)");
  models::check_input_size(c.model, c.image_size);
  check_lr_schedule(c.schedule, c.epochs);
  device_ = parse_device(c.device);
  if (config_.data_dir.empty()) config_.data_dir = data::default_data_dir();

  // Data first: a missing data directory is the most likely mistake, and
  // should be reported before anything is created on disk.
  auto train_split = data::load_split(config_.data_dir, true, device_, limit_arg(c.train_limit));
  auto test_split = data::load_split(config_.data_dir, false, device_, limit_arg(c.test_limit));
  train_loader_ = std::make_unique<data::Loader>(train_split, c.batch_size, c.image_size, true);
  test_loader_ = std::make_unique<data::Loader>(test_split, c.batch_size, c.image_size, false);

  model_ = models::make(c.model, gen_, c.width_divisor);
  model_->to(device_);
  model_->train();
  SgdConfig sc;
  sc.lr = c.lr;
  sc.momentum = c.momentum;
  sc.weight_decay = c.weight_decay;
  opt_ = std::make_unique<SGD>(pack_parameters(*model_), sc);

  if (!c.resume.empty()) resume_from(c.resume);

  if (config_.out_dir.empty()) config_.out_dir = default_run_dir(c.model);
  out_dir_ = config_.out_dir;
  std::error_code ec;
  fs::create_directories(out_dir_, ec);
  if (ec) throw IoError("train: cannot create the run directory " + out_dir_ + ": " + ec.message());
  if (c.resume.empty() && fs::exists(fs::path(out_dir_) / kModelFileName))
    throw ValueError("train: " + out_dir_ + " already holds a run (" + kModelFileName +
                     "); continue it with --resume " + out_dir_ + " or choose another --out");
  write_config();
}

Trainer::~Trainer() = default;

void Trainer::check_losses(const std::vector<float>& losses, int epoch, int first_batch) const {
  for (std::size_t i = 0; i < losses.size(); ++i) {
    if (std::isfinite(losses[i])) continue;
    const int last_good = epoch - 1;
    char lr[32];
    std::snprintf(lr, sizeof lr, "%g", static_cast<double>(config_.lr));
    std::string where = last_good > 0 ? "the checkpoint of epoch " + std::to_string(last_good) +
                                            " in " + out_dir_ + " is kept"
                                      : "no checkpoint was written";
    const std::string value = std::isnan(losses[i]) ? "NaN" : losses[i] > 0 ? "+Inf" : "-Inf";
    throw TrainingDiverged("training diverged: the loss is " + value + " at epoch " +
                           std::to_string(epoch) + ", batch " +
                           std::to_string(first_batch + static_cast<int>(i) + 1) + "; " + where +
                           "; try a smaller --lr (now " + lr + ")");
  }
}

MetricsRow Trainer::train_epoch(int epoch) {
  const auto t0 = Clock::now();
  ProgressBar bar(log_, terminal_);
  data::Loader& loader = *train_loader_;
  loader.start_epoch(gen_);
  model_->train();
  const int n = loader.num_batches();
  Tensor losses = Tensor::zeros({n}, device_);
  Tensor correct = Tensor::zeros({n}, device_, DType::I32);
  std::vector<int> sizes(static_cast<std::size_t>(n), 0);
  int64_t seen = 0;
  float lr = config_.lr;
  for (int i = 0; i < n; ++i) {
    data::Batch b = loader.batch(i);
    lr =
        static_cast<float>(scheduled_lr(config_.schedule, config_.lr, epoch, i, n, config_.epochs));
    opt_->set_lr(lr);
    opt_->zero_grad();
    Tensor logits = (*model_)(b.x);
    Tensor loss = cross_entropy(logits, b.y);
    loss.backward();
    opt_->step();
    slot(losses, i).copy_(loss);
    slot(correct, i).copy_(count_correct(logits, b.y));
    sizes[i] = b.size;
    seen += b.size;
    // On the CPU the loss is host memory already: check every step.
    if (device_.is_cpu()) check_losses({loss.item()}, epoch, i);
    if (bar.due()) {
      const auto so_far = read_prefix<float>(losses, i + 1);
      check_losses(so_far, epoch, 0);
      double sum = 0;
      for (int k = 0; k <= i; ++k) sum += static_cast<double>(so_far[k]) * sizes[k];
      const double el = seconds_since(t0);
      const double rate = seen / std::max(el, 1e-9);
      bar.update({epoch, config_.epochs, i + 1, n, sum / seen, rate,
                  rate > 0 ? (loader.count() - seen) / rate : 0.0});
    }
    if (stop_requested()) {
      bar.clear();
      throw Interrupted("interrupted at epoch " + std::to_string(epoch) + ", batch " +
                        std::to_string(i + 1) + " of " + std::to_string(n));
    }
  }
  const auto loss_v = read_prefix<float>(losses, n);
  const auto correct_v = read_prefix<int32_t>(correct, n);
  const double train_s = seconds_since(t0);
  bar.clear();
  check_losses(loss_v, epoch, 0);
  MetricsRow row;
  row.epoch = epoch;
  double loss_sum = 0;
  int64_t hits = 0;
  for (int k = 0; k < n; ++k) {
    loss_sum += static_cast<double>(loss_v[k]) * sizes[k];
    hits += correct_v[k];
  }
  row.train_loss = seen > 0 ? loss_sum / seen : 0.0;
  row.train_acc = seen > 0 ? static_cast<double>(hits) / seen : 0.0;
  row.img_per_s = seen / std::max(train_s, 1e-9);
  row.train_seconds = train_s;
  row.lr = lr;
  const Evaluation test = evaluate(*model_, *test_loader_);
  row.test_acc = test.accuracy;
  row.test_loss = test.loss;
  row.seconds = seconds_since(t0);
  return row;
}

std::vector<MetricsRow> Trainer::run() {
  SigintScope sigint;
  if (epochs_done_ >= config_.epochs) {
    log_ << "nothing to do: the run has finished " << epochs_done_ << " epoch"
         << (epochs_done_ == 1 ? "" : "s") << " and --epochs is " << config_.epochs
         << " (--epochs counts the whole run: pass --epochs " << epochs_done_ + 1
         << " or more to train further)\n";
    return history_;
  }
  log_ << "training " << config_.model << " on " << device_.str() << ": " << train_loader_->count()
       << " training / " << test_loader_->count() << " test images at " << config_.image_size << "x"
       << config_.image_size << ", batch " << config_.batch_size << ", lr " << config_.lr;
  if (config_.schedule.kind != "constant" || config_.schedule.warmup_epochs > 0) {
    log_ << " (" << config_.schedule.kind;
    if (config_.schedule.kind == "step")
      log_ << " x" << config_.schedule.gamma << " every " << config_.schedule.step_epochs
           << " epochs";
    if (config_.schedule.warmup_epochs > 0)
      log_ << ", " << config_.schedule.warmup_epochs << " warm-up epochs";
    log_ << ")";
  }
  if (device_.is_cpu())
    log_ << "; " << kernels::cpu_threads() << " CPU thread"
         << (kernels::cpu_threads() == 1 ? "" : "s") << " (OpenMP wait policy "
         << kernels::cpu_wait_policy() << ")";
  log_ << "; writing to " << out_dir_ << "\n";
  for (int epoch = epochs_done_ + 1; epoch <= config_.epochs; ++epoch) {
    MetricsRow row;
    try {
      row = train_epoch(epoch);
    } catch (const Interrupted& e) {
      const std::string kept =
          epochs_done_ > 0 ? "; the checkpoint of epoch " + std::to_string(epochs_done_) +
                                 " is in " + out_dir_ + " (continue with --resume " + out_dir_ + ")"
                           : "; no epoch had finished, nothing was saved";
      throw Interrupted(std::string(e.what()) + kept);
    }
    history_.push_back(row);
    epochs_done_ = epoch;
    write_checkpoint(epoch);
    log_ << epoch_line(row, config_.epochs) << "\n";
    log_.flush();
  }
  return history_;
}

}  // namespace scratchnet::train
