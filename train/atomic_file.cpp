#include "train/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace scratchnet {

namespace {

// The test hook (see FaultInjection); empty in every real run.
FaultInjection::Hook& fault_hook() {
  static FaultInjection::Hook hook;
  return hook;
}

// True when an injected fault replaces this call; errno is then EIO.
bool injected(FileOp op, const std::string& path) {
  const auto& hook = fault_hook();
  if (!hook || !hook(op, path)) return false;
  errno = EIO;
  return true;
}

}  // namespace

FaultInjection::FaultInjection(Hook fail) {
  fault_hook() = std::move(fail);
}
FaultInjection::~FaultInjection() {
  fault_hook() = nullptr;
}

AtomicFileWriter::AtomicFileWriter(const std::string& path) : path_(path), tmp_(path + ".tmp") {
  if (injected(FileOp::Create, path_)) fail("cannot create " + tmp_, errno);
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("cannot create " + tmp_, errno);
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void AtomicFileWriter::fail(const std::string& what, int err) {
  throw IoError("writing " + path_ + ": " + what + ": " + std::strerror(err) +
                " (is the directory there and writable, and is there space left?)");
}

void AtomicFileWriter::write(const void* data, std::size_t n) {
  if (fd_ < 0) throw Error("AtomicFileWriter: write after commit to " + path_);
  const char* p = static_cast<const char*>(data);
  if (injected(FileOp::Write, path_)) fail("write failed", errno);
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, std::min<std::size_t>(n, std::size_t{1} << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("write failed", errno);
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

void AtomicFileWriter::commit() {
  if (fd_ < 0) throw Error("AtomicFileWriter: commit twice to " + path_);
  // fsync before rename: otherwise a crash can leave the new name pointing at
  // an empty file, which is worse than the old checkpoint.
  if (injected(FileOp::Sync, path_) || ::fsync(fd_) != 0) fail("fsync failed", errno);
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("close failed", errno);
  if (injected(FileOp::Rename, path_) || std::rename(tmp_.c_str(), path_.c_str()) != 0)
    fail("cannot rename " + tmp_, errno);
  committed_ = true;
  // Make the rename itself durable; best effort, as some filesystems refuse.
  const std::string dir = std::filesystem::path(path_).parent_path().string();
  const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

void write_file_atomically(const std::string& path, const std::string& text) {
  AtomicFileWriter out(path);
  out.write(text.data(), text.size());
  out.commit();
}

}  // namespace scratchnet
