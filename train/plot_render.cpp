#include "train/plot_render.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
// The one translation unit that compiles stb_truetype (header-only).
#define STB_TRUETYPE_IMPLEMENTATION
#define STBTT_STATIC
#include <stb_easy_font.h>
#include <stb_truetype.h>
#pragma GCC diagnostic pop

namespace scratchnet::plot {

struct Font::Impl {
  std::vector<unsigned char> data;
  stbtt_fontinfo info{};
};

Font::~Font() = default;

std::shared_ptr<const Font> Font::find(bool bold) {
  std::vector<std::string> candidates;
  auto font = std::shared_ptr<Font>(new Font());
  if (const char* env = std::getenv("SCRATCHNET_FONT"); env && *env) {
    if (std::string(env) == "none") return font;  // the stroke font, on purpose
    if (!bold) candidates.push_back(env);
  }
  const char* name = bold ? "DejaVuSans-Bold.ttf" : "DejaVuSans.ttf";
  for (const char* dir : {"/usr/share/fonts/truetype/dejavu/", "/usr/share/fonts/TTF/",
                          "/usr/share/fonts/dejavu/", "/usr/local/share/fonts/"})
    candidates.push_back(std::string(dir) + name);
  for (const auto& path : candidates) {
    std::ifstream in(path, std::ios::binary);
    if (!in) continue;
    auto impl = std::make_shared<Impl>();
    impl->data.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (impl->data.size() < 12) continue;
    const int offset = stbtt_GetFontOffsetForIndex(impl->data.data(), 0);
    if (offset < 0 || !stbtt_InitFont(&impl->info, impl->data.data(), offset)) continue;
    font->impl_ = impl;
    font->ok_ = true;
    font->path_ = path;
    break;
  }
  return font;
}

namespace {

// Printable ASCII only: what stb_easy_font can draw and what needs no UTF-8
// decoding (the labels are ours).
std::string printable(const std::string& s) {
  std::string t = s;
  for (char& ch : t)
    if (ch < 32 || ch > 126) ch = '?';
  return t;
}

constexpr double kEasyFontHeight = 7.0;  // stb_easy_font's cap height at scale 1

}  // namespace

double Font::width(const std::string& text, double size) const {
  const std::string t = printable(text);
  if (!ok_) return stb_easy_font_width(const_cast<char*>(t.c_str())) * size / kEasyFontHeight / 1.4;
  const stbtt_fontinfo& f = impl_->info;
  const float scale = stbtt_ScaleForPixelHeight(&f, static_cast<float>(size));
  int w = 0;
  for (std::size_t i = 0; i < t.size(); ++i) {
    int advance = 0, lsb = 0;
    stbtt_GetCodepointHMetrics(&f, t[i], &advance, &lsb);
    w += advance;
    if (i + 1 < t.size()) w += stbtt_GetCodepointKernAdvance(&f, t[i], t[i + 1]);
  }
  return w * scale;
}

double Painter::text_width(const std::string& text, double size, bool bold) const {
  return font(bold).width(text, size);
}

// --- raster ---------------------------------------------------------------------------------

RasterPainter::RasterPainter(int width, int height)
    : w_(width * kSupersample),
      h_(height * kSupersample),
      px_(static_cast<std::size_t>(w_) * h_ * 3, 255) {}

void RasterPainter::blend(int x, int y, Rgb c, double a) {
  if (x < 0 || y < 0 || x >= w_ || y >= h_ || a <= 0) return;
  a = std::min(a, 1.0);
  uint8_t* p = &px_[(static_cast<std::size_t>(y) * w_ + x) * 3];
  const uint8_t v[3] = {c.r, c.g, c.b};
  for (int i = 0; i < 3; ++i) p[i] = static_cast<uint8_t>(std::lround(p[i] + (v[i] - p[i]) * a));
}

void RasterPainter::rect(double x0, double y0, double x1, double y1, Rgb fill) {
  const int S = kSupersample;
  const int ax = std::max(0, static_cast<int>(std::lround(x0 * S)));
  const int bx = std::min(w_, static_cast<int>(std::lround(x1 * S)));
  const int ay = std::max(0, static_cast<int>(std::lround(y0 * S)));
  const int by = std::min(h_, static_cast<int>(std::lround(y1 * S)));
  for (int y = ay; y < by; ++y)
    for (int x = ax; x < bx; ++x) blend(x, y, fill, 1.0);
}

void RasterPainter::disc(double cx, double cy, double r, Rgb c) {
  const int x0 = static_cast<int>(std::floor(cx - r)), x1 = static_cast<int>(std::ceil(cx + r));
  const int y0 = static_cast<int>(std::floor(cy - r)), y1 = static_cast<int>(std::ceil(cy + r));
  for (int y = y0; y <= y1; ++y)
    for (int x = x0; x <= x1; ++x) {
      const double dx = x + 0.5 - cx, dy = y + 0.5 - cy;
      if (dx * dx + dy * dy <= r * r) blend(x, y, c, 1.0);
    }
}

void RasterPainter::polyline(const std::vector<std::pair<double, double>>& points, Rgb color,
                             double width, const std::vector<double>& dash) {
  const double S = kSupersample, r = width * S / 2;
  double period = 0;
  for (double d : dash) period += d;
  double along = 0;  // pixels along the line, for the dash pattern
  auto on = [&](double pos) {
    if (period <= 0) return true;
    pos = std::fmod(pos, period);
    for (std::size_t i = 0; i < dash.size(); ++i) {
      if (pos < dash[i]) return i % 2 == 0;
      pos -= dash[i];
    }
    return true;
  };
  for (std::size_t i = 0; i + 1 < points.size(); ++i) {
    const double x0 = points[i].first * S, y0 = points[i].second * S;
    const double x1 = points[i + 1].first * S, y1 = points[i + 1].second * S;
    const double len = std::hypot(x1 - x0, y1 - y0);
    const int steps = std::max(1, static_cast<int>(std::ceil(len / 0.75)));
    for (int k = 0; k <= steps; ++k) {
      const double t = static_cast<double>(k) / steps;
      if (on(along + t * len / S)) disc(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t, r, color);
    }
    along += len / S;
  }
}

void RasterPainter::marker(double x, double y, double radius, Rgb color) {
  disc(x * kSupersample, y * kSupersample, radius * kSupersample, color);
}

void RasterPainter::text(double x, double y, const std::string& text, double size, Rgb color,
                         Anchor anchor, bool bold, bool vertical) {
  const std::string t = printable(text);
  const double S = kSupersample;
  const double w = text_width(t, size, bold);
  const double shift = anchor == Anchor::Start ? 0 : anchor == Anchor::Middle ? w / 2 : w;
  // Render horizontally into an alpha mask, then place it (rotated if vertical).
  const int mw = static_cast<int>(std::ceil((w + size) * S)) + 2;
  const int mh = static_cast<int>(std::ceil(size * 1.4 * S)) + 2;
  const double base = std::ceil(size * 1.05 * S);  // baseline row in the mask
  std::vector<float> mask(static_cast<std::size_t>(mw) * mh, 0.0f);
  const Font& f = font(bold);
  if (f.ok()) {
    const stbtt_fontinfo& info = f.impl()->info;
    const float scale = stbtt_ScaleForPixelHeight(&info, static_cast<float>(size * S));
    double pen = 0;
    for (std::size_t i = 0; i < t.size(); ++i) {
      int advance = 0, lsb = 0, gw = 0, gh = 0, ox = 0, oy = 0;
      stbtt_GetCodepointHMetrics(&info, t[i], &advance, &lsb);
      const float sub = static_cast<float>(pen - std::floor(pen));
      unsigned char* g = stbtt_GetCodepointBitmapSubpixel(&info, scale, scale, sub, 0.0f, t[i], &gw,
                                                          &gh, &ox, &oy);
      for (int gy = 0; g && gy < gh; ++gy)
        for (int gx = 0; gx < gw; ++gx) {
          const int mx = static_cast<int>(std::floor(pen)) + ox + gx;
          const int my = static_cast<int>(base) + oy + gy;
          if (mx >= 0 && my >= 0 && mx < mw && my < mh)
            mask[static_cast<std::size_t>(my) * mw + mx] =
                std::max(mask[static_cast<std::size_t>(my) * mw + mx], g[gy * gw + gx] / 255.0f);
        }
      stbtt_FreeBitmap(g, nullptr);
      pen += advance * scale;
      if (i + 1 < t.size()) pen += stbtt_GetCodepointKernAdvance(&info, t[i], t[i + 1]) * scale;
    }
  } else {
    std::vector<char> buf(t.size() * 64 * 40 + 64);
    const int quads = stb_easy_font_print(0, 0, const_cast<char*>(t.c_str()), nullptr, buf.data(),
                                          static_cast<int>(buf.size()));
    struct Vertex {
      float x, y, z;
      unsigned char rgba[4];
    };
    const auto* v = reinterpret_cast<const Vertex*>(buf.data());
    const double k = size * S / kEasyFontHeight / 1.4;
    for (int q = 0; q < quads; ++q) {
      const Vertex* c = v + 4 * q;
      float x0 = c[0].x, x1 = c[0].x, y0 = c[0].y, y1 = c[0].y;
      for (int i = 1; i < 4; ++i)
        x0 = std::min(x0, c[i].x), x1 = std::max(x1, c[i].x), y0 = std::min(y0, c[i].y),
        y1 = std::max(y1, c[i].y);
      for (int my = static_cast<int>(base - kEasyFontHeight * k + y0 * k);
           my < static_cast<int>(base - kEasyFontHeight * k + y1 * k); ++my)
        for (int mx = static_cast<int>(x0 * k); mx < static_cast<int>(x1 * k); ++mx)
          if (mx >= 0 && my >= 0 && mx < mw && my < mh)
            mask[static_cast<std::size_t>(my) * mw + mx] = 1;
    }
  }
  const int X = static_cast<int>(std::lround(x * S)), Y = static_cast<int>(std::lround(y * S));
  const int off = static_cast<int>(std::lround(shift * S));
  for (int my = 0; my < mh; ++my)
    for (int mx = 0; mx < mw; ++mx) {
      const float a = mask[static_cast<std::size_t>(my) * mw + mx];
      if (a <= 0) continue;
      const int dx = mx - off, dy = my - static_cast<int>(base);
      if (vertical)
        blend(X + dy, Y - dx, color, a);  // rotated -90 degrees about the anchor
      else
        blend(X + dx, Y + dy, color, a);
    }
}

std::vector<uint8_t> RasterPainter::pixels() const {
  const int S = kSupersample, w = w_ / S, h = h_ / S;
  std::vector<uint8_t> out(static_cast<std::size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) {
        int sum = 0;
        for (int sy = 0; sy < S; ++sy)
          for (int sx = 0; sx < S; ++sx)
            sum += px_[((static_cast<std::size_t>(y) * S + sy) * w_ + x * S + sx) * 3 + c];
        out[(static_cast<std::size_t>(y) * w + x) * 3 + c] =
            static_cast<uint8_t>((sum + S * S / 2) / (S * S));
      }
  return out;
}

// --- SVG --------------------------------------------------------------------------------------

namespace {

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

std::string hex(Rgb c) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", c.r, c.g, c.b);
  return buf;
}

std::string escape(const std::string& s) {
  std::string out;
  for (char ch : printable(s)) {
    if (ch == '<')
      out += "&lt;";
    else if (ch == '>')
      out += "&gt;";
    else if (ch == '&')
      out += "&amp;";
    else
      out += ch;
  }
  return out;
}

}  // namespace

SvgPainter::SvgPainter(int width, int height) {
  body_ = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(width) +
          "\" height=\"" + std::to_string(height) + "\" viewBox=\"0 0 " + std::to_string(width) +
          " " + std::to_string(height) +
          "\" font-family=\"DejaVu Sans, Verdana, sans-serif\">\n"
          "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n";
}

void SvgPainter::rect(double x0, double y0, double x1, double y1, Rgb fill) {
  body_ += "<rect x=\"" + num(x0) + "\" y=\"" + num(y0) + "\" width=\"" + num(x1 - x0) +
           "\" height=\"" + num(y1 - y0) + "\" fill=\"" + hex(fill) + "\"/>\n";
}

void SvgPainter::polyline(const std::vector<std::pair<double, double>>& points, Rgb color,
                          double width, const std::vector<double>& dash) {
  if (points.size() < 2) return;
  std::string pts;
  for (const auto& [x, y] : points) pts += num(x) + "," + num(y) + " ";
  body_ += "<polyline fill=\"none\" stroke=\"" + hex(color) + "\" stroke-width=\"" + num(width) +
           "\" stroke-linejoin=\"round\" points=\"" + pts + "\"";
  if (!dash.empty()) {
    std::string d;
    for (double v : dash) d += (d.empty() ? "" : ",") + num(v);
    body_ += " stroke-dasharray=\"" + d + "\"";
  }
  body_ += "/>\n";
}

void SvgPainter::marker(double x, double y, double radius, Rgb color) {
  body_ += "<circle cx=\"" + num(x) + "\" cy=\"" + num(y) + "\" r=\"" + num(radius) + "\" fill=\"" +
           hex(color) + "\"/>\n";
}

void SvgPainter::text(double x, double y, const std::string& text, double size, Rgb color,
                      Anchor anchor, bool bold, bool vertical) {
  const char* a = anchor == Anchor::Start ? "start" : anchor == Anchor::Middle ? "middle" : "end";
  body_ += "<text x=\"" + num(x) + "\" y=\"" + num(y) + "\" font-size=\"" + num(size / 1.164) +
           "\" fill=\"" + hex(color) + "\" text-anchor=\"" + a + "\"" +
           (bold ? " font-weight=\"bold\"" : "") +
           (vertical ? " transform=\"rotate(-90 " + num(x) + " " + num(y) + ")\"" : "") + ">" +
           escape(text) + "</text>\n";
}

}  // namespace scratchnet::plot
