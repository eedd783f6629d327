// Shared by every kernel of the CUDA backend (prepended to each .cu when they are compiled at
// run time by NVRTC, so no include paths are needed). Mirrors cuda::Job on the host.
//
// A batch holds many traces: each trace's packed M (strict lower triangle, row k at k(k-1)/2)
// lies at `m` in one float buffer, and its per-token vectors (h, acc, g, f, s) at `v` in buffers
// of doubles. The solves' sums are accumulated in double: M stays f32 (half the bytes), the
// arithmetic is the CPU reference's.

// Rows per block of the blocked sweeps (src/gpu/matrix.rs BLOCK): one thread per row of a block.
#define ROWS 64u

struct Job {
    unsigned long long m;  // first float of this trace's M in the batch buffer
    unsigned int v;        // first token of this trace in the vector buffers
    unsigned int n;        // tokens
    unsigned int q0, q1;   // question span
    unsigned int a0, a1;   // answer span
    unsigned int r0, r1;   // response span (the credit's candidates)
    unsigned int top;      // how many response tokens the credit selects (0: none)
};

__device__ __forceinline__ unsigned long long row_at(unsigned int k) {
    return (unsigned long long)k * (k - 1u) / 2ull;
}

// The rows of block [k0, k1) that a forward sweep (flow, widest paths) settles for job j: from
// its question's start to its answer's end; lo >= end when the job has none in the block.
struct Rows {
    unsigned int lo, end;
};

__device__ __forceinline__ Rows forward_rows(const Job& j, unsigned int k0, unsigned int k1) {
    return Rows{max(k0, j.q0), min(k1, j.a1)};
}

// The chain kernels' copy of their block's triangle: s_m[k - k0][t] = M[k, k0 + t] for rows k
// of [k0, end) and the sources from `lo` on before them, one column per thread. Every thread
// walks the same rows, so each row's reads are contiguous across the warp.
__device__ void copy_triangle(float (*s_m)[ROWS], const float* m, unsigned int k0, unsigned int lo, unsigned int end) {
    const unsigned int t = threadIdx.x, i = k0 + t;
    for (unsigned int k = k0 + 1u; k < end; ++k)
        if (i >= lo && i < k) s_m[k - k0][t] = m[row_at(k) + i];
}

__device__ __forceinline__ bool in_answer(const Job& j, unsigned int k) {
    return k >= j.a0 && k < j.a1;
}

// Tree sum of red[0..width) (width a power of two, at least 32): the levels across warps in
// shared memory, the last five inside the first warp by shuffles, in the same order (lane t adds
// lane t + stride at each level), so the sum is the plain tree's to the bit. The answer is thread
// 0's; every thread of the block calls it.
__device__ double tree_sum(double* red, unsigned int t, unsigned int width) {
    __syncthreads();
    for (unsigned int stride = width / 2u; stride >= 32u; stride /= 2u) {
        if (t < stride) red[t] += red[t + stride];
        __syncthreads();
    }
    double sum = t < 32u ? red[t] : 0.0;
    for (unsigned int d = 16u; d > 0u; d /= 2u) sum += __shfl_down_sync(0xffffffffu, sum, d);
    return sum;
}
