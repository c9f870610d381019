// Image decoding and predict's preprocessing (train/image.h).
//
// The decoder must never crash: every truncation of a small PNG, JPEG and BMP
// (and of the same images in colour) is an IoError, and every single-bit flip
// plus seeded random byte corruption either is an IoError or decodes to a
// valid image (declared size within the limits, pixels in [0, 1]).
//
// Tolerance rule for the resampling checks: the averages are of at most a few
// hundred floats in [0, 1], so |got - want| <= 1e-5 (atol only).
#include <stb_image_write.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "core/text.h"
#include "test_files.h"
#include "train/image.h"

using namespace scratchnet;
using scratchnet::testing::slurp;
using scratchnet::testing::TempDir;

namespace {

void sink(void* ctx, void* data, int n) {
  static_cast<std::string*>(ctx)->append(static_cast<const char*>(data),
                                         static_cast<std::size_t>(n));
}

// A 13x9 image with a gradient and a bright square, grey (1) or RGB (3).
std::vector<uint8_t> pattern(int channels) {
  std::vector<uint8_t> px(13 * 9 * static_cast<std::size_t>(channels));
  for (int y = 0; y < 9; ++y)
    for (int x = 0; x < 13; ++x)
      for (int c = 0; c < channels; ++c)
        px[(static_cast<std::size_t>(y) * 13 + x) * channels + c] = static_cast<uint8_t>(
            (x >= 4 && x < 8 && y >= 3 && y < 6) ? 250 : x * 9 + y * 5 + c * 30);
  return px;
}

struct Sample {
  std::string name, bytes;
};

std::vector<Sample> samples() {
  std::vector<Sample> out;
  for (int ch : {1, 3}) {
    const auto px = pattern(ch);
    const std::string tag = ch == 1 ? " grey" : " rgb";
    std::string png, jpg, bmp;
    REQUIRE(stbi_write_png_to_func(sink, &png, 13, 9, ch, px.data(), 13 * ch));
    REQUIRE(stbi_write_jpg_to_func(sink, &jpg, 13, 9, ch, px.data(), 90));
    REQUIRE(stbi_write_bmp_to_func(sink, &bmp, 13, 9, ch, px.data()));
    out.push_back({"png" + tag, png});
    out.push_back({"jpeg" + tag, jpg});
    out.push_back({"bmp" + tag, bmp});
  }
  return out;
}

// Decodes; true for a valid image, false for an IoError; anything else fails.
bool decodes(const std::string& bytes, const std::string& what) {
  try {
    const image::Grey g = image::decode_grey(bytes, "x.png");
    INFO(what);
    REQUIRE(g.width >= 1);
    REQUIRE(g.height >= 1);
    REQUIRE(g.width <= image::kMaxSide);
    REQUIRE(int64_t{g.width} * g.height <= image::kMaxPixels);
    REQUIRE(g.px.size() == static_cast<std::size_t>(g.width) * g.height);
    for (float v : g.px) REQUIRE((v >= 0.0f && v <= 1.0f));
    return true;
  } catch (const IoError& e) {
    const std::string msg = e.what();
    INFO(what << ": " << msg);
    REQUIRE(msg.rfind("x.png: ", 0) == 0);
    // Only printable ASCII reaches the message.
    for (char c : msg) REQUIRE((c >= 0x20 && c < 0x7f));
    return false;
  }
}

}  // namespace

TEST_CASE("escape_bytes keeps printable ASCII and writes the rest as \\xNN", "[image][text]") {
  CHECK(escape_bytes("IHDR") == "IHDR");
  CHECK(escape_bytes(std::string("a\x01\n\x7f\xff\\", 6)) == "a\\x01\\x0a\\x7f\\xff\\\\");
  CHECK(escape_bytes(std::string(100, 'z'), 8) == "zzzzzzzz...");
}

TEST_CASE("parse_integer accepts plain decimals in range only", "[text]") {
  CHECK(parse_integer("42", 1, 100) == 42);
  CHECK(parse_integer("-5", -10, 10) == -5);
  CHECK(parse_unsigned("18446744073709551615") == UINT64_MAX);
  for (const char* bad : {"", "-1", "1e23", "18446744073709551616", "12abc", " 1", "+1", "0x10"})
    CHECK_FALSE(parse_unsigned(bad).has_value());
  CHECK_FALSE(parse_integer("101", 1, 100).has_value());
  CHECK_FALSE(parse_integer("0", 1, 100).has_value());
  CHECK_FALSE(parse_integer("-1", 0, 100).has_value());
  CHECK(parse_integer("-9223372036854775808", INT64_MIN, 0) == INT64_MIN);
  CHECK_FALSE(parse_integer("-9223372036854775809", INT64_MIN, 0).has_value());
}

TEST_CASE("PNG, JPEG and BMP decode to the grey image that was written", "[image]") {
  const auto grey = pattern(1);
  for (const auto& s : samples()) {
    INFO(s.name);
    const image::Grey g = image::decode_grey(s.bytes, s.name);
    REQUIRE(g.width == 13);
    REQUIRE(g.height == 9);
    if (s.name == "png grey" || s.name == "bmp grey")
      for (std::size_t i = 0; i < g.px.size(); ++i)
        REQUIRE(std::lround(g.px[i] * 255.0f) == grey[i]);
    // The bright square stays bright in every format (JPEG is lossy).
    CHECK(g.at(5, 4) > 0.85f);
  }
}

TEST_CASE("every truncated image is an error, never an image with black pixels", "[image]") {
  for (const auto& s : samples())
    for (std::size_t n = 0; n < s.bytes.size(); ++n)
      if (decodes(s.bytes.substr(0, n), s.name + " cut to " + std::to_string(n)))
        FAIL(s.name << " cut to " << n << " of " << s.bytes.size() << " bytes decoded");
}

TEST_CASE("bit-flipped and corrupted images give an error or a valid image, never a crash",
          "[image]") {
  int errors = 0, images = 0;
  for (const auto& s : samples()) {
    for (std::size_t i = 0; i < s.bytes.size(); ++i)
      for (int bit = 0; bit < 8; ++bit) {
        std::string b = s.bytes;
        b[i] = static_cast<char>(b[i] ^ (1 << bit));
        (decodes(b, s.name + " byte " + std::to_string(i) + " bit " + std::to_string(bit))
             ? images
             : errors)++;
      }
    Generator gen(7);
    for (int round = 0; round < 300; ++round) {
      std::string b = s.bytes;
      const auto where = gen.uniform(8, 0.0f, static_cast<float>(b.size()));
      const auto what = gen.uniform(8, 0.0f, 256.0f);
      for (int k = 0; k < 8; ++k)
        b[std::min(b.size() - 1, static_cast<std::size_t>(where[k]))] =
            static_cast<char>(static_cast<int>(what[k]));
      (decodes(b, s.name + " round " + std::to_string(round)) ? images : errors)++;
    }
  }
  // Both outcomes occur: flips in JPEG/BMP pixel data decode, PNG's CRCs and
  // broken headers are refused.
  CHECK(errors > 0);
  CHECK(images > 0);
}

TEST_CASE("formats stb_image could decode but we do not accept are refused by their magic",
          "[image]") {
  // A Softimage PIC header (the truncated-PIC crash), a GIF, a TGA-like blob,
  // a PNM, text.
  for (const std::string& b : {std::string("\x53\x80\xf6\x34PICT\0\0\0\0", 12),
                               std::string("GIF89a\x01\0\x01\0\0\0\0", 13),
                               std::string("\0\0\x02\0\0\0\0\0\0\0\0\0\x01\0\x01\0\x08\0", 18),
                               std::string("P5 1 1 255\n\0", 12), std::string("hello\n")}) {
    try {
      image::decode_grey(b, "x.png");
      FAIL("decoded");
    } catch (const IoError& e) {
      const std::string msg = e.what();
      INFO(msg);
      CHECK(msg.find("not a PNG, JPEG or BMP image") != std::string::npos);
      for (char c : msg) CHECK((c >= 0x20 && c < 0x7f));
    }
  }
  CHECK_THROWS_AS(image::decode_grey("", "empty.png"), IoError);
}

TEST_CASE("a PNG with a garbled chunk type is reported with the bytes escaped", "[image]") {
  std::string png = samples()[0].bytes;
  // The chunk after IHDR (8 + 25 bytes in): its type becomes control bytes.
  png[33 + 4] = '\x1b';
  png[33 + 5] = '\x07';
  try {
    image::decode_grey(png, "garbled.png");
    FAIL("decoded");
  } catch (const IoError& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK(msg.find("\\x1b\\x07") != std::string::npos);
    for (char c : msg) CHECK((c >= 0x20 && c < 0x7f));
  }
}

TEST_CASE("absurd declared sizes are refused before decoding", "[image]") {
  std::string bmp = samples()[2].bytes;  // bmp grey
  // Width 100000 in the BMP header.
  const uint32_t w = 100000;
  for (int i = 0; i < 4; ++i) bmp[18 + i] = static_cast<char>(w >> (8 * i));
  try {
    image::decode_grey(bmp, "huge.bmp");
    FAIL("decoded");
  } catch (const IoError& e) {
    CHECK(std::string(e.what()).find("16384") != std::string::npos);
  }
}

TEST_CASE("letterbox keeps the aspect ratio, centres and averages when shrinking", "[image]") {
  // 28x28 comes back unchanged.
  image::Grey sq;
  sq.width = sq.height = 28;
  for (int i = 0; i < 28 * 28; ++i) sq.px.push_back(static_cast<float>(i % 17) / 16.0f);
  CHECK(image::letterbox(sq, 28).px == sq.px);

  // A 56x28 white image: 28x14 white band in the middle rows 7..20, black above and below.
  image::Grey wide;
  wide.width = 56;
  wide.height = 28;
  wide.px.assign(56 * 28, 1.0f);
  const image::Grey lb = image::letterbox(wide, 28);
  REQUIRE(lb.width == 28);
  REQUIRE(lb.height == 28);
  for (int y = 0; y < 28; ++y)
    for (int x = 0; x < 28; ++x) {
      INFO(x << "," << y);
      CHECK(lb.at(x, y) == Approx(y >= 7 && y < 21 ? 1.0f : 0.0f).margin(1e-5));
    }

  // A fine 1-pixel checkerboard shrunk 4x averages to grey, not to an alias.
  image::Grey checker;
  checker.width = checker.height = 112;
  for (int y = 0; y < 112; ++y)
    for (int x = 0; x < 112; ++x) checker.px.push_back(static_cast<float>((x + y) % 2));
  for (float v : image::letterbox(checker, 28).px) REQUIRE(v == Approx(0.5f).margin(1e-5));

  // A tall image is centred horizontally.
  image::Grey tall;
  tall.width = 10;
  tall.height = 20;
  tall.px.assign(200, 1.0f);
  const image::Grey t = image::letterbox(tall, 28);
  CHECK(t.at(6, 14) == Approx(0.0f).margin(1e-5));
  CHECK(t.at(7, 14) == Approx(1.0f).margin(1e-5));
  CHECK(t.at(20, 14) == Approx(1.0f).margin(1e-5));
  CHECK(t.at(21, 14) == Approx(0.0f).margin(1e-5));
}

TEST_CASE("border_mean tells a light background; write_png round-trips", "[image]") {
  image::Grey g;
  g.width = 4;
  g.height = 3;
  g.px = {1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1};
  CHECK(image::border_mean(g) == Approx(1.0));
  image::invert(g);
  CHECK(image::border_mean(g) == Approx(0.0));
  TempDir tmp("image");
  image::write_png(g, tmp.file("g.png"));
  const image::Grey back = image::read_grey(tmp.file("g.png"));
  CHECK(back.width == 4);
  CHECK(back.px == g.px);
}
