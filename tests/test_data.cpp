// The Fashion-MNIST pipeline: IDX/gzip reading and its validation, and the
// device-side Loader (order, shuffling, gather + scale + resize).
// Tolerance rule: |got - want| <= atol + rtol * |want|. Loader batches are
// compared with resize_bilinear of the /255 images: both are float sums of
// four terms of the same weights, differing only in where the /255 rounds,
// so atol = rtol = 1e-6 (a few float ulps of values in [0, 1]).
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/cuda.h"
#include "test_files.h"
#include "test_helpers.h"
#include "train/data.h"

using namespace scratchnet;
using namespace scratchnet::data;
namespace fs = std::filesystem;
using scratchnet::testing::require_io_error;
using scratchnet::testing::TempDir;

namespace {

void put_be32(std::vector<uint8_t>& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(v >> s));
}

std::vector<uint8_t> images_bytes(uint32_t count, uint32_t rows, uint32_t cols,
                                  const std::vector<uint8_t>& pixels, uint32_t magic = 2051) {
  std::vector<uint8_t> b;
  put_be32(b, magic);
  put_be32(b, count);
  put_be32(b, rows);
  put_be32(b, cols);
  b.insert(b.end(), pixels.begin(), pixels.end());
  return b;
}

std::vector<uint8_t> labels_bytes(const std::vector<uint8_t>& labels, uint32_t magic = 2049) {
  std::vector<uint8_t> b;
  put_be32(b, magic);
  put_be32(b, static_cast<uint32_t>(labels.size()));
  b.insert(b.end(), labels.begin(), labels.end());
  return b;
}

void write_raw(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(f.good());
}

void write_gz(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) ==
          static_cast<int>(bytes.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

std::vector<uint8_t> read_all(const std::string& path) {
  const std::string bytes = testing::slurp(path);
  return {bytes.begin(), bytes.end()};
}

// Random-looking pixels (so gzip has real work to do); pixel 0 of image i is i.
std::vector<uint8_t> test_pixels(int count, int rows, int cols) {
  std::vector<uint8_t> p(static_cast<std::size_t>(count) * rows * cols);
  uint32_t s = 12345;
  for (auto& v : p) v = static_cast<uint8_t>((s = s * 1103515245u + 12345u) >> 23);
  for (int i = 0; i < count; ++i)
    p[static_cast<std::size_t>(i) * rows * cols] = static_cast<uint8_t>(i);
  return p;
}

std::vector<uint8_t> test_labels(int count) {
  std::vector<uint8_t> l(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) l[i] = static_cast<uint8_t>((i * 7) % 10);
  return l;
}

// Writes a train split of `count` 28x28 images into dir (gz or raw).
void write_split(const TempDir& dir, int count, bool gz, const std::string& prefix = "train") {
  const auto img = images_bytes(count, 28, 28, test_pixels(count, 28, 28));
  const auto lab = labels_bytes(test_labels(count));
  if (gz) {
    write_gz(dir.file(prefix + "-images-idx3-ubyte.gz"), img);
    write_gz(dir.file(prefix + "-labels-idx1-ubyte.gz"), lab);
  } else {
    write_raw(dir.file(prefix + "-images-idx3-ubyte"), img);
    write_raw(dir.file(prefix + "-labels-idx1-ubyte"), lab);
  }
}

}  // namespace

TEST_CASE("class names follow Fashion-MNIST's label order", "[data]") {
  CHECK(std::string(kClassNames[0]) == "T-shirt/top");
  CHECK(std::string(kClassNames[7]) == "Sneaker");
  CHECK(std::string(kClassNames[9]) == "Ankle boot");
}

TEST_CASE("IDX images and labels read the same raw and gzip-compressed", "[data][idx]") {
  TempDir dir("data");
  const auto pixels = test_pixels(5, 3, 4);
  const auto labels = test_labels(5);
  for (bool gz : {false, true}) {
    const std::string ip = dir.file(gz ? "i.gz" : "i"), lp = dir.file(gz ? "l.gz" : "l");
    (gz ? write_gz : write_raw)(ip, images_bytes(5, 3, 4, pixels));
    (gz ? write_gz : write_raw)(lp, labels_bytes(labels));
    const IdxImages im = read_idx_images(ip);
    CHECK(im.count == 5);
    CHECK(im.rows == 3);
    CHECK(im.cols == 4);
    CHECK(im.pixels == pixels);
    CHECK(read_idx_labels(lp) == labels);
  }
}

TEST_CASE("broken IDX files give an IoError naming the file and the problem", "[data][idx]") {
  TempDir dir("data");
  const auto pixels = test_pixels(6, 28, 28);
  const auto good = images_bytes(6, 28, 28, pixels);
  const std::string p = dir.file("images-idx3-ubyte"), pgz = dir.file("images-idx3-ubyte.gz");

  SECTION("missing file") {
    require_io_error([&] { read_idx_images(dir.file("nope")); },
                     {dir.file("nope"), "no such file"});
  }
  SECTION("empty file") {
    write_raw(p, {});
    require_io_error([&] { read_idx_images(p); }, {p, "truncated"});
  }
  SECTION("truncated raw file") {
    write_raw(p, std::vector<uint8_t>(good.begin(), good.end() - 10));
    require_io_error([&] { read_idx_images(p); }, {p, "truncated"});
  }
  SECTION("truncated inside the header") {
    write_raw(p, std::vector<uint8_t>(good.begin(), good.begin() + 10));
    require_io_error([&] { read_idx_images(p); }, {p, "truncated"});
  }
  SECTION("trailing garbage") {
    auto bytes = good;
    bytes.push_back(7);
    write_raw(p, bytes);
    require_io_error([&] { read_idx_images(p); }, {p, "trailing garbage"});
  }
  SECTION("bad magic: a labels file where images are expected") {
    write_raw(p, images_bytes(6, 28, 28, pixels, 2049));
    require_io_error([&] { read_idx_images(p); }, {p, "magic"});
  }
  SECTION("bad magic: little-endian header") {
    write_raw(p, images_bytes(6, 28, 28, pixels, 0x03080000u));
    require_io_error([&] { read_idx_images(p); }, {p, "magic"});
  }
  SECTION("insane dimensions") {
    write_raw(p, images_bytes(6, 0, 28, {}));
    require_io_error([&] { read_idx_images(p); }, {p, "image size 0x28"});
    write_raw(p, images_bytes(6, 28, 5000, {}));
    require_io_error([&] { read_idx_images(p); }, {p, "image size 28x5000"});
  }
  SECTION("a header claiming more data than can exist fails before allocating it") {
    write_raw(p, images_bytes(0x7fffffffu, 28, 28, {}));
    require_io_error([&] { read_idx_images(p); }, {p, "more than the engine indexes"});
    write_raw(p, images_bytes(2000000, 28, 28, pixels));  // 1.5 GB claimed, 4.7 KB present
    require_io_error([&] { read_idx_images(p); }, {p, "truncated"});
  }
  SECTION("zero images") {
    write_raw(p, images_bytes(0, 28, 28, {}));
    require_io_error([&] { read_idx_images(p); }, {p, "0 images"});
  }
  SECTION("truncated gzip file") {
    write_gz(pgz, good);
    auto gz = read_all(pgz);
    write_raw(pgz, std::vector<uint8_t>(gz.begin(), gz.begin() + gz.size() / 2));
    require_io_error([&] { read_idx_images(pgz); }, {pgz, "truncated"});
  }
  SECTION("gzip file missing only its checksum trailer") {
    write_gz(pgz, good);
    auto gz = read_all(pgz);
    write_raw(pgz, std::vector<uint8_t>(gz.begin(), gz.end() - 8));
    require_io_error([&] { read_idx_images(pgz); }, {pgz, "truncated gzip"});
  }
  SECTION("corrupt gzip bytes") {
    write_gz(pgz, good);
    auto gz = read_all(pgz);
    for (std::size_t i = gz.size() / 3; i < gz.size() / 3 + 16; ++i) gz[i] ^= 0x5a;
    write_raw(pgz, gz);
    require_io_error([&] { read_idx_images(pgz); }, {pgz, "gzip"});
  }
  SECTION("corrupt gzip checksum") {
    write_gz(pgz, good);
    auto gz = read_all(pgz);
    gz[gz.size() - 6] ^= 0xff;  // inside the CRC-32 of the trailer
    write_raw(pgz, gz);
    require_io_error([&] { read_idx_images(pgz); }, {pgz, "corrupt gzip"});
  }
  SECTION("a .gz name on a raw file") {
    write_raw(pgz, good);
    require_io_error([&] { read_idx_images(pgz); }, {pgz, "not gzip"});
  }
  SECTION("a label outside 0..9") {
    auto labels = test_labels(6);
    labels[4] = 12;
    write_gz(pgz, labels_bytes(labels));
    require_io_error([&] { read_idx_labels(pgz); }, {pgz, "label 12 at index 4"});
  }
  SECTION("an images file given as labels") {
    write_raw(p, good);
    require_io_error([&] { read_idx_labels(p); }, {p, "magic"});
  }
}

TEST_CASE("load_split finds the files, checks them against each other, and limits",
          "[data][split]") {
  TempDir dir("data");
  SECTION("gzip files, all and limited") {
    write_split(dir, 7, true);
    const Split all = load_split(dir.path.string(), true, Device::cpu());
    CHECK(all.count == 7);
    CHECK(all.images.shape() == Shape{7, 28, 28});
    CHECK(all.images.dtype() == DType::U8);
    CHECK(all.labels.to_vector<uint8_t>() == test_labels(7));
    CHECK(all.images.to_vector<uint8_t>() == test_pixels(7, 28, 28));
    const Split some = load_split(dir.path.string(), true, Device::cpu(), 3);
    CHECK(some.count == 3);
    CHECK(some.images.shape() == Shape{3, 28, 28});
    const auto px = test_pixels(7, 28, 28);
    CHECK(some.images.to_vector<uint8_t>() ==
          std::vector<uint8_t>(px.begin(), px.begin() + 3 * 784));
    CHECK(load_split(dir.path.string(), true, Device::cpu(), 100).count == 7);
    CHECK_THROWS_AS(load_split(dir.path.string(), true, Device::cpu(), -1), ValueError);
  }
  SECTION("raw test split") {
    write_split(dir, 4, false, "t10k");
    CHECK(load_split(dir.path.string(), false, Device::cpu()).count == 4);
  }
  SECTION("missing files name the directory and where to get them") {
    write_split(dir, 4, false, "t10k");
    require_io_error([&] { load_split(dir.path.string(), true, Device::cpu()); },
                     {dir.path.string(), "dataset-fashion-mnist"});
    require_io_error([&] { load_split(dir.file("absent"), true, Device::cpu()); },
                     {dir.file("absent"), "does not exist"});
  }
  SECTION("images and labels counts differ") {
    write_split(dir, 5, true);
    write_gz(dir.file("train-labels-idx1-ubyte.gz"), labels_bytes(test_labels(4)));
    require_io_error([&] { load_split(dir.path.string(), true, Device::cpu()); },
                     {dir.file("train-labels-idx1-ubyte.gz"), "5 images but"});
  }
}

TEST_CASE("default_data_dir honours SCRATCHNET_DATA", "[data]") {
  const char* old = std::getenv("SCRATCHNET_DATA");
  const std::string saved = old ? old : "";
  ::setenv("SCRATCHNET_DATA", "/some/where", 1);
  CHECK(default_data_dir() == "/some/where");
  ::setenv("SCRATCHNET_DATA", "", 1);
  CHECK(default_data_dir() == "/usr/share/datasets/fashion-mnist");
  if (old)
    ::setenv("SCRATCHNET_DATA", saved.c_str(), 1);
  else
    ::unsetenv("SCRATCHNET_DATA");
}

namespace {

// Runs an epoch; returns each slot's example index (pixel 0 * 255 of a
// 28x28 batch) and checks labels and batch sizes on the way.
std::vector<int> epoch_indices(const Loader& loader, int count) {
  std::vector<int> seen;
  const auto labels = test_labels(count);
  for (int b = 0; b < loader.num_batches(); ++b) {
    const Batch batch = loader.batch(b);
    const int expect = std::min(loader.batch_size(), count - b * loader.batch_size());
    REQUIRE(batch.size == expect);
    REQUIRE(batch.x.shape() == Shape{expect, 1, 28, 28});
    REQUIRE(batch.y.shape() == Shape{expect});
    REQUIRE(batch.y.dtype() == DType::I32);
    const auto x = batch.x.to_vector();
    const auto y = batch.y.to_vector<int32_t>();
    for (int i = 0; i < expect; ++i) {
      const int idx = static_cast<int>(std::lround(x[static_cast<std::size_t>(i) * 784] * 255.0f));
      REQUIRE(idx < count);
      CHECK(y[i] == labels[idx]);
      seen.push_back(idx);
    }
  }
  return seen;
}

}  // namespace

TEST_CASE("Loader covers every example once per epoch, shuffled reproducibly", "[data][loader]") {
  TempDir dir("data");
  write_split(dir, 10, true);
  const Split split = load_split(dir.path.string(), true, Device::cpu());

  Loader plain(split, 4, 28, false);
  CHECK(plain.num_batches() == 3);  // 4 + 4 + a partial 2
  Generator unused(1);
  plain.start_epoch(unused);
  CHECK(unused.offset() == 0);  // no shuffle draws nothing
  CHECK(epoch_indices(plain, 10) == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});

  Loader shuffled(split, 4, 28, true);
  CHECK_THROWS_AS(shuffled.batch(0), Error);  // no epoch started
  Generator g1(42), g2(42);
  shuffled.start_epoch(g1);
  const auto e1 = epoch_indices(shuffled, 10);
  REQUIRE(e1.size() == 10);
  CHECK(std::set<int>(e1.begin(), e1.end()).size() == 10);
  shuffled.start_epoch(g1);
  const auto e2 = epoch_indices(shuffled, 10);
  CHECK(std::set<int>(e2.begin(), e2.end()).size() == 10);
  CHECK(e1 != e2);  // the next epoch draws a new order
  Loader again(split, 4, 28, true);
  again.start_epoch(g2);
  CHECK(epoch_indices(again, 10) == e1);  // same seed, same order

  CHECK_THROWS_AS(plain.batch(3), ValueError);
  CHECK_THROWS_AS(plain.batch(-1), ValueError);
  CHECK_THROWS_AS(Loader(split, 0, 28, false), ValueError);
  CHECK_THROWS_AS(Loader(split, 4, 0, false), ValueError);
  CHECK_THROWS_AS(Loader(Split{}, 4, 28, false), ValueError);
}

TEST_CASE("Loader parts split every batch into contiguous runs that make up the batch",
          "[data][loader][dist]") {
  TempDir dir("data");
  write_split(dir, 23, true);
  const Split split = load_split(dir.path.string(), true, Device::cpu());
  Loader loader(split, 7, 28, true);  // batches of 7, 7, 7 and 2
  Generator gen(3);
  loader.start_epoch(gen);
  REQUIRE(loader.num_batches() == 4);
  CHECK(loader.batch_examples(0) == 7);
  CHECK(loader.batch_examples(3) == 2);
  auto pixels = [](const Batch& b) {  // each example's index (pixel 0 * 255)
    std::vector<int> v;
    if (b.size == 0) return v;
    const auto x = b.x.to_vector();
    for (int i = 0; i < b.size; ++i)
      v.push_back(static_cast<int>(std::lround(x[static_cast<std::size_t>(i) * 784] * 255.0f)));
    return v;
  };
  for (int parts : {1, 2, 3, 5}) {
    for (int i = 0; i < loader.num_batches(); ++i) {
      const std::vector<int> whole = pixels(loader.batch(i));
      std::vector<int> joined, sizes;
      for (int part = 0; part < parts; ++part) {
        const Batch b = loader.batch(i, part, parts);
        sizes.push_back(b.size);
        const auto v = pixels(b);
        joined.insert(joined.end(), v.begin(), v.end());
        if (b.size > 0) {
          CHECK(b.y.shape() == Shape{b.size});
          CHECK(b.x.shape() == Shape{b.size, 1, 28, 28});
        } else {
          CHECK(!b.x.defined());
        }
      }
      INFO("batch " << i << " in " << parts << " parts");
      CHECK(joined == whole);  // the parts, in order, are exactly the batch
      // Sizes differ by at most one.
      const auto [lo, hi] = std::minmax_element(sizes.begin(), sizes.end());
      CHECK(*hi - *lo <= 1);
    }
  }
  // 2 examples in 5 parts: parts 2 and 4 hold one each, the others none.
  for (int part = 0; part < 5; ++part)
    CHECK(loader.batch(3, part, 5).size == (part == 2 || part == 4 ? 1 : 0));
  CHECK_THROWS_AS(loader.batch(0, 2, 2), ValueError);
  CHECK_THROWS_AS(loader.batch(0, -1, 2), ValueError);
  CHECK_THROWS_AS(loader.batch(0, 0, 0), ValueError);
}

TEST_CASE("Loader batches equal resize_bilinear of the /255 images", "[data][loader]") {
  TempDir dir("data");
  write_split(dir, 5, false);
  const Split split = load_split(dir.path.string(), true, Device::cpu());
  const auto px = test_pixels(5, 28, 28);
  std::vector<float> scaled(px.size());
  for (std::size_t i = 0; i < px.size(); ++i) scaled[i] = px[i] / 255.0f;
  for (int size : {28, 14, 32, 224}) {
    Loader loader(split, 3, size, false);
    for (int b = 0; b < loader.num_batches(); ++b) {
      const Batch batch = loader.batch(b);
      const std::size_t begin = static_cast<std::size_t>(b) * 3 * 784;
      const std::vector<float> imgs(
          scaled.begin() + begin,
          scaled.begin() + begin + static_cast<std::size_t>(batch.size) * 784);
      const Tensor want =
          resize_bilinear(Tensor::from_vector(imgs, {batch.size, 1, 28, 28}), size, size);
      REQUIRE(batch.x.shape() == want.shape());
      testing::require_close(batch.x.to_vector(), want.to_vector(), 1e-6, 1e-6,
                             "batch " + std::to_string(b) + " at " + std::to_string(size));
    }
  }
}

TEST_CASE("Loader on the GPU matches the CPU loader", "[data][loader][cuda]") {
  TempDir dir("data");
  write_split(dir, 37, true);
  const Split cpu = load_split(dir.path.string(), true, Device::cpu());
  const Split gpu = load_split(dir.path.string(), true, Device::cuda());
  REQUIRE(gpu.images.is_cuda());
  for (int size : {28, 32, 224}) {
    Loader lc(cpu, 8, size, true), lg(gpu, 8, size, true);
    Generator gc(3), gg(3);
    lc.start_epoch(gc);
    lg.start_epoch(gg);
    for (int b = 0; b < lc.num_batches(); ++b) {
      const Batch bc = lc.batch(b), bg = lg.batch(b);
      REQUIRE(bg.x.is_cuda());
      CHECK(bg.y.to_vector<int32_t>() == bc.y.to_vector<int32_t>());
      testing::require_close(bg.x.to_vector(), bc.x.to_vector(), 1e-6, 1e-6, "gpu batch");
    }
  }
}

TEST_CASE("the installed Fashion-MNIST label files hold 60000 and 10000 balanced labels",
          "[data][dataset]") {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  for (const auto& [stem, count] : {std::pair<std::string, int>{"train", 60000}, {"t10k", 10000}}) {
    const std::string path = dir + "/" + stem + "-labels-idx1-ubyte.gz";
    if (!fs::exists(path))
      FAIL(path << " is missing: run tools/setup.sh (it installs the Debian package "
                   "dataset-fashion-mnist)");
    const auto labels = read_idx_labels(path);
    CHECK(static_cast<int>(labels.size()) == count);
    std::vector<int> per_class(10, 0);
    for (uint8_t l : labels) per_class[l]++;
    for (int c : per_class) CHECK(c == count / 10);
  }
}
