// Block maxima of a packed lower-triangular matrix, scaled per row and per column:
//   out[y, x] = max over rows k of block y, columns i < k of block x, of M[k,i] * row[k] * col[i]
// With row = col = 1 this is the attention M; row = h, col = 1/h gives W'; row = h, col = f/h
// gives the edge flow φ. Blocks follow the CPU's rule: token t belongs to block t*s/n.
//
// The matrix is uploaded in chunks of whole output rows; `first_row` is the first matrix row of
// the chunk and `base` its offset in packed storage, so offsets here are relative to the chunk.

struct Params {
    n: u32,
    s: u32,
    first_out_row: u32,
    out_rows: u32,
    base: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> m: array<f32>;
@group(0) @binding(2) var<storage, read> row_scale: array<f32>;
@group(0) @binding(3) var<storage, read> col_scale: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn block_start(b: u32) -> u32 {
    // The first token t with t*s/n >= b, i.e. ceil(b*n/s).
    return (b * p.n + p.s - 1u) / p.s;
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let x = id.x;
    let y = p.first_out_row + id.y;
    if (x >= p.s || id.y >= p.out_rows) {
        return;
    }
    let k0 = block_start(y);
    let k1 = min(block_start(y + 1u), p.n);
    let i0 = block_start(x);
    let i1 = block_start(x + 1u);
    var best = 0.0;
    for (var k = k0; k < k1; k = k + 1u) {
        let end = min(i1, k);
        if (i0 >= end) {
            continue;
        }
        // Row k starts at k(k-1)/2 in packed storage.
        let start = (k * (k - 1u)) / 2u - p.base;
        let rs = row_scale[k];
        for (var i = i0; i < end; i = i + 1u) {
            best = max(best, m[start + i] * rs * col_scale[i]);
        }
    }
    out[y * p.s + x] = best;
}
