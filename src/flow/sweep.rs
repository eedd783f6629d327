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

/// Σ_i M[k,i]·weights[i] over `sources`: the gather of a sweep that sums its sources' values
/// through row k (the flow solve, the knock-out losses), in the order `Iterator::sum` adds (from
/// −0.0, source by source).
pub fn weighted_sum(row: &[f32], weights: &[f64], sources: Range<usize>) -> f64 {
    row[sources.clone()].iter().zip(&weights[sources]).map(|(&w, &x)| w as f64 * x).sum()
}

/// `weighted_sum` of the consecutive rows `ks`, four side by side: each row's chain of additions
/// in `weighted_sum`'s order, but four independent chains keep the adder busy where one waits on
/// each addition.
pub fn weighted_sums(ks: Range<usize>, m: &Matrix, weights: &[f64], sources: Range<usize>) -> Vec<f64> {
    if ks.len() != ROWS {
        return ks.map(|k| weighted_sum(m.row(k), weights, sources.clone())).collect();
    }
    let x = &weights[sources.clone()];
    let rows: [&[f32]; ROWS] = std::array::from_fn(|j| &m.row(ks.start + j)[sources.clone()]);
    let mut acc = [-0.0f64; ROWS];
    for (i, &xi) in x.iter().enumerate() {
        for (a, row) in acc.iter_mut().zip(&rows) {
            *a += row[i] as f64 * xi;
        }
    }
    acc.to_vec()
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
