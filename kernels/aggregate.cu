// Step 1 on CUDA: fold one slab (one layer and head) of attention rows into a trace's packed M,
// decoding F32, F16 or BF16 from the file's raw little-endian words. One block per query row.
// Each row also reports what the CPU checks (sum, minimum, largest weight above the diagonal,
// non-finite count) so that a bad file gets the CPU's exact error. Same as shaders/aggregate.wgsl.

// F16 bits to float, exactly (finite values only: the caller flags exponent 31 as bad).
__device__ __forceinline__ float half_bits_to_float(unsigned int h) {
    unsigned int e = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    float v = e == 0u ? ldexpf((float)man, -24) : ldexpf((float)(man | 0x400u), (int)e - 25);
    return (h & 0x8000u) ? -v : v;
}

// Element e of the slab, and whether its bits encode a NaN or an infinity.
__device__ __forceinline__ float load(const void* att, unsigned int dtype, unsigned long long e, bool* bad) {
    if (dtype == 0u) {
        unsigned int bits = ((const unsigned int*)att)[e];
        *bad = (bits & 0x7f800000u) == 0x7f800000u;
        return __int_as_float((int)bits);
    }
    unsigned int half = ((const unsigned short*)att)[e];
    if (dtype == 1u) {
        *bad = (half & 0x7c00u) == 0x7c00u;
        return half_bits_to_float(half);
    }
    *bad = (half & 0x7f80u) == 0x7f80u;
    return __int_as_float((int)(half << 16));
}

// flags: bit 0 first slab (overwrite M), bit 1 last slab (mean's scale and the threshold),
// bit 2 reduce by max instead of mean. stats: four floats per row.
extern "C" __global__ void aggregate(const void* att, float* m, float* stats, unsigned int n, unsigned int dtype,
                                     unsigned int flags, float scale, float threshold) {
    const unsigned int k = blockIdx.x, t = threadIdx.x;
    const bool first = flags & 1u, last = flags & 2u, use_max = flags & 4u;
    float* row = m + row_at(k);
    double sum = 0.0;
    float lo = 3.4e38f, up = 0.0f, bad = 0.0f;
    for (unsigned int i = t; i < n; i += blockDim.x) {
        bool b;
        float x = load(att, dtype, (unsigned long long)k * n + i, &b);
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
