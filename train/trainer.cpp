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
#include "core/cuda.h"
#include "layers/layers.h"
#include "models/models.h"
#include "train/data.h"
#include "train/distributed.h"
#include "train/run_dir.h"
#include "train/step_graph.h"

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

// The device a data-parallel rank trains on: with several ranks, "cuda" and
// "auto" (when there is a GPU) mean the GPU numbered by the rank's place on
// its machine (local rank modulo the GPUs it sees); an explicit cuda:N and
// cpu are taken as they are.
std::string device_of_rank(const std::string& device) {
  if (!dist::active()) return device;
  if (device == "cuda" || (device == "auto" && cuda::available()))
    return "cuda:" + std::to_string(dist::local_rank() % std::max(1, cuda::device_count()));
  return device;
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

namespace {

// Correct predictions, summed loss and examples over the batches i of
// `loader` with i % parts == part: eval mode, no gradients, per-batch counts
// and losses kept on the device and read once. The model's mode is restored.
struct EvalSums {
  double hits = 0, loss = 0, total = 0;
};

EvalSums evaluate_sums(Module& model, data::Loader& loader, int part, int parts) {
  const bool was_training = model.is_training();
  model.eval();
  NoGradGuard no_grad;
  const int n = loader.num_batches();
  Tensor correct, losses;
  std::vector<int> sizes;
  int done = 0;
  for (int i = part; i < n; i += parts, ++done) {
    if (stop_requested()) break;
    data::Batch b = loader.batch(i);
    Tensor logits = model(b.x);
    if (!correct.defined()) {
      correct = Tensor::zeros({n}, logits.device(), DType::I32);
      losses = Tensor::zeros({n}, logits.device());
    }
    slot(correct, done).copy_(count_correct(logits, b.y));
    slot(losses, done).copy_(cross_entropy(logits, b.y));
    sizes.push_back(b.size);
  }
  model.train(was_training);
  if (stop_requested()) throw Interrupted("interrupted during the test pass");
  EvalSums s;
  for (int32_t c : read_prefix<int32_t>(correct, done)) s.hits += c;
  const auto loss_v = read_prefix<float>(losses, done);
  for (std::size_t i = 0; i < loss_v.size(); ++i) {
    s.loss += double(loss_v[i]) * sizes[i];
    s.total += sizes[i];
  }
  return s;
}

Evaluation evaluation_of(const EvalSums& s) {
  Evaluation e;
  if (s.total > 0) {
    e.accuracy = s.hits / s.total;
    e.loss = s.loss / s.total;
  }
  return e;
}

}  // namespace

Evaluation evaluate(Module& model, data::Loader& loader) {
  return evaluation_of(evaluate_sums(model, loader, 0, 1));
}

namespace {

// The test pass with several ranks: rank r takes batches r, r + ranks, ...;
// the counts and loss sums are added over the ranks (the accuracy is exactly
// the single process's; the loss up to the order of the sum).
Evaluation evaluate_on_ranks(Module& model, data::Loader& loader) {
  const EvalSums s = evaluate_sums(model, loader, dist::rank(), dist::size());
  std::vector<double> v = {s.hits, s.loss, s.total};
  dist::allreduce_sum(v);
  return evaluation_of({v[0], v[1], v[2]});
}

}  // namespace

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
  if (c.epochs < 1 || c.epochs > kMaxEpochs)
    throw ValueError("train: --epochs must be in 1.." + std::to_string(kMaxEpochs) + ", got " +
                     std::to_string(c.epochs));
  if (c.batch_size < 1)
    throw ValueError("train: --batch-size must be >= 1, got " + std::to_string(c.batch_size));
  if (c.train_limit < 0 || c.test_limit < 0)
    throw ValueError("train: --train-limit and --test-limit must be >= 0 (0 means all)");
  if (!(c.max_loss >= 0))
    throw ValueError("train: --max-loss must be >= 0 (0 turns the check off)");
  models::check_input_size(c.model, c.image_size);
  check_lr_schedule(c.schedule, c.epochs);
  device_ = parse_device(device_of_rank(c.device));
  gen_.set_rank(dist::rank());
  if (config_.data_dir.empty()) config_.data_dir = data::default_data_dir();
  // A run directory belongs to one run: a resumed run continues where it is.
  if (!c.resume.empty()) {
    const std::string run = run_dir_of(c.resume, "resume");
    if (!config_.out_dir.empty() && !same_directory(config_.out_dir, run))
      throw ValueError("train: --resume continues " + run + " in its own directory, not in --out " +
                       config_.out_dir + "; drop --out (or copy the run first: cp -r " + run + " " +
                       config_.out_dir + ", then --resume " + config_.out_dir + ")");
    config_.out_dir = run;
  }

  // Data first: a missing data directory is the most likely mistake, and
  // should be reported before anything is created on disk.
  auto train_split = data::load_split(config_.data_dir, true, device_, limit_arg(c.train_limit));
  auto test_split = data::load_split(config_.data_dir, false, device_, limit_arg(c.test_limit));
  if (c.batch_size > train_split.count) {
    log_ << "note: --batch-size " << c.batch_size << " is larger than the " << train_split.count
         << " training images; using " << train_split.count << "\n";
    config_.batch_size = train_split.count;
  }
  train_loader_ = std::make_unique<data::Loader>(train_split, c.batch_size, c.image_size, true);
  test_loader_ = std::make_unique<data::Loader>(
      test_split, std::min(c.batch_size, test_split.count), c.image_size, false);

  model_ = models::make(c.model, gen_, c.width_divisor);
  model_->to(device_);
  model_->train();
  if (c.sync_bn && dist::active())
    sync_batch_norm(*model_, [](std::vector<double>& v) { dist::allreduce_sum(v); });
  SgdConfig sc;
  sc.lr = c.lr;
  sc.momentum = c.momentum;
  sc.weight_decay = c.weight_decay;
  opt_ = std::make_unique<SGD>(pack_parameters(*model_), sc);
  // Graphs stay off with several ranks: the gradient all-reduce sits between
  // backward and the SGD step, on the host (MPI) or in NCCL's own launches.
  graph_ = std::make_unique<StepGraph>(device_.is_cuda() && !dist::active() && c.cuda_graph,
                                       *model_, *opt_, gen_, log_);

  // With several ranks, rank 0 owns the run directory: it names it (the
  // default name has the time in it), locks it and writes every file; the
  // others read the resumed state from it (so it must be on a file system
  // every machine sees) and write nothing.
  if (config_.out_dir.empty() && dist::is_root()) config_.out_dir = default_run_dir(c.model);
  config_.out_dir = dist::broadcast(config_.out_dir);
  out_dir_ = config_.out_dir;
  if (dist::is_root()) {
    std::error_code ec;
    fs::create_directories(out_dir_, ec);
    if (ec)
      throw IoError("train: cannot create the run directory " + out_dir_ + ": " + ec.message());
    // Everything from here on reads or writes the run directory: lock it first.
    lock_ = std::make_unique<RunLock>(out_dir_);
    if (c.resume.empty()) {
      for (const char* f : {kStateFileName, kModelFileName})
        if (fs::exists(fs::path(out_dir_) / f))
          throw ValueError("train: " + out_dir_ + " already holds a run (" + f +
                           "); continue it with --resume " + out_dir_ + " or choose another --out");
    }
  }
  dist::barrier();  // the directory is checked and locked before any rank reads it
  if (!c.resume.empty()) resume_from(out_dir_);
  dist::barrier();  // every rank has read the state before rank 0 rewrites files
  if (dist::is_root()) {
    if (!c.resume.empty()) repair_exports();
    write_config();
  }
}

Trainer::~Trainer() = default;

void Trainer::check_losses(const std::vector<float>& losses, int epoch, int first_batch) const {
  for (std::size_t i = 0; i < losses.size(); ++i) {
    const bool finite = std::isfinite(losses[i]);
    if (finite && (config_.max_loss <= 0 || losses[i] <= config_.max_loss)) continue;
    const int last_good = epoch - 1;
    char lr[32], value[96];
    std::snprintf(lr, sizeof lr, "%g", static_cast<double>(config_.lr));
    if (finite)
      std::snprintf(value, sizeof value, "%.4g, above the divergence bound %g (--max-loss)",
                    static_cast<double>(losses[i]), config_.max_loss);
    else
      std::snprintf(value, sizeof value, "%s",
                    std::isnan(losses[i]) ? "NaN"
                    : losses[i] > 0       ? "+Inf"
                                          : "-Inf");
    std::string where = last_good > 0 ? "the checkpoint of epoch " + std::to_string(last_good) +
                                            " in " + out_dir_ + " is kept"
                                      : "no checkpoint was written";
    throw TrainingDiverged("training diverged: the loss is " + std::string(value) + " at epoch " +
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
  // This rank's part of every batch (all of it in a single process).
  const int rank = dist::rank(), ranks = dist::size();
  Tensor losses = Tensor::zeros({n}, device_);
  Tensor correct = Tensor::zeros({n}, device_, DType::I32);
  std::vector<int> sizes(static_cast<std::size_t>(n), 0);
  int64_t seen = 0, seen_all = 0;  // this rank's examples, every rank's
  float lr = config_.lr;
  // zero_grad, forward, loss, backward and the metrics into their slots: the
  // step up to the SGD update, eager or captured in a CUDA graph alike. With
  // several ranks, backward takes the gradient of the whole batch's mean
  // loss: this part's mean loss weighted by its share of the batch (summed
  // over the ranks by the all-reduce that follows).
  const auto forward_backward = [this](const Tensor& x, const Tensor& y, float share,
                                       const Tensor& loss_out, const Tensor& correct_out) {
    opt_->zero_grad();
    Tensor logits = (*model_)(x);
    Tensor loss = cross_entropy(logits, y);
    if (!dist::active())
      loss.backward();
    else
      loss.backward(Tensor::full(loss.shape(), share, device_));
    Tensor(loss_out).copy_(loss);
    Tensor(correct_out).copy_(count_correct(logits, y));
    return loss;
  };
  const StepGraph::Body one_rank_step = [&](const Tensor& x, const Tensor& y,
                                            const Tensor& loss_out, const Tensor& correct_out) {
    forward_backward(x, y, 1.0f, loss_out, correct_out);
    opt_->step();
  };
  for (int i = 0; i < n; ++i) {
    data::Batch b = loader.batch(i, rank, ranks);
    const int whole = loader.batch_examples(i);
    lr =
        static_cast<float>(scheduled_lr(config_.schedule, config_.lr, epoch, i, n, config_.epochs));
    opt_->set_lr(lr);
    if (graph_->active() && b.size == config_.batch_size) {
      // Full batches through the graph (the last, smaller one of an epoch runs eagerly).
      graph_->step(b.x, b.y, lr, one_rank_step, slot(losses, i), slot(correct, i));
    } else {
      if (b.size > 0) {
        Tensor loss = forward_backward(b.x, b.y, static_cast<float>(b.size) / whole,
                                       slot(losses, i), slot(correct, i));
        // On the CPU the loss is host memory already: check every step.
        if (device_.is_cpu()) check_losses({loss.item()}, epoch, i);
      } else {
        opt_->zero_grad();  // a rank without examples this batch adds zeros
      }
      if (dist::active()) {
        Tensor grads = opt_->slab().grads;
        dist::allreduce_sum(grads);
      }
      opt_->step();
    }
    if (config_.check_ranks) check_ranks_agree(epoch, i + 1);
    sizes[i] = b.size;
    seen += b.size;
    seen_all += whole;
    if (bar.due()) {
      const auto so_far = read_prefix<float>(losses, i + 1);
      check_losses(so_far, epoch, 0);
      double sum = 0;
      for (int k = 0; k <= i; ++k) sum += static_cast<double>(so_far[k]) * sizes[k];
      const double el = seconds_since(t0);
      const double rate = seen_all / std::max(el, 1e-9);
      bar.update({epoch, config_.epochs, i + 1, n, seen > 0 ? sum / seen : 0.0, rate,
                  rate > 0 ? (loader.count() - seen_all) / rate : 0.0});
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
  // Every rank's sums (exact: counts, and losses summed in double).
  std::vector<double> sums = {0.0, 0.0, static_cast<double>(seen)};
  for (int k = 0; k < n; ++k) {
    sums[0] += static_cast<double>(loss_v[k]) * sizes[k];
    sums[1] += correct_v[k];
  }
  dist::allreduce_sum(sums);
  MetricsRow row;
  row.epoch = epoch;
  const double total = sums[2];
  row.train_loss = total > 0 ? sums[0] / total : 0.0;
  row.train_acc = total > 0 ? sums[1] / total : 0.0;
  row.img_per_s = total / std::max(train_s, 1e-9);
  row.train_seconds = train_s;
  row.lr = lr;
  average_buffers();
  if (config_.check_ranks) check_ranks_agree(epoch, 0);
  const Evaluation test = evaluate_on_ranks(*model_, *test_loader_);
  row.test_acc = test.accuracy;
  row.test_loss = test.loss;
  row.seconds = seconds_since(t0);
  return row;
}

// --check-ranks: FNV-1a over the bytes of the weights (and the float
// buffers, where they must agree), compared with rank 0's. batch 0 means the
// end of the epoch.
void Trainer::check_ranks_agree(int epoch, int batch) const {
  if (!dist::active()) return;
  uint64_t h = 14695981039346656037ull;
  auto mix = [&h](const Tensor& t) {
    const std::vector<float> v = t.to_vector<float>();
    const auto* bytes = reinterpret_cast<const unsigned char*>(v.data());
    for (std::size_t k = 0; k < v.size() * sizeof(float); ++k) h = (h ^ bytes[k]) * 1099511628211ull;
  };
  mix(opt_->slab().params);
  // Per-rank batch-norm statistics differ during the epoch by design; they
  // agree after the epoch's average, and always with --sync-bn.
  if (batch == 0 || config_.sync_bn)
    for (const auto& nb : model_->named_buffers())
      if (nb.tensor.dtype() == DType::F32) mix(nb.tensor);
  const std::string mine = std::to_string(h), root = dist::broadcast(mine);
  if (mine != root)
    throw Error("--check-ranks: the weights of rank " + std::to_string(dist::rank()) +
                " differ from rank 0's " +
                (batch > 0 ? "after epoch " + std::to_string(epoch) + ", batch " +
                                 std::to_string(batch)
                           : "after the buffer average of epoch " + std::to_string(epoch)) +
                " (hash " + mine + " vs " + root + ")");
}

// Batch norm keeps per-rank running statistics during the epoch (as PyTorch's
// DistributedDataParallel does); before the test pass and the checkpoint they
// are averaged over the ranks, so every rank evaluates and saves the same
// model. Integer buffers (batch counts) are equal on every rank already.
void Trainer::average_buffers() {
  if (!dist::active()) return;
  for (auto& nb : model_->named_buffers()) {
    if (nb.tensor.dtype() != DType::F32) continue;
    Tensor t = nb.tensor;
    dist::allreduce_sum(t);
    std::vector<float> v = t.to_vector<float>();
    for (float& x : v) x /= static_cast<float>(dist::size());
    t.copy_(Tensor::from_vector(v, t.shape()));
  }
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
  if (graph_->active())
    log_ << "; CUDA graph of the step after " << StepGraph::kWarmupSteps
         << " warm-up steps (--no-cuda-graph: off)";
  if (device_.is_cpu())
    log_ << "; " << kernels::cpu_threads() << " CPU thread"
         << (kernels::cpu_threads() == 1 ? "" : "s") << " (OpenMP wait policy "
         << kernels::cpu_wait_policy() << ")";
  log_ << "; writing to " << out_dir_ << "\n";
  if (dist::active()) {
    const int b = config_.batch_size, r = dist::size();
    log_ << "data parallel: " << r << (r == 1 ? " rank (" : " ranks (") << dist::local_size()
         << " on this machine), each with " << b / r << (b % r ? "-" + std::to_string(b / r + 1) : "")
         << " of every batch of " << b << "; gradients averaged by " << dist::backend(device_);
    bool has_bn = false;
    for (const auto& nb : model_->named_buffers()) has_bn |= nb.tensor.dtype() == DType::F32;
    if (has_bn)
      log_ << (config_.sync_bn ? "; batch norm statistics over every rank (--sync-bn)"
                               : "; batch norm statistics per rank, averaged at the end of each "
                                 "epoch (--sync-bn: over every rank)");
    log_ << "\n";
  }
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
    if (dist::is_root()) write_checkpoint(epoch);
    log_ << epoch_line(row, config_.epochs) << "\n";
    log_.flush();
  }
  return history_;
}

}  // namespace scratchnet::train
