#include "layers/summary.h"

namespace scratchnet {

std::vector<LayerInfo> summarize(Module& model, const Shape& input) {
  std::vector<LayerInfo> out;
  model.trace_shapes(input, "", [&](const std::string& name, const Module& leaf, const Shape& s) {
    out.push_back({name, leaf.describe(), s, count_parameters(leaf)});
  });
  return out;
}

int64_t count_parameters(const Module& module) {
  int64_t n = 0;
  for (const auto& p : module.named_parameters()) n += p.tensor.numel();
  return n;
}

}  // namespace scratchnet
