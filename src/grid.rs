//! The device backends' grid of row blocks (rows 64j..64j+64): the wgpu shaders and the CUDA
//! kernels cut the backward and the forward sweeps into the same blocks, so a block of M always
//! lies in one device buffer. (The CPU's sweep, `flow::sweep`, has its own block size.)

use std::ops::Range;

pub const BLOCK: usize = 64;

/// Blocks of the backward sweep: from `end` down to 0, on the grid.
pub fn blocks_down(end: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut k1 = end;
    while k1 > 0 {
        let k0 = (k1 - 1) / BLOCK * BLOCK;
        out.push(k0..k1);
        k1 = k0;
    }
    out
}

/// Blocks of the forward sweeps: `rows` in order, on the grid.
pub fn blocks_up(rows: Range<usize>) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut k0 = rows.start;
    while k0 < rows.end {
        let k1 = ((k0 / BLOCK + 1) * BLOCK).min(rows.end);
        out.push(k0..k1);
        k0 = k1;
    }
    out
}
