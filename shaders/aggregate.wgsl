// Step 1 on the GPU: fold one slab (one layer and head) of attention rows into the packed
// lower-triangular M, decoding F32, F16 or BF16 from the file's raw little-endian words.
// One workgroup per query row. Each also reports what the CPU checks (sum, minimum, largest
// weight above the diagonal, non-finite count) so a bad file gets the CPU's exact error.

struct Params {
    n: u32,          // tokens
    k0: u32,         // first query row of this chunk
    rows: u32,       // rows in this chunk
    dtype: u32,      // 0 = F32, 1 = F16, 2 = BF16
    first: u32,      // 1 for the first slab: overwrite M instead of combining
    last: u32,       // 1 for the last slab: apply the mean's scale and the threshold
    reduce: u32,     // 0 = mean, 1 = max
    base: u32,       // packed offset of row k0 (M is bound from there)
    scale: f32,      // 1 / number of slabs
    threshold: f32,  // ε
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> att: array<u32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> stats: array<vec4<f32>>;

const WG: u32 = 256u;
var<workgroup> s_sum: array<f32, 256>;
var<workgroup> s_min: array<f32, 256>;
var<workgroup> s_up: array<f32, 256>;
var<workgroup> s_bad: array<f32, 256>;

// Element e of the chunk, and whether its bits encode a NaN or an infinity.
fn load(e: u32) -> vec2<f32> {
    if (p.dtype == 0u) {
        let bits = att[e];
        let bad = select(0.0, 1.0, (bits & 0x7f800000u) == 0x7f800000u);
        return vec2<f32>(bitcast<f32>(bits), bad);
    }
    let word = att[e / 2u];
    let half = select(word & 0xffffu, word >> 16u, (e & 1u) == 1u);
    if (p.dtype == 1u) {
        let bad = select(0.0, 1.0, (half & 0x7c00u) == 0x7c00u);
        return vec2<f32>(unpack2x16float(half).x, bad);
    }
    let bad = select(0.0, 1.0, (half & 0x7f80u) == 0x7f80u);
    return vec2<f32>(bitcast<f32>(half << 16u), bad);
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let r = wg.x + wg.y * 65535u;
    if (r >= p.rows) {
        return;
    }
    let k = p.k0 + r;
    let t = lid.x;
    // Row k starts at k(k-1)/2 in packed storage; M is bound from row k0.
    let out = (k * (k - 1u)) / 2u - p.base;
    var sum = 0.0;
    var lo = 3.4e38;
    var up = 0.0;
    var bad = 0.0;
    for (var i = t; i < p.n; i = i + WG) {
        let v = load(r * p.n + i);
        let x = v.x;
        bad = bad + v.y;
        if (v.y > 0.0) {
            continue;
        }
        if (i > k) {
            up = max(up, abs(x));
            continue;
        }
        sum = sum + x;
        lo = min(lo, x);
        if (i == k) {
            continue;
        }
        var acc = x;
        if (p.first == 0u) {
            let old = m[out + i];
            acc = select(old + x, max(old, x), p.reduce == 1u);
        }
        if (p.last == 1u) {
            if (p.reduce == 0u) {
                acc = acc * p.scale;
            }
            if (acc < p.threshold) {
                acc = 0.0;
            }
        }
        m[out + i] = acc;
    }
    s_sum[t] = sum;
    s_min[t] = lo;
    s_up[t] = up;
    s_bad[t] = bad;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (t < stride) {
            s_sum[t] = s_sum[t] + s_sum[t + stride];
            s_min[t] = min(s_min[t], s_min[t + stride]);
            s_up[t] = max(s_up[t], s_up[t + stride]);
            s_bad[t] = s_bad[t] + s_bad[t + stride];
        }
        workgroupBarrier();
    }
    if (t == 0u) {
        stats[r] = vec4<f32>(s_sum[0], s_min[0], s_up[0], s_bad[0]);
    }
}
