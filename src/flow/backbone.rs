//! Step 7, backbone: greedy flow decomposition. Repeatedly take the widest super-source →
//! question → … → answer → super-sink path in the remaining flow (a (max, min) dynamic programme
//! over the DAG, the same blocked sweep as the flow solve), subtract its bottleneck, until
//! `max_paths` paths or `coverage` of the unit flow is explained. (The extraction rule is ours.)
//!
//! The residual of an edge lives beside M ([`Residuals`], one entry per edge a path took), so M
//! is only read: no second N×N matrix, and a re-score can run on a matrix others read too.

use super::matrix::Matrix;
use super::sweep::{ROWS, Sweep, forward_sweep};
use crate::params::BackboneParams;
use crate::span::Spans;
use serde::{Deserialize, Serialize};
use std::ops::Range;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowPath {
    /// Question token first, answer token last.
    pub tokens: Vec<usize>,
    /// The bottleneck: flow this path carries.
    pub flow: f64,
}

/// `pred` of a token no path reaches, and of a question token fed by the super-source.
pub const NONE: usize = usize::MAX;
pub const SOURCE: usize = usize::MAX - 1;
/// Paths thinner than this are numerical dust, not structure.
const MIN_PATH_FLOW: f64 = 1e-12;

struct Widest<'a> {
    h: &'a [f64],
    /// f(i)/h(i) for conserving tokens: φ(i,k) = g(i)·M[k,i]·h(k).
    g: &'a [f64],
    spans: Spans,
    source_left: &'a [f64],
    width: Vec<f64>,
    pred: Vec<usize>,
}

impl Sweep for Widest<'_> {
    type Acc = (f64, usize);

    fn gather(&self, k: usize, row: &[f32], sources: Range<usize>) -> (f64, usize) {
        let hk = self.h[k];
        if hk <= 0.0 || sources.is_empty() {
            return (0.0, NONE);
        }
        let (w, g, width) = (&row[sources.clone()], &self.g[sources.clone()], &self.width[sources.clone()]);
        let cand = |j: usize| capped(width[j], g[j] * w[j] as f64 * hk);
        // The maximum first, in eight independent lanes so it vectorises; then its first index.
        let [lanes] = row_lanes(g, width, &[w], &[hk]);
        let split = w.len() / 8 * 8;
        let mut best = lanes.iter().copied().fold(0.0, f64::max);
        for j in split..w.len() {
            best = best.max(cand(j));
        }
        if best <= 0.0 {
            return (0.0, NONE);
        }
        let j = (0..w.len()).find(|&j| cand(j) == best).expect("the maximum is attained");
        (best, sources.start + j)
    }

    /// Four rows at once: each row's maximum is `gather`'s (a maximum does not depend on the
    /// order it is taken in), but the four share the loads of `width` and `g`, which are most of
    /// a row's reading. The first index of each maximum is then found as `gather` finds it.
    fn gather_rows(&self, ks: Range<usize>, m: &Matrix, sources: Range<usize>) -> Vec<(f64, usize)> {
        if ks.len() != ROWS || sources.is_empty() {
            return ks.map(|k| self.gather(k, m.row(k), sources.clone())).collect();
        }
        let (g, width) = (&self.g[sources.clone()], &self.width[sources.clone()]);
        let hs: [f64; ROWS] = std::array::from_fn(|r| self.h[ks.start + r].max(0.0));
        let ws: [&[f32]; ROWS] = std::array::from_fn(|r| &m.row(ks.start + r)[sources.clone()]);
        let split = g.len() / 8 * 8;
        let lanes = row_lanes(g, width, &ws, &hs);
        (0..ROWS)
            .map(|r| {
                let cand = |j: usize| capped(width[j], g[j] * ws[r][j] as f64 * hs[r]);
                let best = (split..g.len()).map(cand).fold(lanes[r].iter().copied().fold(0.0, f64::max), f64::max);
                if best <= 0.0 {
                    return (0.0, NONE);
                }
                let j = (0..g.len()).find(|&j| cand(j) == best).expect("the maximum is attained");
                (best, sources.start + j)
            })
            .collect()
    }

    fn combine(a: (f64, usize), b: (f64, usize)) -> (f64, usize) {
        // Ties keep the earlier source: `a` covers earlier tokens than `b`.
        if b.0 > a.0 { b } else { a }
    }

    fn settle(&mut self, k: usize, acc: (f64, usize)) {
        let mut best = acc;
        if self.spans.question.contains(k) && self.source_left[k] >= best.0 && self.source_left[k] > 0.0 {
            best = (self.source_left[k], SOURCE);
        }
        self.width[k] = best.0;
        self.pred[k] = best.1;
    }
}

/// Each row's eight lane maxima of its candidates (lane l takes sources l, l + 8, ...): the bulk
/// of the widest-path sweep. Wide vectors where the CPU has them: the same maxima (each is exact,
/// and a maximum does not depend on the order it is taken in).
fn row_lanes<const R: usize>(g: &[f64], width: &[f64], ws: &[&[f32]; R], hs: &[f64; R]) -> [[f64; 8]; R] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { row_lanes_avx2(g, width, ws, hs) };
    }
    row_lanes_plain(g, width, ws, hs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn row_lanes_avx2<const R: usize>(g: &[f64], width: &[f64], ws: &[&[f32]; R], hs: &[f64; R]) -> [[f64; 8]; R] {
    row_lanes_plain(g, width, ws, hs)
}

#[inline(always)]
fn row_lanes_plain<const R: usize>(g: &[f64], width: &[f64], ws: &[&[f32]; R], hs: &[f64; R]) -> [[f64; 8]; R] {
    let mut lanes = [[0.0f64; 8]; R];
    for (j, (g8, cap8)) in g.chunks_exact(8).zip(width.chunks_exact(8)).enumerate() {
        for (lane, (w, &h)) in lanes.iter_mut().zip(ws.iter().zip(hs)) {
            let w8 = &w[8 * j..8 * j + 8];
            for l in 0..8 {
                let c = capped(cap8[l], g8[l] * w8[l] as f64 * h);
                lane[l] = if c > lane[l] { c } else { lane[l] };
            }
        }
    }
    lanes
}

/// A path's width through an edge: what the edge carries, capped by the width that reached its
/// source. Both are finite and ≥ 0, so a plain comparison is `min`; `f64::min`'s NaN rule had
/// kept the widest-path loops from vectorising (they ran one f64 at a time). Where the two
/// differ, in the sign of a zero, the candidate is no path either way (only a width > 0 is).
#[inline]
fn capped(cap: f64, carried: f64) -> f64 {
    if carried < cap { carried } else { cap }
}

/// Re-settles only the tokens whose widest path used what the last path consumed. Residuals only
/// shrink, so a token whose chosen predecessor kept its width over an untouched edge keeps its
/// width and predecessor (earlier candidates were strictly narrower and stay so): the result is
/// the full sweep's, at a fraction of its cost.
fn update_widths(m: &Matrix, cuts: &Residuals, w: &mut Widest, rows: Range<usize>, path: &[usize]) {
    let mut dirty = vec![false; m.n];
    let mut patched = Vec::new();
    let first = rows.start;
    // The path's edges i → k in the order of k (a path runs forward in the trace), met as the
    // rows come: no lookup per row.
    let mut edges = path.windows(2).map(|e| (e[1], e[0])).peekable();
    for k in rows {
        while edges.next_if(|&(into, _)| into < k).is_some() {}
        let changed_edge_from = edges.peek().filter(|&&(into, _)| into == k).map(|&(_, from)| from);
        let p = w.pred[k];
        let stale = match p {
            NONE => false,
            SOURCE => k == path[0],
            i => dirty[i] || changed_edge_from == Some(i),
        };
        if stale {
            let old = w.width[k];
            let acc = w.gather(k, cuts.row(m, k, &mut patched), first..k);
            w.settle(k, acc);
            dirty[k] = w.width[k] != old;
        }
    }
}

/// The widest path left: the answer token whose width (capped by what it still absorbs) is
/// largest, followed back through `pred` to the super-source. `None` when what is left is dust.
pub fn next_path(width: &[f64], pred: &[usize], sink_left: &[f64], spans: Spans) -> Option<(Vec<usize>, f64)> {
    let (a, flow) = spans.answer.range().map(|a| (a, width[a].min(sink_left[a]))).fold(None, |best: Option<(usize, f64)>, c| match best {
        Some(b) if b.1 >= c.1 => Some(b),
        _ => Some(c),
    })?;
    if flow <= MIN_PATH_FLOW {
        return None;
    }
    let mut tokens = vec![a];
    let mut cur = a;
    while pred[cur] != SOURCE {
        cur = pred[cur];
        if cur == NONE || tokens.len() > width.len() {
            return None;
        }
        tokens.push(cur);
    }
    tokens.reverse();
    Some((tokens, flow))
}

/// M's entry for edge i → k once `flow` more of its φ = g(i)·M[k,i]·h(k) is explained; the
/// path's tightest edges drop to exactly zero.
pub fn residual(g_i: f64, h_k: f64, old: f32, flow: f64) -> f32 {
    let left = g_i * old as f64 * h_k - flow;
    if left <= flow * 1e-9 { 0.0 } else { (left / (g_i * h_k)) as f32 }
}

/// The decomposition's bookkeeping, the same whoever computes the widths (the CPU here, a GPU
/// sweep in `gpu::backbone`): what each source and answer token has left, what is explained,
/// and the paths taken.
pub struct Decomposition<'a> {
    h: &'a [f64],
    pub g: Vec<f64>,
    pub source_left: Vec<f64>,
    sink_left: Vec<f64>,
    explained: f64,
    pub paths: Vec<FlowPath>,
    spans: Spans,
    p: &'a BackboneParams,
}

impl<'a> Decomposition<'a> {
    /// `None` when there is nothing to decompose (no answer, no flow, no paths wanted).
    pub fn new(h: &'a [f64], f: &[f64], spans: Spans, sources: usize, p: &'a BackboneParams) -> Option<Self> {
        if sources == 0 || spans.answer.is_empty() || p.max_paths == 0 {
            return None;
        }
        let n = h.len();
        let share = 1.0 / sources as f64;
        Some(Decomposition {
            g: (0..n).map(|i| if h[i] > 0.0 && !spans.answer.contains(i) { f[i] / h[i] } else { 0.0 }).collect(),
            source_left: (0..n).map(|i| if spans.question.contains(i) && h[i] > 0.0 { share } else { 0.0 }).collect(),
            sink_left: (0..n).map(|i| if spans.answer.contains(i) { f[i] } else { 0.0 }).collect(),
            explained: 0.0,
            paths: Vec::new(),
            h,
            spans,
            p,
        })
    }

    pub fn wants_more(&self) -> bool {
        self.paths.len() < self.p.max_paths && self.explained < self.p.coverage - 1e-12
    }

    /// Takes the widest path left and subtracts its bottleneck: `edge(k, i, new)` is told each
    /// path edge i → k with the function from its old M entry to its residual. False when
    /// nothing but dust is left.
    pub fn take(&mut self, width: &[f64], pred: &[usize], mut edge: impl FnMut(usize, usize, &dyn Fn(f32) -> f32)) -> bool {
        let Some((tokens, flow)) = next_path(width, pred, &self.sink_left, self.spans) else { return false };
        let a = *tokens.last().expect("a path has tokens");
        self.source_left[tokens[0]] = (self.source_left[tokens[0]] - flow).max(0.0);
        self.sink_left[a] = (self.sink_left[a] - flow).max(0.0);
        for e in tokens.windows(2) {
            let (i, k) = (e[0], e[1]);
            let (gi, hk) = (self.g[i], self.h[k]);
            edge(k, i, &|old| residual(gi, hk, old, flow));
        }
        self.explained += flow;
        self.paths.push(FlowPath { tokens, flow });
        true
    }
}

/// The residuals of the edges paths have taken, kept beside an M that stays as aggregated (a
/// device backend also writes them into its own copy of M), keyed by (row k, column i) so a
/// row's cuts are found together. An edge a second path takes starts from what the first left.
#[derive(Default)]
pub struct Residuals(std::collections::BTreeMap<(usize, usize), f32>);

impl Residuals {
    /// Edge i → k's new entry, from its current one (`m`'s if no path took it yet).
    pub fn cut(&mut self, m: &Matrix, k: usize, i: usize, residual: &dyn Fn(f32) -> f32) -> f32 {
        let new = residual(self.0.get(&(k, i)).copied().unwrap_or_else(|| m.get(k, i)));
        self.0.insert((k, i), new);
        new
    }

    /// Row k of M with the residuals in place: M's own row where no path cut it, else a copy in
    /// `buf` (one row, reused: memory stays O(N)).
    pub fn row<'a>(&self, m: &'a Matrix, k: usize, buf: &'a mut Vec<f32>) -> &'a [f32] {
        let mut cuts = self.0.range((k, 0)..(k + 1, 0)).peekable();
        if cuts.peek().is_none() {
            return m.row(k);
        }
        buf.clear();
        buf.extend_from_slice(m.row(k));
        for (&(_, i), &v) in cuts {
            buf[i] = v;
        }
        buf
    }
}

/// `f` and `h` from the earlier steps; `m` is only read.
pub fn backbone(m: &Matrix, h: &[f64], f: &[f64], spans: Spans, sources: usize, p: &BackboneParams) -> Vec<FlowPath> {
    let Some(mut d) = Decomposition::new(h, f, spans, sources, p) else { return Vec::new() };
    let n = m.n;
    let mut cuts = Residuals::default();
    let rows = spans.question.start..spans.answer.end;
    let mut w = Widest { h, g: &d.g, spans, source_left: &d.source_left, width: vec![0.0; n], pred: vec![NONE; n] };
    forward_sweep(m, spans.question.start, rows.clone(), &mut w);
    let (mut width, mut pred) = (w.width, w.pred);
    while d.wants_more() {
        let taken = d.take(&width, &pred, |k, i, residual| {
            cuts.cut(m, k, i, residual);
        });
        if !taken {
            break;
        }
        if d.wants_more() {
            let tokens = &d.paths.last().expect("just taken").tokens;
            let mut w = Widest { h, g: &d.g, spans, source_left: &d.source_left, width, pred };
            update_widths(m, &cuts, &mut w, rows.clone(), tokens);
            (width, pred) = (w.width, w.pred);
        }
    }
    d.paths
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::test_rng::XorShift;
    use crate::span::Span;

    /// Four rows at once give each row's `gather`: the same width and the same first index, ties
    /// included (the widths are capped so that many candidates tie at the cap).
    #[test]
    fn four_rows_at_once_give_each_rows_widest_source() {
        let n = 700;
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let mut next = || rng.unit();
        let mut m = Matrix::zeros(n);
        for k in 1..n {
            for w in m.row_mut(k) {
                *w = (next() / k as f64) as f32;
            }
        }
        let h: Vec<f64> = (0..n).map(|i| if i % 9 == 0 { 0.0 } else { next() }).collect();
        let g: Vec<f64> = (0..n).map(|_| next() * 50.0).collect();
        let spans = Spans { question: Span::new(0, 10), response: Span::new(10, n), answer: Span::new(n - 5, n) };
        let width = (0..n).map(|_| next().min(0.3) * 0.01).collect();
        let w = Widest { h: &h, g: &g, spans, source_left: &[], width, pred: vec![NONE; n] };
        for k0 in [600, 632, 684, 693] {
            let sources = 3..k0 - 1;
            let four = w.gather_rows(k0..k0 + ROWS, &m, sources.clone());
            for (r, got) in four.iter().enumerate() {
                let want = w.gather(k0 + r, m.row(k0 + r), sources.clone());
                assert_eq!((got.0.to_bits(), got.1), (want.0.to_bits(), want.1), "row {}", k0 + r);
            }
        }
    }
}
