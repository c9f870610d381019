// Writes that matter (checkpoints, logs, plots, bench results) never leave a
// half-written file where a good one was.
#pragma once
#include <cstddef>
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

}  // namespace scratchnet
