#include "train/metrics.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <ostream>
#include <sstream>

#include "core/error.h"
#include "core/text.h"

namespace scratchnet::train {

std::string metrics_csv(const std::vector<MetricsRow>& rows) {
  std::ostringstream s;
  s << "epoch,train_loss,train_acc,test_acc,seconds,img_per_s\n";
  char line[256];
  for (const auto& r : rows) {
    std::snprintf(line, sizeof line, "%d,%.6f,%.6f,%.6f,%.3f,%.1f\n", r.epoch, r.train_loss,
                  r.train_acc, r.test_acc, r.seconds, r.img_per_s);
    s << line;
  }
  return s.str();
}

std::string metrics_to_json(const std::vector<MetricsRow>& rows) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& r : rows)
    a.push_back({{"epoch", r.epoch},
                 {"train_loss", r.train_loss},
                 {"train_acc", r.train_acc},
                 {"test_acc", r.test_acc},
                 {"seconds", r.seconds},
                 {"img_per_s", r.img_per_s}});
  return a.dump();
}

std::vector<MetricsRow> metrics_from_json(const std::string& json, const std::string& source) {
  std::vector<MetricsRow> rows;
  try {
    const auto a = nlohmann::json::parse(json);
    if (!a.is_array()) throw ValueError(source + ": the metrics history is not a JSON array");
    for (const auto& o : a) {
      MetricsRow r;
      // Checked in its own type: get<int>() would wrap 2^32 + 1 to 1.
      const auto& e = o.at("epoch");
      if (!e.is_number_unsigned() || e.get<uint64_t>() < 1 || e.get<uint64_t>() > 1000000)
        throw ValueError(source + ": an epoch of the metrics history is not in 1..1000000");
      r.epoch = static_cast<int>(e.get<uint64_t>());
      r.train_loss = o.at("train_loss").get<double>();
      r.train_acc = o.at("train_acc").get<double>();
      r.test_acc = o.at("test_acc").get<double>();
      r.seconds = o.at("seconds").get<double>();
      r.img_per_s = o.at("img_per_s").get<double>();
      rows.push_back(r);
    }
  } catch (const nlohmann::json::exception& e) {
    throw ValueError(source + ": malformed metrics history (" + escape_bytes(e.what(), 200) + ")");
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

std::string epoch_line(const MetricsRow& r, int epochs) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "epoch %d/%d  loss %.4f  train acc %.4f  test acc %.4f  %.1f s  %.0f img/s",
                r.epoch, epochs, r.train_loss, r.train_acc, r.test_acc, r.seconds, r.img_per_s);
  return buf;
}

ProgressBar::ProgressBar(std::ostream& out, bool enabled, double interval_s)
    : out_(out),
      enabled_(enabled),
      interval_s_(interval_s),
      last_(std::chrono::steady_clock::now()) {}

bool ProgressBar::due() {
  if (!enabled_) return false;
  const auto now = std::chrono::steady_clock::now();
  if (std::chrono::duration<double>(now - last_).count() < interval_s_) return false;
  last_ = now;
  return true;
}

void ProgressBar::update(int epoch, int epochs, int batch, int num_batches, double running_loss,
                         double img_per_s, double eta_s) {
  if (!enabled_) return;
  constexpr int kWidth = 24;
  const int filled = num_batches > 0 ? kWidth * batch / num_batches : 0;
  std::string bar(static_cast<std::size_t>(filled), '#');
  bar.resize(kWidth, '.');
  char buf[256];
  std::snprintf(buf, sizeof buf, "\r\033[Kepoch %d/%d [%s] %d/%d  loss %.4f  %.0f img/s  ETA %s",
                epoch, epochs, bar.c_str(), batch, num_batches, running_loss, img_per_s,
                format_duration(eta_s).c_str());
  out_ << buf;
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
