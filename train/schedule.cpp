#include "train/schedule.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace scratchnet::train {

const std::vector<std::string>& lr_schedule_kinds() {
  static const std::vector<std::string> kinds = {"constant", "step", "cosine"};
  return kinds;
}

void check_lr_schedule(const LrSchedule& s, int total_epochs) {
  const auto& kinds = lr_schedule_kinds();
  if (std::find(kinds.begin(), kinds.end(), s.kind) == kinds.end())
    throw ValueError("unknown --lr-schedule '" + s.kind + "'; choose constant, step or cosine");
  if (s.kind == "step" && s.step_epochs < 1)
    throw ValueError("--lr-schedule step needs --lr-step-epochs N (N >= 1)");
  if (s.kind == "step" && !(s.gamma > 0.0 && s.gamma <= 1.0))
    throw ValueError("--lr-gamma must be in (0, 1], got " + std::to_string(s.gamma));
  if (!(s.warmup_epochs >= 0.0) || s.warmup_epochs >= total_epochs)
    throw ValueError("--warmup-epochs must be >= 0 and less than --epochs (" +
                     std::to_string(total_epochs) + "), got " + std::to_string(s.warmup_epochs));
}

double scheduled_lr(const LrSchedule& s, double base_lr, int epoch, int step, int steps_per_epoch,
                    int total_epochs) {
  const double n = std::max(steps_per_epoch, 1);
  const double t = (epoch - 1) + step / n;
  if (s.warmup_epochs > 0.0 && t < s.warmup_epochs) {
    const double warmup_steps = std::max(1.0, std::round(s.warmup_epochs * n));
    return base_lr * std::min(1.0, (t * n + 1.0) / warmup_steps);
  }
  if (s.kind == "step" && s.step_epochs > 0)
    return base_lr * std::pow(s.gamma, std::floor(t / s.step_epochs));
  if (s.kind == "cosine") {
    const double span = total_epochs - s.warmup_epochs;
    const double frac = span > 0 ? std::clamp((t - s.warmup_epochs) / span, 0.0, 1.0) : 1.0;
    return base_lr * 0.5 * (1.0 + std::cos(M_PI * frac));
  }
  return base_lr;
}

}  // namespace scratchnet::train
