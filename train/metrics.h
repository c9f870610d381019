// What a training run writes and prints: the per-epoch metrics rows, their
// CSV and JSON forms (the JSON rides in train_state.safetensors so a resumed
// run continues the same history), atomic text writes, the one-line epoch
// summary and the in-place progress bar for terminals.
#pragma once
#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <limits>
#include <string>
#include <vector>

namespace scratchnet::train {

struct MetricsRow {
  int epoch = 0;            // 1-based
  double train_loss = 0.0;  // mean over the epoch's training examples
  double train_acc = 0.0;   // on the training batches, as they were seen
  double test_acc = 0.0;    // after the epoch, eval mode
  double seconds = 0.0;     // wall time of the epoch: training pass + test pass
  double img_per_s = 0.0;   // training images / seconds of the training pass only
  // Mean cross-entropy over the test set after the epoch, eval mode (Keras's
  // val_loss). NaN in rows saved before it was recorded.
  double test_loss = std::numeric_limits<double>::quiet_NaN();
  double train_seconds = 0.0;  // wall time of the training pass alone
  double lr = 0.0;             // learning rate of the epoch's last step
};

// The columns of metrics.csv, in order, each with what it holds: the CSV's
// header line and the sidecar metrics_columns.txt are both made from this.
struct MetricsColumn {
  const char* name;
  const char* meaning;
};
const std::vector<MetricsColumn>& metrics_columns();
// metrics_columns() as text, one "name: meaning" line each (the sidecar).
std::string metrics_columns_text();

// The header line (metrics_columns' names) and one line a row; losses and
// accuracies with 6 decimals, seconds with 3, img/s with 1.
std::string metrics_csv(const std::vector<MetricsRow>& rows);
// A JSON array of objects with the CSV's column names; doubles round-trip.
std::string metrics_to_json(const std::vector<MetricsRow>& rows);
// Parses metrics_to_json's output; ValueError naming `source` when malformed.
std::vector<MetricsRow> metrics_from_json(const std::string& json, const std::string& source);

// Every loss and accuracy the program prints has 4 decimals ("0.8011").
std::string fixed4(double v);

// "epoch 3/10  loss 0.5123  train acc 0.8123  test loss 0.5432  test acc 0.8011
//  4.2 s  14231 img/s"
std::string epoch_line(const MetricsRow& row, int epochs);

// "1:05", "12:03:07"
std::string format_duration(double seconds);

// What the progress line shows.
struct Progress {
  int epoch = 0, epochs = 0, batch = 0, num_batches = 0;
  double running_loss = 0.0, img_per_s = 0.0, eta_s = 0.0;
};
// The progress line's text (no escape codes) in at most `columns - 1`
// characters, so that a terminal never wraps it: the bar shrinks first, then
// img/s, the ETA and the bar go, in that order.
std::string progress_text(const Progress& p, int columns);

// The width of the terminal on `fd` (ioctl TIOCGWINSZ), else $COLUMNS, else 80.
int terminal_columns(int fd);

// An in-place status line for a terminal: batch i/n, running loss, img/s and
// the ETA of the epoch, redrawn over itself (\r, erase line) at the
// terminal's current width. Disabled (prints nothing) when not a terminal.
// Callers rate-limit the updates with due().
class ProgressBar {
 public:
  // `fd` is where `out` writes, for the terminal's width.
  ProgressBar(std::ostream& out, bool enabled, double interval_s = 0.5, int fd = 1);
  bool enabled() const { return enabled_; }
  // True at most once per interval (always false when disabled).
  bool due();
  void update(const Progress& p);
  // Erases the line, so the next plain line starts clean.
  void clear();

 private:
  std::ostream& out_;
  bool enabled_;
  double interval_s_;
  int fd_;
  std::chrono::steady_clock::time_point last_;
  bool drawn_ = false;
};

// Is this file descriptor a terminal?
bool is_terminal(int fd);

}  // namespace scratchnet::train
