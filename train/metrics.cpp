#include "train/metrics.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <ostream>
#include <sstream>

#include "core/error.h"

namespace scratchnet::train {

const std::vector<MetricsColumn>& metrics_columns() {
  static const std::vector<MetricsColumn> columns = {
      {"epoch", "epoch number, 1-based (a resumed run continues the count)"},
      {"train_loss",
       "mean cross-entropy over the epoch's training images, as they were trained on"},
      {"train_acc", "top-1 accuracy on the epoch's training batches, as they were trained on"},
      {"test_loss", "mean cross-entropy over the test images after the epoch, eval mode"},
      {"test_acc", "top-1 accuracy on the test images after the epoch, eval mode"},
      {"lr", "learning rate of the epoch's last step (schedules change it per step)"},
      {"seconds", "wall time of the whole epoch: training pass + test pass"},
      {"train_seconds", "wall time of the training pass alone"},
      {"img_per_s", "training images / train_seconds (the test pass is not counted)"},
  };
  return columns;
}

std::string metrics_columns_text() {
  std::string s = "# The columns of metrics.csv (written by scratchnet " SCRATCHNET_VERSION ")\n";
  for (const auto& c : metrics_columns()) s += std::string(c.name) + ": " + c.meaning + "\n";
  return s;
}

std::string metrics_csv(const std::vector<MetricsRow>& rows) {
  std::ostringstream s;
  for (const auto& c : metrics_columns())
    s << (&c == &metrics_columns().front() ? "" : ",") << c.name;
  s << "\n";
  char line[320];
  for (const auto& r : rows) {
    // A test loss from before it was recorded stays an empty field.
    char test_loss[32] = "";
    if (std::isfinite(r.test_loss)) std::snprintf(test_loss, sizeof test_loss, "%.6f", r.test_loss);
    std::snprintf(line, sizeof line, "%d,%.6f,%.6f,%s,%.6f,%.6g,%.3f,%.3f,%.1f\n", r.epoch,
                  r.train_loss, r.train_acc, test_loss, r.test_acc, r.lr, r.seconds,
                  r.train_seconds, r.img_per_s);
    s << line;
  }
  return s.str();
}

std::string metrics_to_json(const std::vector<MetricsRow>& rows) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& r : rows) {
    nlohmann::json o = {{"epoch", r.epoch},
                        {"train_loss", r.train_loss},
                        {"train_acc", r.train_acc},
                        {"test_acc", r.test_acc},
                        {"seconds", r.seconds},
                        {"img_per_s", r.img_per_s},
                        {"train_seconds", r.train_seconds},
                        {"lr", r.lr}};
    if (std::isfinite(r.test_loss)) o["test_loss"] = r.test_loss;
    a.push_back(o);
  }
  return a.dump();
}

std::vector<MetricsRow> metrics_from_json(const std::string& json, const std::string& source) {
  std::vector<MetricsRow> rows;
  try {
    const auto a = nlohmann::json::parse(json);
    if (!a.is_array()) throw ValueError(source + ": the metrics history is not a JSON array");
    for (const auto& o : a) {
      MetricsRow r;
      r.epoch = o.at("epoch").get<int>();
      r.train_loss = o.at("train_loss").get<double>();
      r.train_acc = o.at("train_acc").get<double>();
      r.test_acc = o.at("test_acc").get<double>();
      r.seconds = o.at("seconds").get<double>();
      r.img_per_s = o.at("img_per_s").get<double>();
      // Recorded since scratchnet 0.2; older runs resume without them.
      if (o.contains("test_loss")) r.test_loss = o.at("test_loss").get<double>();
      r.train_seconds = o.value("train_seconds", 0.0);
      r.lr = o.value("lr", 0.0);
      rows.push_back(r);
    }
  } catch (const nlohmann::json::exception& e) {
    throw ValueError(source + ": malformed metrics history (" + e.what() + ")");
  }
  return rows;
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long t = std::lround(seconds);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  return buf;
}

std::string fixed4(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f", v);
  return buf;
}

std::string epoch_line(const MetricsRow& r, int epochs) {
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "epoch %d/%d  loss %.4f  train acc %.4f  test loss %.4f  test acc %.4f  %.1f s  "
                "%.0f img/s",
                r.epoch, epochs, r.train_loss, r.train_acc, r.test_loss, r.test_acc, r.seconds,
                r.img_per_s);
  return buf;
}

std::string progress_text(const Progress& p, int columns) {
  const int room = std::max(columns - 1, 1);  // the last column would wrap on some terminals
  char head[64], count[48], loss[32], rate[32], eta[32];
  std::snprintf(head, sizeof head, "epoch %d/%d", p.epoch, p.epochs);
  std::snprintf(count, sizeof count, " %d/%d", p.batch, p.num_batches);
  std::snprintf(loss, sizeof loss, "  loss %.4f", p.running_loss);
  std::snprintf(rate, sizeof rate, "  %.0f img/s", p.img_per_s);
  std::snprintf(eta, sizeof eta, "  ETA %s", format_duration(p.eta_s).c_str());
  constexpr int kMinBar = 10, kMaxBar = 30;
  bool show_rate = true, show_eta = true;
  for (int attempt = 0; attempt < 3; ++attempt) {
    const std::string fixed =
        std::string(head) + count + loss + (show_rate ? rate : "") + (show_eta ? eta : "");
    const int bar_room = room - static_cast<int>(fixed.size()) - 3;  // " [" and "]"
    if (bar_room >= kMinBar) {
      const int w = std::min(bar_room, kMaxBar);
      const int filled = p.num_batches > 0 ? w * p.batch / p.num_batches : 0;
      std::string bar(static_cast<std::size_t>(std::clamp(filled, 0, w)), '#');
      bar.resize(static_cast<std::size_t>(w), '.');
      return std::string(head) + " [" + bar + "]" + (fixed.c_str() + std::strlen(head));
    }
    if (show_rate)
      show_rate = false;
    else if (show_eta)
      show_eta = false;
  }
  // No room for a bar: the numbers alone, cut to fit as a last resort.
  std::string plain = std::string(head) + count + loss + eta;
  if (static_cast<int>(plain.size()) > room) plain = std::string(head) + count + loss;
  if (static_cast<int>(plain.size()) > room) plain.resize(static_cast<std::size_t>(room));
  return plain;
}

int terminal_columns(int fd) {
  struct winsize ws {};
  if (::ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  if (const char* c = std::getenv("COLUMNS")) {
    const int n = std::atoi(c);
    if (n > 0) return n;
  }
  return 80;
}

ProgressBar::ProgressBar(std::ostream& out, bool enabled, double interval_s, int fd)
    : out_(out),
      enabled_(enabled),
      interval_s_(interval_s),
      fd_(fd),
      last_(std::chrono::steady_clock::now()) {}

bool ProgressBar::due() {
  if (!enabled_) return false;
  const auto now = std::chrono::steady_clock::now();
  if (std::chrono::duration<double>(now - last_).count() < interval_s_) return false;
  last_ = now;
  return true;
}

void ProgressBar::update(const Progress& p) {
  if (!enabled_) return;
  // The width is asked every time: a resized window gets a line that fits.
  out_ << "\r\033[K" << progress_text(p, terminal_columns(fd_));
  drawn_ = true;
  out_.flush();
}

void ProgressBar::clear() {
  if (!enabled_ || !drawn_) return;
  out_ << "\r\033[K";
  out_.flush();
  drawn_ = false;
}

bool is_terminal(int fd) {
  return ::isatty(fd) == 1;
}

}  // namespace scratchnet::train
