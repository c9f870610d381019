#include "train/image.h"

#include <stb_image.h>
#include <stb_image_write.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>

#include "core/error.h"
#include "core/text.h"
#include "train/atomic_file.h"

namespace scratchnet::image {

namespace {

[[noreturn]] void bad(const std::string& name, const std::string& problem) {
  throw IoError(name + ": " + problem);
}

uint32_t be32(const std::string& b, std::size_t at) {
  return static_cast<uint32_t>(static_cast<unsigned char>(b[at])) << 24 |
         static_cast<uint32_t>(static_cast<unsigned char>(b[at + 1])) << 16 |
         static_cast<uint32_t>(static_cast<unsigned char>(b[at + 2])) << 8 |
         static_cast<uint32_t>(static_cast<unsigned char>(b[at + 3]));
}
uint32_t le32(const std::string& b, std::size_t at) {
  return static_cast<uint32_t>(static_cast<unsigned char>(b[at])) |
         static_cast<uint32_t>(static_cast<unsigned char>(b[at + 1])) << 8 |
         static_cast<uint32_t>(static_cast<unsigned char>(b[at + 2])) << 16 |
         static_cast<uint32_t>(static_cast<unsigned char>(b[at + 3])) << 24;
}
uint32_t le16(const std::string& b, std::size_t at) {
  return static_cast<uint32_t>(static_cast<unsigned char>(b[at])) |
         static_cast<uint32_t>(static_cast<unsigned char>(b[at + 1])) << 8;
}

enum class Format { Png, Jpeg, Bmp };

const char kPngMagic[] = "\x89PNG\r\n\x1a\n";

Format sniff(const std::string& b, const std::string& name) {
  if (b.size() >= 8 && b.compare(0, 8, kPngMagic, 8) == 0) return Format::Png;
  if (b.size() >= 3 && b.compare(0, 3, "\xff\xd8\xff", 3) == 0) return Format::Jpeg;
  if (b.size() >= 2 && b.compare(0, 2, "BM", 2) == 0) return Format::Bmp;
  bad(name, b.empty() ? "the file is empty; PNG, JPEG and BMP images are supported"
                      : "not a PNG, JPEG or BMP image (it starts with \"" +
                            escape_bytes(b.substr(0, 8)) + "\")");
}

// Chunks that fit the file, with letters for types and correct CRCs, from
// IHDR to IEND.
void check_png(const std::string& b, const std::string& name) {
  std::size_t at = 8;
  bool first = true;
  for (;;) {
    if (b.size() - at < 12) bad(name, "truncated PNG (the file ends before its IEND chunk)");
    const uint32_t len = be32(b, at);
    const std::string type = b.substr(at + 4, 4);
    for (char ch : type)
      if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z')))
        bad(name, "corrupt PNG: a chunk type \"" + escape_bytes(type) + "\" at byte " +
                      std::to_string(at + 4) + " is not four letters");
    if (len > 0x7fffffffu || b.size() - at - 12 < len)
      bad(name, "truncated PNG (chunk " + type + " at byte " + std::to_string(at) + " declares " +
                    std::to_string(len) + " bytes, more than the file holds)");
    if (first && type != "IHDR") bad(name, "corrupt PNG: the first chunk is not IHDR");
    first = false;
    const auto* p = reinterpret_cast<const Bytef*>(b.data() + at + 4);
    const uint32_t crc = static_cast<uint32_t>(crc32(crc32(0L, Z_NULL, 0), p, len + 4));
    if (crc != be32(b, at + 8 + len))
      bad(name,
          "corrupt PNG: chunk " + type + " at byte " + std::to_string(at) + " fails its CRC check");
    at += 12 + len;
    if (type == "IEND") return;
  }
}

// Entropy-coded data cannot hold FF DA or FF D9 (a data byte FF is followed by
// 00), so a complete file has an end-of-image marker after its last
// start-of-scan marker.
void check_jpeg(const std::string& b, const std::string& name) {
  const std::size_t sos = b.rfind("\xff\xda", std::string::npos, 2);
  if (sos == std::string::npos)
    bad(name, "truncated JPEG (no image data: no start-of-scan marker)");
  if (b.find("\xff\xd9", sos + 2, 2) == std::string::npos)
    bad(name, "truncated JPEG (no end-of-image marker after the image data)");
}

// The pixel rows the header declares must be in the file (uncompressed
// BMPs; stb_image refuses the RLE ones itself).
void check_bmp(const std::string& b, const std::string& name) {
  if (b.size() < 26) bad(name, "truncated BMP (the header is incomplete)");
  const uint64_t offset = le32(b, 10), header = le32(b, 14);
  int64_t w = 0, h = 0;
  uint32_t bpp = 0, compression = 0;
  if (header == 12) {
    w = le16(b, 18);
    h = le16(b, 20);
    bpp = le16(b, 24);
  } else {
    if (b.size() < 34) bad(name, "truncated BMP (the header is incomplete)");
    w = static_cast<int32_t>(le32(b, 18));
    h = static_cast<int32_t>(le32(b, 22));
    bpp = le16(b, 28);
    compression = le32(b, 30);
  }
  if (w <= 0 || h == 0 || w > kMaxSide || std::llabs(h) > kMaxSide)
    bad(name, "BMP declares " + std::to_string(w) + "x" + std::to_string(h) +
                  " pixels; images of 1.." + std::to_string(kMaxSide) +
                  " pixels a side are supported");
  if (compression != 0 && compression != 3) return;
  const uint64_t stride = (static_cast<uint64_t>(w) * bpp + 31) / 32 * 4;
  const uint64_t need = offset + stride * static_cast<uint64_t>(std::llabs(h));
  if (need > b.size())
    bad(name, "truncated BMP (its pixel rows need " + std::to_string(need) +
                  " bytes, the file has " + std::to_string(b.size()) + ")");
}

}  // namespace

Grey decode_grey(const std::string& bytes, const std::string& name) {
  if (bytes.size() > kMaxFileBytes)
    bad(name, "the file is over " + std::to_string(kMaxFileBytes >> 20) + " MiB, too large");
  switch (sniff(bytes, name)) {
    case Format::Png:
      check_png(bytes, name);
      break;
    case Format::Jpeg:
      check_jpeg(bytes, name);
      break;
    case Format::Bmp:
      check_bmp(bytes, name);
      break;
  }
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int len = static_cast<int>(bytes.size());
  int w = 0, h = 0, channels = 0;
  if (!stbi_info_from_memory(data, len, &w, &h, &channels))
    bad(name, "not a readable image (" + escape_bytes(stbi_failure_reason()) + ")");
  if (w < 1 || h < 1 || w > kMaxSide || h > kMaxSide || int64_t{w} * int64_t{h} > kMaxPixels)
    bad(name, "the image declares " + std::to_string(w) + "x" + std::to_string(h) +
                  " pixels; at most " + std::to_string(kMaxSide) + " a side and " +
                  std::to_string(kMaxPixels >> 20) + " megapixels are supported");
  std::unique_ptr<stbi_uc, void (*)(void*)> px(
      stbi_load_from_memory(data, len, &w, &h, &channels, 1), stbi_image_free);
  if (!px) bad(name, "not a readable image (" + escape_bytes(stbi_failure_reason()) + ")");
  Grey img;
  img.width = w;
  img.height = h;
  img.px.resize(static_cast<std::size_t>(w) * static_cast<std::size_t>(h));
  for (std::size_t i = 0; i < img.px.size(); ++i)
    img.px[i] = static_cast<float>(px.get()[i]) / 255.0f;
  return img;
}

Grey read_grey(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) bad(path, "does not exist or is not a file");
  const auto size = fs::file_size(path, ec);
  if (ec) bad(path, "cannot read its size: " + ec.message());
  if (size > kMaxFileBytes)
    bad(path, "the file is over " + std::to_string(kMaxFileBytes >> 20) + " MiB, too large");
  std::ifstream in(path, std::ios::binary);
  std::string bytes(static_cast<std::size_t>(size), '\0');
  if (!in || !in.read(bytes.data(), static_cast<std::streamsize>(size)))
    bad(path, "cannot read the file");
  return decode_grey(bytes, path);
}

void invert(Grey& img) {
  for (float& v : img.px) v = 1.0f - v;
}

namespace {

// Weights of one output pixel along one axis: source index -> weight.
struct Taps {
  int first = 0;
  std::vector<float> w;
};

// n_src -> n_dst along one axis: box-filter averaging when shrinking,
// bilinear (align_corners=False) when enlarging.
std::vector<Taps> axis_taps(int n_src, int n_dst) {
  std::vector<Taps> taps(static_cast<std::size_t>(n_dst));
  const double scale = static_cast<double>(n_src) / n_dst;
  for (int o = 0; o < n_dst; ++o) {
    Taps& t = taps[static_cast<std::size_t>(o)];
    if (n_src > n_dst) {
      const double lo = o * scale, hi = (o + 1) * scale;
      t.first = static_cast<int>(std::floor(lo));
      const int last = std::min(n_src - 1, static_cast<int>(std::ceil(hi)) - 1);
      for (int s = t.first; s <= last; ++s) {
        const double cover = std::min<double>(hi, s + 1) - std::max<double>(lo, s);
        t.w.push_back(static_cast<float>(cover / scale));
      }
    } else {
      const double src = std::max(0.0, (o + 0.5) * scale - 0.5);
      const int i0 = std::min(static_cast<int>(src), n_src - 1);
      const int i1 = std::min(i0 + 1, n_src - 1);
      const auto f = static_cast<float>(src - i0);
      t.first = i0;
      // At the last pixel both neighbours are the same: all weight on it.
      t.w = i1 != i0 ? std::vector<float>{1.0f - f, f} : std::vector<float>{1.0f};
    }
  }
  return taps;
}

Grey resample(const Grey& in, int w, int h) {
  if (w == in.width && h == in.height) return in;
  const auto tx = axis_taps(in.width, w), ty = axis_taps(in.height, h);
  Grey rows;  // horizontally resampled: w x in.height
  rows.width = w;
  rows.height = in.height;
  rows.px.assign(static_cast<std::size_t>(w) * static_cast<std::size_t>(in.height), 0.0f);
  for (int y = 0; y < in.height; ++y)
    for (int x = 0; x < w; ++x) {
      const Taps& t = tx[static_cast<std::size_t>(x)];
      float s = 0;
      for (std::size_t k = 0; k < t.w.size(); ++k) s += t.w[k] * in.at(t.first + int(k), y);
      rows.px[static_cast<std::size_t>(y) * static_cast<std::size_t>(w) + x] = s;
    }
  Grey out;
  out.width = w;
  out.height = h;
  out.px.assign(static_cast<std::size_t>(w) * static_cast<std::size_t>(h), 0.0f);
  for (int y = 0; y < h; ++y) {
    const Taps& t = ty[static_cast<std::size_t>(y)];
    for (int x = 0; x < w; ++x) {
      float s = 0;
      for (std::size_t k = 0; k < t.w.size(); ++k) s += t.w[k] * rows.at(x, t.first + int(k));
      out.px[static_cast<std::size_t>(y) * static_cast<std::size_t>(w) + x] =
          std::clamp(s, 0.0f, 1.0f);
    }
  }
  return out;
}

}  // namespace

Grey letterbox(const Grey& img, int size) {
  if (size < 1 || img.width < 1 || img.height < 1)
    throw ValueError("letterbox: needs a non-empty image and a size >= 1");
  if (img.width == size && img.height == size) return img;
  const double scale = static_cast<double>(size) / std::max(img.width, img.height);
  const int w = std::clamp(static_cast<int>(std::lround(img.width * scale)), 1, size);
  const int h = std::clamp(static_cast<int>(std::lround(img.height * scale)), 1, size);
  const Grey fitted = resample(img, w, h);
  Grey out;
  out.width = out.height = size;
  out.px.assign(static_cast<std::size_t>(size) * static_cast<std::size_t>(size), 0.0f);
  const int x0 = (size - w) / 2, y0 = (size - h) / 2;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      out.px[static_cast<std::size_t>(y0 + y) * static_cast<std::size_t>(size) + (x0 + x)] =
          fitted.at(x, y);
  return out;
}

double border_mean(const Grey& img) {
  if (img.width < 1 || img.height < 1) return 0.0;
  double sum = 0;
  int64_t n = 0;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x)
      if (y == 0 || x == 0 || y == img.height - 1 || x == img.width - 1) {
        sum += img.at(x, y);
        ++n;
      }
  return sum / static_cast<double>(n);
}

void write_png(const Grey& img, const std::string& path) {
  std::vector<unsigned char> px(img.px.size());
  for (std::size_t i = 0; i < px.size(); ++i)
    px[i] = static_cast<unsigned char>(std::lround(std::clamp(img.px[i], 0.0f, 1.0f) * 255.0f));
  std::string png;
  auto sink = [](void* ctx, void* data, int n) {
    static_cast<std::string*>(ctx)->append(static_cast<const char*>(data),
                                           static_cast<std::size_t>(n));
  };
  if (!stbi_write_png_to_func(sink, &png, img.width, img.height, 1, px.data(), img.width))
    throw IoError("cannot encode " + path + " as PNG");
  write_file_atomically(path, png);
}

}  // namespace scratchnet::image
