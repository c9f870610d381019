// CPU single-precision GEMM, row-major: C = alpha * op(A) * op(B) + beta * C.
//
// Layouts: A is M x K (K x M when trans_a), B is K x N (N x K when trans_b),
// C is M x N; lda/ldb/ldc are row strides, so sub-matrices work. beta == 0
// writes C without reading it (BLAS convention: a reused buffer's garbage,
// NaN included, never leaks into the result).
//
// The algorithm is the usual one (Goto / BLIS): C is cut into tiles of up
// to MC x NC elements, the unit of OpenMP work; each tile packs slices of
// op(A) and op(B) into contiguous, zero-padded micro-panels and runs an
// MR x NR register micro-kernel over them (kernels/cpu/gemm_kernel.h).
//
// Run-time dispatch: the packing and the micro-kernel are compiled once per
// instruction set (kernels/cpu/gemm_avx512.cpp, gemm_avx2.cpp,
// gemm_generic.cpp, each with its own -m flags), and this file picks one at
// the first call with __builtin_cpu_supports: a binary built for a plain
// x86-64 still runs AVX-512 where the CPU has it. SCRATCHNET_CPU_ISA=
// avx512|avx2|generic forces a variant (to compare them, or to test a lower
// one on a bigger CPU). The driver here only cuts tiles, owns the scratch and
// the threads, and is compiled like the rest of the engine.
//
// Pre-packed A: gemm_cpu_pack_a packs op(A) whole, as the tiles would slice
// by slice, and gemm_cpu_prepacked_a runs tiles that read it instead of
// packing: conv2d packs its weights once per call instead of once per
// image or group (re-packing 9 MiB of weights per small GEMM cost as much as
// the arithmetic on ResNet's 3x3 maps).
//
// Threading: a call from outside any OpenMP region, big enough to pay for it,
// spreads its tiles over the threads; a call from inside a parallel region
// (conv2d parallelises over the batch and calls this per image) runs serially
// on the calling thread. Packing buffers are per thread and reused.
#include "kernels/gemm.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/cpu/gemm_variants.h"
#include "kernels/cpu/parallel.h"

namespace scratchnet::kernels {

namespace {

// Every variant this binary has, widest first.
const GemmVariant* const kVariants[] = {
#if defined(SCRATCHNET_GEMM_X86)
    &gemm_variant_avx512,
    &gemm_variant_avx2,
#endif
    &gemm_variant_generic,
};

bool cpu_runs(const GemmVariant& v) {
  const std::string name = v.name;
#if defined(SCRATCHNET_GEMM_X86)
  // libgcc's answers include the OS check (XGETBV): AVX-512 state is saved.
  // (Its constructor fills them in; the explicit call covers a gemm that
  // runs from another static constructor first.)
  __builtin_cpu_init();
  if (name == "avx512") return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
  if (name == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return name == "generic";
}

std::string join(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

const GemmVariant& find_variant(const std::string& name, const char* source) {
  for (const GemmVariant* v : kVariants) {
    if (name != v->name) continue;
    if (!cpu_runs(*v))
      throw ValueError(std::string(source) + ": this CPU cannot run the '" + name +
                       "' GEMM variant; it runs: " + join(gemm_cpu_variants()));
    return *v;
  }
  std::vector<std::string> all;
  for (const GemmVariant* v : kVariants) all.push_back(v->name);
  throw ValueError(std::string(source) + ": unknown GEMM variant '" + name +
                   "'; this binary has: " + join(all));
}

// Decided once: the CPU does not change, nor (for this process) the environment.
// A bad SCRATCHNET_CPU_ISA throws, and throws again at the next call.
const GemmVariant& chosen_variant() {
  static const GemmVariant& chosen = []() -> const GemmVariant& {
    const char* env = std::getenv("SCRATCHNET_CPU_ISA");
    if (env && *env) return find_variant(env, "SCRATCHNET_CPU_ISA");
    for (const GemmVariant* v : kVariants)
      if (cpu_runs(*v)) return *v;
    return gemm_variant_generic;
  }();
  return chosen;
}

// Scratch for packed panels, one pair per thread, grown as needed and kept:
// the engine calls gemm with the same few shapes every step. Aligned to a
// cache line, so a packed row of B is whole vectors within one line.
struct PackBuffers {
  std::vector<float> a, b;
  static float* aligned(std::vector<float>& v, std::size_t n) {
    if (v.size() < n + 16) v.resize(n + 16);
    const auto addr = reinterpret_cast<std::uintptr_t>(v.data());
    return v.data() + ((64 - addr % 64) % 64) / sizeof(float);
  }
};
PackBuffers& pack_buffers() {
  thread_local PackBuffers buffers;
  return buffers;
}

void run_tile(const GemmVariant& v, const GemmParams& p, const float* A, const float* B, float* C,
              int i0, int mc, int j0, int nc, const float* a_packed) {
  PackBuffers& buf = pack_buffers();
  const std::size_t kc = std::min(v.kc, p.K);
  const std::size_t mc_pad = (mc + v.mr - 1) / v.mr * v.mr;
  const std::size_t nb_pad = (std::min(nc, v.nc) + v.nr - 1) / v.nr * v.nr;
  float* ap = a_packed ? nullptr : PackBuffers::aligned(buf.a, mc_pad * kc);
  float* bp = PackBuffers::aligned(buf.b, nb_pad * kc);
  v.tile(p, A, B, C, i0, mc, j0, nc, ap, bp, a_packed);
}

// K == 0 (or alpha == 0): C = beta * C, nothing to multiply.
void scale_c(const GemmParams& p, float* C) {
  for (int i = 0; i < p.M; ++i) {
    float* c = C + static_cast<long>(i) * p.ldc;
    for (int j = 0; j < p.N; ++j) c[j] = p.beta == 0.0f ? 0.0f : p.beta * c[j];
  }
}

// a_packed: op(A) packed whole by v.pack_a, or nullptr (each tile packs A).
void gemm_run(const GemmVariant& v, const GemmParams& p, const float* A, const float* B, float* C,
              const float* a_packed = nullptr) {
  require(p.M >= 0 && p.N >= 0 && p.K >= 0, "gemm",
          "sizes must be >= 0, got M=" + std::to_string(p.M) + " N=" + std::to_string(p.N) +
              " K=" + std::to_string(p.K));
  // A row stride shorter than the row would make rows overlap: a caller bug.
  require(p.lda >= (p.trans_a ? p.M : p.K) &&
              (p.b_source || p.ldb >= (p.trans_b ? p.K : p.N)) && p.ldc >= p.N,
          "gemm",
          "leading dimensions too small: lda=" + std::to_string(p.lda) +
              " ldb=" + std::to_string(p.ldb) + " ldc=" + std::to_string(p.ldc) + " for M=" +
              std::to_string(p.M) + " N=" + std::to_string(p.N) + " K=" + std::to_string(p.K));
  if (p.M == 0 || p.N == 0) return;
  if (p.K <= 0 || p.alpha == 0.0f) {
    scale_c(p, C);
    return;
  }
  // Below ~1 MFLOP the fork/join costs more than it saves.
  const double flops = 2.0 * p.M * p.N * p.K;
  const int threads = omp_in_parallel() || flops < 1e6 ? 1 : omp_get_max_threads();
  // Tiles of C are the unit of work of a thread. One thread takes all of C
  // at once (up to v.mc rows: the packed A's scratch), since a tile packs each
  // slice of A once and each block of B once per tile. Threads want a few
  // tiles each to balance: rows are split first (down to 4 micro-panels
  // each), then columns (down to one micro-panel).
  const int want = threads == 1 ? 1 : 4 * threads;
  int m_tiles = (p.M + v.mc - 1) / v.mc;
  m_tiles = std::max(m_tiles, std::min(want, (p.M + 4 * v.mr - 1) / (4 * v.mr)));
  const int mc = ((p.M + m_tiles - 1) / m_tiles + v.mr - 1) / v.mr * v.mr;
  m_tiles = (p.M + mc - 1) / mc;
  const int want_n = (want + m_tiles - 1) / m_tiles;
  const int nc = std::max(v.nr, ((p.N + want_n - 1) / want_n + v.nr - 1) / v.nr * v.nr);
  const int n_tiles = (p.N + nc - 1) / nc;
  const int tiles = m_tiles * n_tiles;
  if (threads == 1) {
    for (int t = 0; t < tiles; ++t) {
      const int i0 = (t / n_tiles) * mc, j0 = (t % n_tiles) * nc;
      run_tile(v, p, A, B, C, i0, std::min(mc, p.M - i0), j0, std::min(nc, p.N - j0), a_packed);
    }
    return;
  }
  RegionErrors errors;  // a failed scratch allocation must not escape the region
#pragma omp parallel for schedule(dynamic) num_threads(threads)
  for (int t = 0; t < tiles; ++t) {
    errors.run([&] {
      const int i0 = (t / n_tiles) * mc, j0 = (t % n_tiles) * nc;
      run_tile(v, p, A, B, C, i0, std::min(mc, p.M - i0), j0, std::min(nc, p.N - j0), a_packed);
    });
  }
  errors.rethrow();
}

}  // namespace

void gemm_cpu(const GemmParams& p, const float* A, const float* B, float* C) {
  gemm_run(chosen_variant(), p, A, B, C);
}

void gemm_cpu_with(const std::string& variant, const GemmParams& p, const float* A, const float* B,
                   float* C) {
  gemm_run(find_variant(variant, "gemm_cpu_with"), p, A, B, C);
}

namespace {
const GemmVariant& variant_or_chosen(const std::string& variant) {
  return variant.empty() ? chosen_variant() : find_variant(variant, "gemm_cpu_pack_a");
}
}  // namespace

std::size_t gemm_cpu_packed_a_floats(const GemmParams& p, const std::string& variant) {
  const GemmVariant& v = variant_or_chosen(variant);
  return static_cast<std::size_t>((p.M + v.mr - 1) / v.mr) * v.mr * std::max(p.K, 0);
}

void gemm_cpu_pack_a(const GemmParams& p, const float* A, float* packed,
                     const std::string& variant) {
  if (p.M <= 0 || p.K <= 0) return;
  const GemmVariant& v = variant_or_chosen(variant);
  // Blocks of rows on the threads when there is enough to copy: conv2d packs
  // its weights once per call, up to 9 MiB (ResNet's 512-channel 3x3 layers),
  // and one thread packing while the others waited was a tenth of the layer.
  const int block = 8 * v.mr, blocks = (p.M + block - 1) / block;
  const bool parallel = !omp_in_parallel() && blocks > 1 && static_cast<double>(p.M) * p.K > 1e5;
  RegionErrors errors;
#pragma omp parallel for schedule(static) if (parallel)
  for (int b = 0; b < blocks; ++b)
    errors.run([&] { v.pack_a(p, A, b * block, std::min(block, p.M - b * block), packed); });
  errors.rethrow();
}

void gemm_cpu_prepacked_a(const GemmParams& p, const float* packed, const float* B, float* C,
                          const std::string& variant) {
  gemm_run(variant_or_chosen(variant), p, nullptr, B, C, packed);
}

std::vector<std::string> gemm_cpu_variants() {
  std::vector<std::string> names;
  for (const GemmVariant* v : kVariants)
    if (cpu_runs(*v)) names.push_back(v->name);
  return names;
}

std::string gemm_cpu_variant() {
  return chosen_variant().name;
}

double cpu_fma_loop(const std::string& variant, int64_t iters) {
  return find_variant(variant, "cpu_fma_loop").fma_loop(iters);
}

}  // namespace scratchnet::kernels
