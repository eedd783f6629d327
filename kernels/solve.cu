// Steps 3 and 5 on CUDA for a whole batch of traces at once: blockIdx.y is the trace (its Job).
// Every trace's rows are cut on one global grid of 64-row blocks, so one launch per kernel per
// block serves the whole batch; a trace whose rows miss the block returns at once. The same
// blocked solves as shaders/solve.wgsl and the CPU's flow::reach / flow::unit_flow:
//
// Reach (backward, "push" form), blocks from the longest answer's end down to 0:
//   reach_block: one block of 64 threads settles the block's rows in order, h(k) = 1 on the
//                answer, else what it gathered, pushing M[k,i]·h(k) into the block's own tokens;
//   reach_push:  every token before the block adds Σ_{k in block} M[k,i]·h(k), in parallel.
// Flow (forward, "pull" form), blocks from the first question's start to the last answer's end:
//   flow_gather: each row of the block sums M[k,i]·g(i) over the sources before the block;
//   flow_block:  one block settles the rows in order: f(k) = s(k) + h(k)·(sum), and
//                g(k) = f(k)/h(k) for conserving tokens (the answer absorbs).

extern "C" __global__ void reach_block(const Job* jobs, const float* M, double* h, double* acc,
                                       unsigned int k0, unsigned int k1) {
    const Job j = jobs[blockIdx.y];
    const unsigned int end = min(k1, j.a1);
    if (k0 >= end) return;  // the same for every thread of the block
    const float* m = M + j.m;
    double* hv = h + j.v;
    double* av = acc + j.v;
    __shared__ double s_acc[ROWS];
    __shared__ double s_h;
    const unsigned int t = threadIdx.x, i = k0 + t;
    if (i < end) s_acc[t] = av[i];
    __syncthreads();
    for (unsigned int k = end; k > k0; --k) {
        const unsigned int kk = k - 1u;
        if (t == 0u) {
            const double hk = in_answer(j, kk) ? 1.0 : s_acc[kk - k0];
            hv[kk] = hk;
            s_h = hk;
        }
        __syncthreads();
        const double hk = s_h;
        if (i < kk && hk != 0.0) s_acc[t] += (double)m[row_at(kk) + i] * hk;
        __syncthreads();
    }
}

extern "C" __global__ void reach_push(const Job* jobs, const float* M, const double* h, double* acc,
                                      unsigned int k0, unsigned int k1) {
    const Job j = jobs[blockIdx.y];
    const unsigned int end = min(k1, j.a1);
    const unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (k0 >= end || i >= k0) return;
    const float* m = M + j.m;
    const double* hv = h + j.v;
    double sum = 0.0;
    for (unsigned int k = k0; k < end; ++k) {
        const double hk = hv[k];
        if (hk != 0.0) sum += (double)m[row_at(k) + i] * hk;
    }
    acc[j.v + i] += sum;
}

extern "C" __global__ void flow_gather(const Job* jobs, const float* M, const double* g, double* acc,
                                       unsigned int k0, unsigned int k1) {
    const Job j = jobs[blockIdx.y];
    const unsigned int k = k0 + blockIdx.x;
    const Rows rows = forward_rows(j, k0, k1);
    if (k < rows.lo || k >= rows.end) return;  // the same for every thread of the block
    const float* row = M + j.m + row_at(k);
    const double* gv = g + j.v;
    const unsigned int t = threadIdx.x;
    double sum = 0.0;
    for (unsigned int i = j.q0 + t; i < k0; i += blockDim.x) sum += (double)row[i] * gv[i];
    __shared__ double red[256];
    red[t] = sum;
    const double total = tree_sum(red, t, blockDim.x);
    if (t == 0u) acc[j.v + k] = total;
}

extern "C" __global__ void flow_block(const Job* jobs, const float* M, const double* h, const double* acc,
                                      double* g, double* f, const double* s, unsigned int k0, unsigned int k1) {
    const Job j = jobs[blockIdx.y];
    const Rows rows = forward_rows(j, k0, k1);
    if (rows.lo >= rows.end) return;  // the same for every thread of the block
    const float* m = M + j.m;
    const unsigned int t = threadIdx.x, i = k0 + t;
    __shared__ double red[ROWS];
    for (unsigned int k = rows.lo; k < rows.end; ++k) {
        // The block's own earlier sources, one per thread, then a tree sum.
        red[t] = (i < k && i >= j.q0) ? (double)m[row_at(k) + i] * g[j.v + i] : 0.0;
        const double inside = tree_sum(red, t, ROWS);
        if (t == 0u) {
            const double hk = h[j.v + k];
            if (hk > 0.0) {
                const double fk = s[j.v + k] + hk * (acc[j.v + k] + inside);
                f[j.v + k] = fk;
                if (!in_answer(j, k)) g[j.v + k] = fk / hk;
            }
        }
        // g(k) is read by the next rows' threads; __syncthreads orders the block's global writes.
        __syncthreads();
    }
}
