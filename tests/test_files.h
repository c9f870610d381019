// Shared by the tests that touch the file system or run the `scratchnet`
// binary: a temporary directory that removes itself, reading a whole file,
// and running the binary with its exit code, stdout and stderr captured.
// SCRATCHNET_BINARY (the binary's path) is a compile definition of the test
// target.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>

namespace scratchnet::testing {

namespace detail {
// Distinguishes the names this process creates.
inline std::string unique_suffix() {
  static std::atomic<unsigned long> counter{0};
  return std::to_string(::getpid()) + "-" + std::to_string(counter++);
}
}  // namespace detail

// A fresh directory under the system temp dir, named
// scratchnet-<tag>-<pid>-<n> (unique per process and instance), removed with
// everything in it at scope exit.
struct TempDir {
  const std::filesystem::path path;

  explicit TempDir(const std::string& tag)
      : path(std::filesystem::temp_directory_path() /
             ("scratchnet-" + tag + "-" + detail::unique_suffix())) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ignore;
    std::filesystem::remove_all(path, ignore);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // path / name as a string; with no name, the directory itself (with a
  // trailing separator).
  std::string file(const std::string& name = "") const { return (path / name).string(); }
};

// The whole file, bytes as they are; empty when it cannot be read.
inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

struct RunResult {
  int code = -1;  // the exit status, or 128 + the signal that ended it
  std::string out, err;
};

// Runs `scratchnet <args>` (args as a shell would split them, stdin from
// /dev/null) and captures its exit code, stdout and stderr.
inline RunResult run_binary(const std::string& args) {
  const std::filesystem::path base =
      std::filesystem::temp_directory_path() / ("scratchnet-run-" + detail::unique_suffix());
  const std::string out = base.string() + ".out", err = base.string() + ".err";
  const std::string cmd = std::string("'") + SCRATCHNET_BINARY + "' " + args + " >'" + out +
                          "' 2>'" + err + "' </dev/null";
  const int status = std::system(cmd.c_str());
  RunResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(out);
  r.err = slurp(err);
  std::filesystem::remove(out);
  std::filesystem::remove(err);
  return r;
}

}  // namespace scratchnet::testing
