// The credit selection on the GPU: which tokens of the response are among the `count` highest
// scores (ties: the earlier token first, as flow::roles::top_by_score orders them). Each token
// counts the tokens that rank above it: R² comparisons, all in parallel, no sort.

struct Params {
    r0: u32,      // the response span
    r1: u32,
    count: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> score: array<f32>;
@group(0) @binding(2) var<storage, read_write> selected: array<f32>;     // 1 chosen, 0 not

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = p.r0 + gid.x;
    if (i >= p.r1) {
        return;
    }
    let s = score[i];
    var above = 0u;
    for (var j = p.r0; j < p.r1; j = j + 1u) {
        let t = score[j];
        if (t > s || (t == s && j < i)) {
            above = above + 1u;
        }
    }
    selected[i - p.r0] = select(0.0, 1.0, above < p.count);
}
