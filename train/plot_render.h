// The drawing surfaces behind train/plot.cpp: one Painter interface, two
// backends that draw the same geometry.
//   Raster: an RGB image drawn at kSupersample times the size and averaged
//           down, so lines, markers and text come out antialiased; text in
//           DejaVu Sans through stb_truetype when the font is installed
//           (fonts-dejavu-core; $SCRATCHNET_FONT names another .ttf, or
//           "none"), else stb_easy_font's stroke font.
//   Svg:    the same calls as SVG elements (text stays text, scalable).
// Coordinates are output pixels, y down; text y is the baseline.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace scratchnet::plot {

struct Rgb {
  uint8_t r, g, b;
};

enum class Anchor { Start, Middle, End };

// A TrueType font file in memory (empty when none could be read).
class Font {
 public:
  // The first readable of $SCRATCHNET_FONT, DejaVu Sans (or its Bold when
  // `bold`) in Debian's and other usual places; empty if none.
  static std::shared_ptr<const Font> find(bool bold = false);
  bool ok() const { return ok_; }
  // Advance width of `text` at a pixel height of `size` (an estimate for the
  // stroke-font fallback).
  double width(const std::string& text, double size) const;
  const std::string& path() const { return path_; }
  struct Impl;
  const Impl* impl() const { return impl_.get(); }
  ~Font();

 private:
  Font() = default;
  bool ok_ = false;
  std::string path_;
  std::shared_ptr<Impl> impl_;
};

class Painter {
 public:
  virtual ~Painter() = default;
  virtual void rect(double x0, double y0, double x1, double y1, Rgb fill) = 0;
  // dash: on/off lengths in pixels, empty for solid.
  virtual void polyline(const std::vector<std::pair<double, double>>& points, Rgb color,
                        double width, const std::vector<double>& dash) = 0;
  virtual void marker(double x, double y, double radius, Rgb color) = 0;
  // Vertical text reads bottom to top, (x, y) its baseline start as for
  // horizontal text after rotating by -90 degrees.
  virtual void text(double x, double y, const std::string& text, double size, Rgb color,
                    Anchor anchor, bool bold = false, bool vertical = false) = 0;
  double text_width(const std::string& text, double size, bool bold = false) const;

 protected:
  std::shared_ptr<const Font> font_ = Font::find(false);
  std::shared_ptr<const Font> bold_ = Font::find(true);
  const Font& font(bool bold) const { return bold && bold_->ok() ? *bold_ : *font_; }
};

class RasterPainter : public Painter {
 public:
  static constexpr int kSupersample = 3;
  RasterPainter(int width, int height);
  void rect(double x0, double y0, double x1, double y1, Rgb fill) override;
  void polyline(const std::vector<std::pair<double, double>>& points, Rgb color, double width,
                const std::vector<double>& dash) override;
  void marker(double x, double y, double radius, Rgb color) override;
  void text(double x, double y, const std::string& text, double size, Rgb color, Anchor anchor,
            bool bold, bool vertical) override;
  // The image at output size, RGB rows.
  std::vector<uint8_t> pixels() const;

 private:
  void disc(double cx, double cy, double r, Rgb c);  // supersampled coordinates
  void blend(int x, int y, Rgb c, double alpha);
  int w_, h_;  // supersampled size
  std::vector<uint8_t> px_;
};

class SvgPainter : public Painter {
 public:
  SvgPainter(int width, int height);
  void rect(double x0, double y0, double x1, double y1, Rgb fill) override;
  void polyline(const std::vector<std::pair<double, double>>& points, Rgb color, double width,
                const std::vector<double>& dash) override;
  void marker(double x, double y, double radius, Rgb color) override;
  void text(double x, double y, const std::string& text, double size, Rgb color, Anchor anchor,
            bool bold, bool vertical) override;
  std::string document() const { return body_ + "</svg>\n"; }

 private:
  std::string body_;
};

}  // namespace scratchnet::plot
