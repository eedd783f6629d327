//! Step 4, flow conservation (a Doob h-transform): W'[i,k] = W[i,k]·h(k)/h(i) for h(i) > 0,
//! i outside the answer. Every such row sums to 1, so a token neither gains nor loses mass through
//! path length or dead-end branches. W' is never stored: it is M, h and this one definition.

use super::matrix::Matrix;
use crate::span::Span;

/// True for tokens whose outgoing edges are rescaled to sum to 1.
#[inline]
pub fn conserves(i: usize, h: &[f64], answer: Span) -> bool {
    h[i] > 0.0 && !answer.contains(i)
}

/// g(i) = f(i)/h(i) for conserving tokens, 0 for the rest, so that φ(i,k) = g(i)·M[k,i]·h(k)
/// (`f[i] / h[i] * M[k,i] * h[k]` left to right, to the bit): the division made once a token,
/// not once an edge, by the backbone's decomposition and the far-source score alike.
pub fn unit_outflow(h: &[f64], f: &[f64], answer: Span) -> Vec<f64> {
    (0..h.len()).map(|i| if conserves(i, h, answer) { f[i] / h[i] } else { 0.0 }).collect()
}

/// W'[i,k] for i < k (0 for answer tokens, which absorb, and for tokens that never reach it).
#[inline]
pub fn conserved(m: &Matrix, h: &[f64], answer: Span, i: usize, k: usize) -> f64 {
    if i >= k || !conserves(i, h, answer) {
        return 0.0;
    }
    m.get(k, i) as f64 * h[k] / h[i]
}

/// Σ_k W'[i,k], computed the long way; the invariant tests check it is 1.
pub fn row_sum(m: &Matrix, h: &[f64], answer: Span, i: usize) -> f64 {
    (i + 1..m.n).map(|k| conserved(m, h, answer, i, k)).sum()
}

/// Edge flow φ(i,k) = f(i)·W'[i,k].
#[inline]
pub fn edge_flow(m: &Matrix, h: &[f64], f: &[f64], answer: Span, i: usize, k: usize) -> f64 {
    f[i] * conserved(m, h, answer, i, k)
}

/// The `count` strongest edges into `k`, as (source, φ), strongest first.
pub fn strongest_into(m: &Matrix, h: &[f64], f: &[f64], answer: Span, k: usize, count: usize) -> Vec<(usize, f64)> {
    strongest((0..k).map(|i| (i, edge_flow(m, h, f, answer, i, k))), count)
}

/// The `count` strongest edges out of `i`, as (target, φ), strongest first.
pub fn strongest_out_of(m: &Matrix, h: &[f64], f: &[f64], answer: Span, i: usize, count: usize) -> Vec<(usize, f64)> {
    strongest((i + 1..m.n).map(|k| (k, edge_flow(m, h, f, answer, i, k))), count)
}

fn strongest(edges: impl Iterator<Item = (usize, f64)>, count: usize) -> Vec<(usize, f64)> {
    let mut v: Vec<(usize, f64)> = edges.filter(|e| e.1 > 0.0).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(count);
    v
}
