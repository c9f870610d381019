// What a training run writes and prints: the per-epoch metrics rows, their
// CSV and JSON forms (the JSON rides in train_state.safetensors so a resumed
// run continues the same history), atomic text writes, the one-line epoch
// summary and the in-place progress bar for terminals.
#pragma once
#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace scratchnet::train {

struct MetricsRow {
  int epoch = 0;            // 1-based
  double train_loss = 0.0;  // mean over the epoch's training examples
  double train_acc = 0.0;   // on the training batches, as they were seen
  double test_acc = 0.0;    // after the epoch, eval mode
  double seconds = 0.0;     // wall time of the epoch, training and test
  double img_per_s = 0.0;   // training images per second of training
};

// "epoch,train_loss,train_acc,test_acc,seconds,img_per_s" and one line a row.
std::string metrics_csv(const std::vector<MetricsRow>& rows);
// A JSON array of objects with the CSV's column names; doubles round-trip.
std::string metrics_to_json(const std::vector<MetricsRow>& rows);
// Parses metrics_to_json's output; ValueError naming `source` when malformed.
std::vector<MetricsRow> metrics_from_json(const std::string& json, const std::string& source);

// "epoch 3/10  loss 0.5123  train acc 0.8123  test acc 0.8011  4.2 s  14231 img/s"
std::string epoch_line(const MetricsRow& row, int epochs);

// "1:05", "12:03:07"
std::string format_duration(double seconds);

// An in-place status line for a terminal: batch i/n, running loss, img/s and
// the ETA of the epoch. Disabled (prints nothing) when not a terminal.
// Callers rate-limit the updates with due().
class ProgressBar {
 public:
  ProgressBar(std::ostream& out, bool enabled, double interval_s = 0.5);
  bool enabled() const { return enabled_; }
  // True at most once per interval (always false when disabled).
  bool due();
  void update(int epoch, int epochs, int batch, int num_batches, double running_loss,
              double img_per_s, double eta_s);
  // Erases the line, so the next plain line starts clean.
  void clear();

 private:
  std::ostream& out_;
  bool enabled_;
  double interval_s_;
  std::chrono::steady_clock::time_point last_;
  bool drawn_ = false;
};

// Is this file descriptor a terminal?
bool is_terminal(int fd);

}  // namespace scratchnet::train
