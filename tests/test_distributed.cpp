// train/distributed.h in a single process (the 2-rank runs are
// tools/mpi_train_check.sh, ctest `mpi_train`): how a launcher is recognised,
// collectives that leave their input as it is, and the error of a build
// without MPI started by mpirun.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <string>
#include <vector>

#include "test_files.h"
#include "train/distributed.h"

using namespace scratchnet;

namespace {

// Sets environment variables for one scope and restores them after.
class EnvScope {
 public:
  void set(const char* name, const char* value) {
    const char* old = std::getenv(name);
    saved_.push_back({name, old != nullptr, old ? old : ""});
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~EnvScope() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (it->had)
        ::setenv(it->name.c_str(), it->value.c_str(), 1);
      else
        ::unsetenv(it->name.c_str());
    }
  }

 private:
  struct Saved {
    std::string name;
    bool had;
    std::string value;
  };
  std::vector<Saved> saved_;
};

}  // namespace

TEST_CASE("the launcher's variables name the number of ranks", "[dist]") {
  EnvScope env;
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "SLURM_STEP_NUM_TASKS",
                        "SLURM_NTASKS"})
    env.set(v, nullptr);
  CHECK(dist::launched_size() == 1);
  env.set("SLURM_NTASKS", "8");  // inside a Slurm job but not started by srun: one process
  CHECK(dist::launched_size() == 1);
  env.set("PMIX_RANK", "0");  // srun --mpi=pmix
  CHECK(dist::launched_size() == 8);
  env.set("SLURM_STEP_NUM_TASKS", "4");
  CHECK(dist::launched_size() == 4);
  env.set("PMI_SIZE", "3");  // Hydra (MPICH), srun --mpi=pmi2
  CHECK(dist::launched_size() == 3);
  env.set("OMPI_COMM_WORLD_SIZE", "2");  // Open MPI's mpirun
  CHECK(dist::launched_size() == 2);
  env.set("OMPI_COMM_WORLD_SIZE", "two");  // not a number: the next variable decides
  CHECK(dist::launched_size() == 3);
}

TEST_CASE("in one process, the collectives leave their input as it is", "[dist]") {
  REQUIRE(dist::size() == 1);
  CHECK(dist::rank() == 0);
  CHECK(dist::is_root());
  CHECK_FALSE(dist::active());
  Tensor t = Tensor::from_vector(std::vector<float>{1.5f, -2.0f}, {2});
  dist::allreduce_sum(t);
  CHECK(t.to_vector() == std::vector<float>{1.5f, -2.0f});
  std::vector<double> v = {3.0, 4.0};
  dist::allreduce_sum(v);
  CHECK(v == std::vector<double>{3.0, 4.0});
  CHECK(dist::broadcast("runs/x") == "runs/x");
  CHECK(dist::backend(Device::cpu()) == "none");
  Tensor ints = Tensor::zeros({2}, Device::cpu(), DType::I32);
  CHECK_THROWS_AS(dist::allreduce_sum(ints), ValueError);
}

TEST_CASE("a build without MPI started as one of several ranks says so and stops", "[dist][cli]") {
  if (dist::compiled()) {
    SUCCEED("built with MPI: tools/mpi_train_check.sh runs the ranks");
    return;
  }
  EnvScope env;  // what mpirun -np 2 sets (the child inherits it)
  env.set("OMPI_COMM_WORLD_SIZE", "2");
  const testing::RunResult r = testing::run_binary("train --model lenet --epochs 1 --device cpu");
  INFO(r.out << r.err);
  CHECK(r.code == 2);
  CHECK(r.err.find("one of 2 started by mpirun/srun, but this scratchnet was built without MPI") !=
        std::string::npos);
  CHECK(r.out.empty());  // nothing trained, nothing written
}
