#include "layers/sequential.h"

#include "layers/layers.h"

namespace scratchnet {

void Chain::plan_fusion() {
  const auto& c = children();
  fuse_with_next_.assign(c.size(), false);
  for (std::size_t i = 0; i + 1 < c.size(); ++i) {
    const Module* m = c[i].second.get();
    fuse_with_next_[i] =
        (dynamic_cast<const BatchNorm*>(m) != nullptr ||
         dynamic_cast<const Conv2d*>(m) != nullptr || dynamic_cast<const Linear*>(m) != nullptr) &&
        dynamic_cast<const ReLU*>(c[i + 1].second.get()) != nullptr;
  }
}

Tensor Chain::forward(const Tensor& x) {
  if (children().empty()) return x;  // as an empty nn.Sequential
  const auto& c = children();
  Tensor y = x;
  for (std::size_t i = 0; i < c.size(); ++i) {
    if (fusion() && fuse_with_next_[i]) {  // X + ReLU: one op, the ReLU skipped
      Module& m = *c[i].second;
      if (auto* conv = dynamic_cast<Conv2d*>(&m))
        y = conv->forward_relu(y);
      else if (auto* fc = dynamic_cast<Linear*>(&m))
        y = fc->forward_relu(y);
      else
        y = static_cast<BatchNorm&>(m).forward_relu(y);
      ++i;
    } else {
      y = c[i].second->forward(y);
    }
  }
  return y;
}

Module& Chain::operator[](std::size_t i) const {
  if (i >= size())
    throw ValueError(type_name_ + ": index " + std::to_string(i) + " out of range (size " +
                     std::to_string(size()) + ")");
  return *children()[i].second;
}

}  // namespace scratchnet
