// Step 7 on CUDA for a batch: the backbone's widest-path programme, the flow solve's blocked
// forward sweep (flow_gather / flow_block in solve.cu) over the (max, min) semiring instead of
// (+, ×), as src/flow/backbone.rs and shaders/backbone.wgsl. A path through source i into token
// k can carry min(width(i), φ(i,k)), φ(i,k) = g(i)·M[k,i]·h(k); each token keeps the widest such
// path and the source it came through (ties: the earlier source). Widths are doubles computed
// with the CPU's very operations, so both pick the same paths.
//
//   widest_gather: each row of the block: the widest over the sources before the block;
//   widest_block:  one block of 64 threads settles the block's rows in order, adding the block's
//                  own earlier sources (from shared memory, by warp shuffles); a question token
//                  may instead start a path of its share;
//   take_paths:    the paths just taken: their edges' residuals into M, their sources' shares.

#define NO_PRED 0xffffffffu
#define SOURCE_PRED 0xfffffffeu

__device__ __forceinline__ double candidate(const Job& j, const float* row, const double* g, const double* width,
                                            unsigned int i, double hk) {
    return min(width[j.v + i], g[j.v + i] * (double)row[i] * hk);
}

// The widest of two (width, source) candidates: the earliest source among equals.
__device__ __forceinline__ void wider(double& w, unsigned int& i, double ow, unsigned int oi) {
    if (ow > w || (ow == w && oi < i)) {
        w = ow;
        i = oi;
    }
}

// The widest (w, i) of the block's threads, in thread 0's (w, i): warp shuffles inside each
// warp, then the warps' widest through `warp_w`/`warp_i` (one slot per warp). Every thread of the
// block calls it; it reads the slots only after its one barrier, so a loop may call it again
// once a barrier has followed thread 0's use of the answer.
__device__ void block_widest(double& w, unsigned int& i, double* warp_w, unsigned int* warp_i) {
    const unsigned int t = threadIdx.x;
    for (unsigned int d = 16u; d > 0u; d /= 2u) {
        const double ow = __shfl_down_sync(0xffffffffu, w, d);
        const unsigned int oi = __shfl_down_sync(0xffffffffu, i, d);
        wider(w, i, ow, oi);
    }
    if (t % 32u == 0u) {
        warp_w[t / 32u] = w;
        warp_i[t / 32u] = i;
    }
    __syncthreads();
    if (t == 0u)
        for (unsigned int other = 1u; other < blockDim.x / 32u; ++other) wider(w, i, warp_w[other], warp_i[other]);
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
    __shared__ double warp_w[256 / 32];
    __shared__ unsigned int warp_i[256 / 32];
    block_widest(best, at, warp_w, warp_i);
    if (t == 0u) {
        acc_w[j.v + k] = best;
        acc_i[j.v + k] = at;
    }
}

// The block's rows depend on each other in order, so this kernel is a chain of 64 steps for
// every round of every path: its latency, not bandwidth, is what the backbone costs on a GPU
// (on an H200 the rounds took 10 of 13 ms at N = 1018). So everything a step reads is brought
// into shared memory at once before the chain starts (the block's triangle of M, one column per
// thread; each row's h, gathered best and share), the block's own widths stay there, and each
// step's widest is found by warp shuffles: two barriers a step, no global memory inside it.
extern "C" __global__ void widest_block(const Job* jobs, const float* M, const double* h, const double* g,
                                        const double* source_left, const double* acc_w, const unsigned int* acc_i,
                                        double* width, unsigned int* pred, unsigned int k0, unsigned int k1) {
    const Job j = jobs[blockIdx.y];
    const Rows rows = forward_rows(j, k0, k1);
    if (rows.lo >= rows.end) return;  // the same for every thread of the block
    const float* m = M + j.m;
    const unsigned int t = threadIdx.x, i = k0 + t;
    __shared__ float s_m[ROWS][ROWS];  // s_m[k - k0][t] = M[k, k0 + t]
    __shared__ double s_h[ROWS], s_acc_w[ROWS], s_share[ROWS], s_width[ROWS];
    __shared__ unsigned int s_acc_i[ROWS], s_pred[ROWS];
    __shared__ double warp_w[ROWS / 32u];
    __shared__ unsigned int warp_i[ROWS / 32u];
    // This thread's token: a source from the question on, and a row the chain settles.
    const bool mine = i >= rows.lo && i < rows.end;
    copy_triangle(s_m, m, k0, rows.lo, rows.end);
    const double gi = mine ? g[j.v + i] : 0.0;
    if (mine) {
        s_h[t] = h[j.v + i];
        s_acc_w[t] = acc_w[j.v + i];
        s_acc_i[t] = acc_i[j.v + i];
        s_share[t] = source_left[j.v + i];
    }
    __syncthreads();
    for (unsigned int k = rows.lo; k < rows.end; ++k) {
        const unsigned int r = k - k0;
        const double hk = s_h[r];
        // candidate()'s very operations, on the copies.
        double w = (hk > 0.0 && mine && i < k) ? min(s_width[t], gi * (double)s_m[r][t] * hk) : 0.0;
        unsigned int at = w > 0.0 ? i : NO_PRED;
        block_widest(w, at, warp_w, warp_i);
        if (t == 0u) {
            // Sources before the block are earlier tokens: they win ties.
            double best = s_acc_w[r];
            unsigned int p = s_acc_i[r];
            if (w > best) {
                best = w;
                p = at;
            }
            if (best <= 0.0) {
                best = 0.0;
                p = NO_PRED;
            }
            const double share = s_share[r];
            if (k < j.q1 && share >= best && share > 0.0) {
                best = share;
                p = SOURCE_PRED;
            }
            s_width[r] = best;
            s_pred[r] = p;
        }
        // width(k) is read by the next rows' threads.
        __syncthreads();
    }
    if (mine) {
        width[j.v + i] = s_width[t];
        pred[j.v + i] = s_pred[t];
    }
}

extern "C" __global__ void take_paths(float* M, const unsigned long long* edge_at, const float* edge_left, unsigned int edges,
                                      double* source_left, const unsigned int* source_at, const double* source_value,
                                      unsigned int sources) {
    const unsigned int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e < edges) M[edge_at[e]] = edge_left[e];
    if (e < sources) source_left[source_at[e]] = source_value[e];
}
