// CUDA's built-ins on CPU threads, so that kernels/*.cu run here as written: a block's threads
// are real threads that meet at __syncthreads (a std::barrier), __shared__ is a static shared by
// them, and a launch runs its blocks one after another. Slow, but it executes the very source
// NVRTC compiles, on machines with no GPU (tests/cuda_emulated.rs).
#pragma once
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
};

inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
inline std::barrier<>* block_barrier = nullptr;

inline void __syncthreads() { block_barrier->arrive_and_wait(); }
inline float __int_as_float(int x) {
    float f;
    std::memcpy(&f, &x, sizeof f);
    return f;
}
using std::max;
using std::min;

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

// Runs `kernel(args...)` over grid × block. Every kernel here returns early only for a whole
// block at a time, so the barrier always sees every thread of the block.
template <class... P, class... A>
void launch(void (*kernel)(P...), dim3 grid, dim3 block, A... args) {
    blockDim = block;
    gridDim = grid;
    std::barrier<> bar(block.x);
    block_barrier = &bar;
    std::vector<std::thread> threads;
    for (unsigned int t = 0; t < block.x; ++t) {
        threads.emplace_back([&, t] {
            threadIdx = dim3{t, 0, 0};
            for (unsigned int y = 0; y < grid.y; ++y)
                for (unsigned int x = 0; x < grid.x; ++x) {
                    blockIdx = dim3{x, y, 0};
                    kernel(args...);
                    bar.arrive_and_wait();  // the next block reuses the shared statics
                }
        });
    }
    for (auto& th : threads) th.join();
}
