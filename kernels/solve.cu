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

// reach_block and flow_block are chains of 64 dependent steps (their latency, not bandwidth, is
// what the solves cost on a GPU), so each brings the block's triangle of M into shared memory
// before its chain starts, one column per thread, and keeps its tokens' values there: no global
// memory inside a step.
extern "C" __global__ void reach_block(const Job* jobs, const float* M, double* h, double* acc,
                                       unsigned int k0, unsigned int k1) {
    const Job j = jobs[blockIdx.y];
    const unsigned int end = min(k1, j.a1);
    if (k0 >= end) return;  // the same for every thread of the block
    const float* m = M + j.m;
    __shared__ float s_m[ROWS][ROWS];  // s_m[k - k0][t] = M[k, k0 + t]
    __shared__ double s_acc[ROWS], s_h[ROWS];
    const unsigned int t = threadIdx.x, i = k0 + t;
    const bool mine = i < end;
    copy_triangle(s_m, m, k0, k0, end);
    if (mine) s_acc[t] = acc[j.v + i];
    __syncthreads();
    for (unsigned int k = end; k > k0; --k) {
        const unsigned int kk = k - 1u, r = kk - k0;
        if (t == 0u) s_h[r] = in_answer(j, kk) ? 1.0 : s_acc[r];
        __syncthreads();
        const double hk = s_h[r];
        if (i < kk && hk != 0.0) s_acc[t] += (double)s_m[r][t] * hk;
        __syncthreads();
    }
    if (mine) h[j.v + i] = s_h[t];
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
    __shared__ float s_m[ROWS][ROWS];  // s_m[k - k0][t] = M[k, k0 + t]
    __shared__ double s_h[ROWS], s_acc[ROWS], s_s[ROWS], s_g[ROWS], s_f[ROWS];
    __shared__ double red[ROWS];
    // This thread's token: a source from the question on, and a row the chain settles.
    const bool mine = i >= rows.lo && i < rows.end;
    copy_triangle(s_m, m, k0, rows.lo, rows.end);
    if (mine) {
        s_h[t] = h[j.v + i];
        s_acc[t] = acc[j.v + i];
        s_s[t] = s[j.v + i];
        s_g[t] = g[j.v + i];
    }
    __syncthreads();
    for (unsigned int k = rows.lo; k < rows.end; ++k) {
        const unsigned int r = k - k0;
        // The block's own earlier sources, one per thread, then a tree sum.
        red[t] = (mine && i < k) ? (double)s_m[r][t] * s_g[t] : 0.0;
        const double inside = tree_sum(red, t, ROWS);
        if (t == 0u) {
            const double hk = s_h[r];
            if (hk > 0.0) {
                const double fk = s_s[r] + hk * (s_acc[r] + inside);
                s_f[r] = fk;
                if (!in_answer(j, k)) s_g[r] = fk / hk;
            }
        }
        // g(k) is read by the next rows' threads.
        __syncthreads();
    }
    if (mine) {
        g[j.v + i] = s_g[t];
        if (s_h[t] > 0.0) f[j.v + i] = s_f[t];
    }
}
