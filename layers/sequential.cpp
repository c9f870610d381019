#include "layers/sequential.h"

namespace scratchnet {

Tensor Chain::forward(const Tensor& x) {
  if (children().empty()) return x;  // as an empty nn.Sequential
  Tensor y = x;
  for (const auto& [name, child] : children()) y = child->forward(y);
  return y;
}

Module& Chain::operator[](std::size_t i) const {
  if (i >= size())
    throw ValueError(type_name_ + ": index " + std::to_string(i) + " out of range (size " +
                     std::to_string(size()) + ")");
  return *children()[i].second;
}

}  // namespace scratchnet
