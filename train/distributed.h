// Data-parallel training across processes: the ranks, and the few collective
// operations the trainer needs. We write no networking of our own: MPI starts
// the processes and carries the CPU collectives; on CUDA tensors the gradient
// all-reduce goes through NCCL when it was found at build time (else through
// MPI, staged in host memory).
//
// A process is a rank when a launcher started it: `mpirun -np N` (Open MPI,
// MPICH) or `srun` (Slurm with PMI/PMIx) set variables that init() reads
// before it starts MPI. `mpirun -np 1` is a job of one rank: it takes the
// data-parallel path (all-reduces over one rank), which is how one GPU
// checks the NCCL path. Anything else — no launcher, or a build without MPI —
// is a plain single process, exactly as without this file: rank 0 of 1,
// not active(), and every collective returns its input.
//
// Failure: an error on one rank must not leave the others waiting in a
// collective forever. The command line's error path calls abort(), which
// prints nothing itself and ends every rank (MPI_Abort). A NCCL all-reduce
// that has not finished after SCRATCHNET_NCCL_TIMEOUT seconds (default 600)
// aborts the communicator and throws.
#pragma once
#include <string>
#include <vector>

#include "core/device.h"
#include "core/tensor.h"

namespace scratchnet::dist {

// Built with MPI (SCRATCHNET_MPI found it), with NCCL.
bool compiled();
bool nccl_compiled();

// The number of ranks a launcher says this job has (0 when no launcher
// started this process), read from the environment without starting MPI.
int launched_size();

// Starts MPI when launched_size() >= 1 and MPI was compiled in; idempotent.
// Throws DeviceError when MPI fails to start.
void init();
// Ends MPI (at normal exit; registered by init()).
void finalize();

int rank();        // 0-based, 0 in a single process
int size();        // number of ranks, 1 in a single process
int local_rank();  // rank among the ranks on this machine (the GPU to use)
int local_size();  // ranks on this machine
inline bool is_root() {
  return rank() == 0;
}
// MPI was started: the trainer takes the data-parallel path (even with 1 rank).
bool active();

// Sums `t` (a contiguous F32 tensor, on the CPU or a GPU) element-wise over
// the ranks, in place. Every rank gets the same bits.
void allreduce_sum(Tensor& t);
// Sums host doubles over the ranks, in place.
void allreduce_sum(std::vector<double>& v);
// Root's string, on every rank.
std::string broadcast(const std::string& s, int root = 0);
void barrier();
// Ends every rank with exit code `code` (prints nothing: the caller has
// said what went wrong). Returns only when not active().
void abort_all(int code);

// How gradients travel on `device`: "nccl", "mpi" or "mpi (via host memory)";
// "none" in a single process. For run headers.
std::string backend(Device device);

}  // namespace scratchnet::dist
