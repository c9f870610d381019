// The typed exceptions of scratchnet. They live at the bottom of the house
// (kernels/) so that shape helpers and CUDA launch checks can throw them
// without depending on core/; core/error.h re-exports them for everyone else.
#pragma once
#include <cstddef>
#include <stdexcept>
#include <string>

namespace scratchnet {

// Base of every error the engine throws on purpose. The CLI catches this at
// the top, prints what() as one line and exits non-zero.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// A tensor shape or an op argument does not fit the op. The message names the
// op and the offending shape or value.
class ShapeError : public Error {
 public:
  using Error::Error;
};

// A value outside its allowed range (a flag, a hyper-parameter, a label).
class ValueError : public Error {
 public:
  using Error::Error;
};

// Reading or writing a file failed or the file is malformed; names the file.
class IoError : public Error {
 public:
  using Error::Error;
};

// A CUDA runtime / cuBLAS call or kernel launch failed; names call, file, line.
class CudaError : public Error {
 public:
  using Error::Error;
};

// The device ran out of memory; says how much was asked and how much is in use.
class OutOfMemoryError : public Error {
 public:
  OutOfMemoryError(const std::string& what, std::size_t requested, std::size_t in_use)
      : Error(what), requested_(requested), in_use_(in_use) {}
  std::size_t requested() const { return requested_; }
  std::size_t in_use() const { return in_use_; }

 private:
  std::size_t requested_, in_use_;
};

// Something the engine cannot do here: a CUDA tensor in a build without CUDA,
// an op with no kernel for the tensor's device, mixing devices.
class DeviceError : public Error {
 public:
  using Error::Error;
};

}  // namespace scratchnet
