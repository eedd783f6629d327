// Step 1 on CUDA: fold slabs (layers and heads) of attention rows into a trace's packed M,
// decoding F32, F16 or BF16 from the file's raw little-endian words. One block per query row.
// Each row also reports what the CPU checks (sum, minimum, largest weight above the diagonal,
// non-finite count) so that a bad file gets the CPU's exact error. `aggregate` folds one slab
// (as shaders/aggregate.wgsl does); `aggregate_group` folds several side by side in memory at
// once, reading and writing M once for all of them: folded a slab at a time, M's reads and
// writes (8 bytes per weight) outweighed an F16 slab's own (2 bytes), and on an H200 the F16
// [4,8,N,N] fold ran at a tenth of the device's bandwidth.

// Slabs `aggregate_group` folds at most: each thread keeps their row sums in registers.
#define GROUP 8u

// F16 bits to float, exactly (finite values only: the caller flags exponent 31 as bad). A
// normal value's exponent is moved from F16's bias (15) to F32's (127); a subnormal one is its
// mantissa times 2^-24, both exact in f32.
__device__ __forceinline__ float half_bits_to_float(unsigned int h) {
    unsigned int e = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    float v = e == 0u ? (float)man * 5.9604644775390625e-8f : __int_as_float((int)(((e + 112u) << 23) | (man << 13)));
    return (h & 0x8000u) ? -v : v;
}

// Element e's bits, as they lie (F32: the word; F16 and BF16: the half-word).
__device__ __forceinline__ unsigned int bits_at(const void* att, unsigned int dtype, unsigned long long e) {
    return dtype == 0u ? ((const unsigned int*)att)[e] : (unsigned int)((const unsigned short*)att)[e];
}

// Those bits as a float, and whether they encode a NaN or an infinity.
__device__ __forceinline__ float decode(unsigned int bits, unsigned int dtype, bool* bad) {
    if (dtype == 0u) {
        *bad = (bits & 0x7f800000u) == 0x7f800000u;
        return __int_as_float((int)bits);
    }
    if (dtype == 1u) {
        *bad = (bits & 0x7c00u) == 0x7c00u;
        return half_bits_to_float(bits);
    }
    *bad = (bits & 0x7f80u) == 0x7f80u;
    return __int_as_float((int)(bits << 16));
}

// `decode`, a bad value also counted into `bad`.
__device__ __forceinline__ float counted(unsigned int bits, unsigned int dtype, bool* b, float* bad) {
    const float x = decode(bits, dtype, b);
    *bad += *b ? 1.0f : 0.0f;
    return x;
}

// Element e of each of a group's `count` slabs (`slab` elements apart), every load asked for
// before any value is looked at.
__device__ __forceinline__ void group_bits(unsigned int* w, const void* att, unsigned int dtype, unsigned int count, unsigned long long slab,
                                           unsigned long long e) {
#pragma unroll
    for (unsigned int g = 0u; g < GROUP; ++g)
        if (g < count) w[g] = bits_at(att, dtype, g * slab + e);
}

// One slab: `att` its n·n elements. flags: bit 0 the trace's first slab (overwrite M), bit 1
// its last (the mean's scale and the threshold), bit 2 reduce by max instead of mean. stats: four
// floats per row. (`count` is 1: the group kernel's arguments.)
extern "C" __global__ void aggregate(const void* att, unsigned int count, float* m, float* stats, unsigned int n, unsigned int dtype,
                                     unsigned int flags, float scale, float threshold) {
    const unsigned int k = blockIdx.x, t = threadIdx.x;
    const bool first = flags & 1u, last = flags & 2u, use_max = flags & 4u;
    float* row = m + row_at(k);
    double sum = 0.0;
    float lo = 3.4e38f, up = 0.0f, bad = 0.0f;
    for (unsigned int i = t; i < n; i += blockDim.x) {
        bool b;
        float x = decode(bits_at(att, dtype, (unsigned long long)k * n + i), dtype, &b);
        if (b) { bad += 1.0f; continue; }
        if (i > k) { up = fmaxf(up, fabsf(x)); continue; }
        sum += x;
        lo = fminf(lo, x);
        if (i == k) continue;
        float acc = x;
        if (!first) acc = use_max ? fmaxf(row[i], x) : row[i] + x;
        if (last) {
            if (!use_max) acc *= scale;
            if (acc < threshold) acc = 0.0f;
        }
        row[i] = acc;
    }
    __shared__ double s_sum[256];
    __shared__ float s_min[256], s_up[256], s_bad[256];
    s_sum[t] = sum; s_min[t] = lo; s_up[t] = up; s_bad[t] = bad;
    __syncthreads();
    for (unsigned int stride = blockDim.x / 2u; stride > 0u; stride /= 2u) {
        if (t < stride) {
            s_sum[t] += s_sum[t + stride];
            s_min[t] = fminf(s_min[t], s_min[t + stride]);
            s_up[t] = fmaxf(s_up[t], s_up[t + stride]);
            s_bad[t] += s_bad[t + stride];
        }
        __syncthreads();
    }
    if (t == 0u) {
        stats[4ull * k] = (float)s_sum[0];
        stats[4ull * k + 1] = s_min[0];
        stats[4ull * k + 2] = s_up[0];
        stats[4ull * k + 3] = s_bad[0];
    }
}

// A group: `att` its first slab, the others after it (n·n elements each); count: its slabs
// (1..GROUP); flags as `aggregate`'s, for the group (its first slab the trace's first, its last
// the trace's last). stats: four floats per row for each of the group's slabs (n rows each, one
// slab after another): the row's sum in that slab, and the group's minimum, largest weight above
// the diagonal and bad count (the host decides whether every row of every slab passes; the CPU
// names the place).
//
// Each thread asks for its element of every slab before it looks at any (a branch on a value
// would wait for that load before the next one is asked for), and the lower triangle and the
// part above the diagonal are separate loops, so nothing branches on the values. Its sums take
// registers (64 a thread, against the one-slab kernel's 26, so fewer threads in flight): a slab
// alone, or two, go to `aggregate` (on an H200 this kernel ran two slabs up to 12% slower, and
// single ones, compiled for one, 11–15%).
extern "C" __global__ void aggregate_group(const void* att, unsigned int count, float* m, float* stats, unsigned int n, unsigned int dtype,
                                           unsigned int flags, float scale, float threshold) {
    const unsigned int k = blockIdx.x, t = threadIdx.x;
    const bool first = flags & 1u, last = flags & 2u, use_max = flags & 4u;
    const unsigned long long slab = (unsigned long long)n * n, at = (unsigned long long)k * n;
    float* row = m + row_at(k);
    double sum[GROUP];
    float lo = 3.4e38f, up = 0.0f, bad = 0.0f;
#pragma unroll
    for (unsigned int g = 0u; g < GROUP; ++g) sum[g] = 0.0;
    // The lower triangle and the diagonal: folded into M (the diagonal excluded) and summed. The
    // slabs in order, as the CPU folds them: the first overwrites, each next one adds (or takes
    // the larger); a bad value leaves the weight as it was (the file is refused anyway).
    for (unsigned int i = t; i <= k; i += blockDim.x) {
        unsigned int w[GROUP];
        group_bits(w, att, dtype, count, slab, at + i);
        const bool below = i < k;
        float acc = !first && below ? row[i] : 0.0f;
        bool have = !first;
#pragma unroll
        for (unsigned int g = 0u; g < GROUP; ++g) {
            if (g < count) {
                bool b;
                const float x = counted(w[g], dtype, &b, &bad);
                sum[g] += b ? 0.0 : (double)x;
                lo = b ? lo : fminf(lo, x);
                const float folded = !have ? x : use_max ? fmaxf(acc, x) : acc + x;
                acc = b ? acc : folded;
                have = have || !b;
            }
        }
        if (below) {
            if (last) {
                if (!use_max) acc *= scale;
                if (acc < threshold) acc = 0.0f;
            }
            row[i] = acc;
        }
    }
    // Above the diagonal: only checked (a causal row has nothing there).
    for (unsigned int i = k + 1u + t; i < n; i += blockDim.x) {
        unsigned int w[GROUP];
        group_bits(w, att, dtype, count, slab, at + i);
#pragma unroll
        for (unsigned int g = 0u; g < GROUP; ++g) {
            if (g < count) {
                bool b;
                const float x = counted(w[g], dtype, &b, &bad);
                up = b ? up : fmaxf(up, fabsf(x));
            }
        }
    }
    // Within each warp by shuffles, then across the warps.
    __shared__ double s_sum[GROUP][32];
    __shared__ float s_min[32], s_up[32], s_bad[32];
    const unsigned int lane = t % 32u, warp = t / 32u, warps = blockDim.x / 32u;
    for (unsigned int d = 16u; d > 0u; d /= 2u) {
        lo = fminf(lo, __shfl_down_sync(0xffffffffu, lo, d));
        up = fmaxf(up, __shfl_down_sync(0xffffffffu, up, d));
        bad += __shfl_down_sync(0xffffffffu, bad, d);
    }
    if (lane == 0u) s_min[warp] = lo, s_up[warp] = up, s_bad[warp] = bad;
#pragma unroll
    for (unsigned int g = 0u; g < GROUP; ++g) {
        if (g < count) {
            for (unsigned int d = 16u; d > 0u; d /= 2u) sum[g] += __shfl_down_sync(0xffffffffu, sum[g], d);
            if (lane == 0u) s_sum[g][warp] = sum[g];
        }
    }
    __syncthreads();
    if (t < count) {
        double s = 0.0;
        float a = 3.4e38f, b = 0.0f, c = 0.0f;
        for (unsigned int w = 0u; w < warps; ++w) s += s_sum[t][w], a = fminf(a, s_min[w]), b = fmaxf(b, s_up[w]), c += s_bad[w];
        float* out = stats + 4ull * ((unsigned long long)t * n + k);
        out[0] = (float)s, out[1] = a, out[2] = b, out[3] = c;
    }
}
