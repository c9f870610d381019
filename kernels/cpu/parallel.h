// What the OpenMP-parallel CPU kernels share.
#pragma once
#include <exception>
#include <mutex>

namespace scratchnet::kernels {

// An exception must not leave an OpenMP region (the runtime would terminate
// the program): each thread's body runs under run(), the first error is kept
// and rethrown by the calling thread once the region is over.
class RegionErrors {
 public:
  template <typename F>
  void run(F&& body) noexcept {
    try {
      body();
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!first_) first_ = std::current_exception();
    }
  }
  bool failed() {
    std::lock_guard<std::mutex> lock(mutex_);
    return first_ != nullptr;
  }
  void rethrow() {
    if (first_) std::rethrow_exception(first_);
  }

 private:
  std::mutex mutex_;
  std::exception_ptr first_;
};

}  // namespace scratchnet::kernels
