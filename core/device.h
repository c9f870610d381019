// Where a tensor lives. Moving between devices is always explicit.
#pragma once
#include <string>

namespace scratchnet {

enum class DeviceType { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  static Device cpu() { return {DeviceType::CPU, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::CUDA, index}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const;  // "cpu", "cuda:0"
};

// Parses "cpu", "cuda", "cuda:N" and "auto" (CUDA when a GPU is usable, else
// CPU). Throws ValueError on anything else, DeviceError for CUDA without one.
Device parse_device(const std::string& name);

}  // namespace scratchnet
