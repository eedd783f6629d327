//! The blocked forward triangular sweep shared by the flow solve and the backbone's widest-path
//! programme: value(k) depends on every earlier value through row k of M. Rows are taken in
//! blocks; the bulk of each block (sources before the block) is gathered in parallel, the small
//! triangle inside the block sequentially. The same structure maps onto GPU dispatches.

use super::matrix::Matrix;
use rayon::prelude::*;
use std::ops::Range;

pub const BLOCK: usize = 128;
/// Rows a `gather_rows` call takes at once.
pub const ROWS: usize = 4;

pub trait Sweep: Sync {
    type Acc: Copy + Send;
    /// What the settled sources `sources` send to token `k` (row `row` of M).
    fn gather(&self, k: usize, row: &[f32], sources: Range<usize>) -> Self::Acc;
    /// `gather` of the consecutive rows `ks`, each from the same sources. A sweep whose gather
    /// is a chain of dependent additions overrides it to run several rows' chains side by side,
    /// each in its own order (the same answer bit for bit, at a few times the speed).
    fn gather_rows(&self, ks: Range<usize>, m: &Matrix, sources: Range<usize>) -> Vec<Self::Acc> {
        ks.map(|k| self.gather(k, m.row(k), sources.clone())).collect()
    }
    fn combine(earlier: Self::Acc, later: Self::Acc) -> Self::Acc;
    /// Fixes token `k`'s value from everything it gathered.
    fn settle(&mut self, k: usize, acc: Self::Acc);
}

/// Settles tokens `rows` in order; sources start at `first_source`.
pub fn forward_sweep<S: Sweep>(m: &Matrix, first_source: usize, rows: Range<usize>, state: &mut S) {
    let mut k0 = rows.start;
    while k0 < rows.end {
        let k1 = (k0 + BLOCK).min(rows.end);
        let split = k0.max(first_source);
        let before = first_source..split;
        let partial: Vec<S::Acc> = {
            let s = &*state;
            let groups = (k0..k1).step_by(ROWS).map(|a| a..(a + ROWS).min(k1));
            if before.len() * (k1 - k0) >= 1 << 15 {
                groups.collect::<Vec<_>>().into_par_iter().flat_map_iter(|ks| s.gather_rows(ks, m, before.clone())).collect()
            } else {
                groups.flat_map(|ks| s.gather_rows(ks, m, before.clone())).collect()
            }
        };
        for k in k0..k1 {
            let inside = state.gather(k, m.row(k), split..k.max(split));
            state.settle(k, S::combine(partial[k - k0], inside));
        }
        k0 = k1;
    }
}
