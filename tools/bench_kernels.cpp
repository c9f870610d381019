// Kernel mode of `scratchnet bench`: ceilings, validation, timing of every
// layer shape of the course models (or of --shape), one row per pass.
//
// Validation before timing:
//   CUDA: each configuration at batch 2 against the CPU reference kernels on
//         the same inputs; GEMM rows at their real size against 64 sampled
//         entries computed in double on the host.
//   CPU:  GEMM rows against the sampled double entries; other CPU kernels
//         ARE the reference, so they are not validated here (their tests
//         check them against finite differences).
// Tolerance: |got - want| <= atol + rtol*|want| with atol = rtol =
//   2e-5 * sqrt(L/16 + 1), L the longest sum behind one output (float
//   rounding grows with sqrt(L); inputs are uniform in [-1, 1]).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>

#include "core/cuda.h"
#include "core/error.h"
#include "kernels/cpu/threads.h"
#include "kernels/gemm.h"
#include "tools/bench_modes.h"
#include "tools/bench_ops.h"

namespace scratchnet::tools::bench {

namespace k = scratchnet::kernels;

namespace {

double tolerance(int64_t reduction) {
  return 2e-5 * std::sqrt(static_cast<double>(reduction) / 16.0 + 1.0);
}

// Counts mismatches; returns "" when all are within the tolerance.
std::string compare(const std::vector<float>& got, const std::vector<float>& want, double tol,
                    const std::string& what, double* worst) {
  int64_t bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double e = std::fabs(double(got[i]) - want[i]);
    if (!std::isfinite(got[i]) || e > tol + tol * std::fabs(want[i])) ++bad;
    if (std::isfinite(e)) *worst = std::max(*worst, e);
  }
  if (bad == 0) return "";
  return "FAIL " + what + ": " + std::to_string(bad) + " of " + std::to_string(got.size()) +
         " off (tol " + std::to_string(tol) + ")";
}

std::string ok(double worst) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "ok (max err %.1e)", worst);
  return buf;
}

// Device kernels at batch 2 vs the CPU reference on the same inputs.
std::string validate_layer(const LayerShape& layer, Device d) {
  const LayerShape s = small_batch(layer);
  Case dev = make_case(s, d, 1000), ref = make_case(s, Device::cpu(), 1000);
  double worst = 0;
  for (std::size_t i = 0; i < dev.passes.size(); ++i) {
    dev.passes[i].run();
    ref.passes[i].run();
    const Pass& p = dev.passes[i];
    for (std::size_t j = 0; j < p.outputs.size(); ++j) {
      const auto got = dev.arena->download(p.outputs[j].first, p.outputs[j].second);
      const auto want = ref.arena->download(ref.passes[i].outputs[j].first, p.outputs[j].second);
      const std::string r = compare(got, want, tolerance(p.reduction),
                                    p.name + " output " + std::to_string(j), &worst);
      if (!r.empty()) return r;
    }
  }
  return ok(worst);
}

// 64 entries of C = op(A) op(B) recomputed in double on the host.
std::string validate_gemm(k::GemmParams p, Device d) {
  p.beta = 0.0f;
  Case dev = make_gemm_case(p, d, 2000);
  Arena host(Device::cpu());  // the same fill as the case: same seeds, same values
  const float* A = host.random(int64_t{p.M} * p.K, 2000);
  const float* B = host.random(int64_t{p.K} * p.N, 2001);
  dev.passes[0].run();
  const auto C = dev.arena->download(dev.passes[0].outputs[0].first, int64_t{p.M} * p.N);
  std::vector<float> got, want;
  for (int s = 0; s < 64; ++s) {
    const int i = static_cast<int>((s * 2654435761u) % unsigned(p.M));
    const int j = static_cast<int>((s * 40503u + 17u) % unsigned(p.N));
    double acc = 0;
    for (int kk = 0; kk < p.K; ++kk) {
      const double a = p.trans_a ? A[int64_t{kk} * p.lda + i] : A[int64_t{i} * p.lda + kk];
      const double b = p.trans_b ? B[int64_t{j} * p.ldb + kk] : B[int64_t{kk} * p.ldb + j];
      acc += a * b;
    }
    got.push_back(C[int64_t{i} * p.ldc + j]);
    want.push_back(static_cast<float>(p.alpha * acc));
  }
  double worst = 0;
  const std::string r = compare(got, want, tolerance(p.K), "gemm", &worst);
  return r.empty() ? ok(worst) : r;
}

std::string gemm_shape(const k::GemmParams& p) {
  return "M=" + std::to_string(p.M) + " N=" + std::to_string(p.N) + " K=" + std::to_string(p.K) +
         (p.trans_a ? " A^T" : "") + (p.trans_b ? " B^T" : "");
}

struct Bench {
  const KernelOptions& o;
  Timer timer;
  KernelReport report;
  double gemm_rate = 0, copy_rate = 0;  // the ceilings rows are compared with
  std::map<std::string, double> cublas_cache;

  explicit Bench(const KernelOptions& opt) : o(opt), timer(opt.device) {}

  void ceilings();
  void cpu_peak();
  double cublas_ms(const k::GemmParams& p);
  void time_case(Case& c, const std::string& op, const std::string& model, const std::string& layer,
                 const std::string& shape, int count, const std::string& check);
};

void Bench::ceilings() {
  const Device d = o.device;
  const double mib = 1 << 20;
  {
    // 512 MiB: far beyond any cache, even a VM host's shared L3.
    const std::size_t bytes = std::size_t{512} << 20;
    Arena a(d);
    float* src = a.random(int64_t(bytes / 4), 1);
    float* dst = a.zeros(int64_t(bytes / 4));
    const Stats t = timer.time(
        o.warmup, o.repeats,
        [&] {
          if (d.is_cuda()) {
            cuda::memcpy_d2d(dst, src, bytes);
            return;
          }
          // Every core copies a slice: the kernels run on all of them, and one
          // thread's memcpy does not saturate the memory system.
          const int64_t n = int64_t(bytes / 4), slices = 64;
#pragma omp parallel for schedule(static)
          for (int64_t i = 0; i < slices; ++i) {
            const int64_t lo = n * i / slices, hi = n * (i + 1) / slices;
            std::memcpy(dst + lo, src + lo, std::size_t(hi - lo) * 4);
          }
        },
        false);
    copy_rate = 2.0 * double(bytes) / (t.median * 1e6);
    report.ceilings.push_back({(d.is_cuda() ? "device-to-device copy " : "parallel memcpy ") +
                                   std::to_string(int(bytes / mib)) + " MiB, read+write",
                               copy_rate, "GB/s", t});
    // On the CPU a copy also reads its destination into cache before writing
    // it (write allocate), traffic the read+write count does not see: the
    // kernels that mostly read can pass 100 % of this ceiling.
  }
  if (d.is_cuda()) {
#ifdef SCRATCHNET_WITH_CUDA
    const k::GemmParams p = k::gemm_params(false, false, 4096, 4096, 4096);
    Arena a(d);
    float *A = a.random(4096 * 4096, 2), *B = a.random(4096 * 4096, 3), *C = a.zeros(4096 * 4096);
    for (bool tf32 : {false, true}) {
      const Stats t = timer.time(o.warmup, o.repeats,
                                 [&] { k::gemm_cublas(p, A, B, C, cuda::stream(), tf32); });
      const double rate = 2.0 * 4096.0 * 4096.0 * 4096.0 / (t.median * 1e6);
      if (!tf32) {
        gemm_rate = rate;
        cublas_cache[gemm_shape(p)] = t.median;
      }
      report.ceilings.push_back(
          {std::string("cuBLAS SGEMM 4096^3 ") + (tf32 ? "TF32" : "strict FP32"), rate, "GFLOP/s",
           t});
    }
#endif
  } else {
    cpu_peak();
  }
}

// The CPU's FP32 peak for the GEMM variant in use: a loop of independent FMA
// chains (kernels::cpu_fma_loop) on one core, then on every thread at once.
// GEMM rows are compared with the second: the rows run on those threads.
void Bench::cpu_peak() {
  const std::string isa = k::gemm_cpu_variant();
  // ~0.5 GFLOP per call, a few milliseconds: long enough to time, short
  // enough that on a busy machine some repeats run undisturbed.
  const int64_t iters = static_cast<int64_t>(5e8 / k::cpu_fma_loop(isa, 1));
  double one_flops = 0;
  const Stats t1 = timer.time(
      o.warmup, o.repeats, [&] { one_flops = k::cpu_fma_loop(isa, iters); }, false);
  const double one = one_flops / (t1.median * 1e6);
  report.ceilings.push_back({"FP32 FMA peak, 1 core, " + isa, one, "GFLOP/s", t1});
  gemm_rate = one;
  const int threads = k::cpu_threads();
  if (threads > 1) {
    const Stats tn = timer.time(
        o.warmup, o.repeats,
        [&] {
#pragma omp parallel num_threads(threads)
          k::cpu_fma_loop(isa, iters);
        },
        false);
    gemm_rate = threads * one_flops / (tn.median * 1e6);
    report.ceilings.push_back({"FP32 FMA peak, " + std::to_string(threads) + " threads, " + isa,
                               gemm_rate, "GFLOP/s", tn});
  }
}

// cuBLAS strict FP32 on the same GEMM shape; -1 off the GPU or when the
// operands would not fit comfortably (an im2col GEMM of a large conv).
double Bench::cublas_ms([[maybe_unused]] const k::GemmParams& p) {
#ifdef SCRATCHNET_WITH_CUDA
  if (!o.device.is_cuda()) return -1;
  const std::string key = gemm_shape(p);
  auto it = cublas_cache.find(key);
  if (it != cublas_cache.end()) return it->second;
  const double bytes = 4.0 * (double(p.M) * p.K + double(p.K) * p.N + double(p.M) * p.N);
  std::size_t free_b = 0, total_b = 0;
  cuda::mem_info(&free_b, &total_b);
  double ms = -1;
  if (bytes < 0.5 * double(free_b)) {
    Arena a(o.device);
    float *A = a.random(int64_t{p.M} * p.K, 5), *B = a.random(int64_t{p.K} * p.N, 6);
    float* C = a.zeros(int64_t{p.M} * p.N);
    ms = timer.time(o.warmup, o.repeats, [&] { k::gemm_cublas(p, A, B, C, cuda::stream(), false); })
             .median;
  }
  cublas_cache[key] = ms;
  return ms;
#else
  return -1;
#endif
}

void Bench::time_case(Case& c, const std::string& op, const std::string& model,
                      const std::string& layer, const std::string& shape, int count,
                      const std::string& check) {
  for (Pass& p : c.passes) {
    Row r;
    r.op = op, r.pass = p.name, r.model = model, r.layer = layer, r.shape = shape;
    r.count = count, r.flops = p.flops, r.bytes = p.bytes, r.check = check;
    r.t = timer.time(o.warmup, o.repeats, p.run);
    const double ceiling = p.flops > 0 ? gemm_rate : copy_rate;
    if (ceiling > 0) r.ceiling_pct = 100.0 * r.rate() / ceiling;
    // On a VM the reported LLC (hundreds of MiB) can exceed the flush, which
    // is clamped to 128 MiB: a small working set then survives it in cache.
    r.cache_resident = p.flops <= 0 && timer.flush_bytes() < 2 * timer.l2_bytes() &&
                       p.bytes < double(timer.l2_bytes());
    if (p.gemm_backed) r.cublas_ms = cublas_ms(p.gemm);
    report.rows.push_back(r);
  }
}

bool selected(const std::vector<std::string>& ops, const std::string& name) {
  for (const auto& op : ops) {
    if (op == "all" || op == name) return true;
    if (op == "pool" && (name == "maxpool" || name == "avgpool" || name == "gap")) return true;
  }
  return false;
}

}  // namespace

KernelReport run_kernel_bench(const KernelOptions& o) {
  Bench b(o);
  b.report.device = o.device.str();
  b.report.device_name = o.device.is_cuda() ? cuda::device_name(o.device.index) : "host CPU";
  b.report.warmup = o.warmup, b.report.repeats = o.repeats;
  b.report.llc_mib = double(b.timer.l2_bytes()) / double(1 << 20);
  b.report.flush_mib = double(b.timer.flush_bytes()) / double(1 << 20);
  for (const auto& name : o.models)
    if (name != "all") bench_model(name);  // ValueError: not in the kernel shape table
  // The work lists first (from --shape or the models): a bad spec fails
  // before a second is spent measuring.
  std::vector<LayerShape> layers;
  std::vector<std::pair<std::string, k::GemmParams>> gemms;  // label, shape
  if (!o.shapes.empty()) {
    for (const auto& spec : o.shapes) {
      LayerShape l;
      int mnk[3];
      if (parse_shape(spec, l, mnk))
        layers.push_back(l);
      else
        gemms.emplace_back("custom", k::gemm_params(false, false, mnk[0], mnk[1], mnk[2]));
    }
  } else {
    if (o.square_gemm && selected(o.ops, "gemm"))
      gemms.emplace_back("square", k::gemm_params(false, false, 4096, 4096, 4096));
    for (const auto& m : bench_models()) {
      if (!selected(o.models, m.name)) continue;
      for (const LayerShape& l :
           dedup(model_layers(m.name, o.batch, o.image_size, o.width_divisor))) {
        if (selected(o.ops, kind_name(l.kind))) layers.push_back(l);
        // The GEMMs behind the fully connected layers, called directly.
        if (l.kind == Kind::Linear && selected(o.ops, "gemm")) {
          const auto g = linear_gemms(l.linear);
          const char* pass[3] = {"fwd", "bwd_data", "bwd_weight"};
          for (int i = 0; i < 3; ++i)
            gemms.emplace_back(m.name + " " + l.layer + " " + pass[i], g[i]);
        }
      }
    }
  }
  const int total = static_cast<int>(gemms.size() + layers.size());
  int done = 0;
  auto progress = [&](const std::string& what) {
    if (o.progress) o.progress(what, done++, total);
  };
  if (o.progress) o.progress("ceilings (copy bandwidth, GEMM)", 0, total);
  b.ceilings();
  for (const auto& [label, p] : gemms) {
    progress("gemm " + label);
    const std::string check = o.validate ? validate_gemm(p, o.device) : "not validated";
    Case c = make_gemm_case(p, o.device, 3000);
    b.time_case(c, "gemm", "-", label, gemm_shape(p), 1, check);
  }
  for (const LayerShape& l : layers) {
    progress(std::string(kind_name(l.kind)) + " " + l.model + " " + l.layer);
    std::string check = "skipped (the CPU kernel is the reference)";
    if (!o.validate)
      check = "not validated";
    else if (o.device.is_cuda())
      check = validate_layer(l, o.device);
    Case c = make_case(l, o.device, 3000);
    b.time_case(c, kind_name(l.kind), l.model.empty() ? "-" : l.model, l.layer, l.shape(), l.count,
                check);
  }
  return b.report;
}

}  // namespace scratchnet::tools::bench
