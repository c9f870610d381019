#include "train/data.h"

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <vector>

#include "core/error.h"
#include "core/ops.h"

namespace scratchnet::data {

namespace fs = std::filesystem;

std::string default_data_dir() {
  const char* env = std::getenv("SCRATCHNET_DATA");
  if (env && *env) return env;
  return "/usr/share/datasets/fashion-mnist";
}

namespace {

// "<dir>/<stem>" or "<dir>/<stem>.gz", whichever exists (raw first).
std::string find_file(const std::string& dir, const std::string& stem) {
  std::error_code ec;
  for (const char* suffix : {"", ".gz"}) {
    const fs::path p = fs::path(dir) / (stem + suffix);
    if (fs::is_regular_file(p, ec)) return p.string();
  }
  std::string where = "in " + dir;
  if (!fs::is_directory(dir, ec)) where += " (that directory does not exist)";
  throw IoError("Fashion-MNIST: cannot find " + stem + " or " + stem + ".gz " + where +
                "; install the Debian package dataset-fashion-mnist (tools/setup.sh does), or "
                "point --data / SCRATCHNET_DATA at a directory holding the IDX files");
}

}  // namespace

Split load_split(const std::string& dir, bool train, Device device, int limit) {
  if (limit < 0)
    throw ValueError("load_split: limit must be >= 0 (0 = all), got " + std::to_string(limit));
  const std::string prefix = train ? "train" : "t10k";
  const std::string images_path = find_file(dir, prefix + "-images-idx3-ubyte");
  const std::string labels_path = find_file(dir, prefix + "-labels-idx1-ubyte");
  IdxImages images = read_idx_images(images_path);
  std::vector<uint8_t> labels = read_idx_labels(labels_path);
  if (static_cast<int64_t>(labels.size()) != images.count)
    throw IoError("Fashion-MNIST: " + images_path + " holds " + std::to_string(images.count) +
                  " images but " + labels_path + " holds " + std::to_string(labels.size()) +
                  " labels; the two files must come from the same split");
  Split split;
  split.count = limit > 0 ? std::min(limit, images.count) : images.count;
  const std::size_t image_bytes = static_cast<std::size_t>(images.rows) * images.cols;
  images.pixels.resize(image_bytes * static_cast<std::size_t>(split.count));
  labels.resize(static_cast<std::size_t>(split.count));
  split.images =
      Tensor::from_vector(images.pixels, {split.count, images.rows, images.cols}, device);
  split.labels = Tensor::from_vector(labels, {split.count}, device);
  return split;
}

Loader::Loader(const Split& split, int batch_size, int image_size, bool shuffle)
    : split_(split), batch_size_(batch_size), image_size_(image_size), shuffle_(shuffle) {
  if (!split.images.defined() || !split.labels.defined() || split.count <= 0)
    throw ValueError("Loader: the split is empty (load it with load_split first)");
  if (split.images.ndim() != 3 || split.images.dtype() != DType::U8 ||
      split.images.size(0) != split.count)
    throw ShapeError("Loader: expected images U8 (" + std::to_string(split.count) +
                     ", H, W), got " + split.images.str());
  if (split.labels.shape() != Shape{split.count} || split.labels.dtype() != DType::U8)
    throw ShapeError("Loader: expected labels U8 (" + std::to_string(split.count) + ",), got " +
                     split.labels.str());
  if (split.labels.device() != split.images.device())
    throw DeviceError("Loader: images on " + split.images.device().str() + " but labels on " +
                      split.labels.device().str());
  if (batch_size < 1)
    throw ValueError("Loader: batch size must be >= 1, got " + std::to_string(batch_size));
  if (image_size < 1 || image_size > 4096)
    throw ValueError("Loader: image size must be 1..4096, got " + std::to_string(image_size));
  if (!shuffle) {
    std::vector<int32_t> order(static_cast<std::size_t>(split.count));
    std::iota(order.begin(), order.end(), 0);
    order_ = Tensor::from_vector(order, {split.count}, split.images.device());
  }
}

int Loader::num_batches() const {
  // In 64 bits: count + batch_size - 1 overflows an int for a huge batch.
  return static_cast<int>((int64_t{split_.count} + batch_size_ - 1) / batch_size_);
}

int Loader::batch_examples(int i) const {
  const int64_t first = int64_t{i} * batch_size_;
  return static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(batch_size_, split_.count - first)));
}

void Loader::start_epoch(Generator& gen) {
  if (!shuffle_) return;
  order_ =
      Tensor::from_vector(gen.permutation(split_.count), {split_.count}, split_.images.device());
}

Batch Loader::batch(int i, int part, int parts) const {
  if (i < 0 || i >= num_batches())
    throw ValueError("Loader: batch " + std::to_string(i) + " outside [0, " +
                     std::to_string(num_batches()) + ")");
  if (parts < 1 || part < 0 || part >= parts)
    throw ValueError("Loader: part " + std::to_string(part) + " of " + std::to_string(parts) +
                     " (expected 0 <= part < parts)");
  if (!order_.defined())
    throw Error("Loader: call start_epoch() before batch() on a shuffling loader");
  const int64_t first = int64_t{i} * batch_size_;
  const int64_t whole = batch_examples(i);
  const int64_t begin = first + whole * part / parts;
  const int size = static_cast<int>(first + whole * (part + 1) / parts - begin);
  Batch b;
  if (size == 0) return b;
  const Tensor index = Tensor::view_of(
      order_.storage(), order_.offset_bytes() + static_cast<std::size_t>(begin) * sizeof(int32_t),
      {size}, DType::I32);
  b.x = resize_gather_u8(split_.images, index, image_size_, image_size_);
  b.y = gather_labels(split_.labels, index);
  b.size = size;
  return b;
}

}  // namespace scratchnet::data
