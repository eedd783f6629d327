// Steps 6 and 9 on CUDA for a batch, on the solves' h and f where they already are:
//   throughput:    τ(k) = 2·f(k) for conserving tokens (inflow = outflow), f(k) on the rest
//                  (src/flow/throughput.rs);
//   credit_select: which response tokens are among the `top` highest τ (ties: the earlier token,
//                  as flow::roles::top_by_score): each token counts those that rank above it, all
//                  in parallel, no sort (shaders/credit.wgsl).

extern "C" __global__ void throughput(const Job* jobs, const double* h, const double* f, double* tau) {
    const Job j = jobs[blockIdx.y];
    const unsigned int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= j.n) return;
    const double fk = f[j.v + k];
    tau[j.v + k] = (h[j.v + k] > 0.0 && !in_answer(j, k)) ? 2.0 * fk : fk;
}

extern "C" __global__ void credit_select(const Job* jobs, const double* tau, unsigned int* chosen) {
    const Job j = jobs[blockIdx.y];
    const unsigned int i = j.r0 + blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= j.r1) return;
    const double s = tau[j.v + i];
    unsigned int above = 0u;
    for (unsigned int k = j.r0; k < j.r1 && above < j.top; ++k) {
        const double x = tau[j.v + k];
        above += (x > s || (x == s && k < i)) ? 1u : 0u;
    }
    chosen[j.v + i] = above < j.top ? 1u : 0u;
}
