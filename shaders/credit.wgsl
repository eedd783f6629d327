// Steps 6 and 9 on the GPU, on the flow solve's h and f where it left them (kernels/credit.cu):
//   throughput: τ(k) = 2·f(k) for conserving tokens (inflow = outflow), f(k) on the rest
//               (src/flow/throughput.rs);
//   select:     which response tokens are among the `count` highest τ (ties: the earlier token
//               first, as flow::roles::top_by_score orders them): each token counts the tokens
//               that rank above it, R² comparisons, all in parallel, no sort.

struct Params {
    n: u32,
    a0: u32,      // the answer span: its tokens absorb, so their throughput is their inflow
    a1: u32,
    r0: u32,      // the response span: the credit's candidates
    r1: u32,
    count: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> h: array<f32>;
@group(0) @binding(2) var<storage, read> f: array<f32>;
@group(0) @binding(3) var<storage, read_write> tau: array<f32>;
@group(0) @binding(4) var<storage, read_write> selected: array<f32>;     // 1 chosen, 0 not

@compute @workgroup_size(256, 1, 1)
fn throughput(@builtin(global_invocation_id) gid: vec3<u32>) {
    let k = gid.x;
    if (k >= p.n) {
        return;
    }
    let conserves = h[k] > 0.0 && !(k >= p.a0 && k < p.a1);
    tau[k] = select(f[k], 2.0 * f[k], conserves);
}

@compute @workgroup_size(256, 1, 1)
fn select_top(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = p.r0 + gid.x;
    if (i >= p.r1) {
        return;
    }
    let s = tau[i];
    var above = 0u;
    for (var j = p.r0; j < p.r1 && above < p.count; j = j + 1u) {
        let t = tau[j];
        if (t > s || (t == s && j < i)) {
            above = above + 1u;
        }
    }
    selected[i - p.r0] = select(0.0, 1.0, above < p.count);
}
