// Training curves as a figure for a report: panels side by side (loss;
// accuracy), each with labelled axes, its legend below the data, a title with
// the run's settings and final figures; written as an antialiased PNG and as
// SVG. Drawn by train/plot_render.h's painters (no plotting library); the PNG
// is encoded with stb_image_write.
#pragma once
#include <string>
#include <vector>

namespace scratchnet::plot {

struct Series {
  std::string label;
  std::vector<double> y;  // one value per epoch (x = 1, 2, ...); NaN or Inf = missing
};

struct Panel {
  std::string ylabel;
  std::vector<Series> series;
  bool unit_interval = false;  // values are fractions: the y axis stays within [0, 1]
};

struct Figure {
  std::string title, subtitle;  // subtitle: settings and final values, smaller
  std::string xlabel = "epoch";
  std::vector<Panel> panels;  // side by side, left to right
  int width = 1100, height = 520;
};

// Writes the figure as PNG (`png_path`) and, when `svg_path` is not empty,
// SVG; each atomically (temporary file + rename). A panel's y range covers
// its finite values; a missing value breaks its line; every point has a
// marker inside the frame. ValueError for no panels or no series; IoError
// when a file cannot be written.
void write_figure(const Figure& figure, const std::string& png_path,
                  const std::string& svg_path = "");

// One panel, 640x400 PNG: the series against `xlabel`, titled `title`.
void write_line_chart(const std::string& path, const std::vector<Series>& series,
                      const std::string& xlabel, const std::string& title);

}  // namespace scratchnet::plot
