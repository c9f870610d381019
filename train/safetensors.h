// Checkpoints in the safetensors format, so PyTorch users can load our
// weights and we can load theirs:
//   8 bytes   little-endian u64 N, the header length
//   N bytes   JSON {"name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]},
//                   ..., "__metadata__": {"key": "value"}}, space-padded to 8 bytes
//   the data  each tensor's bytes, row-major little-endian, at [b, e) counted
//             from the byte after the header; packed in the order written
// Supported dtypes: F32, I32, U8, I64 (BatchNorm's num_batches_tracked).
#pragma once
#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "layers/module.h"
#include "train/atomic_file.h"

namespace scratchnet {

namespace safetensors {

// Writes `tensors` (any device: copied to the host one at a time) in the
// given order, with `metadata` as "__metadata__". Names must be unique and
// not "__metadata__". Atomic (see AtomicFileWriter); IoError on failure.
void save(const std::string& path, const std::vector<NamedTensor>& tensors,
          const std::map<std::string, std::string>& metadata = {});

struct File {
  std::vector<NamedTensor> tensors;  // on the host, in the header's order
  std::map<std::string, std::string> metadata;
};

// Reads and validates a whole file; IoError naming the file and the problem.
File load(const std::string& path);

// Only the "__metadata__" of a file (reads just the header); IoError as load.
std::map<std::string, std::string> read_metadata(const std::string& path);

// IoError when a float tensor of `file` holds NaN or Inf, naming the first
// such tensor and the counts ("weights hold 3 NaN values in conv1.weight"):
// weights from a diverged run must not be evaluated, served or resumed.
void require_finite(const File& file, const std::string& path_for_messages);

// Copies `file`'s tensors into module.state_dict() by name (to whatever
// device the module's tensors live on). Strict, like PyTorch: every key of the
// module present with the same shape and dtype, and no extra keys; otherwise
// an IoError naming the key(s) and shapes, and the module is left unchanged.
void load_into(Module& module, const File& file, const std::string& path_for_messages);

}  // namespace safetensors
}  // namespace scratchnet
