#include "train/import_d2l.h"

#include <algorithm>
#include <cctype>
#include <set>

#include "core/error.h"

namespace scratchnet::safetensors {

namespace {

// The order of a layer's tensors in PyTorch's state_dict.
int leaf_rank(const std::string& leaf) {
  static const char* kOrder[] = {"weight", "bias", "running_mean", "running_var",
                                 "num_batches_tracked"};
  for (int i = 0; i < 5; ++i)
    if (leaf == kOrder[i]) return i;
  return 5;
}

bool all_digits(const std::string& s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
}

std::vector<std::string> split(const std::string& key) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (std::size_t dot; (dot = key.find('.', start)) != std::string::npos; start = dot + 1)
    parts.push_back(key.substr(start, dot - start));
  parts.push_back(key.substr(start));
  return parts;
}

struct Position {
  std::vector<long long> path;  // the module path's numbers
  int rank = 0;                 // leaf_rank of the tensor's name
  std::string leaf;
  std::size_t index = 0;  // into File::tensors
  bool operator<(const Position& o) const {
    if (path != o.path) return path < o.path;  // lexicographic: a parent's tensors first
    if (rank != o.rank) return rank < o.rank;
    return leaf < o.leaf;
  }
};

// The tensors of `file` in state_dict order, or empty when the keys are not
// Sequential-style.
std::vector<Position> sequential_order(const File& file) {
  std::vector<std::vector<std::string>> keys;
  for (const auto& t : file.tensors) keys.push_back(split(t.name));
  if (keys.empty()) return {};
  // One common leading name ("net", "module") is allowed.
  std::size_t skip = 0;
  const std::string& first = keys[0][0];
  if (keys[0].size() > 1 && !all_digits(first) &&
      std::all_of(keys.begin(), keys.end(),
                  [&](const auto& k) { return k.size() > 1 && k[0] == first; }))
    skip = 1;
  std::vector<Position> order;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const auto& k = keys[i];
    if (k.size() < skip + 2) return {};  // a bare parameter at the top: not a Sequential's
    Position p;
    for (std::size_t j = skip; j + 1 < k.size(); ++j) {
      if (!all_digits(k[j]) || k[j].size() > 9) return {};
      p.path.push_back(std::stoll(k[j]));
    }
    p.leaf = k.back();
    p.rank = leaf_rank(p.leaf);
    p.index = i;
    order.push_back(p);
  }
  std::sort(order.begin(), order.end());
  return order;
}

std::string describe(const NamedTensor& t) {
  return "'" + t.name + "' " + dtype_name(t.tensor.dtype()) + " " + shape_str(t.tensor.shape());
}

}  // namespace

File adopt_sequential_keys(const Module& module, File file, const std::string& path_for_messages) {
  const std::vector<NamedTensor> state = module.state_dict();
  std::set<std::string> ours, theirs;
  for (const auto& t : state) ours.insert(t.name);
  for (const auto& t : file.tensors) theirs.insert(t.name);
  if (ours == theirs) return file;
  const std::vector<Position> order = sequential_order(file);
  if (order.empty()) return file;

  std::vector<std::string> problems;
  const std::size_t n = std::min(order.size(), state.size());
  for (std::size_t i = 0; i < n; ++i) {
    const NamedTensor& src = file.tensors[order[i].index];
    const NamedTensor& dst = state[i];
    if (src.tensor.dtype() != dst.tensor.dtype() || src.tensor.shape() != dst.tensor.shape())
      problems.push_back("#" + std::to_string(i + 1) + " " + describe(src) + " vs the model's " +
                         describe(dst));
  }
  for (std::size_t i = n; i < order.size(); ++i)
    problems.push_back("#" + std::to_string(i + 1) + " " + describe(file.tensors[order[i].index]) +
                       " has no counterpart in the model");
  for (std::size_t i = n; i < state.size(); ++i)
    problems.push_back("#" + std::to_string(i + 1) + " the model's " + describe(state[i]) +
                       " has no counterpart in the checkpoint");
  if (!problems.empty()) {
    std::string msg = path_for_messages +
                      " looks like a d2l-style nn.Sequential checkpoint (keys by position), "
                      "but it does not fit this model by position (checkpoint " +
                      std::to_string(order.size()) + " tensors, model " +
                      std::to_string(state.size()) + "): ";
    for (std::size_t i = 0; i < problems.size(); ++i) msg += (i ? "; " : "") + problems[i];
    if (ours.count("conv5.weight"))
      msg +=
          ". Note: this AlexNet is the course notebook's (conv5 has 384 channels, FC "
          "9600-4096-4096), not d2l's (conv5 256 channels, FC 6400-4096-4096)";
    throw IoError(msg);
  }
  File renamed;
  renamed.metadata = std::move(file.metadata);
  for (std::size_t i = 0; i < n; ++i)
    renamed.tensors.push_back({state[i].name, file.tensors[order[i].index].tensor});
  return renamed;
}

}  // namespace scratchnet::safetensors
