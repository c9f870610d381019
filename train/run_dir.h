// A run directory belongs to one run, written by one process at a time.
//
// RunLock holds an advisory lock (flock) on <dir>/train.lock for as long as a
// Trainer writes there: a second `scratchnet train` into the same directory,
// started while the first runs, fails at once naming the holder's pid,
// instead of both writing the same checkpoint files. The lock dies with its
// process (a crash or kill -9 never leaves a stale lock); the file stays.
#pragma once
#include <string>

#include "core/error.h"

namespace scratchnet::train {

inline constexpr const char* kLockFileName = "train.lock";

// Another process (or another Trainer of this process) holds the lock.
class RunLocked : public IoError {
 public:
  using IoError::IoError;
};

class RunLock {
 public:
  // Creates <dir>/train.lock if needed and locks it without waiting:
  // RunLocked when someone else holds it, IoError when it cannot be opened.
  explicit RunLock(const std::string& dir);
  ~RunLock();
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

 private:
  int fd_ = -1;
};

// The run directory that `path` names for --resume (or for weights): the
// directory itself, or the directory of a file in it. IoError when `path`
// does not exist.
std::string run_dir_of(const std::string& path, const std::string& what);

// Do a and b name the same existing directory?
bool same_directory(const std::string& a, const std::string& b);

}  // namespace scratchnet::train
