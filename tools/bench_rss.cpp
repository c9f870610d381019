#include "tools/bench_rss.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

namespace scratchnet::tools::bench {

double proc_status_mib(const char* field) {
  std::ifstream f("/proc/self/status");
  const std::size_t n = std::strlen(field);
  std::string line;
  while (std::getline(f, line)) {
    if (line.compare(0, n, field) == 0 && line.size() > n && line[n] == ':')
      return std::strtod(line.c_str() + n + 1, nullptr) / 1024.0;  // "VmHWM:  1234 kB"
  }
  return 0;
}

void RssWatch::start() {
  std::ofstream clear("/proc/self/clear_refs");
  reset_ = clear && (clear << "5").flush().good();
  clear.close();
  reset_ = reset_ && !clear.fail();
  start_mib_ = proc_status_mib("VmRSS");
}

double RssWatch::peak_mib() const { return proc_status_mib("VmHWM"); }

double RssWatch::growth_mib() const { return std::max(0.0, peak_mib() - start_mib_); }

}  // namespace scratchnet::tools::bench
