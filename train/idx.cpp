#include "train/idx.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>

#include "core/error.h"

namespace scratchnet::data {

const std::array<const char*, 10> kClassNames = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                                 "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                                 "Bag",         "Ankle boot"};

namespace {

constexpr uint32_t kImagesMagic = 2051;  // 0x00000803: unsigned byte, 3 dimensions
constexpr uint32_t kLabelsMagic = 2049;  // 0x00000801: unsigned byte, 1 dimension
constexpr uint32_t kMaxSide = 4096;
// The kernels index pixels with int: keep every offset below 2^31.
constexpr uint64_t kMaxValues = static_cast<uint64_t>(std::numeric_limits<int32_t>::max());

std::string hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// A gzip-or-raw file read through zlib. zlib reports corruption and
// truncation lazily (on a later read, or only at gzclose), so every read and
// the close are checked, and the reader insists on reaching a clean end.
class IdxFile {
 public:
  explicit IdxFile(const std::string& path) : path_(path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec))
      fail("no such file" + std::string(ec ? " (" + ec.message() + ")" : ""));
    if (std::filesystem::is_directory(path, ec)) fail("is a directory, not an IDX file");
    errno = 0;
    f_ = gzopen(path.c_str(), "rb");
    if (!f_) fail(std::string("cannot open: ") + (errno ? std::strerror(errno) : "out of memory"));
    gzbuffer(f_, 1 << 17);
  }
  ~IdxFile() {
    if (f_) gzclose(f_);
  }
  IdxFile(const IdxFile&) = delete;
  IdxFile& operator=(const IdxFile&) = delete;

  [[noreturn]] void fail(const std::string& problem) const {
    throw IoError("IDX file " + path_ + ": " + problem);
  }

  // Reads exactly n bytes; `what` names them for the truncation message.
  // `before` and `total` place this read inside a larger one for the message.
  void read_exact(void* dst, uint64_t n, const std::string& what, uint64_t before = 0,
                  uint64_t total = 0) {
    auto* out = static_cast<unsigned char*>(dst);
    uint64_t done = 0;
    while (done < n) {
      const unsigned chunk = static_cast<unsigned>(std::min<uint64_t>(n - done, 1u << 24));
      const int got = gzread(f_, out + done, chunk);
      if (got <= 0) {
        check_stream("while reading " + what);
        fail("truncated: the file ends after " + std::to_string(before + done) + " of the " +
             std::to_string(total ? total : n) + " bytes of " + what);
      }
      done += static_cast<uint64_t>(got);
    }
  }

  // After the last expected byte: the file must end here, and the gzip
  // stream (when there is one) must be complete and its checksum right.
  void finish(uint64_t expected_bytes) {
    unsigned char extra[64];
    const int got = gzread(f_, extra, sizeof extra);
    if (got < 0) check_stream("after the data");
    if (got > 0)
      fail("trailing garbage: more bytes follow the " + std::to_string(expected_bytes) +
           " that the header describes (wrong header counts, or two files concatenated?)");
    check_stream("at the end of the data");
    const int rc = gzclose(f_);
    f_ = nullptr;
    if (rc == Z_BUF_ERROR) fail("truncated gzip stream (the download or copy was cut short)");
    if (rc != Z_OK) fail("error closing the gzip stream (zlib code " + std::to_string(rc) + ")");
  }

  // A file named .gz that zlib passes through as raw bytes is not gzip.
  void check_gzip_name() {
    const bool named_gz = path_.size() >= 3 && path_.compare(path_.size() - 3, 3, ".gz") == 0;
    if (named_gz && gzdirect(f_)) fail("the name ends in .gz but the file is not gzip-compressed");
  }

 private:
  void check_stream(const std::string& when) {
    int errnum = Z_OK;
    const char* msg = gzerror(f_, &errnum);
    if (errnum == Z_OK) return;
    std::string detail = msg ? msg : "unknown zlib error";
    // gzerror prefixes the path, which our message already names.
    if (detail.rfind(path_ + ": ", 0) == 0) detail.erase(0, path_.size() + 2);
    if (errnum == Z_BUF_ERROR)
      fail("truncated gzip stream " + when + " (" + detail + "); re-download the file");
    if (errnum == Z_ERRNO) fail("read error " + when + ": " + std::strerror(errno));
    fail("corrupt gzip data " + when + " (" + detail + "); re-download the file");
  }

  std::string path_;
  gzFile f_ = nullptr;
};

uint32_t be32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

void check_magic(IdxFile& f, uint32_t got, uint32_t want, const char* kind) {
  if (got == want) return;
  std::string hint;
  if (got == kImagesMagic)
    hint = " (this is an images file)";
  else if (got == kLabelsMagic)
    hint = " (this is a labels file)";
  else
    hint = " (not an IDX file, or not big-endian)";
  f.fail("bad magic number " + hex(got) + ", expected " + std::to_string(want) + " = " + hex(want) +
         " for an IDX " + kind + " file" + hint);
}

int checked_count(IdxFile& f, uint32_t count, const char* what) {
  if (count == 0) f.fail(std::string("the header says the file holds 0 ") + what);
  if (count > kMaxValues)
    f.fail("the header's count " + std::to_string(count) + " of " + what + " is too large");
  return static_cast<int>(count);
}

// Reads `n` values, growing the buffer as the data arrives: a header that
// claims gigabytes in a short file fails at the truncation, not at malloc.
std::vector<uint8_t> read_values(IdxFile& f, uint64_t n, const std::string& what) {
  std::vector<uint8_t> out;
  constexpr uint64_t kStep = uint64_t{64} << 20;
  out.reserve(static_cast<std::size_t>(std::min(n, kStep)));
  uint64_t done = 0;
  while (done < n) {
    const uint64_t step = std::min(n - done, kStep);
    out.resize(static_cast<std::size_t>(done + step));
    f.read_exact(out.data() + done, step, what, done, n);
    done += step;
  }
  return out;
}

}  // namespace

IdxImages read_idx_images(const std::string& path) {
  IdxFile f(path);
  unsigned char header[16];
  f.read_exact(header, sizeof header, "the 16-byte images header");
  f.check_gzip_name();
  check_magic(f, be32(header), kImagesMagic, "images");
  IdxImages out;
  out.count = checked_count(f, be32(header + 4), "images");
  const uint32_t rows = be32(header + 8), cols = be32(header + 12);
  if (rows < 1 || rows > kMaxSide || cols < 1 || cols > kMaxSide)
    f.fail("image size " + std::to_string(rows) + "x" + std::to_string(cols) +
           " is not sane (rows and columns must be 1.." + std::to_string(kMaxSide) +
           "; Fashion-MNIST is 28x28)");
  out.rows = static_cast<int>(rows);
  out.cols = static_cast<int>(cols);
  // count < 2^31 and rows, cols <= 2^12: the product fits easily in 64 bits.
  const uint64_t total = uint64_t{rows} * cols * static_cast<uint64_t>(out.count);
  if (total > kMaxValues)
    f.fail(std::to_string(out.count) + " images of " + std::to_string(rows) + "x" +
           std::to_string(cols) + " are " + std::to_string(total) +
           " pixels, more than the engine indexes (2^31 - 1)");
  out.pixels = read_values(f, total,
                           "pixels (" + std::to_string(out.count) + " images of " +
                               std::to_string(rows) + "x" + std::to_string(cols) + ")");
  f.finish(sizeof header + total);
  return out;
}

std::vector<uint8_t> read_idx_labels(const std::string& path) {
  IdxFile f(path);
  unsigned char header[8];
  f.read_exact(header, sizeof header, "the 8-byte labels header");
  f.check_gzip_name();
  check_magic(f, be32(header), kLabelsMagic, "labels");
  const int count = checked_count(f, be32(header + 4), "labels");
  std::vector<uint8_t> labels =
      read_values(f, static_cast<uint64_t>(count), std::to_string(count) + " labels");
  f.finish(sizeof header + static_cast<uint64_t>(count));
  for (std::size_t i = 0; i < labels.size(); ++i)
    if (labels[i] > 9)
      f.fail("label " + std::to_string(labels[i]) + " at index " + std::to_string(i) +
             " is not a class (expected 0..9)");
  return labels;
}

}  // namespace scratchnet::data
