// Shared by the blocked sweeps (prepended to solve.wgsl and backbone.wgsl when they are built;
// WGSL has no includes). Mirrors gpu::BlockParams.

struct Params {
    n: u32,
    k0: u32,      // first row of the block
    k1: u32,      // one past its last row
    q0: u32,      // question span (the first source is q0)
    q1: u32,
    a0: u32,      // answer span
    a1: u32,
    base: u32,    // packed index of the first entry of the buffer bound as m
}

@group(0) @binding(0) var<uniform> p: Params;

// M is the packed strict lower triangle: row k starts at k(k-1)/2. The buffer bound as m holds
// the rows of the dispatch's block (gpu::matrix), starting at packed index p.base.
fn at(k: u32, i: u32) -> u32 {
    return (k * (k - 1u)) / 2u - p.base + i;
}

// The block's own triangle as the chain kernels (reach_block, flow_block, widest_block) copy it
// into workgroup memory before their chains: row r, column c < r of the block (both counted from
// k0) at r(r−1)/2 + c; 2016 entries for 64 rows. Each module binds M as `m`.
var<workgroup> s_m: array<f32, 2016>;

fn tri(r: u32, c: u32) -> u32 {
    return (r * (r - 1u)) / 2u + c;
}

// Copies the block's triangle into s_m, row by row, thread t column t (contiguous reads).
fn copy_triangle(t: u32) {
    let rows = p.k1 - p.k0;
    for (var r = 1u; r < rows; r = r + 1u) {
        if (t < r) {
            s_m[tri(r, t)] = m[at(p.k0 + r, p.k0 + t)];
        }
    }
}
