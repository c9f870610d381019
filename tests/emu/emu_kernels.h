// Small kernels that pin down the emulated CUDA target's semantics
// (tests/emu/test_emu.cpp): barriers, shared memory, warp collectives,
// thread numbering, atomics, and the errors a GPU would give. Some are
// deliberately wrong (a missing barrier, a bad mask) to show what the
// emulator catches. All pointers are device pointers; every call launches
// through SN_LAUNCH, so a failed launch throws CudaError.
#pragma once

struct CUstream_st;

namespace emutest {

// out[t] = in[t + 1] through shared memory, with (correct) or without (a
// race) the barrier between the write and the read. n <= 1024, one block.
void neighbour(const float* in, float* out, int n, bool barrier);
// Thread 0 writes a value to shared memory that every thread reads, with no
// barrier (a race).
void broadcast_without_barrier(float* out, int n);
// write: every thread stores 1 into a shared array; else every thread reads
// it without writing first.
void shared_probe(float* out, int n, bool write);
// out[warp] = sum of in over the warp by __shfl_xor_sync, over `lanes` lanes
// (32 is right; 16 is a halved reduction).
void warp_sum(const float* in, float* out, int n, int lanes);
// __shfl_down_sync with width 16: out[t] = sum over t's half-warp.
void half_warp_sum(const float* in, float* out, int n);
// Ballot/any/all of (threadIdx.y == 1) in a (16, 4) block: out[3 * warp + i].
void votes(unsigned* out);
// Per thread of a (4, 2, 3) x (2, 3) launch: linear thread id, block id,
// lane (tid % 32) and the six built-in coordinates, 9 ints per thread.
void ids(int* out);
// atomicAdd of 1 per thread over blocks x threads.
void count_threads(int* counter, int blocks, int threads);
// Errors: a shuffle mask without the caller; a deadlock (half a warp at
// __syncthreads, the other half in a full-warp shuffle); threads that exit
// before a barrier the others reach (legal).
void shuffle_without_own_lane(float* out);
void deadlock(float* out);
void early_exit_then_barrier(float* out, int n);
// An empty kernel with any geometry (launch checks).
void empty(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz);

// y[i] = a * y[i] + x[i] for i < n, on `stream` (graph capture tests: the
// order of two such launches matters, and a, x, y are arguments by value).
void scale_add(float* y, const float* x, float a, int n, CUstream_st* stream);

}  // namespace emutest
