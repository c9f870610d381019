// Learning-rate schedules: hand-computed values at chosen steps.
// Tolerance: 1e-12 relative (double arithmetic of a few operations).
#include <catch2/catch.hpp>
#include <cmath>

#include "core/error.h"
#include "train/schedule.h"

using namespace scratchnet;
using train::LrSchedule;
using train::scheduled_lr;

TEST_CASE("constant and step schedules", "[schedule]") {
  LrSchedule c;
  CHECK(scheduled_lr(c, 0.9, 1, 0, 10, 5) == 0.9);
  CHECK(scheduled_lr(c, 0.9, 5, 9, 10, 5) == 0.9);

  LrSchedule s;
  s.kind = "step";
  s.step_epochs = 2;
  s.gamma = 0.5;
  // Epochs 1-2 at lr, 3-4 at lr/2, 5 at lr/4: the decay lands on an epoch start.
  CHECK(scheduled_lr(s, 0.8, 1, 0, 10, 5) == 0.8);
  CHECK(scheduled_lr(s, 0.8, 2, 9, 10, 5) == 0.8);
  CHECK(scheduled_lr(s, 0.8, 3, 0, 10, 5) == 0.4);
  CHECK(scheduled_lr(s, 0.8, 4, 9, 10, 5) == 0.4);
  CHECK(scheduled_lr(s, 0.8, 5, 0, 10, 5) == 0.2);
}

TEST_CASE("cosine schedule falls from lr to 0 over the run", "[schedule]") {
  LrSchedule s;
  s.kind = "cosine";
  const double tol = 1e-12;
  CHECK(scheduled_lr(s, 1.0, 1, 0, 4, 2) == Approx(1.0).epsilon(tol));
  // Half way (epoch 2, step 0 of a 2-epoch run): cos(pi/2) -> lr/2.
  CHECK(scheduled_lr(s, 1.0, 2, 0, 4, 2) == Approx(0.5).epsilon(tol));
  // A quarter: (1 + cos(pi/4)) / 2.
  CHECK(scheduled_lr(s, 1.0, 1, 2, 4, 2) == Approx((1 + std::cos(M_PI / 4)) / 2).epsilon(tol));
  // The last step: one step short of the end.
  CHECK(scheduled_lr(s, 1.0, 2, 3, 4, 2) ==
        Approx((1 + std::cos(M_PI * 7.0 / 8.0)) / 2).epsilon(tol));
  CHECK(scheduled_lr(s, 1.0, 2, 3, 4, 2) > 0.0);
}

TEST_CASE("linear warm-up reaches lr on its last step, then the schedule runs", "[schedule]") {
  LrSchedule s;
  s.kind = "cosine";
  s.warmup_epochs = 1;
  // 4 steps per epoch: warm-up steps give lr/4, 2lr/4, 3lr/4, lr.
  CHECK(scheduled_lr(s, 0.4, 1, 0, 4, 3) == Approx(0.1).epsilon(1e-12));
  CHECK(scheduled_lr(s, 0.4, 1, 1, 4, 3) == Approx(0.2).epsilon(1e-12));
  CHECK(scheduled_lr(s, 0.4, 1, 3, 4, 3) == Approx(0.4).epsilon(1e-12));
  // Cosine over the 2 epochs after warm-up: lr at epoch 2 start, lr/2 at epoch 3 start.
  CHECK(scheduled_lr(s, 0.4, 2, 0, 4, 3) == Approx(0.4).epsilon(1e-12));
  CHECK(scheduled_lr(s, 0.4, 3, 0, 4, 3) == Approx(0.2).epsilon(1e-12));

  LrSchedule w;  // warm-up before a constant rate
  w.warmup_epochs = 0.5;
  CHECK(scheduled_lr(w, 1.0, 1, 0, 4, 2) == Approx(0.5).epsilon(1e-12));
  CHECK(scheduled_lr(w, 1.0, 1, 1, 4, 2) == 1.0);
  CHECK(scheduled_lr(w, 1.0, 2, 0, 4, 2) == 1.0);
}

TEST_CASE("schedules that cannot run are refused with the setting named", "[schedule]") {
  LrSchedule s;
  s.kind = "exponential";
  CHECK_THROWS_AS(train::check_lr_schedule(s, 5), ValueError);
  s.kind = "step";
  CHECK_THROWS_WITH(train::check_lr_schedule(s, 5), Catch::Contains("--lr-step-epochs"));
  s.step_epochs = 2;
  CHECK_NOTHROW(train::check_lr_schedule(s, 5));
  s.gamma = 1.5;
  CHECK_THROWS_WITH(train::check_lr_schedule(s, 5), Catch::Contains("--lr-gamma"));
  LrSchedule w;
  w.warmup_epochs = 5;
  CHECK_THROWS_WITH(train::check_lr_schedule(w, 5), Catch::Contains("--warmup-epochs"));
  w.warmup_epochs = 4.5;
  CHECK_NOTHROW(train::check_lr_schedule(w, 5));
}
