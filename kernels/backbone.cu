// Step 7 on CUDA for a batch: the backbone's widest-path programme, the flow solve's blocked
// forward sweep (flow_gather / flow_block in solve.cu) over the (max, min) semiring instead of
// (+, ×), as src/flow/backbone.rs and shaders/backbone.wgsl. A path through source i into token
// k can carry min(width(i), φ(i,k)), φ(i,k) = g(i)·M[k,i]·h(k); each token keeps the widest such
// path and the source it came through (ties: the earlier source). Widths are doubles computed
// with the CPU's very operations, so both pick the same paths.
//
//   widest_gather: each row of the block: the widest over the sources before the block;
//   widest_block:  one block of 64 threads settles the block's rows in order, adding the block's
//                  own earlier sources; a question token may instead start a path of its share;
//   take_paths:    the paths just taken: their edges' residuals into M, their sources' shares.

#define NO_PRED 0xffffffffu
#define SOURCE_PRED 0xfffffffeu

__device__ __forceinline__ double candidate(const Job& j, const float* row, const double* g, const double* width,
                                            unsigned int i, double hk) {
    return min(width[j.v + i], g[j.v + i] * (double)row[i] * hk);
}

// The widest of (red_w, red_i)[0..width) into slot 0, the earliest source among equals.
__device__ void tree_best(double* red_w, unsigned int* red_i, unsigned int t, unsigned int width) {
    __syncthreads();
    for (unsigned int stride = width / 2u; stride > 0u; stride /= 2u) {
        if (t < stride) {
            const double w = red_w[t + stride];
            const unsigned int i = red_i[t + stride];
            if (w > red_w[t] || (w == red_w[t] && i < red_i[t])) {
                red_w[t] = w;
                red_i[t] = i;
            }
        }
        __syncthreads();
    }
}

extern "C" __global__ void widest_gather(const Job* jobs, const float* M, const double* h, const double* g,
                                         const double* width, double* acc_w, unsigned int* acc_i,
                                         unsigned int k0, unsigned int k1) {
    const Job j = jobs[blockIdx.y];
    const unsigned int k = k0 + blockIdx.x;
    const Rows rows = forward_rows(j, k0, k1);
    if (k < rows.lo || k >= rows.end) return;  // the same for every thread of the block
    const float* row = M + j.m + row_at(k);
    const double hk = h[j.v + k];
    const unsigned int t = threadIdx.x;
    double best = 0.0;
    unsigned int at = NO_PRED;
    if (hk > 0.0) {
        // Strictly wider only: each thread keeps its earliest source among equals.
        for (unsigned int i = j.q0 + t; i < k0; i += blockDim.x) {
            const double c = candidate(j, row, g, width, i, hk);
            if (c > best) {
                best = c;
                at = i;
            }
        }
    }
    __shared__ double red_w[256];
    __shared__ unsigned int red_i[256];
    red_w[t] = best;
    red_i[t] = at;
    tree_best(red_w, red_i, t, blockDim.x);
    if (t == 0u) {
        acc_w[j.v + k] = red_w[0];
        acc_i[j.v + k] = red_i[0];
    }
}

extern "C" __global__ void widest_block(const Job* jobs, const float* M, const double* h, const double* g,
                                        const double* source_left, const double* acc_w, const unsigned int* acc_i,
                                        double* width, unsigned int* pred, unsigned int k0, unsigned int k1) {
    const Job j = jobs[blockIdx.y];
    const Rows rows = forward_rows(j, k0, k1);
    if (rows.lo >= rows.end) return;  // the same for every thread of the block
    const float* m = M + j.m;
    const unsigned int t = threadIdx.x, i = k0 + t;
    __shared__ double red_w[ROWS];
    __shared__ unsigned int red_i[ROWS];
    for (unsigned int k = rows.lo; k < rows.end; ++k) {
        const double hk = h[j.v + k];
        const double c = (hk > 0.0 && i < k && i >= j.q0) ? candidate(j, m + row_at(k), g, width, i, hk) : 0.0;
        red_w[t] = c;
        red_i[t] = c > 0.0 ? i : NO_PRED;
        tree_best(red_w, red_i, t, ROWS);
        if (t == 0u) {
            // Sources before the block are earlier tokens: they win ties.
            double w = acc_w[j.v + k];
            unsigned int p = acc_i[j.v + k];
            if (red_w[0] > w) {
                w = red_w[0];
                p = red_i[0];
            }
            if (w <= 0.0) {
                w = 0.0;
                p = NO_PRED;
            }
            const double share = source_left[j.v + k];
            if (k < j.q1 && share >= w && share > 0.0) {
                w = share;
                p = SOURCE_PRED;
            }
            width[j.v + k] = w;
            pred[j.v + k] = p;
        }
        // width(k) is read by the next rows' threads; __syncthreads orders the block's global writes.
        __syncthreads();
    }
}

extern "C" __global__ void take_paths(float* M, const unsigned long long* edge_at, const float* edge_left, unsigned int edges,
                                      double* source_left, const unsigned int* source_at, const double* source_value,
                                      unsigned int sources) {
    const unsigned int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e < edges) M[edge_at[e]] = edge_left[e];
    if (e < sources) source_left[source_at[e]] = source_value[e];
}
