#include "train/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>

#include "core/error.h"
#include "train/atomic_file.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#include <stb_easy_font.h>
#include <stb_image_write.h>
#pragma GCC diagnostic pop

namespace scratchnet::plot {

namespace {

constexpr int kWidth = 640, kHeight = 400;
constexpr int kTextScale = 2;  // stb_easy_font glyphs are ~7 px tall at scale 1
constexpr int kTextHeight = 8 * kTextScale;
constexpr int kLineWidth = 2;

struct Rgb {
  uint8_t r, g, b;
};
constexpr Rgb kWhite{255, 255, 255}, kBlack{0, 0, 0}, kGrid{225, 225, 225},
    kLegendEdge{180, 180, 180};

// As d2l's animator: '-', 'm--', 'g-.', 'r:' — colour and dash both differ,
// so the curves stay apart in greyscale too. Dash = on/off lengths in pixels.
struct Style {
  Rgb color;
  std::vector<int> dash;
};
const std::vector<Style> kStyles = {
    {{31, 119, 180}, {}},
    {{191, 0, 191}, {9, 5}},
    {{0, 128, 0}, {9, 4, 2, 4}},
    {{230, 0, 0}, {2, 4}},
    {{255, 127, 14}, {}},
    {{140, 86, 75}, {9, 5}},
    {{127, 127, 127}, {9, 4, 2, 4}},
    {{23, 190, 207}, {2, 4}},
};

class Canvas {
 public:
  Canvas(int w, int h) : w_(w), h_(h), px_(static_cast<std::size_t>(w) * h * 3, 255) {}
  const uint8_t* data() const { return px_.data(); }

  void set(int x, int y, Rgb c) {
    if (x < 0 || y < 0 || x >= w_ || y >= h_) return;
    uint8_t* p = &px_[(static_cast<std::size_t>(y) * w_ + x) * 3];
    p[0] = c.r;
    p[1] = c.g;
    p[2] = c.b;
  }
  // Half-open [x0, x1) x [y0, y1).
  void fill(int x0, int y0, int x1, int y1, Rgb c) {
    for (int y = y0; y < y1; ++y)
      for (int x = x0; x < x1; ++x) set(x, y, c);
  }
  void stamp(int x, int y, int size, Rgb c) {
    const int lo = -(size - 1) / 2;
    fill(x + lo, y + lo, x + lo + size, y + lo + size, c);
  }

  // Bresenham with a square brush; `phase` carries the dash position along a
  // polyline so dashes flow across its segments.
  void line(int x0, int y0, int x1, int y1, const Style& s, double& phase) {
    int period = 0;
    for (int d : s.dash) period += d;
    const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
    const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (;;) {
      if (period == 0 || dash_on(s.dash, std::fmod(phase, period)))
        stamp(x0, y0, kLineWidth, s.color);
      if (x0 == x1 && y0 == y1) break;
      const int e2 = 2 * err;
      bool moved_x = false, moved_y = false;
      if (e2 >= dy) {
        err += dy;
        x0 += sx;
        moved_x = true;
      }
      if (e2 <= dx) {
        err += dx;
        y0 += sy;
        moved_y = true;
      }
      phase += moved_x && moved_y ? 1.41421356 : 1.0;
    }
  }

  // Draws `text` with its top-left corner at (x, y); returns its width.
  int text(int x, int y, const std::string& text, Rgb c) {
    std::string t = printable(text);
    std::vector<char> buf(t.size() * 64 * 40 + 64);
    const int quads =
        stb_easy_font_print(0, 0, t.data(), nullptr, buf.data(), static_cast<int>(buf.size()));
    struct Vertex {
      float x, y, z;
      unsigned char rgba[4];
    };
    const auto* v = reinterpret_cast<const Vertex*>(buf.data());
    for (int q = 0; q < quads; ++q) {
      const Vertex* k = v + 4 * q;
      float x0 = k[0].x, x1 = k[0].x, y0 = k[0].y, y1 = k[0].y;
      for (int i = 1; i < 4; ++i) {
        x0 = std::min(x0, k[i].x), x1 = std::max(x1, k[i].x);
        y0 = std::min(y0, k[i].y), y1 = std::max(y1, k[i].y);
      }
      fill(x + static_cast<int>(x0 * kTextScale), y + static_cast<int>(y0 * kTextScale),
           x + static_cast<int>(x1 * kTextScale), y + static_cast<int>(y1 * kTextScale), c);
    }
    return text_width(text);
  }

  static int text_width(const std::string& text) {
    std::string t = printable(text);
    return stb_easy_font_width(t.data()) * kTextScale;
  }

 private:
  // stb_easy_font indexes a table by character: only printable ASCII is safe.
  static std::string printable(const std::string& s) {
    std::string t = s;
    for (char& ch : t)
      if (ch < 32 || ch > 126) ch = '?';
    return t;
  }
  static bool dash_on(const std::vector<int>& dash, double pos) {
    for (std::size_t i = 0; i < dash.size(); ++i) {
      if (pos < dash[i]) return i % 2 == 0;
      pos -= dash[i];
    }
    return true;
  }

  int w_, h_;
  std::vector<uint8_t> px_;
};

// 1, 2 or 5 times a power of ten, near range / target.
double nice_step(double range, int target) {
  const double raw = range / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  return (f <= 1.0 ? 1.0 : f <= 2.0 ? 2.0 : f <= 5.0 ? 5.0 : 10.0) * mag;
}

std::string tick_label(double v, double step) {
  const int decimals = std::max(0, static_cast<int>(std::ceil(-std::log10(step) - 1e-9)));
  if (std::fabs(v) < step * 1e-9) v = 0.0;  // no "-0.0"
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

bool finite(double v) {
  return std::isfinite(v);
}

}  // namespace

void write_line_chart(const std::string& path, const std::vector<Series>& series,
                      const std::string& xlabel, const std::string& title) {
  if (series.empty()) throw ValueError("plot " + path + ": no series to draw");
  std::size_t n = 1;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const auto& s : series) {
    n = std::max(n, s.y.size());
    for (double v : s.y)
      if (finite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  }
  if (!(lo <= hi)) lo = 0.0, hi = 1.0;  // nothing finite: an empty frame
  if (hi - lo < 1e-12) {
    const double pad = std::max(std::fabs(lo) * 0.1, 0.5);
    lo -= pad, hi += pad;
  }
  const double ystep = nice_step(hi - lo, 5);
  const double ylo = std::floor(lo / ystep) * ystep, yhi = std::ceil(hi / ystep) * ystep;
  const double xlo = n > 1 ? 1.0 : 0.5, xhi = n > 1 ? static_cast<double>(n) : 1.5;
  const double xstep = std::max(1.0, nice_step(std::max(1.0, xhi - xlo), 8));

  std::vector<std::pair<double, std::string>> yticks;
  int label_w = 0;
  for (int k = 0; ylo + k * ystep <= yhi + ystep * 1e-6; ++k) {
    const double v = ylo + k * ystep;
    yticks.emplace_back(v, tick_label(v, ystep));
    label_w = std::max(label_w, Canvas::text_width(yticks.back().second));
  }

  // The plot area, leaving room for the title, tick labels and x label.
  const int left = std::max(50, label_w + 18), right = kWidth - 20;
  const int top = 14 + kTextHeight + 14, bottom = kHeight - (2 * kTextHeight + 30);
  auto px = [&](double x) {
    return left + static_cast<int>(std::lround((x - xlo) / (xhi - xlo) * (right - left)));
  };
  auto py = [&](double y) {
    return bottom - static_cast<int>(std::lround((y - ylo) / (yhi - ylo) * (bottom - top)));
  };

  Canvas c(kWidth, kHeight);
  for (const auto& [v, label] : yticks) {
    c.fill(left, py(v), right, py(v) + 1, kGrid);
    c.fill(left - 5, py(v), left, py(v) + 1, kBlack);
    c.text(left - 8 - Canvas::text_width(label), py(v) - kTextHeight / 2, label, kBlack);
  }
  // Epoch ticks at multiples of the step (2, 4, ... or 10, 20, ...), as matplotlib.
  for (double x = xstep > 1.0 ? xstep : 1.0; x <= xhi + 1e-9; x += xstep) {
    c.fill(px(x), top, px(x) + 1, bottom, kGrid);
    c.fill(px(x), bottom, px(x) + 1, bottom + 5, kBlack);
    const std::string label = tick_label(x, 1.0);
    c.text(px(x) - Canvas::text_width(label) / 2, bottom + 9, label, kBlack);
  }

  // Curves, remembering where they went for the legend's placement.
  std::vector<std::pair<int, int>> ink;
  for (std::size_t si = 0; si < series.size(); ++si) {
    const Style& st = kStyles[si % kStyles.size()];
    const auto& y = series[si].y;
    double phase = 0.0;
    for (std::size_t i = 0; i < y.size(); ++i) {
      if (!finite(y[i])) continue;
      const int x0 = px(static_cast<double>(i + 1)), y0 = py(y[i]);
      const bool next = i + 1 < y.size() && finite(y[i + 1]);
      const bool prev = i > 0 && finite(y[i - 1]);
      if (next) {
        const int x1 = px(static_cast<double>(i + 2)), y1 = py(y[i + 1]);
        c.line(x0, y0, x1, y1, st, phase);
        for (int k = 0; k <= 16; ++k)
          ink.emplace_back(x0 + (x1 - x0) * k / 16, y0 + (y1 - y0) * k / 16);
      } else {
        phase = 0.0;
      }
      // Markers for short runs, and always for a point with no line through it.
      if (n <= 30 || (!next && !prev)) c.stamp(x0, y0, 5, st.color);
      ink.emplace_back(x0, y0);
    }
  }

  // Frame on top of the curves' ends.
  c.fill(left, top, right + 1, top + 1, kBlack);
  c.fill(left, bottom, right + 1, bottom + 1, kBlack);
  c.fill(left, top, left + 1, bottom + 1, kBlack);
  c.fill(right, top, right + 1, bottom + 1, kBlack);

  // Legend in the inside corner that hides the fewest curve points.
  constexpr int kSample = 30, kRow = kTextHeight + 6, kPad = 8;
  int legend_label_w = 0;
  for (const auto& s : series)
    legend_label_w = std::max(legend_label_w, Canvas::text_width(s.label));
  const int lw = kPad + kSample + 8 + legend_label_w + kPad;
  const int lh = kPad + static_cast<int>(series.size()) * kRow - 6 + kPad;
  const int corners[4][2] = {{right - 10 - lw, top + 10},
                             {right - 10 - lw, bottom - 10 - lh},
                             {left + 10, bottom - 10 - lh},
                             {left + 10, top + 10}};
  int best = 0;
  std::size_t best_hits = std::numeric_limits<std::size_t>::max();
  for (int k = 0; k < 4; ++k) {
    const int x0 = corners[k][0], y0 = corners[k][1];
    const std::size_t hits = std::count_if(ink.begin(), ink.end(), [&](const auto& p) {
      return p.first >= x0 - 4 && p.first < x0 + lw + 4 && p.second >= y0 - 4 &&
             p.second < y0 + lh + 4;
    });
    if (hits < best_hits) best = k, best_hits = hits;
  }
  const int lx = corners[best][0], ly = corners[best][1];
  c.fill(lx, ly, lx + lw, ly + lh, kLegendEdge);
  c.fill(lx + 1, ly + 1, lx + lw - 1, ly + lh - 1, kWhite);
  for (std::size_t si = 0; si < series.size(); ++si) {
    const Style& st = kStyles[si % kStyles.size()];
    const int row_y = ly + kPad + static_cast<int>(si) * kRow;
    double phase = 0.0;
    c.line(lx + kPad, row_y + kTextHeight / 2, lx + kPad + kSample, row_y + kTextHeight / 2, st,
           phase);
    c.text(lx + kPad + kSample + 8, row_y, series[si].label, kBlack);
  }

  c.text((kWidth - Canvas::text_width(title)) / 2, 12, title, kBlack);
  c.text((left + right - Canvas::text_width(xlabel)) / 2, bottom + 9 + kTextHeight + 10, xlabel,
         kBlack);

  std::vector<unsigned char> png;
  auto sink = [](void* ctx, void* data, int size) {
    auto* out = static_cast<std::vector<unsigned char>*>(ctx);
    const auto* p = static_cast<const unsigned char*>(data);
    out->insert(out->end(), p, p + size);
  };
  if (!stbi_write_png_to_func(sink, &png, kWidth, kHeight, 3, c.data(), kWidth * 3))
    throw IoError("plot " + path + ": PNG encoding failed");
  AtomicFileWriter out(path);
  out.write(png.data(), png.size());
  out.commit();
}

}  // namespace scratchnet::plot
