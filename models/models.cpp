#include "models/models.h"

#include <algorithm>

#include "core/error.h"
#include "models/architectures.h"

namespace scratchnet::models {

namespace {

std::string joined_names() {
  std::string s;
  for (const auto& n : names()) s += (s.empty() ? "" : ", ") + n;
  return s;
}

const ModelEntry& entry(const std::string& name) {
  for (const auto& e : kModelTable)
    if (name == e.name) return e;
  throw ValueError("unknown model '" + name + "'; the models are: " + joined_names());
}

int vgg_depth(const std::string& name) {
  return std::stoi(name.substr(3));
}
bool is_vgg(const std::string& name) {
  return name.rfind("vgg", 0) == 0;
}
bool is_resnet(const std::string& name) {
  return name.rfind("resnet", 0) == 0;
}

// The smallest ResNet input whose last stage still sees more than padding
// around a single pixel: the stem and four stride-2 stages divide by 32.
constexpr int kResnetMinSize = 32;

// Walks the plan; false when a window does not fit or the flatten is wrong.
bool plan_accepts(const detail::SpatialPlan& plan, int size) {
  long long h = size;
  for (const auto& w : plan.windows) {
    if (h + 2LL * w.pad < w.kernel) return false;
    h = (h + 2LL * w.pad - w.kernel) / w.stride + 1;
  }
  return h == plan.flatten_side;
}

bool accepts(const std::string& name, int size) {
  if (size < 1) return false;
  if (name == "lenet") return plan_accepts(detail::lenet_plan(), size);
  if (name == "alexnet") return plan_accepts(detail::alexnet_plan(), size);
  if (is_vgg(name)) return plan_accepts(detail::vgg_plan(detail::vgg_arch(vgg_depth(name))), size);
  return size >= kResnetMinSize;  // resnet: global average pooling takes any size
}

// "28-31" / "219-234, 236" style list of the accepted sizes.
std::string ranges_str(const std::vector<int>& v) {
  std::string s;
  for (std::size_t i = 0; i < v.size();) {
    std::size_t j = i;
    while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
    s += (s.empty() ? "" : ", ") + std::to_string(v[i]);
    if (j > i) s += "-" + std::to_string(v[j]);
    i = j + 1;
  }
  return s;
}

}  // namespace

const std::vector<std::string>& names() {
  static const std::vector<std::string> n = [] {
    std::vector<std::string> v;
    for (const auto& e : kModelTable) v.emplace_back(e.name);
    return v;
  }();
  return n;
}

ModelDefaults defaults(const std::string& name) {
  return entry(name).defaults;
}

std::shared_ptr<Module> make(const std::string& name, Generator& gen, int width_divisor) {
  entry(name);  // validates the name
  if (width_divisor < 1)
    throw ValueError("model " + name + ": width divisor must be >= 1, got " +
                     std::to_string(width_divisor));
  if (is_vgg(name)) return detail::make_vgg(detail::vgg_arch(vgg_depth(name)), gen, width_divisor);
  if (width_divisor != 1)
    throw ValueError("model " + name + ": only the VGG models take a width divisor, got " +
                     std::to_string(width_divisor) + " (use 1)");
  if (name == "lenet") return detail::make_lenet(gen);
  if (name == "alexnet") return detail::make_alexnet(gen);
  if (name == "resnet18") return detail::make_resnet({2, 2, 2, 2}, gen);
  return detail::make_resnet({3, 4, 6, 3}, gen);  // resnet34
}

std::vector<int> accepted_sizes(const std::string& name, int max_size) {
  entry(name);
  std::vector<int> v;
  for (int s = 1; s <= max_size; ++s)
    if (accepts(name, s)) v.push_back(s);
  return v;
}

void check_input_size(const std::string& name, int image_size) {
  entry(name);
  if (accepts(name, image_size)) return;
  std::string valid;
  if (is_resnet(name)) {
    valid = ">= " + std::to_string(kResnetMinSize) +
            " (smaller inputs shrink to 1x1 before the last stages)";
  } else {
    valid = ranges_str(accepted_sizes(name, 4096));
    valid += name == "lenet"     ? " (its first Linear expects 16*5*5 = 400 features)"
             : name == "alexnet" ? " (its linear1 expects 384*5*5 = 9600 features)"
                                 : " (its first Linear expects C*7*7 features)";
  }
  throw ValueError("model " + name + " cannot take " + std::to_string(image_size) + "x" +
                   std::to_string(image_size) + " input; image sizes that work: " + valid +
                   "; the course uses " + std::to_string(defaults(name).image_size));
}

}  // namespace scratchnet::models
