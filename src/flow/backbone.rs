//! Step 7, backbone: greedy flow decomposition. Repeatedly take the widest super-source →
//! question → … → answer → super-sink path in the remaining flow (a (max, min) dynamic programme
//! over the DAG, the same blocked sweep as the flow solve), subtract its bottleneck, until
//! `max_paths` paths or `coverage` of the unit flow is explained. (The extraction rule is ours.)
//!
//! The residual of an edge lives beside M (`Residuals`, one entry per edge a path took), so M
//! is only read: no second N×N matrix, and a re-score can run on a matrix others read too.

use super::matrix::Matrix;
use super::slab_row::prefetch_ahead;
use super::sweep::{ROWS, Rows, Sweep, forward_sweep};
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
const NONE: usize = usize::MAX;
const SOURCE: usize = usize::MAX - 1;
/// Paths thinner than this are numerical dust, not structure.
const MIN_PATH_FLOW: f64 = 1e-12;

/// The widest-path programme's state: each token's widest width and the predecessor it came
/// through. Its gathers take g = f/h as an argument so the flow solve, which makes g as it
/// settles, can carry the first sweep along in its own pass over M ([`super::unit_flow`]).
pub struct Widths<'a> {
    h: &'a [f64],
    spans: Spans,
    source_left: &'a [f64],
    pub width: Vec<f64>,
    pub pred: Vec<usize>,
}

/// The first sweep's widths and predecessors, made beside the flow solve: the backbone then
/// starts from them instead of reading M once more.
pub struct FirstSweep {
    pub width: Vec<f64>,
    pub pred: Vec<usize>,
}

impl<'a> Widths<'a> {
    pub fn new(h: &'a [f64], spans: Spans, source_left: &'a [f64]) -> Self {
        let n = h.len();
        Widths { h, spans, source_left, width: vec![0.0; n], pred: vec![NONE; n] }
    }

    /// What each source of `sources` offers token `k` through row `row`: its widest candidate.
    pub fn gather(&self, g: &[f64], k: usize, row: &[f32], sources: Range<usize>) -> (f64, usize) {
        let hk = self.h[k];
        if hk <= 0.0 || sources.is_empty() {
            return (0.0, NONE);
        }
        let (g, width) = (&g[sources.clone()], &self.width[sources.clone()]);
        let [best] = widest(g, width, &[&row[sources.clone()]], &[hk], sources.start);
        best
    }

    /// Four rows at a time: each row's widest source is `gather`'s (`widest` in both), but the four
    /// share the loads of `width` and `g`, which are most of a row's reading.
    pub fn gather_rows(&self, g: &[f64], ks: Range<usize>, m: &Matrix, sources: Range<usize>) -> Rows<(f64, usize)> {
        if !ks.len().is_multiple_of(FOUR) || sources.is_empty() {
            return Rows::from_fn(ks.len(), |j| self.gather(g, ks.start + j, m.row(ks.start + j), sources.clone()));
        }
        let mut values = [(0.0, NONE); ROWS];
        for (four, k0) in values.chunks_exact_mut(FOUR).zip(ks.clone().step_by(FOUR)) {
            four.copy_from_slice(&self.gather_four(g, k0, m, sources.clone()));
        }
        Rows::new(values, ks.len())
    }

    fn gather_four(&self, g: &[f64], k0: usize, m: &Matrix, sources: Range<usize>) -> [(f64, usize); FOUR] {
        let (g, width) = (&g[sources.clone()], &self.width[sources.clone()]);
        let hs: [f64; FOUR] = std::array::from_fn(|r| self.h[k0 + r].max(0.0));
        let ws: [&[f32]; FOUR] = std::array::from_fn(|r| &m.row(k0 + r)[sources.clone()]);
        widest(g, width, &ws, &hs, sources.start)
    }

    pub fn combine(a: (f64, usize), b: (f64, usize)) -> (f64, usize) {
        // Ties keep the earlier source: `a` covers earlier tokens than `b`.
        if b.0 > a.0 { b } else { a }
    }

    pub fn settle(&mut self, k: usize, acc: (f64, usize)) {
        let mut best = acc;
        if self.spans.question.contains(k) && self.source_left[k] >= best.0 && self.source_left[k] > 0.0 {
            best = (self.source_left[k], SOURCE);
        }
        self.width[k] = best.0;
        self.pred[k] = best.1;
    }

    pub fn into_first(self) -> FirstSweep {
        FirstSweep { width: self.width, pred: self.pred }
    }
}

/// The widest-path sweep on its own: the widths, and the g they read.
struct Widest<'a> {
    w: Widths<'a>,
    /// f(i)/h(i) for conserving tokens: φ(i,k) = g(i)·M[k,i]·h(k).
    g: &'a [f64],
}

impl Sweep for Widest<'_> {
    type Acc = (f64, usize);

    fn gather(&self, k: usize, row: &[f32], sources: Range<usize>) -> (f64, usize) {
        self.w.gather(self.g, k, row, sources)
    }

    fn gather_rows(&self, ks: Range<usize>, m: &Matrix, sources: Range<usize>) -> Rows<(f64, usize)> {
        self.w.gather_rows(self.g, ks, m, sources)
    }

    fn gather_onto(&self, acc: (f64, usize), k: usize, row: &[f32], sources: Range<usize>) -> (f64, usize) {
        Self::combine(acc, self.gather(k, row, sources))
    }

    fn combine(a: (f64, usize), b: (f64, usize)) -> (f64, usize) {
        Widths::combine(a, b)
    }

    fn settle(&mut self, k: usize, acc: (f64, usize)) {
        self.w.settle(k, acc)
    }
}

/// Rows whose candidates are taken side by side: four rows' lanes (their maxima and where each
/// was met) are eight of AVX2's sixteen vector registers, with room left for the loads (eight
/// rows gained 5–8% at 8k only, in AVX-512's thirty-two registers as in AVX2's sixteen).
const FOUR: usize = 4;

/// Each row's widest candidate and the first source giving it (numbered from `first`; (0, NONE)
/// when none is wider than 0), the bulk of the widest-path sweep. The sources are taken in
/// L lanes (lane l takes sources l, l + L, ...; L is the vector's width in f64), each keeping its maximum and where it
/// first met it, then the lanes and the tail are folded: the same maximum and the same first
/// index as one pass in order (a maximum does not depend on the order it is taken in, and the
/// first index of it is the least of the lanes' first indices of it).
fn widest<const R: usize>(g: &[f64], width: &[f64], ws: &[&[f32]; R], hs: &[f64; R], first: usize) -> [(f64, usize); R] {
    if g.len() < IN_ORDER_BELOW {
        return std::array::from_fn(|r| in_order(g, width, ws[r], hs[r], first));
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F, checked just above.
        let best = unsafe { row_lanes_avx512(g, width, ws, hs).map(|lanes| lanes_best_avx512(&lanes)) };
        return with_tail(best, 8, g, width, ws, hs, first);
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        let best = unsafe { row_lanes_avx2(g, width, ws, hs).map(|lanes| lanes_best_avx2(&lanes)) };
        return with_tail(best, 4, g, width, ws, hs, first);
    }
    with_tail(row_lanes_plain::<4, R>(g, width, ws, hs).map(|lanes| lanes_best(&lanes)), 4, g, width, ws, hs, first)
}

/// Sources below which a row is taken one at a time: inside a group of rows each row carries on
/// over the few settled just before it (fifteen at most), where eight lanes and their fold cost
/// more than the sources (the fold was as much of the backbone's time as the lanes, on a batch
/// of 1k-token traces).
const IN_ORDER_BELOW: usize = 16;

/// One row's widest candidate and its first source, one source at a time in order.
fn in_order(g: &[f64], width: &[f64], w: &[f32], h: f64, first: usize) -> (f64, usize) {
    let mut best = (0.0, NONE);
    for j in 0..g.len() {
        let c = capped(width[j], g[j] * w[j] as f64 * h);
        if c > best.0 {
            best = (c, first + j);
        }
    }
    best
}

/// A row's lanes folded into its widest candidate: the lanes' maximum, then the least source
/// (numbered from the lanes' first) among the lanes that hold it; (0, NONE) when none is wider
/// than 0, the one answer whose source is NONE.
fn lanes_best<const L: usize>((maxima, at): &Lanes<L>) -> (f64, usize) {
    let top = maxima.iter().fold(0.0, |a, &m| if m > a { m } else { a });
    let j = (0..L).map(|l| if maxima[l] == top { L * at[l] as usize + l } else { NONE }).min().unwrap_or(NONE);
    if top > 0.0 { (top, j) } else { (0.0, NONE) }
}

/// [`lanes_best`] in the vector's registers: the maximum and the least index each by halving,
/// where the scalar fold made eight dependent comparisons and branches (a 1k-token trace's rows
/// are folded some 2 000 times a sweep). On an Intel Xeon (2026-12-05) the flow's pass with the
/// first sweep went from 0.243–0.248 to 0.227–0.232 ms on a 1k-token trace held in the caches,
/// and from 0.299 to 0.260 ms a trace in a one-thread batch. The lanes are ≥ 0 and never NaN, so
/// the maximum is the fold's, bit for bit, and the indices (below 2⁵³) are exact in f64.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn lanes_best_avx512((maxima, at): &Lanes<8>) -> (f64, usize) {
    use std::arch::x86_64::*;
    // SAFETY: eight f64 from arrays of eight.
    let (m, chunk) = unsafe { (_mm512_loadu_pd(maxima.as_ptr()), _mm512_loadu_pd(at.as_ptr())) };
    let top = _mm512_reduce_max_pd(m);
    if top <= 0.0 {
        return (0.0, NONE);
    }
    let index = _mm512_add_pd(_mm512_mul_pd(chunk, _mm512_set1_pd(8.0)), _mm512_set_pd(7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0));
    let holds = _mm512_cmp_pd_mask::<_CMP_EQ_OQ>(m, _mm512_set1_pd(top));
    (top, _mm512_mask_reduce_min_pd(holds, index) as usize)
}

/// [`lanes_best_avx512`] on AVX2's four lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn lanes_best_avx2((maxima, at): &Lanes<4>) -> (f64, usize) {
    use std::arch::x86_64::*;
    // SAFETY: four f64 from arrays of four.
    let (m, chunk) = unsafe { (_mm256_loadu_pd(maxima.as_ptr()), _mm256_loadu_pd(at.as_ptr())) };
    // Each lane the maximum of its pair, then of the two pairs: every lane holds the maximum.
    let pairs = _mm256_max_pd(m, _mm256_permute_pd::<0b0101>(m));
    let top = _mm256_max_pd(pairs, _mm256_permute2f128_pd::<1>(pairs, pairs));
    if _mm256_cvtsd_f64(top) <= 0.0 {
        return (0.0, NONE);
    }
    let index = _mm256_add_pd(_mm256_mul_pd(chunk, _mm256_set1_pd(4.0)), _mm256_set_pd(3.0, 2.0, 1.0, 0.0));
    let index = _mm256_blendv_pd(_mm256_set1_pd(f64::INFINITY), index, _mm256_cmp_pd::<_CMP_EQ_OQ>(m, top));
    let pairs = _mm256_min_pd(index, _mm256_permute_pd::<0b0101>(index));
    let least = _mm256_min_pd(pairs, _mm256_permute2f128_pd::<1>(pairs, pairs));
    (_mm256_cvtsd_f64(top), _mm256_cvtsd_f64(least) as usize)
}

/// Each row's lanes' widest candidate (`best`, as [`lanes_best`] gives it: its source numbered
/// from the lanes' first), then the tail the `lanes` lanes left (later sources: it wins only
/// where strictly wider).
fn with_tail<const R: usize>(best: [(f64, usize); R], lanes: usize, g: &[f64], width: &[f64], ws: &[&[f32]; R], hs: &[f64; R], first: usize) -> [(f64, usize); R] {
    let split = g.len() / lanes * lanes;
    std::array::from_fn(|r| {
        let lanes = match best[r] {
            (_, NONE) => (0.0, NONE),
            (top, j) => (top, first + j),
        };
        let tail = in_order(&g[split..], &width[split..], &ws[r][split..], hs[r], first + split);
        if tail.0 > lanes.0 { tail } else { lanes }
    })
}

/// A row's `L` lanes: their maxima, and the chunk (of `L` sources) each was first met in, as
/// f64 so it moves with them.
type Lanes<const L: usize> = ([f64; L], [f64; L]);

/// The lanes one source at a time: where the CPU has neither AVX2 nor AVX-512, and the reference
/// the vector kernels are tested against.
fn row_lanes_plain<const L: usize, const R: usize>(g: &[f64], width: &[f64], ws: &[&[f32]; R], hs: &[f64; R]) -> [Lanes<L>; R] {
    let mut lanes = [([0.0f64; L], [0.0f64; L]); R];
    for (j, (gl, capl)) in g.chunks_exact(L).zip(width.chunks_exact(L)).enumerate() {
        for ((lane, at), (w, &h)) in lanes.iter_mut().zip(ws.iter().zip(hs)) {
            for l in 0..L {
                let c = capped(capl[l], gl[l] * w[L * j + l] as f64 * h);
                if c > lane[l] {
                    (lane[l], at[l]) = (c, j as f64);
                }
            }
        }
    }
    lanes
}

/// The lanes, one vector to a row's four lanes: `_mm256_min_pd(a, b)` is `a < b ? a : b`, which
/// is `capped`, and `_mm256_max_pd(c, m)` is `c > m ? c : m`, so a lane's maximum moves exactly
/// where its index does (only to a strictly wider candidate: each keeps the first place it met
/// its maximum). The maximum takes one instruction where a blend on the comparison takes two on
/// Intel cores: 8–10% off the sweep at 4k and 8k.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn row_lanes_avx2<const R: usize>(g: &[f64], width: &[f64], ws: &[&[f32]; R], hs: &[f64; R]) -> [Lanes<4>; R] {
    use std::arch::x86_64::*;
    let n = g.len();
    assert!(width.len() == n && ws.iter().all(|w| w.len() == n));
    let mut maxima = [_mm256_setzero_pd(); R];
    let mut at = [_mm256_setzero_pd(); R];
    let hv: [__m256d; R] = std::array::from_fn(|r| _mm256_set1_pd(hs[r]));
    let mut chunk = _mm256_setzero_pd();
    for j in 0..n / 4 {
        let i = 4 * j;
        // SAFETY: i + 4 <= n, the length of `g`, `width` and every row.
        let (g4, cap4) = unsafe { (_mm256_loadu_pd(g.as_ptr().add(i)), _mm256_loadu_pd(width.as_ptr().add(i))) };
        for r in 0..R {
            // SAFETY: as above.
            let w = _mm256_cvtps_pd(unsafe { _mm_loadu_ps(ws[r].as_ptr().add(i)) });
            // Four rows are too few streams to keep memory busy by themselves: asking each a
            // kilobyte ahead made the pass 8–15% quicker at 4k and 8k.
            if i.is_multiple_of(16) {
                prefetch_ahead(ws[r], i);
            }
            let c = _mm256_min_pd(_mm256_mul_pd(_mm256_mul_pd(g4, w), hv[r]), cap4);
            let wider = _mm256_cmp_pd::<_CMP_GT_OQ>(c, maxima[r]);
            maxima[r] = _mm256_max_pd(c, maxima[r]);
            at[r] = _mm256_blendv_pd(at[r], chunk, wider);
        }
        chunk = _mm256_add_pd(chunk, _mm256_set1_pd(1.0));
    }
    std::array::from_fn(|r| {
        let mut lanes = ([0.0; 4], [0.0; 4]);
        // SAFETY: four f64 into four f64.
        unsafe {
            _mm256_storeu_pd(lanes.0.as_mut_ptr(), maxima[r]);
            _mm256_storeu_pd(lanes.1.as_mut_ptr(), at[r]);
        }
        lanes
    })
}

/// `row_lanes_avx2` eight sources to a vector, the comparison leaving a mask for the masked move
/// of the index: half the instructions per source (the sweep 10–20% quicker at 4k and 8k).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn row_lanes_avx512<const R: usize>(g: &[f64], width: &[f64], ws: &[&[f32]; R], hs: &[f64; R]) -> [Lanes<8>; R] {
    use std::arch::x86_64::*;
    let n = g.len();
    assert!(width.len() == n && ws.iter().all(|w| w.len() == n));
    let mut maxima = [_mm512_setzero_pd(); R];
    let mut at = [_mm512_setzero_pd(); R];
    let hv: [__m512d; R] = std::array::from_fn(|r| _mm512_set1_pd(hs[r]));
    let mut chunk = _mm512_setzero_pd();
    for j in 0..n / 8 {
        let i = 8 * j;
        // SAFETY: i + 8 <= n, the length of `g`, `width` and every row.
        let (g8, cap8) = unsafe { (_mm512_loadu_pd(g.as_ptr().add(i)), _mm512_loadu_pd(width.as_ptr().add(i))) };
        for r in 0..R {
            // SAFETY: as above.
            let w = _mm512_cvtps_pd(unsafe { _mm256_loadu_ps(ws[r].as_ptr().add(i)) });
            if i.is_multiple_of(16) {
                prefetch_ahead(ws[r], i);
            }
            let c = _mm512_min_pd(_mm512_mul_pd(_mm512_mul_pd(g8, w), hv[r]), cap8);
            let wider = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(c, maxima[r]);
            maxima[r] = _mm512_max_pd(c, maxima[r]);
            at[r] = _mm512_mask_mov_pd(at[r], wider, chunk);
        }
        chunk = _mm512_add_pd(chunk, _mm512_set1_pd(1.0));
    }
    std::array::from_fn(|r| {
        let mut lanes = ([0.0; 8], [0.0; 8]);
        // SAFETY: eight f64 into eight f64.
        unsafe {
            _mm512_storeu_pd(lanes.0.as_mut_ptr(), maxima[r]);
            _mm512_storeu_pd(lanes.1.as_mut_ptr(), at[r]);
        }
        lanes
    })
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
fn update_widths(m: &Matrix, cuts: &Residuals, g: &[f64], w: &mut Widths, rows: Range<usize>, path: &[usize]) {
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
            let acc = w.gather(g, k, cuts.row(m, k, &mut patched), first..k);
            w.settle(k, acc);
            dirty[k] = w.width[k] != old;
        }
    }
}

/// The widest path left: the answer token whose width (capped by what it still absorbs) is
/// largest, followed back through `pred` to the super-source. `None` when what is left is dust.
fn next_path(width: &[f64], pred: &[usize], sink_left: &[f64], spans: Spans) -> Option<(Vec<usize>, f64)> {
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
fn residual(g_i: f64, h_k: f64, old: f32, flow: f64) -> f32 {
    let left = g_i * old as f64 * h_k - flow;
    if left <= flow * 1e-9 { 0.0 } else { (left / (g_i * h_k)) as f32 }
}

/// The decomposition's bookkeeping: what each source and answer token has left, what is
/// explained, and the paths taken.
struct Decomposition<'a> {
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
            g: super::conserve::unit_outflow(h, f, spans.answer),
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

/// The residuals of the edges paths have taken, kept beside an M that stays as aggregated, keyed
/// by (row k, column i) so a row's cuts are found together. An edge a second path takes starts
/// from what the first left.
#[derive(Default)]
struct Residuals(std::collections::BTreeMap<(usize, usize), f32>);

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
    backbone_after(m, h, f, spans, sources, p, None)
}

/// [`backbone`], from the first sweep's widths where the flow solve made them alongside
/// ([`super::unit_flow::unit_flow_and_widths`]): the same paths, one pass over M fewer.
pub fn backbone_after(m: &Matrix, h: &[f64], f: &[f64], spans: Spans, sources: usize, p: &BackboneParams, first: Option<FirstSweep>) -> Vec<FlowPath> {
    let Some(mut d) = Decomposition::new(h, f, spans, sources, p) else { return Vec::new() };
    let mut cuts = Residuals::default();
    let rows = spans.question.start..spans.answer.end;
    let (mut width, mut pred) = match first {
        Some(first) => (first.width, first.pred),
        None => {
            let mut w = Widest { w: Widths::new(h, spans, &d.source_left), g: &d.g };
            forward_sweep(m, spans.question.start, rows.clone(), &mut w);
            (w.w.width, w.w.pred)
        }
    };
    while d.wants_more() {
        let taken = d.take(&width, &pred, |k, i, residual| {
            cuts.cut(m, k, i, residual);
        });
        if !taken {
            break;
        }
        if d.wants_more() {
            let tokens = &d.paths.last().expect("just taken").tokens;
            let mut w = Widths { width, pred, ..Widths::new(h, spans, &d.source_left) };
            update_widths(m, &cuts, &d.g, &mut w, rows.clone(), tokens);
            (width, pred) = (w.width, w.pred);
        }
    }
    d.paths
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::test_rng::XorShift;
    use crate::flow::sweep::ROWS;
    use crate::span::Span;

    /// The widest candidate and its first source the long way: one pass in order.
    fn widest_in_order(w: &Widest, k: usize, row: &[f32], sources: Range<usize>) -> (f64, usize) {
        let mut best = (0.0, NONE);
        for i in sources {
            let c = capped(w.w.width[i], w.g[i] * row[i] as f64 * w.w.h[k].max(0.0));
            if c > best.0 {
                best = (c, i);
            }
        }
        best
    }

    /// The vector folds keep the scalar fold's answer where it is hardest: the maximum held by
    /// several lanes (the least source wins, whichever lane and chunk holds it), by one lane
    /// only, and by none (every lane 0: no source).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_folds_pick_the_least_source_of_the_maximum() {
        let cases: [([f64; 8], [f64; 8]); 5] = [
            ([0.5, 0.9, 0.9, 0.1, 0.9, 0.0, 0.9, 0.2], [7.0, 3.0, 3.0, 0.0, 2.0, 0.0, 9.0, 1.0]),
            ([0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9], [5.0, 5.0, 4.0, 4.0, 6.0, 6.0, 4.0, 9.0]),
            ([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3e-300], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 12.0]),
            ([0.0; 8], [0.0; 8]),
            ([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]),
        ];
        for (maxima, at) in cases {
            let want = lanes_best(&(maxima, at));
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F, checked just above.
                assert_eq!(unsafe { lanes_best_avx512(&(maxima, at)) }, want, "{maxima:?} {at:?}");
            }
            let four = |h: usize| -> Lanes<4> { (std::array::from_fn(|l| maxima[4 * h + l]), std::array::from_fn(|l| at[4 * h + l])) };
            if std::arch::is_x86_feature_detected!("avx2") {
                for half in [four(0), four(1)] {
                    // SAFETY: the CPU has AVX2, checked just above.
                    assert_eq!(unsafe { lanes_best_avx2(&half) }, lanes_best(&half), "{half:?}");
                }
            }
        }
        assert_eq!(lanes_best(&([0.5, 0.9, 0.9, 0.1, 0.9, 0.0, 0.9, 0.2], [7.0, 3.0, 3.0, 0.0, 2.0, 0.0, 9.0, 1.0])), (0.9, 20), "chunk 2, lane 4");
    }

    /// Rows side by side, in lanes, give each row's widest source as one pass in order finds it:
    /// the same width and the same first index, ties included (the widths are capped so that
    /// many candidates tie at the cap), for every length of the tail after the lanes.
    #[test]
    fn rows_in_lanes_give_each_rows_widest_source() {
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
        let w = Widest { w: Widths { width, ..Widths::new(&h, spans, &[]) }, g: &g };
        let mut ties = 0;
        // Long ranges (lanes, fold and tail) and short ones (a row carrying on inside its group,
        // one source at a time), on either side of where the one gives way to the other.
        let cases = [(600, 1), (632, 2), (676, 3), (683, 4), (640, 5)].map(|(k0, cut)| (k0, 3..k0 - cut));
        let short = [1, 7, IN_ORDER_BELOW - 1, IN_ORDER_BELOW, IN_ORDER_BELOW + 1].map(|len| (600, 590 - len..590));
        for (k0, sources) in cases.into_iter().chain(short) {
            let rows = w.gather_rows(k0..k0 + ROWS, &m, sources.clone());
            for (r, got) in rows.iter().enumerate() {
                let k = k0 + r;
                let want = widest_in_order(&w, k, m.row(k), sources.clone());
                assert_eq!((got.0.to_bits(), got.1), (want.0.to_bits(), want.1), "row {k}");
                let one = w.gather(k, m.row(k), sources.clone());
                assert_eq!((one.0.to_bits(), one.1), (want.0.to_bits(), want.1), "row {k} alone");
                ties += sources.clone().filter(|&i| w.w.width[i] == want.0 && i != want.1).count().min(1);
            }
        }
        assert!(ties > 25, "the widths tie at the cap, so the first index is what is tested");
        // The vector kernels this CPU has and the one for CPUs without them keep the same lanes.
        #[cfg(target_arch = "x86_64")]
        for len in [696, 640, 641, 29] {
            let ws: [&[f32]; 4] = std::array::from_fn(|r| &m.row(n - 1 - r)[..len]);
            let hs = [0.7, 1.3, 0.0, 2.1];
            let (g, width) = (&w.g[..len], &w.w.width[..len]);
            fn bits<const L: usize>(l: [Lanes<L>; 4]) -> [([u64; L], [u64; L]); 4] {
                l.map(|(m, a)| (m.map(f64::to_bits), a.map(f64::to_bits)))
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2, checked just above.
                let wide = unsafe { row_lanes_avx2(g, width, &ws, &hs) };
                assert_eq!(bits(wide), bits(row_lanes_plain::<4, 4>(g, width, &ws, &hs)), "{len} sources, AVX2");
                // SAFETY: as above.
                assert_eq!(wide.map(|l| unsafe { lanes_best_avx2(&l) }), wide.map(|l| lanes_best(&l)), "{len} sources, AVX2's fold");
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F, checked just above.
                let wide = unsafe { row_lanes_avx512(g, width, &ws, &hs) };
                assert_eq!(bits(wide), bits(row_lanes_plain::<8, 4>(g, width, &ws, &hs)), "{len} sources, AVX-512");
                // SAFETY: as above.
                assert_eq!(wide.map(|l| unsafe { lanes_best_avx512(&l) }), wide.map(|l| lanes_best(&l)), "{len} sources, AVX-512's fold");
            }
        }
    }
}
