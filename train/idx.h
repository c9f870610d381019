// Reading the IDX files that Fashion-MNIST (and MNIST) ship in: a big-endian
// header (magic, counts, dimensions) followed by raw uint8 values, either as
// is or gzip-compressed (both read through zlib, which passes non-gzip bytes
// through). Everything in the header is validated before it sizes anything:
// a bad file gives an IoError naming the file and the problem.
//   images: magic 2051, count, rows, cols, then count*rows*cols pixels
//   labels: magic 2049, count, then count bytes, each a class in 0..9
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace scratchnet::data {

// Fashion-MNIST's ten classes, indexed by label.
extern const std::array<const char*, 10> kClassNames;

struct IdxImages {
  int count = 0, rows = 0, cols = 0;
  std::vector<uint8_t> pixels;  // (count, rows, cols), row-major
};

// `path` may be raw or gzip-compressed. Rows and columns must be 1..4096.
IdxImages read_idx_images(const std::string& path);
// Every label must be a class index 0..9.
std::vector<uint8_t> read_idx_labels(const std::string& path);

}  // namespace scratchnet::data
