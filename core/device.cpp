#include "core/device.h"

#include "core/cuda.h"
#include "core/error.h"

namespace scratchnet {

std::string Device::str() const {
  return is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(index);
}

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::cpu();
  if (name == "auto") {
    if (!cuda::available()) return Device::cpu();
    cuda::use_device(cuda::current_device());
    return Device::cuda(cuda::current_device());
  }
  if (name == "cuda" || name.rfind("cuda:", 0) == 0) {
    int index = 0;
    if (name.size() > 5) {
      try {
        std::size_t used = 0;
        index = std::stoi(name.substr(5), &used);
        if (used != name.size() - 5 || index < 0) throw ValueError("");
      } catch (const std::exception&) {
        throw ValueError("device '" + name + "': expected cpu, cuda, cuda:N or auto");
      }
    }
    if (!cuda::compiled())
      throw DeviceError("device '" + name +
                        "': this scratchnet was built without CUDA (use --device cpu, or rebuild "
                        "with nvcc on PATH)");
    if (index >= cuda::device_count())
      throw DeviceError("device '" + name + "': no such GPU (" +
                        std::to_string(cuda::device_count()) + " visible); use --device cpu");
    cuda::use_device(index);  // or a clear error when this process already uses another
    return Device::cuda(index);
  }
  throw ValueError("device '" + name + "': expected cpu, cuda, cuda:N or auto");
}

}  // namespace scratchnet
