// train/distributed.h in a single process (the 2-rank runs are
// tools/mpi_train_check.sh, ctest `mpi_train`): how a launcher is recognised,
// collectives that leave their input as it is, and the error of a build
// without MPI started by mpirun.
#include <algorithm>
#include <catch2/catch.hpp>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/ops.h"
#include "test_files.h"
#include "test_helpers.h"
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
  for (const char* v :
       {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"})
    env.set(v, nullptr);
  CHECK(dist::launched_size() == 0);
  env.set("SLURM_NTASKS", "8");  // inside a Slurm job but not started by srun: one process
  CHECK(dist::launched_size() == 0);
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

namespace {

// batch_norm_synced against batch_norm on one device. `copies` simulates
// that many ranks holding the same batch: the sum over the ranks multiplies
// every local sum by `copies`. The whole batch is then `copies` times this
// one, whose statistics are this batch's, so y, dx and this rank's share of
// dgamma, dbeta must equal batch_norm's; only the unbiased running variance
// sees the larger count. Tolerance: test_batchnorm.cpp's rule, atol = rtol =
// 1e-5 * sqrt(m / 16 + 1) with m = N*H*W (the statistics are computed in
// other passes, in another order). The input has mean ~3 and spread ~1, so a
// variance taken as E[x^2] - mean^2 in float would be off by more.
void check_synced_matches(Device device, int copies) {
  using testing::random_tensor;
  const Shape shape{4, 3, 5, 5};
  const int64_t m = 4 * 25;
  const double tol = 1e-5 * testing::tolerance_scale(m);
  auto run = [&](bool synced, std::vector<std::vector<float>>& out) {
    Tensor x = random_tensor(shape, 11, 2.0f, 4.0f, device).set_requires_grad(true);
    Tensor gamma = random_tensor({3}, 12, 0.5f, 1.5f, device).set_requires_grad(true);
    Tensor beta = random_tensor({3}, 13, -0.5f, 0.5f, device).set_requires_grad(true);
    Tensor rm = Tensor::zeros({3}, device), rv = Tensor::full({3}, 1.0f, device);
    const SumOverRanks times = [copies](std::vector<double>& v) {
      for (double& e : v) e *= copies;
    };
    Tensor y = synced ? batch_norm_synced(x, gamma, beta, rm, rv, times, 0.1f, 1e-5f)
                      : batch_norm(x, gamma, beta, rm, rv, true, 0.1f, 1e-5f);
    y.backward(random_tensor(shape, 14, -1.0f, 1.0f, device));
    out = {y.to_vector(),           x.grad().to_vector(), gamma.grad().to_vector(),
           beta.grad().to_vector(), rm.to_vector(),       rv.to_vector()};
  };
  std::vector<std::vector<float>> want, got;
  run(false, want);
  run(true, got);
  const char* names[] = {"y", "dx", "dgamma", "dbeta", "running_mean"};
  for (int i = 0; i < 5; ++i) testing::require_close(got[i], want[i], tol, tol, names[i]);
  // running_var = 0.9 * 1 + 0.1 * var * M / (M - 1), M = copies * m; from
  // batch_norm's: var = (want - 0.9) / 0.1 * (m - 1) / m.
  std::vector<float> expect(3);
  const double M = static_cast<double>(copies) * m;
  for (int c = 0; c < 3; ++c) {
    const double var = (want[5][c] - 0.9) / 0.1 * (m - 1) / m;
    expect[c] = static_cast<float>(0.9 + 0.1 * var * M / (M - 1));
  }
  testing::require_close(got[5], expect, tol, tol, "running_var");
}

}  // namespace

TEST_CASE("synchronised batch norm equals batch norm over the whole batch", "[dist][batchnorm]") {
  for (int copies : {1, 2, 5}) {
    INFO(copies << " simulated ranks");
    check_synced_matches(Device::cpu(), copies);
  }
  const SumOverRanks none;
  Tensor x = Tensor::zeros({2, 3}), c = Tensor::zeros({3});
  CHECK_THROWS_AS(batch_norm_synced(x, c, c, c, c, none), ValueError);
  // One value per channel over every rank cannot be normalised.
  Tensor one = Tensor::zeros({1, 3});
  CHECK_THROWS_AS(batch_norm_synced(one, c, c, c, c, [](std::vector<double>&) {}), ShapeError);
}

TEST_CASE("synchronised batch norm on the GPU equals batch norm", "[dist][batchnorm][cuda]") {
  for (int copies : {1, 3}) {
    INFO(copies << " simulated ranks");
    check_synced_matches(Device::cuda(0), copies);
  }
}

namespace {

// In-process stand-in for the ranks' all-reduce: `ranks` threads each hand
// in a vector; all get the sum, added in rank order (the same on every rank).
class ThreadRanks {
 public:
  explicit ThreadRanks(int ranks) : ranks_(ranks), in_(static_cast<std::size_t>(ranks)) {}
  SumOverRanks sum_for(int rank) {
    return [this, rank](std::vector<double>& v) {
      std::unique_lock<std::mutex> lock(mu_);
      const int round = round_;
      in_[static_cast<std::size_t>(rank)] = v;
      if (++arrived_ == ranks_) {
        out_.assign(v.size(), 0.0);
        for (const auto& part : in_) {
          mismatched_ |= part.size() != out_.size();  // ranks in different collectives
          for (std::size_t i = 0; i < std::min(part.size(), out_.size()); ++i) out_[i] += part[i];
        }
        arrived_ = 0;
        ++round_;
        cv_.notify_all();
      } else {
        cv_.wait(lock, [&] { return round_ != round; });
      }
      v = out_;
    };
  }
  bool mismatched() const { return mismatched_; }

 private:
  bool mismatched_ = false;
  int ranks_, arrived_ = 0, round_ = 0;
  std::vector<std::vector<double>> in_;
  std::vector<double> out_;
  std::mutex mu_;
  std::condition_variable cv_;
};

// Rows [begin, end) of a (N, ...) CPU tensor, as a new leaf.
Tensor rows(const Tensor& t, int64_t begin, int64_t end) {
  const int64_t per = t.numel() / t.size(0);
  const auto v = t.to_vector();
  Shape s = t.shape();
  s[0] = end - begin;
  return Tensor::from_vector(std::vector<float>(v.begin() + begin * per, v.begin() + end * per), s);
}

}  // namespace

TEST_CASE("synchronised batch norm over ranks with different data equals one process",
          "[dist][batchnorm]") {
  // Two and three "ranks" (threads) with unequal parts of one batch of 7; the
  // whole batch's batch_norm is the oracle. Tolerance as above.
  using testing::random_tensor;
  const Shape shape{7, 4, 2, 3};
  const double tol = 1e-5 * testing::tolerance_scale(7 * 6);
  const Tensor x = random_tensor(shape, 21, 1.0f, 5.0f), proj = random_tensor(shape, 22);
  const Tensor gamma0 = random_tensor({4}, 23, 0.5f, 1.5f), beta0 = random_tensor({4}, 24);
  Tensor xw = x.clone().set_requires_grad(true);
  Tensor gw = gamma0.clone().set_requires_grad(true), bw = beta0.clone().set_requires_grad(true);
  Tensor rmw = Tensor::zeros({4}), rvw = Tensor::full({4}, 1.0f);
  Tensor yw = batch_norm(xw, gw, bw, rmw, rvw, true);
  yw.backward(proj);
  for (const std::vector<int64_t>& cut :
       {std::vector<int64_t>{0, 3, 7}, std::vector<int64_t>{0, 2, 4, 7}}) {
    const int ranks = static_cast<int>(cut.size()) - 1;
    INFO(ranks << " ranks");
    ThreadRanks comm(ranks);
    struct Part {
      Tensor y, dx, dgamma, dbeta, rm, rv;
    };
    std::vector<Part> parts(static_cast<std::size_t>(ranks));
    std::vector<std::thread> threads;
    for (int r = 0; r < ranks; ++r) {
      threads.emplace_back([&, r] {
        testing::ThreadCount one(1);
        Tensor xr = rows(x, cut[r], cut[r + 1]).set_requires_grad(true);
        Tensor g = gamma0.clone().set_requires_grad(true);
        Tensor b = beta0.clone().set_requires_grad(true);
        Part& p = parts[static_cast<std::size_t>(r)];
        p.rm = Tensor::zeros({4});
        p.rv = Tensor::full({4}, 1.0f);
        p.y = batch_norm_synced(xr, g, b, p.rm, p.rv, comm.sum_for(r));
        p.y.backward(rows(proj, cut[r], cut[r + 1]));
        p.dx = xr.grad();
        p.dgamma = g.grad();
        p.dbeta = b.grad();
      });
    }
    for (auto& t : threads) t.join();
    CHECK_FALSE(comm.mismatched());
    std::vector<float> y, dx, dgamma(4, 0.0f), dbeta(4, 0.0f);
    for (const Part& p : parts) {
      const auto py = p.y.to_vector(), pdx = p.dx.to_vector();
      y.insert(y.end(), py.begin(), py.end());
      dx.insert(dx.end(), pdx.begin(), pdx.end());
      const auto pg = p.dgamma.to_vector(), pb = p.dbeta.to_vector();
      for (int c = 0; c < 4; ++c) {
        dgamma[c] += pg[c];  // the gradient all-reduce's part
        dbeta[c] += pb[c];
      }
      testing::require_close(p.rm.to_vector(), rmw.to_vector(), tol, tol, "running_mean");
      testing::require_close(p.rv.to_vector(), rvw.to_vector(), tol, tol, "running_var");
    }
    testing::require_close(y, yw.to_vector(), tol, tol, "y");
    testing::require_close(dx, xw.grad().to_vector(), tol, tol, "dx");
    testing::require_close(dgamma, gw.grad().to_vector(), tol, tol, "dgamma");
    testing::require_close(dbeta, bw.grad().to_vector(), tol, tol, "dbeta");
  }
}
