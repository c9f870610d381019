// Fashion-MNIST on the device. A split's images go to the device once, as
// bytes (47 MB for the training set); each epoch uploads one int32 order of
// the examples; a batch is then a view into that order plus a device gather
// that scales to [0, 1] and resizes. A training step copies nothing from the
// host.
#pragma once
#include <string>

#include "core/rng.h"
#include "core/tensor.h"
#include "train/idx.h"

namespace scratchnet::data {

// $SCRATCHNET_DATA if set and not empty, else /usr/share/datasets/fashion-mnist
// (where the Debian package dataset-fashion-mnist puts the files).
std::string default_data_dir();

struct Split {
  Tensor images;  // (count, rows, cols) U8 on the device; (count, 28, 28) for Fashion-MNIST
  Tensor labels;  // (count) U8 on the device
  int count = 0;
};

// Reads {train,t10k}-{images-idx3,labels-idx1}-ubyte, raw or .gz, from `dir`
// (raw preferred when both exist). limit > 0 keeps the first `limit` examples.
// IoError naming the file for a missing or malformed file, or when the images
// and labels counts differ.
Split load_split(const std::string& dir, bool train, Device device, int limit = 0);

struct Batch {
  Tensor x;  // (B, 1, S, S) F32 in [0, 1]
  Tensor y;  // (B) I32
  int size = 0;
};

class Loader {
 public:
  // image_size S: images are resized bilinearly (align_corners=False) to SxS;
  // S equal to the stored size only gathers and scales.
  Loader(const Split& split, int batch_size, int image_size, bool shuffle);

  int num_batches() const;  // the last, partial batch included
  int batch_examples(int i) const;  // examples in batch i (batch_size but for the last)
  int batch_size() const { return batch_size_; }
  int image_size() const { return image_size_; }
  int count() const { return split_.count; }

  // With shuffle, draws a permutation from one stream of gen and uploads it
  // (the only host->device copy of the epoch). Without shuffle the order is
  // 0..count-1, uploaded once by the constructor, and gen is not touched.
  void start_epoch(Generator& gen);
  // Batch i of the current epoch, 0 <= i < num_batches().
  Batch batch(int i) const { return batch(i, 0, 1); }
  // Part `part` of `parts` of batch i, for data-parallel ranks: batch i's
  // examples (in this epoch's order) cut into `parts` contiguous runs whose
  // sizes differ by at most one: part p holds [size*p/parts,
  // size*(p+1)/parts) (rounded down). Together the parts are exactly batch i.
  // A part may be empty (size 0, x and y undefined) when the batch has fewer
  // examples than parts.
  Batch batch(int i, int part, int parts) const;

 private:
  Split split_;
  int batch_size_, image_size_;
  bool shuffle_;
  Tensor order_;  // (count) I32 on the split's device
};

}  // namespace scratchnet::data
