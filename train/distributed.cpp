#include "train/distributed.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "core/cuda.h"
#include "core/error.h"

#ifdef SCRATCHNET_WITH_MPI
#include <mpi.h>
#endif
#ifdef SCRATCHNET_WITH_NCCL
#include <cuda_runtime.h>
#include <nccl.h>
#endif

namespace scratchnet::dist {

namespace {

// A non-negative integer environment variable, or -1.
int env_int(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return -1;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  return (*end == '\0' && x >= 0 && x < (1 << 30)) ? static_cast<int>(x) : -1;
}

struct World {
  bool started = false;  // MPI_Init ran (and MPI_Finalize has not)
  int rank = 0, size = 1, local_rank = 0, local_size = 1;
#ifdef SCRATCHNET_WITH_MPI
  MPI_Comm local = MPI_COMM_NULL;
#endif
#ifdef SCRATCHNET_WITH_NCCL
  ncclComm_t nccl = nullptr;
  int nccl_device = -1;
#endif
};

World& world() {
  static World w;
  return w;
}

#ifdef SCRATCHNET_WITH_MPI
void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw DeviceError(std::string("MPI: ") + what + " failed: " + std::string(text, len));
}
#endif

#ifdef SCRATCHNET_WITH_NCCL
void check_nccl(ncclResult_t rc, const char* what) {
  if (rc == ncclSuccess) return;
  throw DeviceError(std::string("NCCL: ") + what + " failed: " + ncclGetErrorString(rc));
}

double nccl_timeout_seconds() {
  const int t = env_int("SCRATCHNET_NCCL_TIMEOUT");
  return t > 0 ? t : 600.0;
}

// The communicator over every rank's GPU, made on first use: rank 0 draws
// the id, MPI carries it to the others.
ncclComm_t nccl_comm() {
  World& w = world();
  const int dev = cuda::current_device();
  if (w.nccl != nullptr) {
    if (w.nccl_device != dev)
      throw DeviceError("NCCL: the communicator was made on GPU " + std::to_string(w.nccl_device) +
                        ", not " + std::to_string(dev));
    return w.nccl;
  }
  ncclUniqueId id{};
  if (w.rank == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
  check_mpi(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD), "MPI_Bcast of the NCCL id");
  cuda::stream();  // binds this thread to the process's GPU
  check_nccl(ncclCommInitRank(&w.nccl, w.size, id, w.rank), "ncclCommInitRank");
  w.nccl_device = dev;
  return w.nccl;
}

// Waits for the all-reduce on `stream`, polling NCCL for a failed peer and
// giving up (and aborting the communicator) after the timeout.
void nccl_wait(cudaStream_t stream) {
  World& w = world();
  const auto t0 = std::chrono::steady_clock::now();
  const double limit = nccl_timeout_seconds();
  for (;;) {
    const cudaError_t q = cudaStreamQuery(stream);
    if (q == cudaSuccess) return;
    if (q != cudaErrorNotReady)
      throw DeviceError(std::string("CUDA error during the gradient all-reduce: ") +
                        cudaGetErrorString(q));
    ncclResult_t async = ncclSuccess;
    check_nccl(ncclCommGetAsyncError(w.nccl, &async), "ncclCommGetAsyncError");
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (async != ncclSuccess || waited > limit) {
      ncclCommAbort(w.nccl);
      w.nccl = nullptr;
      throw DeviceError(async != ncclSuccess
                            ? std::string("NCCL all-reduce failed: ") + ncclGetErrorString(async)
                            : "NCCL all-reduce did not finish within " +
                                  std::to_string(static_cast<int>(limit)) +
                                  " s (another rank stopped? SCRATCHNET_NCCL_TIMEOUT sets the "
                                  "limit)");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}
#endif

void require_f32(const Tensor& t, const char* what) {
  if (!t.defined() || t.dtype() != DType::F32)
    throw ValueError(std::string(what) + ": expected a float32 tensor, got " +
                     (t.defined() ? t.str() : std::string("an undefined tensor")));
}

}  // namespace

bool compiled() {
#ifdef SCRATCHNET_WITH_MPI
  return true;
#else
  return false;
#endif
}

bool nccl_compiled() {
#ifdef SCRATCHNET_WITH_NCCL
  return true;
#else
  return false;
#endif
}

int launched_size() {
  // mpirun (Open MPI), Hydra (MPICH, Intel MPI) and Slurm's PMI2 name the size;
  // a PMIx launcher (srun --mpi=pmix, Open MPI 5's prterun) names a rank, and
  // Slurm the step's task count.
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    const int n = env_int(name);
    if (n >= 1) return n;
  }
  if (env_int("PMIX_RANK") >= 0) {
    for (const char* name : {"SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"}) {
      const int n = env_int(name);
      if (n >= 1) return n;
    }
    return 1;  // a PMIx launcher that does not say how many: MPI will
  }
  return 0;
}

void init() {
  World& w = world();
  if (w.started || launched_size() < 1) return;
#ifdef SCRATCHNET_WITH_MPI
  int already = 0;
  MPI_Initialized(&already);
  if (!already) check_mpi(MPI_Init(nullptr, nullptr), "MPI_Init");
  // Errors come back as codes (check_mpi turns them into exceptions) rather
  // than killing the job from inside MPI without a word.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &w.rank), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(MPI_COMM_WORLD, &w.size), "MPI_Comm_size");
  check_mpi(
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, w.rank, MPI_INFO_NULL, &w.local),
      "MPI_Comm_split_type");
  check_mpi(MPI_Comm_rank(w.local, &w.local_rank), "MPI_Comm_rank (node)");
  check_mpi(MPI_Comm_size(w.local, &w.local_size), "MPI_Comm_size (node)");
  w.started = true;
  std::atexit(finalize);
#endif
}

void finalize() {
  World& w = world();
  if (!w.started) return;
#ifdef SCRATCHNET_WITH_NCCL
  if (w.nccl != nullptr) {
    ncclCommDestroy(w.nccl);
    w.nccl = nullptr;
  }
#endif
#ifdef SCRATCHNET_WITH_MPI
  if (w.local != MPI_COMM_NULL) MPI_Comm_free(&w.local);
  int done = 0;
  MPI_Finalized(&done);
  if (!done) MPI_Finalize();
#endif
  w.started = false;
  w.rank = 0;
  w.size = w.local_size = 1;
  w.local_rank = 0;
}

bool active() {
  return world().started;
}

int rank() {
  return world().rank;
}
int size() {
  return world().size;
}
int local_rank() {
  return world().local_rank;
}
int local_size() {
  return world().local_size;
}

void allreduce_sum(Tensor& t) {
  require_f32(t, "allreduce_sum");
  if (!active()) return;
#ifdef SCRATCHNET_WITH_MPI
  const int64_t n = t.numel();
  if (n > INT32_MAX) throw ValueError("allreduce_sum: " + t.str() + " is too large for one call");
  if (t.is_cuda()) {
#ifdef SCRATCHNET_WITH_NCCL
    auto stream = reinterpret_cast<cudaStream_t>(cuda::stream());
    check_nccl(ncclAllReduce(t.data<float>(), t.data<float>(), static_cast<std::size_t>(n),
                             ncclFloat, ncclSum, nccl_comm(), stream),
               "ncclAllReduce");
    nccl_wait(stream);
#else
    // No NCCL: through host memory (correct, and slower than NCCL).
    std::vector<float> host(static_cast<std::size_t>(n));
    cuda::memcpy_d2h(host.data(), t.data<float>(), host.size() * sizeof(float));
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, host.data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM,
                            MPI_COMM_WORLD),
              "MPI_Allreduce");
    cuda::memcpy_h2d(t.data<float>(), host.data(), host.size() * sizeof(float));
#endif
  } else {
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, t.data<float>(), static_cast<int>(n), MPI_FLOAT, MPI_SUM,
                            MPI_COMM_WORLD),
              "MPI_Allreduce");
  }
#endif
}

void allreduce_sum(std::vector<double>& v) {
  if (!active() || v.empty()) return;
#ifdef SCRATCHNET_WITH_MPI
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(v.size()), MPI_DOUBLE, MPI_SUM,
                          MPI_COMM_WORLD),
            "MPI_Allreduce");
#endif
}

std::string broadcast(const std::string& s, int root) {
  if (!active()) return s;
#ifdef SCRATCHNET_WITH_MPI
  unsigned long long len = s.size();
  check_mpi(MPI_Bcast(&len, 1, MPI_UNSIGNED_LONG_LONG, root, MPI_COMM_WORLD), "MPI_Bcast");
  std::string out = rank() == root ? s : std::string(static_cast<std::size_t>(len), '\0');
  if (len > 0)
    check_mpi(MPI_Bcast(out.data(), static_cast<int>(len), MPI_CHAR, root, MPI_COMM_WORLD),
              "MPI_Bcast");
  return out;
#else
  (void)root;
  return s;
#endif
}

void barrier() {
  if (!active()) return;
#ifdef SCRATCHNET_WITH_MPI
  check_mpi(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
#endif
}

void abort_all(int code) {
  if (!active()) return;
#ifdef SCRATCHNET_WITH_MPI
  MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::_Exit(code);
}

std::string backend(Device device) {
  if (!active()) return "none";
  if (!device.is_cuda()) return "mpi";
  return nccl_compiled() ? "nccl" : "mpi (via host memory)";
}

}  // namespace scratchnet::dist
