// The training-curve PNG: written atomically, decodes back at the stated
// size, shows the series in their colours, and fails cleanly on a bad path.
// Pixel checks are exact (no tolerance): the colours are our own constants.
#include <stb_image.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "test_files.h"
#include "test_helpers.h"
#include "train/plot.h"

using namespace scratchnet;
namespace fs = std::filesystem;
using scratchnet::testing::TempDir;

namespace {

struct Image {
  int w = 0, h = 0;
  std::vector<unsigned char> rgb;
  int count(unsigned char r, unsigned char g, unsigned char b) const {
    int n = 0;
    for (std::size_t i = 0; i + 2 < rgb.size(); i += 3)
      n += rgb[i] == r && rgb[i + 1] == g && rgb[i + 2] == b;
    return n;
  }
};

Image load_png(const std::string& path) {
  int w = 0, h = 0, comp = 0;
  unsigned char* p = stbi_load(path.c_str(), &w, &h, &comp, 3);
  REQUIRE(p != nullptr);
  Image img{w, h, std::vector<unsigned char>(p, p + static_cast<std::size_t>(w) * h * 3)};
  stbi_image_free(p);
  return img;
}

const std::vector<plot::Series> kCurves = {
    {"train loss", {2.1, 1.2, 0.8, 0.6, 0.52, 0.47, 0.44, 0.42, 0.40, 0.38}},
    {"train acc", {0.25, 0.55, 0.70, 0.77, 0.80, 0.82, 0.84, 0.85, 0.86, 0.87}},
    {"test acc", {0.40, 0.62, 0.72, std::nan(""), 0.79, 0.81, 0.83, 0.84, 0.85, 0.86}},
};

}  // namespace

TEST_CASE("the training chart is a readable PNG with every series drawn", "[plot]") {
  TempDir dir("plot");
  const std::string path = dir.file("curves.png");
  plot::write_line_chart(path, kCurves, "epoch", "lenet on Fashion-MNIST");
  CHECK_FALSE(fs::exists(path + ".tmp"));
  const Image img = load_png(path);
  CHECK(img.w == 640);
  CHECK(img.h == 400);
  std::set<int> colours;
  for (std::size_t i = 0; i + 2 < img.rgb.size(); i += 3)
    colours.insert(img.rgb[i] << 16 | img.rgb[i + 1] << 8 | img.rgb[i + 2]);
  CHECK(colours.size() >= 5);                       // background, ink, grid and three series
  CHECK(img.count(255, 255, 255) > 640 * 400 / 2);  // mostly background
  CHECK(img.count(0, 0, 0) > 1000);                 // axes and text
  CHECK(img.count(31, 119, 180) > 200);             // series 1: blue, solid
  CHECK(img.count(191, 0, 191) > 100);              // series 2: magenta, dashed
  CHECK(img.count(0, 128, 0) > 100);                // series 3: green, dash-dot

  // Rewriting replaces the file whole.
  plot::write_line_chart(path, {{"only", {1.0}}}, "epoch", "one point");
  const Image one = load_png(path);
  CHECK(one.w == 640);
  CHECK(one.count(31, 119, 180) > 10);  // the single point still shows as a marker
  CHECK(one.count(191, 0, 191) == 0);
}

TEST_CASE("the chart copes with missing values and flat or empty series", "[plot]") {
  TempDir dir("plot");
  const std::string path = dir.file("odd.png");
  const double nan = std::nan("");
  plot::write_line_chart(path, {{"all missing", {nan, nan}}, {"flat", {0.5, 0.5, 0.5}}}, "epoch",
                         "odd");
  const Image img = load_png(path);
  CHECK(img.count(191, 0, 191) > 50);  // the flat series is drawn
  CHECK(img.count(31, 119, 180) > 0);  // legend sample of the missing one
  plot::write_line_chart(path, {{"empty", {}}}, "x", "nothing yet\twith a tab");
  CHECK(load_png(path).w == 640);
}

TEST_CASE("the chart reports bad paths and empty input", "[plot]") {
  TempDir dir("plot");
  const std::string bad = dir.file("missing-dir/curves.png");
  try {
    plot::write_line_chart(bad, kCurves, "epoch", "t");
    FAIL("expected an IoError");
  } catch (const IoError& e) {
    CHECK(std::string(e.what()).find(bad) != std::string::npos);
  }
  CHECK_FALSE(fs::exists(bad));
  CHECK_THROWS_AS(plot::write_line_chart(dir.file("x.png"), {}, "epoch", "t"), ValueError);
  CHECK_FALSE(fs::exists(dir.file("x.png")));
}

TEST_CASE("the training figure: two panels, PNG and SVG, with or without the TrueType font",
          "[plot]") {
  TempDir dir("plot");
  plot::Figure f;
  f.title = "lenet on Fashion-MNIST";
  f.subtitle = "batch 256, lr 0.9, 10 epochs; test acc 0.8600";
  f.panels = {{"loss (cross-entropy)", {kCurves[0]}, false},
              {"accuracy", {kCurves[1], kCurves[2]}, true}};
  const char* saved = std::getenv("SCRATCHNET_FONT");
  const std::string keep = saved ? saved : "";
  for (const char* font : {"", "none"}) {
    INFO("SCRATCHNET_FONT=" << font);
    if (*font)
      ::setenv("SCRATCHNET_FONT", font, 1);
    else
      ::unsetenv("SCRATCHNET_FONT");
    const std::string png = dir.file("curves.png"), svg = dir.file("curves.svg");
    plot::write_figure(f, png, svg);
    const Image img = load_png(png);
    CHECK(img.w == 1100);
    CHECK(img.h == 520);
    CHECK(img.count(31, 119, 180) > 200);  // each series keeps its exact colour inside its line
    CHECK(img.count(191, 0, 191) > 100);
    CHECK(img.count(0, 128, 0) > 100);
    CHECK(img.count(0, 0, 0) > 2000);  // two frames
    // Antialiased: shades between background and ink (3x3 supersampling gives
    // the stroke font 10 levels; TrueType glyphs bring their own coverage).
    std::set<int> greys;
    for (std::size_t i = 0; i + 2 < img.rgb.size(); i += 3)
      if (img.rgb[i] == img.rgb[i + 1] && img.rgb[i + 1] == img.rgb[i + 2])
        greys.insert(img.rgb[i]);
    const bool truetype = !*font && fs::exists("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf");
    CHECK(greys.size() > (truetype ? 50u : 8u));
    const std::string text = scratchnet::testing::slurp(svg);
    CHECK(text.rfind("<svg ", 0) == 0);
    for (const char* part : {">loss (cross-entropy)<", ">accuracy<", ">epoch<", ">test acc<",
                             ">lenet on Fashion-MNIST<", "stroke-dasharray", "</svg>"})
      CHECK(text.find(part) != std::string::npos);
  }
  if (saved)
    ::setenv("SCRATCHNET_FONT", keep.c_str(), 1);
  else
    ::unsetenv("SCRATCHNET_FONT");
  CHECK_THROWS_AS(plot::write_figure(plot::Figure{}, dir.file("x.png")), ValueError);
}
