// Shared by the trainer tests: a small synthetic Fashion-MNIST (IDX files,
// one bright bar per class plus noise) in a temporary directory, so the
// tests need no downloaded data and finish in seconds, and a small LeNet
// training configuration over it.
#pragma once
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/rng.h"
#include "test_files.h"
#include "train/trainer.h"

namespace scratchnet::testing {

namespace fs = std::filesystem;

inline void put_u32(std::ofstream& f, uint32_t v) {
  const unsigned char b[4] = {static_cast<unsigned char>(v >> 24),
                              static_cast<unsigned char>(v >> 16),
                              static_cast<unsigned char>(v >> 8), static_cast<unsigned char>(v)};
  f.write(reinterpret_cast<const char*>(b), 4);
}

// Raw IDX files: class c is a bright horizontal bar at row 2c + 4, on noise.
inline void write_synthetic_split(const fs::path& dir, const std::string& prefix, int count,
                                  uint64_t seed) {
  Generator g(seed);
  const auto noise = g.uniform(int64_t{count} * 28 * 28, 0.0f, 60.0f);
  std::vector<uint8_t> labels(count), pixels(static_cast<std::size_t>(count) * 28 * 28);
  for (int i = 0; i < count; ++i) {
    labels[i] = static_cast<uint8_t>((i * 7 + 3) % 10);
    for (int p = 0; p < 28 * 28; ++p) {
      const int row = p / 28;
      const bool bar = row == 2 * labels[i] + 4 || row == 2 * labels[i] + 5;
      pixels[static_cast<std::size_t>(i) * 784 + p] =
          static_cast<uint8_t>(bar ? 200 : noise[static_cast<std::size_t>(i) * 784 + p]);
    }
  }
  std::ofstream fi(dir / (prefix + "-images-idx3-ubyte"), std::ios::binary);
  put_u32(fi, 2051);
  put_u32(fi, count);
  put_u32(fi, 28);
  put_u32(fi, 28);
  fi.write(reinterpret_cast<const char*>(pixels.data()),
           static_cast<std::streamsize>(pixels.size()));
  std::ofstream fl(dir / (prefix + "-labels-idx1-ubyte"), std::ios::binary);
  put_u32(fl, 2049);
  put_u32(fl, count);
  fl.write(reinterpret_cast<const char*>(labels.data()), count);
}

struct SyntheticData {
  TempDir dir{"data"};
  SyntheticData() {
    write_synthetic_split(dir.path, "train", 512, 11);
    write_synthetic_split(dir.path, "t10k", 256, 12);
  }
};

inline train::TrainConfig small_config(const std::string& data_dir, const std::string& out_dir) {
  train::TrainConfig c;
  c.model = "lenet";
  c.epochs = 2;
  c.batch_size = 64;
  c.lr = 0.5f;
  c.momentum = 0.9f;
  c.weight_decay = 1e-4f;
  c.image_size = 28;
  c.device = "cpu";
  c.data_dir = data_dir;
  c.seed = 7;
  c.out_dir = out_dir;
  return c;
}

// Trains `c` (out_dir set) for c.epochs epochs.
inline std::vector<train::MetricsRow> train_run(const train::TrainConfig& c) {
  std::ostringstream log;
  train::Trainer t(c, log, false);
  return t.run();
}

inline train::TrainConfig resume_config(train::TrainConfig c, const std::string& dir, int epochs) {
  c.resume = dir;
  c.out_dir = "";
  c.epochs = epochs;
  return c;
}

}  // namespace scratchnet::testing
