// The device side of the emulated CUDA target: what kernels/cuda/*.cu need
// from CUDA when g++ compiles them as C++ for the CPU (SCRATCHNET_CUDA=EMULATE).
// Included through the emulator's cuda_runtime.h (kernels/emu/include/), so the
// kernel sources are the same files nvcc compiles.
//
// The model (kernels/emu/runtime.cpp runs it):
//   - one fiber per CUDA thread; a block's fibers all run on one CPU thread,
//     blocks are spread over a pool of CPU threads;
//   - threadIdx is linearised x fastest; a warp is 32 consecutive threads;
//   - __syncthreads is a barrier of the block; the *_sync warp intrinsics
//     synchronise the threads of their mask only and check that mask;
//   - __shared__ is a static thread_local: the kernels are their own shared
//     object (libscratchnet_cuda.so), whose thread-local segment is therefore
//     exactly the shared memory of the block running on that CPU thread. It
//     is poisoned (every byte 0xFF: NaN as float or double, -1 as int) at
//     every block start, so nothing stale survives from another block.
//   - threadIdx/blockIdx/blockDim/gridDim are thread-locals of the runtime,
//     rewritten by the scheduler before it resumes each fiber.
#pragma once
#include <math.h>  // libstdc++ puts the float overloads (isnan, ...) in :: too

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

// --- qualifiers ---------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static thread_local

// --- vector types, with CUDA's alignment ------------------------------------------
struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return {x, y, z}; }
};
struct alignas(8) float2 {
  float x, y;
};
struct float3 {
  float x, y, z;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(8) int2 {
  int x, y;
};
struct alignas(16) int4 {
  int x, y, z, w;
};
struct alignas(16) double2 {
  double x, y;
};
inline float2 make_float2(float x, float y) {
  return {x, y};
}
inline float3 make_float3(float x, float y, float z) {
  return {x, y, z};
}
inline float4 make_float4(float x, float y, float z, float w) {
  return {x, y, z, w};
}
inline int2 make_int2(int x, int y) {
  return {x, y};
}
inline int4 make_int4(int x, int y, int z, int w) {
  return {x, y, z, w};
}
inline double2 make_double2(double x, double y) {
  return {x, y};
}
static_assert(alignof(float4) == 16 && sizeof(float4) == 16, "float4 must match CUDA");
static_assert(alignof(float2) == 8 && alignof(double2) == 16, "vector types must match CUDA");

// --- built-in variables (per CUDA thread; set by the scheduler) -------------------
extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local uint3 blockDim;
extern thread_local uint3 gridDim;
constexpr int warpSize = 32;

// --- synchronisation and warp intrinsics (kernels/emu/runtime.cpp) ------------------
namespace sn_emu {

enum class WarpOp : int { Sync, ShflIdx, ShflUp, ShflDown, ShflXor, Ballot, All, Any };

namespace detail {
void syncthreads();
int syncthreads_reduce(int pred, int kind);  // kind 0 count, 1 and, 2 or
// One lane's part in a warp collective: blocks until every lane of `mask`
// has arrived with the same op and mask, then returns this lane's result.
uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int arg, int width);
void device_trap(const char* what);  // a kernel-side error: the launch fails
}  // namespace detail

template <class T>
uint64_t to_bits(T v) {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8,
                "warp shuffles move values of at most 8 bytes");
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
template <class T>
T from_bits(uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}

}  // namespace sn_emu

inline void __syncthreads() {
  sn_emu::detail::syncthreads();
}
inline int __syncthreads_count(int pred) {
  return sn_emu::detail::syncthreads_reduce(pred, 0);
}
inline int __syncthreads_and(int pred) {
  return sn_emu::detail::syncthreads_reduce(pred, 1);
}
inline int __syncthreads_or(int pred) {
  return sn_emu::detail::syncthreads_reduce(pred, 2);
}
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  sn_emu::detail::warp_collective(sn_emu::WarpOp::Sync, mask, 0, 0, 32);
}
template <class T>
T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
  return sn_emu::from_bits<T>(sn_emu::detail::warp_collective(sn_emu::WarpOp::ShflIdx, mask,
                                                              sn_emu::to_bits(v), src_lane, width));
}
template <class T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return sn_emu::from_bits<T>(sn_emu::detail::warp_collective(
      sn_emu::WarpOp::ShflUp, mask, sn_emu::to_bits(v), static_cast<int>(delta), width));
}
template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return sn_emu::from_bits<T>(sn_emu::detail::warp_collective(
      sn_emu::WarpOp::ShflDown, mask, sn_emu::to_bits(v), static_cast<int>(delta), width));
}
template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return sn_emu::from_bits<T>(sn_emu::detail::warp_collective(
      sn_emu::WarpOp::ShflXor, mask, sn_emu::to_bits(v), lane_mask, width));
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  return static_cast<unsigned>(
      sn_emu::detail::warp_collective(sn_emu::WarpOp::Ballot, mask, pred != 0, 0, 32));
}
inline int __all_sync(unsigned mask, int pred) {
  return static_cast<int>(
      sn_emu::detail::warp_collective(sn_emu::WarpOp::All, mask, pred != 0, 0, 32));
}
inline int __any_sync(unsigned mask, int pred) {
  return static_cast<int>(
      sn_emu::detail::warp_collective(sn_emu::WarpOp::Any, mask, pred != 0, 0, 32));
}
inline void __trap() {
  sn_emu::detail::device_trap("__trap()");
}
inline void __threadfence() {
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
}
inline void __threadfence_block() {
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
}

// --- loads ---------------------------------------------------------------------
template <class T>
T __ldg(const T* p) {
  return *p;
}

// --- atomics (blocks run concurrently on CPU threads: real atomics) -----------------
template <class T, class F>
T sn_emu_atomic_update(T* addr, F f) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "atomics on 4 or 8 bytes");
  using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  U* a = reinterpret_cast<U*>(addr);
  U old = __atomic_load_n(a, __ATOMIC_RELAXED);
  for (;;) {
    const T cur = sn_emu::from_bits<T>(old);
    const U next = static_cast<U>(sn_emu::to_bits<T>(f(cur)));
    if (__atomic_compare_exchange_n(a, &old, next, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
      return cur;
  }
}
inline int atomicAdd(int* a, int v) {
  return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST);
}
inline unsigned atomicAdd(unsigned* a, unsigned v) {
  return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST);
}
inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) {
  return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST);
}
inline float atomicAdd(float* a, float v) {
  return sn_emu_atomic_update(a, [v](float x) { return x + v; });
}
inline double atomicAdd(double* a, double v) {
  return sn_emu_atomic_update(a, [v](double x) { return x + v; });
}
inline int atomicMax(int* a, int v) {
  return sn_emu_atomic_update(a, [v](int x) { return x > v ? x : v; });
}
inline int atomicMin(int* a, int v) {
  return sn_emu_atomic_update(a, [v](int x) { return x < v ? x : v; });
}
inline unsigned atomicMax(unsigned* a, unsigned v) {
  return sn_emu_atomic_update(a, [v](unsigned x) { return x > v ? x : v; });
}
inline int atomicExch(int* a, int v) {
  return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST);
}
inline unsigned atomicExch(unsigned* a, unsigned v) {
  return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST);
}
inline float atomicExch(float* a, float v) {
  return sn_emu_atomic_update(a, [v](float) { return v; });
}
inline int atomicCAS(int* a, int expected, int desired) {
  __atomic_compare_exchange_n(a, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return expected;
}
inline unsigned atomicCAS(unsigned* a, unsigned expected, unsigned desired) {
  __atomic_compare_exchange_n(a, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return expected;
}
inline unsigned long long atomicCAS(unsigned long long* a, unsigned long long expected,
                                    unsigned long long desired) {
  __atomic_compare_exchange_n(a, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return expected;
}

// --- integer and float intrinsics ---------------------------------------------------
// min/max as CUDA declares them for device code (same-type overloads).
#define SN_EMU_MINMAX(T)   \
  inline T min(T a, T b) { \
    return b < a ? b : a;  \
  }                        \
  inline T max(T a, T b) { \
    return a < b ? b : a;  \
  }
SN_EMU_MINMAX(int)
SN_EMU_MINMAX(unsigned)
SN_EMU_MINMAX(long)
SN_EMU_MINMAX(unsigned long)
SN_EMU_MINMAX(long long)
SN_EMU_MINMAX(unsigned long long)
#undef SN_EMU_MINMAX
inline float min(float a, float b) {
  return fminf(a, b);
}
inline float max(float a, float b) {
  return fmaxf(a, b);
}
inline double min(double a, double b) {
  return fmin(a, b);
}
inline double max(double a, double b) {
  return fmax(a, b);
}

// The _rn forms are single IEEE operations: the emulated kernels are compiled
// with -ffp-contract=off, so no product here is fused into an FMA.
inline float __fadd_rn(float a, float b) {
  return a + b;
}
inline float __fsub_rn(float a, float b) {
  return a - b;
}
inline float __fmul_rn(float a, float b) {
  return a * b;
}
inline float __fdiv_rn(float a, float b) {
  return a / b;
}
inline float __fmaf_rn(float a, float b, float c) {
  return fmaf(a, b, c);
}
inline float __frcp_rn(float a) {
  return 1.0f / a;
}
inline float __fsqrt_rn(float a) {
  return sqrtf(a);
}
inline double __dadd_rn(double a, double b) {
  return a + b;
}
inline double __dmul_rn(double a, double b) {
  return a * b;
}
inline float __fdividef(float a, float b) {
  return a / b;
}
inline float __expf(float a) {
  return expf(a);
}
inline float __logf(float a) {
  return logf(a);
}
inline float rsqrtf(float a) {
  return 1.0f / sqrtf(a);
}
inline double rsqrt(double a) {
  return 1.0 / sqrt(a);
}
inline float __saturatef(float a) {
  return a != a ? 0.0f : (a < 0.0f ? 0.0f : (a > 1.0f ? 1.0f : a));
}
inline int __float_as_int(float f) {
  return sn_emu::from_bits<int>(sn_emu::to_bits(f));
}
inline unsigned __float_as_uint(float f) {
  return sn_emu::from_bits<unsigned>(sn_emu::to_bits(f));
}
inline float __int_as_float(int i) {
  return sn_emu::from_bits<float>(sn_emu::to_bits(i));
}
inline float __uint_as_float(unsigned i) {
  return sn_emu::from_bits<float>(sn_emu::to_bits(i));
}
inline long long __double_as_longlong(double d) {
  return sn_emu::from_bits<long long>(sn_emu::to_bits(d));
}
inline double __longlong_as_double(long long i) {
  return sn_emu::from_bits<double>(sn_emu::to_bits(i));
}
inline int __float2int_rn(float f) {
  return static_cast<int>(nearbyintf(f));
}
inline int __float2int_rz(float f) {
  return static_cast<int>(f);
}
inline int __float2int_rd(float f) {
  return static_cast<int>(floorf(f));
}
inline int __popc(unsigned x) {
  return __builtin_popcount(x);
}
inline int __popcll(unsigned long long x) {
  return __builtin_popcountll(x);
}
inline int __clz(int x) {
  return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x));
}
inline int __ffs(int x) {
  return __builtin_ffs(x);
}
inline unsigned __brev(unsigned x) {
  x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
  x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
  x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
  x = ((x >> 8) & 0x00ff00ffu) | ((x & 0x00ff00ffu) << 8);
  return (x >> 16) | (x << 16);
}
inline unsigned __umulhi(unsigned a, unsigned b) {
  return static_cast<unsigned>((static_cast<unsigned long long>(a) * b) >> 32);
}
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return static_cast<unsigned long long>((static_cast<unsigned __int128>(a) * b) >> 64);
}

// --- launching -------------------------------------------------------------------
struct CUstream_st;

namespace sn_emu {

struct LaunchDesc {
  const char* name = "";
  const void* kernel = nullptr;  // its address: names the shared object that holds it
  dim3 grid, block;
  std::size_t dynamic_smem = 0;
  void (*run)(const void* pack) = nullptr;  // one CUDA thread: calls the kernel
  const void* pack = nullptr;
};

// Runs every block of the launch before returning (streams are synchronous).
// Returns what cudaGetLastError would: an invalid configuration, or a kernel
// that failed (deadlock, bad warp mask, __trap); the message goes to stderr.
int launch(const LaunchDesc& d);
// Whether `stream` is capturing (work is recorded, not run); and recording
// a launch on such a stream: the configuration is checked now, the launch
// (with its own copy of the arguments, kept alive by `pack`) runs when the
// graph is launched. Returns what cudaGetLastError would.
bool stream_capturing(CUstream_st* stream);
int record_launch(CUstream_st* stream, const LaunchDesc& d, std::shared_ptr<const void> pack);

// kernel<<<grid, block, smem, stream>>>(args...), converting the arguments to
// the kernel's parameter types once, as the CUDA runtime does; every CUDA
// thread gets its own copy of them.
template <class... P, class... A>
int launch_kernel(const char* name, void (*kernel)(P...), dim3 grid, dim3 block, std::size_t smem,
                  CUstream_st* stream, A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong argument count");
  struct Pack {
    void (*k)(P...);
    std::tuple<std::decay_t<P>...> args;
  };
  const Pack pack{kernel, std::tuple<std::decay_t<P>...>(std::forward<A>(args)...)};
  LaunchDesc d;
  d.name = name;
  d.kernel = reinterpret_cast<const void*>(kernel);
  d.grid = grid;
  d.block = block;
  d.dynamic_smem = smem;
  d.run = [](const void* p) {
    const Pack& pk = *static_cast<const Pack*>(p);
    std::apply(pk.k, pk.args);
  };
  if (stream_capturing(stream)) {
    // Captured: the arguments are kept by value until the graph is destroyed.
    auto kept = std::make_shared<const Pack>(pack);
    d.pack = kept.get();
    return record_launch(stream, d, std::move(kept));
  }
  d.pack = &pack;
  return launch(d);
}

}  // namespace sn_emu
