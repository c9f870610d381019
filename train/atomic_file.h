// Writes that matter (checkpoints, logs, plots, bench results) never leave a
// half-written file where a good one was.
#pragma once
#include <cstddef>
#include <functional>
#include <string>

namespace scratchnet {

// A file that appears at `path` complete or not at all: bytes go to
// path + ".tmp", commit() fsyncs and renames it over `path`; destroyed
// without commit() (an exception on the way), the temporary is removed and
// `path` is untouched. Used for checkpoints and plots.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(const std::string& path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, std::size_t n);
  void commit();

 private:
  [[noreturn]] void fail(const std::string& what, int err);
  std::string path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

// Writes `text` to `path` through an AtomicFileWriter.
void write_file_atomically(const std::string& path, const std::string& text);

// Fault injection, for tests only: while a FaultInjection lives, every
// AtomicFileWriter asks `fail` before each system call (creating the
// temporary, each write, fsync, rename) whether to fail it; a true answer
// makes that call fail with EIO, as a full or broken disk would. This is how
// the tests prove that a failure at any step of a checkpoint leaves a
// resumable run. One at a time; not thread-safe.
enum class FileOp { Create, Write, Sync, Rename };
class FaultInjection {
 public:
  using Hook = std::function<bool(FileOp op, const std::string& path)>;
  explicit FaultInjection(Hook fail);
  ~FaultInjection();
  FaultInjection(const FaultInjection&) = delete;
  FaultInjection& operator=(const FaultInjection&) = delete;
};

}  // namespace scratchnet
