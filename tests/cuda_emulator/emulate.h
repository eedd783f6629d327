// CUDA's built-ins on the CPU, so that kernels/*.cu run here as written: each thread of a block
// is a coroutine (ucontext) on one OS thread, __syncthreads hands over to the next one, and a
// phase ends when every thread of the block has reached the barrier; __shared__ is a static
// shared by them, and a launch runs its blocks one after another. Each phase runs the threads in
// the opposite order of the last, so a missing barrier shows up whichever way the data flows.
// Slow next to a GPU, but it executes the very source NVRTC compiles, on machines with no GPU
// (tests/cuda_emulated.rs).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <vector>
#include <ucontext.h>

struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
};

// Set by the scheduler before it resumes a thread; kernels copy what they need into locals.
inline dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace emu {
constexpr size_t STACK = 64 * 1024;
inline ucontext_t scheduler;
inline std::vector<ucontext_t> threads;
inline std::vector<std::vector<char>> stacks;
inline std::vector<char> finished;
inline unsigned int current = 0;
inline std::function<void()> body;
// Launches from several host threads (the export's parallel batches) take turns.
inline std::mutex one_launch_at_a_time;
// What the lanes offered to the last two warp shuffles, and how many shuffles each thread of the
// block has made (see __shfl_down_sync).
inline std::vector<uint64_t> offered[2];
inline std::vector<unsigned int> shuffles;

inline void entry() {
    body();
    finished[current] = 1;  // back to the scheduler through uc_link
}
}  // namespace emu

inline void __syncthreads() { swapcontext(&emu::threads[emu::current], &emu::scheduler); }
inline float __int_as_float(int x) {
    float f;
    std::memcpy(&f, &x, sizeof f);
    return f;
}
// A warp shuffle as a barrier of the whole block: every thread puts its value down, waits for
// all the others, and takes its partner's (its own past the end of its warp, as CUDA gives).
// Stronger than a GPU's (a warp waits only for its own lanes), so a kernel must call it from
// every thread of the block, as it calls __syncthreads. Successive shuffles alternate between two
// sets of slots: a thread cannot put down its third value before every thread has passed the
// barrier of its second, by which time each has taken what the first gave it.
template <class T>
T __shfl_down_sync(unsigned int, T value, unsigned int delta) {
    static_assert(sizeof(T) <= sizeof(uint64_t), "a lane's value is at most 64 bits");
    const unsigned int t = threadIdx.x;
    std::vector<uint64_t>& slots = emu::offered[emu::shuffles[t]++ % 2];
    std::memcpy(&slots[t], &value, sizeof value);
    __syncthreads();
    if (t % 32 + delta < 32 && t + delta < blockDim.x) std::memcpy(&value, &slots[t + delta], sizeof value);
    return value;
}
using std::max;
using std::min;

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

// Runs `kernel(args...)` over grid × block. Every kernel here returns early only for a whole
// block at a time, so each phase sees every thread of the block reach the same barrier.
template <class... P, class... A>
void launch(void (*kernel)(P...), dim3 grid, dim3 block, A... args) {
    using namespace emu;
    std::lock_guard<std::mutex> turn(one_launch_at_a_time);
    blockDim = block;
    gridDim = grid;
    body = [&] { kernel(args...); };
    threads.resize(block.x);
    finished.resize(block.x);
    for (auto& slots : offered) slots.resize(block.x);
    if (stacks.size() < block.x) stacks.resize(block.x, std::vector<char>(STACK));
    for (unsigned int y = 0; y < grid.y; ++y)
        for (unsigned int x = 0; x < grid.x; ++x) {
            blockIdx = dim3{x, y, 0};
            shuffles.assign(block.x, 0);
            for (unsigned int t = 0; t < block.x; ++t) {
                getcontext(&threads[t]);
                threads[t].uc_stack.ss_sp = stacks[t].data();
                threads[t].uc_stack.ss_size = STACK;
                threads[t].uc_link = &scheduler;
                makecontext(&threads[t], entry, 0);
                finished[t] = 0;
            }
            for (unsigned int left = block.x, phase = 0; left > 0; ++phase) {
                for (unsigned int n = 0; n < block.x; ++n) {
                    const unsigned int t = phase % 2 ? block.x - 1 - n : n;
                    if (finished[t]) continue;
                    current = t;
                    threadIdx = dim3{t, 0, 0};
                    swapcontext(&scheduler, &threads[t]);
                    left -= finished[t];
                }
            }
        }
}
