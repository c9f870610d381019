// Learning-rate schedules, per step, as a course user knows them from
// torch.optim.lr_scheduler and d2l's schedulers:
//   constant  lr
//   step      lr * gamma^floor(t / step_epochs)                  (StepLR)
//   cosine    lr * (1 + cos(pi * (t - warmup) / (T - warmup))) / 2, down to 0
//             at the end of the last epoch                  (d2l CosineScheduler)
// and, before any of them, an optional linear warm-up over `warmup_epochs`:
// lr * (steps done + 1) / (warm-up steps), reaching lr on its last step.
// t counts epochs, fractional, at the start of a step: epoch e (1-based),
// step i of n gives t = e - 1 + i / n.
#pragma once
#include <string>
#include <vector>

namespace scratchnet::train {

struct LrSchedule {
  std::string kind = "constant";  // constant | step | cosine
  int step_epochs = 0;            // step: decay every this many epochs (>= 1)
  double gamma = 0.1;             // step: the factor
  double warmup_epochs = 0.0;     // linear warm-up length (0: none)
};

// The names lr_schedule_kinds() accepts, for --help and validation.
const std::vector<std::string>& lr_schedule_kinds();

// ValueError naming the setting when the schedule cannot run `total_epochs`
// (unknown kind, step without step_epochs, warm-up not shorter than the run...).
void check_lr_schedule(const LrSchedule& s, int total_epochs);

// The learning rate of step `step` (0-based) of `steps_per_epoch` in epoch
// `epoch` (1-based) of `total_epochs`.
double scheduled_lr(const LrSchedule& s, double base_lr, int epoch, int step, int steps_per_epoch,
                    int total_epochs);

}  // namespace scratchnet::train
