//! Step 7, backbone: greedy flow decomposition. Repeatedly take the widest super-source →
//! question → … → answer → super-sink path in the remaining flow (a (max, min) dynamic programme
//! over the DAG, the same blocked sweep as the flow solve), subtract its bottleneck, until
//! `max_paths` paths or `coverage` of the unit flow is explained. (The extraction rule is ours.)
//!
//! The residual of an edge lives in M itself, rescaled, so no second N×N matrix is needed; the
//! touched entries are restored afterwards.

use super::matrix::Matrix;
use super::sweep::{Sweep, forward_sweep};
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

const NONE: usize = usize::MAX;
const SOURCE: usize = usize::MAX - 1;
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
        let mut best = (0.0, NONE);
        if hk <= 0.0 {
            return best;
        }
        let start = sources.start;
        for (j, (&w, &g)) in row[sources.clone()].iter().zip(&self.g[sources]).enumerate() {
            if w == 0.0 || g == 0.0 {
                continue;
            }
            let i = start + j;
            let cand = self.width[i].min(g * w as f64 * hk);
            if cand > best.0 {
                best = (cand, i);
            }
        }
        best
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

/// `f` and `h` from the earlier steps; `m` is borrowed mutably for the residuals and restored.
pub fn backbone(m: &mut Matrix, h: &[f64], f: &[f64], spans: Spans, sources: usize, p: &BackboneParams) -> Vec<FlowPath> {
    let n = m.n;
    let mut paths = Vec::new();
    if sources == 0 || spans.answer.is_empty() || p.max_paths == 0 {
        return paths;
    }
    let g: Vec<f64> = (0..n)
        .map(|i| if h[i] > 0.0 && !spans.answer.contains(i) { f[i] / h[i] } else { 0.0 })
        .collect();
    let share = 1.0 / sources as f64;
    let mut source_left: Vec<f64> = (0..n).map(|i| if spans.question.contains(i) && h[i] > 0.0 { share } else { 0.0 }).collect();
    let mut sink_left: Vec<f64> = (0..n).map(|i| if spans.answer.contains(i) { f[i] } else { 0.0 }).collect();
    let mut undo: Vec<(usize, usize, f32)> = Vec::new();
    let mut explained = 0.0;
    let rows = spans.question.start..spans.answer.end;

    while paths.len() < p.max_paths && explained < p.coverage - 1e-12 {
        let mut w = Widest { h, g: &g, spans, source_left: &source_left, width: vec![0.0; n], pred: vec![NONE; n] };
        forward_sweep(m, spans.question.start, rows.clone(), &mut w);
        let (width, pred) = (w.width, w.pred);
        let Some((a, flow)) = spans
            .answer
            .range()
            .map(|a| (a, width[a].min(sink_left[a])))
            .fold(None, |best: Option<(usize, f64)>, c| match best {
                Some(b) if b.1 >= c.1 => Some(b),
                _ => Some(c),
            })
        else {
            break;
        };
        if flow <= MIN_PATH_FLOW {
            break;
        }
        let mut tokens = vec![a];
        let mut cur = a;
        while pred[cur] != SOURCE {
            cur = pred[cur];
            debug_assert!(cur != NONE, "a path with width > 0 reaches the source");
            tokens.push(cur);
        }
        tokens.reverse();

        // Subtract the bottleneck along the path; its tightest edges drop to exactly zero.
        source_left[tokens[0]] = (source_left[tokens[0]] - flow).max(0.0);
        sink_left[a] = (sink_left[a] - flow).max(0.0);
        for e in tokens.windows(2) {
            let (i, k) = (e[0], e[1]);
            let old = m.get(k, i);
            undo.push((k, i, old));
            let phi = g[i] * old as f64 * h[k];
            let left = phi - flow;
            let scaled = if left <= flow * 1e-9 { 0.0 } else { (left / (g[i] * h[k])) as f32 };
            m.set(k, i, scaled);
        }
        explained += flow;
        paths.push(FlowPath { tokens, flow });
    }
    // Restore in reverse so an edge used twice gets its original value back.
    for &(k, i, v) in undo.iter().rev() {
        m.set(k, i, v);
    }
    paths
}
