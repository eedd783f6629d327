// Steps 3 and 5 on the GPU: the two triangular solves, blocked like the CPU's (FLOWTRACER.md §1).
//
// Reach (backward, "push" form), blocks of rows from the answer's end down to 0:
//   reach_block: one workgroup settles the block's rows in order, h(k) = 1 on the answer, else
//                the sum gathered so far, pushing W[i,k]·h(k) into the block's own earlier tokens;
//   reach_push:  every token before the block adds Σ_{k in block} M[k,i]·h(k), in parallel.
// Flow (forward, "pull" form), blocks of rows from the question's start to the answer's end:
//   flow_gather: each row of the block sums M[k,i]·g(i) over the sources before the block;
//   flow_block:  one workgroup settles the block's rows in order: f(k) = s(k) + h(k)·(sum),
//                g(k) = f(k)/h(k) for conserving tokens (the answer absorbs).
// Params, the uniform p and at() come from block.wgsl.

@group(0) @binding(1) var<storage, read> m: array<f32>;
@group(0) @binding(2) var<storage, read_write> h: array<f32>;
@group(0) @binding(3) var<storage, read_write> acc: array<f32>;
@group(0) @binding(4) var<storage, read_write> g: array<f32>;
@group(0) @binding(5) var<storage, read_write> f: array<f32>;
@group(0) @binding(6) var<storage, read> s: array<f32>;

const B: u32 = 64u;
var<workgroup> s_acc: array<f32, 64>;
var<workgroup> s_h: f32;
var<workgroup> s_red: array<f32, 256>;
// The chain kernels' copies (reach_block, flow_block: 64 dependent steps per block, so their
// latency is the solves' cost): the block's triangle (tri()) and its tokens' values, brought into
// workgroup memory before the chain starts so that no step reads global memory.
// (s_m and copy_triangle: block.wgsl.)
var<workgroup> s_hb: array<f32, 64>;
var<workgroup> s_g: array<f32, 64>;
var<workgroup> s_s: array<f32, 64>;

// Tree sum of s_red[0..width) into s_red[0]; every thread of the workgroup calls it (barriers).
fn tree_sum(t: u32, width: u32) -> f32 {
    workgroupBarrier();
    for (var stride = width / 2u; stride > 0u; stride = stride / 2u) {
        if (t < stride) {
            s_red[t] = s_red[t] + s_red[t + stride];
        }
        workgroupBarrier();
    }
    return s_red[0];
}

fn in_answer(k: u32) -> bool {
    return k >= p.a0 && k < p.a1;
}

@compute @workgroup_size(64, 1, 1)
fn reach_block(@builtin(local_invocation_id) lid: vec3<u32>) {
    let t = lid.x;
    let i = p.k0 + t;
    copy_triangle(t);
    if (i < p.k1) {
        s_acc[t] = acc[i];
    }
    workgroupBarrier();
    for (var k = p.k1; k > p.k0; k = k - 1u) {
        let kk = k - 1u;
        let r = kk - p.k0;
        if (t == 0u) {
            var hk = s_acc[r];
            if (in_answer(kk)) {
                hk = 1.0;
            }
            h[kk] = hk;
            s_h = hk;
        }
        workgroupBarrier();
        let hk = s_h;
        if (i < kk && hk != 0.0) {
            s_acc[t] = s_acc[t] + s_m[tri(r, t)] * hk;
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256, 1, 1)
fn reach_push(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.k0) {
        return;
    }
    var sum = 0.0;
    for (var k = p.k0; k < p.k1; k = k + 1u) {
        sum = sum + m[at(k, i)] * h[k];
    }
    acc[i] = acc[i] + sum;
}

@compute @workgroup_size(256, 1, 1)
fn flow_gather(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let k = p.k0 + wg.x;
    let t = lid.x;
    var sum = 0.0;
    if (k < p.k1) {
        for (var i = p.q0 + t; i < p.k0; i = i + 256u) {
            sum = sum + m[at(k, i)] * g[i];
        }
    }
    s_red[t] = sum;
    let total = tree_sum(t, 256u);
    if (t == 0u && k < p.k1) {
        acc[k] = total;
    }
}

@compute @workgroup_size(64, 1, 1)
fn flow_block(@builtin(local_invocation_id) lid: vec3<u32>) {
    let t = lid.x;
    let i = p.k0 + t;
    copy_triangle(t);
    if (i < p.k1) {
        s_hb[t] = h[i];
        s_acc[t] = acc[i];
        s_s[t] = s[i];
        s_g[t] = g[i];
    }
    workgroupBarrier();
    for (var k = p.k0; k < p.k1; k = k + 1u) {
        let r = k - p.k0;
        // The block's own earlier sources, one per thread, then a tree sum.
        var v = 0.0;
        if (i < k && i >= p.q0) {
            v = s_m[tri(r, t)] * s_g[t];
        }
        s_red[t] = v;
        let inside = tree_sum(t, 64u);
        if (t == 0u) {
            let hk = s_hb[r];
            if (hk > 0.0) {
                let fk = s_s[r] + hk * (s_acc[r] + inside);
                f[k] = fk;
                if (!in_answer(k)) {
                    s_g[r] = fk / hk;
                }
            }
        }
        // g(k) is read by the next rows' threads.
        workgroupBarrier();
    }
    if (i < p.k1) {
        g[i] = s_g[t];
    }
}
