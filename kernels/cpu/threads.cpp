#include "kernels/cpu/threads.h"

#include <omp.h>

#include <cctype>
#include <cstdlib>

namespace scratchnet::kernels {

int cpu_threads() {
  return omp_get_max_threads();
}

void set_cpu_threads(int n) {
  omp_set_num_threads(n < 1 ? 1 : n);
}

std::string cpu_wait_policy() {
  const char* v = std::getenv("OMP_WAIT_POLICY");
  if (v == nullptr || *v == '\0') return "default (spins, then sleeps)";
  std::string s(v);
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace scratchnet::kernels
