// Training curves as a PNG line chart, the picture the course's animator
// draws after each epoch: one line per series (train loss, train acc, test
// acc) against the epoch, with axes, ticks, a legend and a title. Drawn into
// an RGB buffer here (no plotting library), encoded with stb_image_write.
#pragma once
#include <string>
#include <vector>

namespace scratchnet::plot {

struct Series {
  std::string label;
  std::vector<double> y;  // one value per epoch (x = 1, 2, ...); NaN or Inf = missing
};

// Writes a 640x400 PNG at `path` atomically (temporary file + rename).
// The y range covers every finite value; a missing value breaks its line.
// ValueError for no series; IoError when the file cannot be written.
void write_line_chart(const std::string& path, const std::vector<Series>& series,
                      const std::string& xlabel, const std::string& title);

}  // namespace scratchnet::plot
