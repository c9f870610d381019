// `scratchnet summary`: the layer table of a model (from shapes alone, no
// device and no data needed).
#include <algorithm>
#include <cstdio>

#include "layers/summary.h"
#include "models/models.h"
#include "tools/cli.h"
#include "tools/commands.h"

namespace scratchnet::tools {

namespace {

struct SummaryArgs {
  std::string model;
  int image_size = 0, width_divisor = 1;
};

std::string with_commas(int64_t v) {
  std::string s = std::to_string(v);
  for (int i = static_cast<int>(s.size()) - 3; i > (s[0] == '-' ? 1 : 0); i -= 3) s.insert(i, ",");
  return s;
}

}  // namespace

void add_summary_command(CLI::App& app) {
  auto a = std::make_shared<SummaryArgs>();
  CLI::App* cmd = app.add_subcommand("summary",
                                     "Each layer of a model with its output shape and "
                                     "parameter count");
  cmd->add_option("--model,-m", a->model, "Architecture")->required()->check(model_validator());
  cmd->add_option("--resize", a->image_size, "Input size (default: the model's)")
      ->check(integer_in(1, 4096));
  cmd->add_option("--width-divisor", a->width_divisor, "Divide every channel count by D (VGG)")
      ->check(integer_in(1, 4096))
      ->capture_default_str();
  cmd->callback([a] {
    const int size = a->image_size ? a->image_size : models::defaults(a->model).image_size;
    check_model_args(a->model, size, a->width_divisor);
    Generator gen(0);
    auto model = models::make(a->model, gen, a->width_divisor);
    const Shape input{1, 1, size, size};
    const auto layers = summarize(*model, input);
    std::size_t wn = 5, wd = 5, ws = 12;
    for (const auto& l : layers) {
      wn = std::max(wn, l.name.size());
      wd = std::max(wd, l.description.size());
      ws = std::max(ws, shape_str(l.output_shape).size());
    }
    const int n = static_cast<int>(wn), d = static_cast<int>(wd), s = static_cast<int>(ws);
    std::printf("%s, input %s\n\n", a->model.c_str(), shape_str(input).c_str());
    std::printf("%-*s  %-*s  %-*s  %12s\n", n, "layer", d, "type", s, "output shape", "params");
    std::printf("%s\n", std::string(static_cast<std::size_t>(n + d + s + 18), '-').c_str());
    int64_t total = 0;
    for (const auto& l : layers) {
      std::printf("%-*s  %-*s  %-*s  %12s\n", n, l.name.c_str(), d, l.description.c_str(), s,
                  shape_str(l.output_shape).c_str(), with_commas(l.num_params).c_str());
      total += l.num_params;
    }
    std::printf("%s\n", std::string(static_cast<std::size_t>(n + d + s + 18), '-').c_str());
    const int64_t all = count_parameters(*model);
    std::printf("total parameters: %s (%.2f MB as float32)\n", with_commas(all).c_str(),
                static_cast<double>(all) * 4.0 / 1e6);
    if (all != total)
      std::printf("(the layers listed hold %s of them)\n", with_commas(total).c_str());
  });
}

}  // namespace scratchnet::tools
