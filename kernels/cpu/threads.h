// How many threads the OpenMP-parallel CPU kernels use, and how they wait.
//
// OpenMP's waiting policy is read once, when the runtime (libgomp) loads —
// before main() runs — so a program cannot change it for itself afterwards.
// The scratchnet binary therefore re-executes itself once with
// OMP_WAIT_POLICY=passive unless the user set a policy (tools/main.cpp):
// an idle worker then sleeps instead of spinning, which on a machine that is
// doing anything else (a browser, a build) is 2-5x faster than spinning
// threads competing with the busy ones for the cores.
#pragma once
#include <string>

namespace scratchnet::kernels {

// The number of threads a parallel CPU kernel uses (OpenMP's max threads).
int cpu_threads();
// Sets it for the rest of the process; n >= 1.
void set_cpu_threads(int n);
// "passive", "active" or "default (spins briefly, then sleeps)", from
// OMP_WAIT_POLICY, for run headers.
std::string cpu_wait_policy();

}  // namespace scratchnet::kernels
