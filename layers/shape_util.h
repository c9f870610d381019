// Small helpers shared by the layer files: PyTorch-style repr pieces and a
// checked narrowing of shape dimensions to the kernels' int.
#pragma once
#include <climits>
#include <cstdint>
#include <cstdio>
#include <string>

#include "core/error.h"

namespace scratchnet {

// "(5, 5)": how PyTorch prints a square kernel, stride or padding.
inline std::string pair_str(int v) {
  return "(" + std::to_string(v) + ", " + std::to_string(v) + ")";
}

// A float as Python's repr prints the usual hyper-parameters: 1e-05, 0.1, 0.5.
inline std::string py_float(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  std::string s = buf;
  if (s.find_first_of(".en") == std::string::npos) s += ".0";  // 1 -> "1.0", as Python
  return s;
}

// A shape dimension as the kernels' int; ShapeError naming op when it does not fit.
inline int dim_int(const char* op, int64_t d) {
  if (d < 0 || d > INT_MAX)
    throw ShapeError(std::string(op) + ": dimension " + std::to_string(d) +
                     " is out of range (0.." + std::to_string(INT_MAX) + ")");
  return static_cast<int>(d);
}

}  // namespace scratchnet
