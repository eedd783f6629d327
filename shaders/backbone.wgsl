// Step 7 on the GPU: the backbone's widest-path programme, the flow solve's blocked forward
// sweep over the (max, min) semiring instead of (+, ×) (FLOWTRACER.md §1, src/flow/backbone.rs).
// A path through source i into token k can carry min(width(i), φ(i,k)), φ(i,k) = g(i)·M[k,i]·h(k);
// each token keeps the widest such path and the source it came through (ties: the earlier one).
//
//   widest_gather: each row of the block: the best over the sources before the block;
//   widest_block:  one workgroup settles the block's rows in order, adding the block's own earlier
//                  sources, then a question token may instead start a path of its share. A chain
//                  of 64 dependent steps per block and per path, so its latency is the backbone's
//                  cost: the block's triangle of M and its tokens' values are copied into
//                  workgroup memory before the chain starts, and no step reads global memory.
//
// Widths and predecessors travel as vec2<f32>: the predecessor's index as a float (exact below
// 2^24 tokens), −1 for none and −2 for the super-source. Params, p and at(): block.wgsl.

@group(0) @binding(1) var<storage, read> m: array<f32>;
@group(0) @binding(2) var<storage, read> hg: array<vec2<f32>>;          // (h, g)
@group(0) @binding(3) var<storage, read> source_left: array<f32>;
@group(0) @binding(4) var<storage, read_write> wp: array<vec2<f32>>;    // (width, pred)
@group(0) @binding(5) var<storage, read_write> acc: array<vec2<f32>>;   // gathered before the block

const NONE: u32 = 0xffffffffu;
const PRED_NONE: f32 = -1.0;
const PRED_SOURCE: f32 = -2.0;
var<workgroup> s_w: array<f32, 256>;
var<workgroup> s_i: array<u32, 256>;
// widest_block's copies (beside the block's triangle, s_m in block.wgsl): each row's (h, g),
// what the sources before the block gave it and its share, and the (width, pred) it settles.
var<workgroup> s_hg: array<vec2<f32>, 64>;
var<workgroup> s_acc: array<vec2<f32>, 64>;
var<workgroup> s_share: array<f32, 64>;
var<workgroup> s_wp: array<vec2<f32>, 64>;

fn candidate(k: u32, i: u32) -> f32 {
    return min(wp[i].x, hg[i].y * m[at(k, i)] * hg[k].x);
}

// The widest of s_w[0..width) into slot 0, the earliest source among equals.
fn tree_best(t: u32, width: u32) {
    workgroupBarrier();
    for (var stride = width / 2u; stride > 0u; stride = stride / 2u) {
        if (t < stride) {
            let w = s_w[t + stride];
            if (w > s_w[t] || (w == s_w[t] && s_i[t + stride] < s_i[t])) {
                s_w[t] = w;
                s_i[t] = s_i[t + stride];
            }
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256, 1, 1)
fn widest_gather(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let k = p.k0 + wg.x;
    let t = lid.x;
    var best = 0.0;
    var at = NONE;
    if (k < p.k1 && hg[k].x > 0.0) {
        for (var i = p.q0 + t; i < p.k0; i = i + 256u) {
            let c = candidate(k, i);
            if (c > best) {
                best = c;
                at = i;
            }
        }
    }
    s_w[t] = best;
    s_i[t] = at;
    tree_best(t, 256u);
    if (t == 0u && k < p.k1) {
        acc[k] = vec2<f32>(s_w[0], select(f32(s_i[0]), PRED_NONE, s_i[0] == NONE));
    }
}

@compute @workgroup_size(64, 1, 1)
fn widest_block(@builtin(local_invocation_id) lid: vec3<u32>) {
    let t = lid.x;
    let split = max(p.k0, p.q0);
    let rows = p.k1 - p.k0;
    copy_triangle(t);
    if (t < rows) {
        s_hg[t] = hg[p.k0 + t];
        s_acc[t] = acc[p.k0 + t];
        s_share[t] = source_left[p.k0 + t];
    }
    workgroupBarrier();
    for (var k = p.k0; k < p.k1; k = k + 1u) {
        let r = k - p.k0;
        let i = split + t;
        var c = 0.0;
        let hk = s_hg[r].x;
        if (i < k && hk > 0.0) {
            // candidate()'s very operations, on the copies.
            let ci = i - p.k0;
            c = min(s_wp[ci].x, s_hg[ci].y * s_m[tri(r, ci)] * hk);
        }
        s_w[t] = c;
        s_i[t] = select(NONE, i, c > 0.0);
        tree_best(t, 64u);
        if (t == 0u) {
            // Sources before the block cover earlier tokens: they win ties.
            var best = s_acc[r];
            if (s_w[0] > best.x) {
                best = vec2<f32>(s_w[0], f32(s_i[0]));
            }
            if (best.x <= 0.0) {
                best = vec2<f32>(0.0, PRED_NONE);
            }
            let share = s_share[r];
            if (k >= p.q0 && k < p.q1 && share >= best.x && share > 0.0) {
                best = vec2<f32>(share, PRED_SOURCE);
            }
            s_wp[r] = best;
        }
        // width(k) is read by the next rows' threads.
        workgroupBarrier();
    }
    if (t < rows) {
        wp[p.k0 + t] = s_wp[t];
    }
}
