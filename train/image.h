// Image files for `predict`: decoding that cannot crash, and the
// preprocessing that turns a photo into what the model was trained on.
//
// Decoding accepts PNG, JPEG and BMP only (stb_image is compiled with just
// those decoders, see stb_impl.cpp). Before stb_image sees a byte, the file
// is checked here:
//  - its magic bytes say PNG, JPEG or BMP;
//  - it is complete: a PNG's chunks fit the file, carry correct CRCs and end
//    with IEND; a JPEG has an end-of-image marker after its last scan; a BMP
//    holds all the pixel rows its header declares. A truncated file is an
//    error, never an image with black where the missing pixels were;
//  - its declared size is at most kMaxSide pixels a side and kMaxPixels in
//    all, and the file at most kMaxFileBytes, checked before allocating.
// Every failure is an IoError naming the file; file content appears in the
// message only through escape_bytes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace scratchnet::image {

inline constexpr int kMaxSide = 16384;
inline constexpr int64_t kMaxPixels = int64_t{1} << 26;  // 64 megapixels
inline constexpr std::size_t kMaxFileBytes = std::size_t{256} << 20;

// Grey pixels in [0, 1], row-major.
struct Grey {
  int width = 0, height = 0;
  std::vector<float> px;
  float at(int x, int y) const {
    return px[static_cast<std::size_t>(y) * static_cast<std::size_t>(width) +
              static_cast<std::size_t>(x)];
  }
};

// Decodes a whole file's bytes (name: for messages) to grey.
Grey decode_grey(const std::string& bytes, const std::string& name);
// Reads `path` (a regular file of at most kMaxFileBytes) and decodes it.
Grey read_grey(const std::string& path);

// 1 - x for every pixel.
void invert(Grey& img);

// The image scaled to fit a size x size square with its aspect ratio kept,
// centred, on black (0, the background of Fashion-MNIST). Shrinking averages
// the source pixels each output pixel covers (no aliasing); enlarging is
// bilinear (align_corners=False, like the training data's resize). An image
// of exactly size x size comes back unchanged.
Grey letterbox(const Grey& img, int size);

// The mean of the outermost ring of pixels: a light border (> 0.5) means a
// dark item on a light background, the opposite of Fashion-MNIST.
double border_mean(const Grey& img);

// Writes `img` as an 8-bit grey PNG, atomically; IoError on failure.
void write_png(const Grey& img, const std::string& path);

}  // namespace scratchnet::image
