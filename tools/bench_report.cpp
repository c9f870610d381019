// Printing `scratchnet bench` results (see bench_report.h).
#include "tools/bench_report.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace scratchnet::tools::bench {

using nlohmann::json;

double Row::rate() const {
  if (t.median <= 0) return 0;
  return (flops > 0 ? flops : bytes) / (t.median * 1e6);  // per ms -> per s, in 1e9
}

const char* Row::unit() const {
  return flops > 0 ? "GFLOP/s" : "GB/s";
}

namespace {

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

json stats_json(const Stats& s) {
  return {{"median_ms", s.median}, {"min_ms", s.min},   {"max_ms", s.max},     {"p10_ms", s.p10},
          {"p90_ms", s.p90},       {"mean_ms", s.mean}, {"repeats", s.repeats}};
}

// Prints rows of cells with each column as wide as its widest cell.
void print_table(const std::vector<std::vector<std::string>>& cells, std::ostream& os) {
  std::vector<std::size_t> w;
  for (const auto& r : cells)
    for (std::size_t i = 0; i < r.size(); ++i) {
      if (w.size() <= i) w.push_back(0);
      w[i] = std::max(w[i], r[i].size());
    }
  for (std::size_t k = 0; k < cells.size(); ++k) {
    std::string line;
    for (std::size_t i = 0; i < cells[k].size(); ++i) {
      std::string c = cells[k][i];
      c.resize(w[i], ' ');
      line += (i ? "  " : "") + c;
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    os << line << "\n";
    if (k == 0) {
      std::size_t total = 0;
      for (auto x : w) total += x + 2;
      os << std::string(total - 2, '-') << "\n";
    }
  }
}

std::string csv_cell(const std::string& s) {
  if (s.find_first_of(",\"") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

// "N=256 C=1 H=28 W=28 K=6 R=5 S=5 s=1 p=2" -> "256x1x28x28 K6 5x5 s1 p2":
// the table's shape column, short enough for 120 columns (csv/json keep the
// long form).
std::string compact_shape(const std::string& shape) {
  std::vector<std::pair<std::string, std::string>> kv;
  std::size_t start = 0;
  while (start < shape.size()) {
    std::size_t end = shape.find(' ', start);
    if (end == std::string::npos) end = shape.size();
    const std::string tok = shape.substr(start, end - start);
    const auto eq = tok.find('=');
    if (eq == std::string::npos) return shape;  // not key=value: leave it
    kv.emplace_back(tok.substr(0, eq), tok.substr(eq + 1));
    start = end + 1;
  }
  auto get = [&](const char* k) -> std::string {
    for (const auto& [key, v] : kv)
      if (key == k) return v;
    return "";
  };
  if (get("N").empty() || get("C").empty() || get("H").empty() || get("W").empty()) return shape;
  std::string s = get("N") + "x" + get("C") + "x" + get("H") + "x" + get("W");
  if (!get("K").empty()) s += " K" + get("K");
  if (!get("R").empty()) s += " " + get("R") + "x" + (get("S").empty() ? get("R") : get("S"));
  if (!get("s").empty()) s += " s" + get("s");
  if (!get("p").empty()) s += " p" + get("p");
  return s;
}

// `text` in lines of at most `width` columns, each starting with `indent`.
std::string wrap(const std::string& text, const std::string& indent, std::size_t width) {
  std::string out, line = indent;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find(' ', start);
    if (end == std::string::npos) end = text.size();
    const std::string word = text.substr(start, end - start);
    if (line.size() > indent.size() && line.size() + 1 + word.size() > width) {
      out += line + "\n";
      line = indent + "  ";
    }
    line += (line.size() > indent.size() && line.back() != ' ' ? " " : "") + word;
    start = end + 1;
  }
  return out + line + "\n";
}

std::string short_check(const std::string& check) {
  if (check.rfind("ok", 0) == 0) return "ok";
  if (check.rfind("skipped", 0) == 0) return "ref";
  return check;
}

std::vector<std::vector<std::string>> table_cells(const KernelReport& r) {
  bool any_cublas = false;
  for (const auto& x : r.rows) any_cublas = any_cublas || x.cublas_ms > 0;
  std::vector<std::vector<std::string>> cells;
  cells.push_back({"op", "pass", "layer", "shape", "x", "ms", "+-", "rate", "%ceil"});
  if (any_cublas) cells.back().push_back("/cuBLAS");
  cells.back().push_back("check");
  for (const auto& x : r.rows) {
    const double spread = x.t.median > 0 ? 50.0 * (x.t.p90 - x.t.p10) / x.t.median : 0.0;
    cells.push_back(
        {x.op, x.pass, x.model == "-" ? x.layer : x.model + " " + x.layer, compact_shape(x.shape),
         std::to_string(x.count), fmt("%.3f", x.t.median), fmt("%.0f%%", spread),
         fmt("%.1f ", x.rate()) + (x.flops > 0 ? "GFLOP/s" : "GB/s"),
         x.ceiling_pct >= 0 ? fmt("%.1f", x.ceiling_pct) + (x.cache_resident ? "*" : "") : ""});
    if (any_cublas)
      cells.back().push_back(x.cublas_ms > 0 ? fmt("%.2f", x.t.median / x.cublas_ms) : "");
    cells.back().push_back(short_check(x.check));
  }
  return cells;
}

}  // namespace

void write_kernel_report(const KernelReport& r, const std::string& format, std::ostream& os) {
  if (format == "json") {
    json j = {{"mode", "kernels"},
              {"device", r.device},
              {"device_name", r.device_name},
              {"warmup", r.warmup},
              {"repeats", r.repeats}};
    j["ceilings"] = json::array();
    for (const auto& c : r.ceilings)
      j["ceilings"].push_back(
          {{"name", c.name}, {"value", c.value}, {"unit", c.unit}, {"time", stats_json(c.t)}});
    j["rows"] = json::array();
    for (const auto& x : r.rows) {
      json row = {{"op", x.op},       {"pass", x.pass},   {"model", x.model},
                  {"layer", x.layer}, {"shape", x.shape}, {"count", x.count},
                  {"flops", x.flops}, {"bytes", x.bytes}, {"time", stats_json(x.t)},
                  {"rate", x.rate()}, {"unit", x.unit()}, {"check", x.check}};
      row["ceiling_pct"] = x.ceiling_pct >= 0 ? json(x.ceiling_pct) : json(nullptr);
      row["cache_resident"] = x.cache_resident;
      row["cublas_ms"] = x.cublas_ms > 0 ? json(x.cublas_ms) : json(nullptr);
      row["vs_cublas"] = x.cublas_ms > 0 ? json(x.t.median / x.cublas_ms) : json(nullptr);
      j["rows"].push_back(row);
    }
    os << j.dump(1) << "\n";
    return;
  }
  if (format == "csv") {
    std::vector<std::vector<std::string>> cells;
    cells.push_back({"op", "pass", "model", "layer", "shape", "x", "ms", "p10-p90", "rate", "unit",
                     "%ceil", "cache_resident", "ours/cuBLAS", "check"});
    for (const auto& x : r.rows)
      cells.push_back({x.op, x.pass, x.model, x.layer, x.shape, std::to_string(x.count),
                       fmt("%.4f", x.t.median), fmt("%.4f", x.t.p10) + "-" + fmt("%.4f", x.t.p90),
                       fmt("%.1f", x.rate()), x.unit(),
                       x.ceiling_pct >= 0 ? fmt("%.1f", x.ceiling_pct) : "",
                       x.cache_resident ? "1" : "0",
                       x.cublas_ms > 0 ? fmt("%.2f", x.t.median / x.cublas_ms) : "", x.check});
    for (const auto& row : cells) {
      for (std::size_t i = 0; i < row.size(); ++i) os << (i ? "," : "") << csv_cell(row[i]);
      os << "\n";
    }
    return;
  }
  os << "scratchnet bench on " << r.device << " (" << r.device_name << "), warm-up " << r.warmup
     << ", repeats " << r.repeats << "; times are medians\n";
  for (const auto& c : r.ceilings)
    os << "ceiling: " << c.name << " = " << fmt("%.1f", c.value) << " " << c.unit << "\n";
  os << "\n";
  print_table(table_cells(r), os);
  os << "\n%ceil: GFLOP/s rows against the GEMM ceiling, GB/s rows against the copy ceiling\n"
        "  (on the CPU the GEMM ceiling is the FMA peak of the GEMM variant in use, on the\n"
        "  threads the rows use; SCRATCHNET_CPU_ISA=avx512|avx2|generic chooses the variant).\n"
        "+-: half the p10-p90 spread, in % of the median.\n";
  bool any_cached = false;
  for (const auto& x : r.rows) any_cached = any_cached || x.cache_resident;
  if (any_cached)
    os << "*: the working set fits in the " << fmt("%.0f", r.llc_mib)
       << " MiB last-level cache, more than the " << fmt("%.0f", r.flush_mib)
       << " MiB flush evicts: it may run\n  from cache, so its %ceil (which can pass 100) is not a "
          "DRAM efficiency.\n";
  os << "check: ok = matches the CPU reference (max error: --format csv/json); ref = is the CPU "
        "reference.\n";
}

void write_step_report(const StepReport& r, const std::string& format, int top, std::ostream& os) {
  if (format == "json") {
    json j = {
        {"mode", "model_step"},    {"device", r.device},       {"device_name", r.device_name},
        {"model", r.model},        {"batch", r.batch},         {"input", r.image_size},
        {"steps", r.steps},        {"warmup", r.warmup},       {"ms_per_step", r.t.median},
        {"time", stats_json(r.t)}, {"img_per_s", r.img_per_s}, {"peak_mem_MiB", r.peak_mem_mib},
        {"profile", nullptr}};
    j["saved_activation_bytes"] = r.saved_bytes;
    j["rss_growth_MiB"] = r.rss_growth_mib;
    j["saved_activation_MiB"] = double(r.saved_bytes) / double(1 << 20);
    // The eager step above; the CUDA graph replay of it here (null without one).
    j["cuda_graph"] = nullptr;
    if (r.graphed)
      j["cuda_graph"] = {{"ms_per_step", r.graph_t.median},
                         {"time", stats_json(r.graph_t)},
                         {"img_per_s", r.graph_img_per_s}};
    j["cuda_graph_note"] = r.graph_note;
    if (r.profiled)
      j["profile"] = {{"forward_ms", r.forward_ms},
                      {"backward_ms", r.backward_ms},
                      {"optimizer_ms", r.optimizer_ms},
                      {"forward_note", r.forward_note}};
    j["forward_layers"] = json::array();
    for (const auto& l : r.forward_layers)
      j["forward_layers"].push_back({{"name", l.name}, {"ms", l.ms}});
    j["backward_layers"] = json::array();
    for (const auto& l : r.backward_layers)
      j["backward_layers"].push_back({{"name", l.name}, {"count", l.count}, {"ms", l.ms}});
    os << j.dump() << "\n";  // one line: scripts read it as JSON lines
    return;
  }
  if (format == "csv") {
    // One row per way of running the step: eager, then (CUDA) the graph replay.
    os << "model,batch,input,ms_per_step,p10_ms,p90_ms,img_per_s,peak_mem_MiB,saved_act_MiB,"
          "step\n";
    auto row = [&](const Stats& t, double img_per_s, const char* how) {
      os << r.model << "," << r.batch << "," << r.image_size << "," << t.median << "," << t.p10
         << "," << t.p90 << "," << img_per_s << "," << r.peak_mem_mib << ","
         << double(r.saved_bytes) / double(1 << 20) << "," << how << "\n";
    };
    row(r.t, r.img_per_s, "eager");
    if (r.graphed) row(r.graph_t, r.graph_img_per_s, "cuda_graph");
    return;
  }
  os << "scratchnet bench: " << r.model << " training step on " << r.device << " (" << r.device_name
     << "), batch " << r.batch << ", input " << r.image_size << "x" << r.image_size << "\n"
     << "  " << fmt("%.3f", r.t.median) << " ms/step (median of " << r.t.repeats << ", p10 "
     << fmt("%.3f", r.t.p10) << ", p90 " << fmt("%.3f", r.t.p90) << "), "
     << fmt("%.1f", r.img_per_s) << " img/s, peak memory " << fmt("%.1f", r.peak_mem_mib)
     << " MiB, saved activations " << fmt("%.1f", double(r.saved_bytes) / double(1 << 20))
     << " MiB (eager steps)\n";
  if (r.graphed)
    os << "  " << fmt("%.3f", r.graph_t.median) << " ms/step as a CUDA graph replay, as training "
       << "runs (median of " << r.graph_t.repeats << ", p10 " << fmt("%.3f", r.graph_t.p10)
       << ", p90 " << fmt("%.3f", r.graph_t.p90) << "), " << fmt("%.1f", r.graph_img_per_s)
       << " img/s\n";
  else if (!r.graph_note.empty())
    os << "  CUDA graph: " << r.graph_note << "\n";
  if (!r.profiled) return;
  os << "  profiled step (synchronised after each part): forward " << fmt("%.3f", r.forward_ms)
     << " ms, backward " << fmt("%.3f", r.backward_ms) << " ms, SGD " << fmt("%.3f", r.optimizer_ms)
     << " ms\n"
     << wrap(r.forward_note, "  ", 110) << "\n";
  if (!r.forward_layers.empty()) {
    std::vector<std::vector<std::string>> cells;
    cells.push_back({"forward layer (op, input shape)", "ms", "% of forward"});
    int shown = 0;
    for (const auto& l : r.forward_layers) {
      if (shown++ >= top) break;
      cells.push_back({l.name, fmt("%.3f", l.ms),
                       fmt("%.1f", r.forward_ms > 0 ? 100.0 * l.ms / r.forward_ms : 0.0)});
    }
    print_table(cells, os);
    os << "\n";
  }
  std::vector<std::vector<std::string>> cells;
  cells.push_back({"backward node (output shape)", "nodes", "ms", "% of backward"});
  int shown = 0;
  for (const auto& l : r.backward_layers) {
    if (shown++ >= top) break;
    cells.push_back({l.name, std::to_string(l.count), fmt("%.3f", l.ms),
                     fmt("%.1f", r.backward_ms > 0 ? 100.0 * l.ms / r.backward_ms : 0.0)});
  }
  print_table(cells, os);
}

}  // namespace scratchnet::tools::bench
