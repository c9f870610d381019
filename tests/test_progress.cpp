// The terminal progress line and the epoch line: what fits at common
// terminal widths, and the one number format (4 decimals).
#include <catch2/catch.hpp>
#include <cstdlib>
#include <sstream>
#include <string>

#include "train/metrics.h"

using namespace scratchnet;

namespace {

bool has(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

train::Progress late_epoch() {
  // The widest realistic case: epoch 10/10 of a 235-batch epoch, 5-digit img/s.
  return {10, 10, 117, 235, 0.512345, 14231.0, 65.0};
}

}  // namespace

TEST_CASE("the progress line fits 60, 80 and 120 columns without wrapping", "[progress]") {
  for (int columns : {60, 80, 120}) {
    const std::string s = train::progress_text(late_epoch(), columns);
    INFO(columns << " columns: '" << s << "'");
    CHECK(static_cast<int>(s.size()) <= columns - 1);
    CHECK(s.rfind("epoch 10/10", 0) == 0);
    CHECK(has(s, " 117/235"));
    CHECK(has(s, "loss 0.5123"));
    CHECK(s.find('\n') == std::string::npos);
    CHECK(s.find('\r') == std::string::npos);
  }
  // Wide terminals get the whole line with a bar; the bar is half full.
  const std::string wide = train::progress_text(late_epoch(), 120);
  CHECK(has(wide, "14231 img/s"));
  CHECK(has(wide, "ETA 1:05"));
  const auto open = wide.find('['), close = wide.find(']');
  REQUIRE(open != std::string::npos);
  REQUIRE(close != std::string::npos);
  const std::string bar = wide.substr(open + 1, close - open - 1);
  CHECK(bar.size() == 30);
  CHECK(bar.find('.') == 14);  // 30 * 117 / 235 = 14 filled
  // At 80 columns everything still fits, with a shorter bar.
  const std::string mid = train::progress_text(late_epoch(), 80);
  CHECK(has(mid, "img/s"));
  CHECK(has(mid, "ETA"));
  CHECK(has(mid, "["));
  // At 60 the rate goes before the bar does.
  const std::string narrow = train::progress_text(late_epoch(), 60);
  CHECK(!has(narrow, "img/s"));
  CHECK(has(narrow, "["));
  // Very narrow: no bar, cut to fit rather than wrap.
  CHECK(train::progress_text(late_epoch(), 20).size() == 19);
}

TEST_CASE("a progress bar that is not on a terminal writes nothing", "[progress]") {
  std::ostringstream out;
  train::ProgressBar bar(out, false);
  CHECK(!bar.due());
  bar.update(late_epoch());
  bar.clear();
  CHECK(out.str().empty());
}

TEST_CASE("a terminal progress bar redraws in place", "[progress]") {
  std::ostringstream out;
  train::ProgressBar bar(out, true, 0.0, -1);  // fd -1: no terminal to ask, $COLUMNS or 80
  bar.update(late_epoch());
  bar.update(late_epoch());
  bar.clear();
  const std::string s = out.str();
  CHECK(s.rfind("\r\033[K", 0) == 0);
  CHECK(s.find('\n') == std::string::npos);
  CHECK(s.substr(s.size() - 4) == "\r\033[K");
}

TEST_CASE("the terminal width falls back to $COLUMNS, then 80", "[progress]") {
  const char* saved = std::getenv("COLUMNS");
  const std::string keep = saved ? saved : "";
  ::setenv("COLUMNS", "100", 1);
  CHECK(train::terminal_columns(-1) == 100);
  ::unsetenv("COLUMNS");
  CHECK(train::terminal_columns(-1) == 80);
  if (saved) ::setenv("COLUMNS", keep.c_str(), 1);
}

TEST_CASE("losses and accuracies print with 4 decimals everywhere", "[progress]") {
  CHECK(train::fixed4(0.09375) == "0.0938");
  train::MetricsRow r;
  r.epoch = 2;
  r.train_loss = 0.123456;
  r.train_acc = 0.5;
  r.test_loss = 0.25;
  r.test_acc = 0.09375;
  r.seconds = 2.5;
  r.img_per_s = 1000;
  const std::string line = train::epoch_line(r, 10);
  CHECK(line ==
        "epoch 2/10  loss 0.1235  train acc 0.5000  test loss 0.2500  test acc 0.0938  2.5 s  "
        "1000 img/s");
}
