//! The blocked forward triangular sweep shared by the flow solve and the backbone's widest-path
//! programme: value(k) depends on every earlier value through row k of M. Rows are taken in
//! blocks; the bulk of each block (sources before the block) is gathered in parallel, the small
//! triangle inside the block sequentially. The same structure maps onto GPU dispatches.

use super::matrix::Matrix;
use rayon::prelude::*;
use std::ops::Range;

pub const BLOCK: usize = 128;

pub trait Sweep: Sync {
    type Acc: Copy + Send;
    /// What the settled sources `sources` send to token `k` (row `row` of M).
    fn gather(&self, k: usize, row: &[f32], sources: Range<usize>) -> Self::Acc;
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
            if before.len() * (k1 - k0) >= 1 << 15 {
                (k0..k1).into_par_iter().map(|k| s.gather(k, m.row(k), before.clone())).collect()
            } else {
                (k0..k1).map(|k| s.gather(k, m.row(k), before.clone())).collect()
            }
        };
        for k in k0..k1 {
            let inside = state.gather(k, m.row(k), split..k.max(split));
            state.settle(k, S::combine(partial[k - k0], inside));
        }
        k0 = k1;
    }
}
