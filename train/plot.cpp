#include "train/plot.h"

#include <stb_image_write.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "core/error.h"
#include "train/atomic_file.h"
#include "train/plot_render.h"

namespace scratchnet::plot {

namespace {

constexpr Rgb kBlack{0, 0, 0}, kInk{40, 40, 40}, kGrid{228, 228, 228}, kWhite{255, 255, 255};

// As d2l's animator: '-', 'm--', 'g-.', 'r:' — colour and dash both differ,
// so the curves stay apart in greyscale too. Dash = on/off lengths in pixels.
struct Style {
  Rgb color;
  std::vector<double> dash;
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

struct Box {
  double x0, y0, x1, y1;
};

// Font sizes (pixel heights) of the parts.
struct Sizes {
  double title, subtitle, label, tick;
};

// One panel in `box` (the whole cell: labels and legend included).
void draw_panel(Painter& p, const Panel& panel, const std::string& xlabel, Box box, Sizes fs,
                std::size_t style_offset) {
  std::size_t n = 1;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const auto& s : panel.series) {
    n = std::max(n, s.y.size());
    for (double v : s.y)
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  }
  if (!(lo <= hi)) lo = 0.0, hi = 1.0;  // nothing finite: an empty frame
  if (hi - lo < 1e-12) {
    const double pad = std::max(std::fabs(lo) * 0.1, 0.05);
    lo -= pad, hi += pad;
  }
  const double ystep = nice_step(hi - lo, 5);
  double ylo = std::floor(lo / ystep) * ystep, yhi = std::ceil(hi / ystep) * ystep;
  if (panel.unit_interval) ylo = std::max(ylo, 0.0), yhi = std::min(yhi, 1.0);
  if (yhi <= ylo) yhi = ylo + ystep;
  // Half a step of room either side, so the first and last markers sit inside.
  const double xpad = n > 1 ? std::max(0.3, 0.04 * static_cast<double>(n - 1)) : 0.5;
  const double xlo = 1.0 - xpad, xhi = static_cast<double>(n) + xpad;
  const double xstep = std::max(1.0, nice_step(std::max(1.0, static_cast<double>(n) - 1.0), 8));

  std::vector<std::pair<double, std::string>> yticks;
  double label_w = 0;
  for (int k = 0; ylo + k * ystep <= yhi + ystep * 1e-6; ++k) {
    const double v = ylo + k * ystep;
    yticks.emplace_back(v, tick_label(v, ystep));
    label_w = std::max(label_w, p.text_width(yticks.back().second, fs.tick));
  }
  // Legend: one row of samples below the x label.
  const double sample = 28, gap = 18, legend_h = fs.label * 1.6;
  // Whole pixels, so that the frame and the grid come out crisp.
  const Box frame{std::round(box.x0 + fs.label * 1.6 + label_w + 12), std::round(box.y0 + 6),
                  std::round(box.x1 - 8),
                  std::round(box.y1 - (fs.tick * 1.5 + fs.label * 1.6 + legend_h + 10))};
  // The view reaches 4 % past the outer ticks, so a marker on one is not cut by the frame.
  const double vlo = ylo - 0.04 * (yhi - ylo), vhi = yhi + 0.04 * (yhi - ylo);
  auto px = [&](double x) { return frame.x0 + (x - xlo) / (xhi - xlo) * (frame.x1 - frame.x0); };
  auto py = [&](double y) { return frame.y1 - (y - vlo) / (vhi - vlo) * (frame.y1 - frame.y0); };

  for (const auto& [v, label] : yticks) {
    p.rect(frame.x0, py(v) - 0.5, frame.x1, py(v) + 0.5, kGrid);
    p.rect(frame.x0 - 5, py(v) - 0.5, frame.x0, py(v) + 0.5, kInk);
    p.text(frame.x0 - 8, py(v) + fs.tick * 0.35, label, fs.tick, kInk, Anchor::End);
  }
  for (double x = xstep > 1.0 ? xstep : 1.0; x <= static_cast<double>(n) + 1e-9; x += xstep) {
    p.rect(px(x) - 0.5, frame.y0, px(x) + 0.5, frame.y1, kGrid);
    p.rect(px(x) - 0.5, frame.y1, px(x) + 0.5, frame.y1 + 5, kInk);
    p.text(px(x), frame.y1 + 7 + fs.tick, tick_label(x, 1.0), fs.tick, kInk, Anchor::Middle);
  }
  p.text(box.x0 + fs.label, (frame.y0 + frame.y1) / 2, panel.ylabel, fs.label, kBlack,
         Anchor::Middle, false, true);
  const double xlabel_y = frame.y1 + 10 + fs.tick + fs.label * 1.3;
  p.text((frame.x0 + frame.x1) / 2, xlabel_y, xlabel, fs.label, kBlack, Anchor::Middle);

  // Curves: a missing value breaks the line; markers on every point of short runs.
  for (std::size_t si = 0; si < panel.series.size(); ++si) {
    const Style& st = kStyles[(style_offset + si) % kStyles.size()];
    const auto& y = panel.series[si].y;
    std::vector<std::pair<double, double>> run;
    auto flush = [&] {
      p.polyline(run, st.color, 2.2, st.dash);
      run.clear();
    };
    for (std::size_t i = 0; i < y.size(); ++i) {
      if (!std::isfinite(y[i])) {
        flush();
        continue;
      }
      run.emplace_back(px(static_cast<double>(i + 1)), py(y[i]));
    }
    flush();
    for (std::size_t i = 0; i < y.size(); ++i) {
      const bool alone =
          (i == 0 || !std::isfinite(y[i - 1])) && (i + 1 >= y.size() || !std::isfinite(y[i + 1]));
      if (std::isfinite(y[i]) && (n <= 30 || alone))
        p.marker(px(static_cast<double>(i + 1)), py(y[i]), 3.2, st.color);
    }
  }
  // Frame on top of the curves' ends.
  p.rect(frame.x0, frame.y0, frame.x1 + 1, frame.y0 + 1, kBlack);
  p.rect(frame.x0, frame.y1, frame.x1 + 1, frame.y1 + 1, kBlack);
  p.rect(frame.x0, frame.y0, frame.x0 + 1, frame.y1 + 1, kBlack);
  p.rect(frame.x1, frame.y0, frame.x1 + 1, frame.y1 + 1, kBlack);

  // Legend below the data, centred under the frame.
  double total = 0;
  for (const auto& s : panel.series) total += sample + 6 + p.text_width(s.label, fs.label) + gap;
  total -= gap;
  double lx = (frame.x0 + frame.x1) / 2 - total / 2;
  const double ly = xlabel_y + legend_h;
  for (std::size_t si = 0; si < panel.series.size(); ++si) {
    const Style& st = kStyles[(style_offset + si) % kStyles.size()];
    const double mid = ly - fs.label * 0.35;
    p.polyline({{lx, mid}, {lx + sample, mid}}, st.color, 2.2, st.dash);
    p.marker(lx + sample / 2, mid, 3.2, st.color);
    p.text(lx + sample + 6, ly, panel.series[si].label, fs.label, kBlack, Anchor::Start);
    lx += sample + 6 + p.text_width(panel.series[si].label, fs.label) + gap;
  }
}

void draw(Painter& p, const Figure& f) {
  const double scale = std::min(f.width / 640.0, f.height / 400.0);
  const Sizes fs{15 * std::max(1.0, scale * 0.9), 12 * std::max(1.0, scale * 0.85),
                 12 * std::max(1.0, scale * 0.85), 11 * std::max(1.0, scale * 0.8)};
  double top = 10 + fs.title;
  p.text(f.width / 2.0, top, f.title, fs.title, kBlack, Anchor::Middle, true);
  if (!f.subtitle.empty()) {
    top += fs.subtitle * 1.5;
    p.text(f.width / 2.0, top, f.subtitle, fs.subtitle, kInk, Anchor::Middle);
  }
  top += 12;
  const double cell = static_cast<double>(f.width) / f.panels.size();
  std::size_t offset = 0;
  for (std::size_t i = 0; i < f.panels.size(); ++i) {
    draw_panel(p, f.panels[i], f.xlabel,
               {i * cell + 6, top, (i + 1) * cell - 6, static_cast<double>(f.height) - 6}, fs,
               offset);
    offset += f.panels[i].series.size();
  }
}

}  // namespace

void write_figure(const Figure& figure, const std::string& png_path, const std::string& svg_path) {
  if (figure.panels.empty()) throw ValueError("plot " + png_path + ": no panels to draw");
  for (const auto& panel : figure.panels)
    if (panel.series.empty()) throw ValueError("plot " + png_path + ": a panel has no series");
  RasterPainter raster(figure.width, figure.height);
  draw(raster, figure);
  const std::vector<uint8_t> rgb = raster.pixels();
  std::vector<unsigned char> png;
  auto sink = [](void* ctx, void* data, int size) {
    auto* out = static_cast<std::vector<unsigned char>*>(ctx);
    const auto* p = static_cast<const unsigned char*>(data);
    out->insert(out->end(), p, p + size);
  };
  if (!stbi_write_png_to_func(sink, &png, figure.width, figure.height, 3, rgb.data(),
                              figure.width * 3))
    throw IoError("plot " + png_path + ": PNG encoding failed");
  AtomicFileWriter out(png_path);
  out.write(png.data(), png.size());
  out.commit();
  if (!svg_path.empty()) {
    SvgPainter svg(figure.width, figure.height);
    draw(svg, figure);
    write_file_atomically(svg_path, svg.document());
  }
}

void write_line_chart(const std::string& path, const std::vector<Series>& series,
                      const std::string& xlabel, const std::string& title) {
  if (series.empty()) throw ValueError("plot " + path + ": no series to draw");
  Figure f;
  f.title = title;
  f.xlabel = xlabel;
  f.width = 640;
  f.height = 400;
  f.panels.push_back({"", series, false});
  write_figure(f, path);
}

}  // namespace scratchnet::plot
