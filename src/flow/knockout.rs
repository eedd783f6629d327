//! Flow knock-out: what the graph loses when tokens are taken out of it, for any trace and no
//! model. A removed token neither reads nor is read (its row and column of M are zeroed), which is
//! the graph's version of the probe's "hide this token from every later query".
//!
//! Two measures, because the method's own flow cannot show a loss by itself: flow conservation
//! re-routes mass around a missing token, so the re-solved answer inflow stays 1 while any route
//! is left and drops to 0 only when the removed tokens cut every route.
//! - `answer_inflow`: Σ_{a∈𝒜} f(a) of the pipeline re-solved without the tokens (1 or 0).
//! - `mass_lost`: the share of the question→answer attention-path mass (the sum over every path
//!   from a question token to the answer of the product of its edge weights, Σ_{q∈Q} h(q)) that
//!   ran through the removed tokens. Graded: a sole bridge loses 1, one of two equal parallel
//!   routes 1/2, a token off every route 0.
//!
//! For single tokens `mass_lost` has a closed form, so the loss of every token costs one forward
//! solve instead of N re-solves: with r(t) the path mass from the question into t, the paths
//! through t carry r(t)·h(t) of the total Σ_q h(q).

use super::backbone::FlowPath;
use super::matrix::{Matrix, row_offset};
use super::sweep::{Rows, Sweep, forward_sweep, weighted_sum, weighted_sum_onto, weighted_sums};
use super::{FlowResult, solve_graph};
use crate::params::Params;
use crate::span::Spans;
use serde::Serialize;
use std::ops::Range;

#[derive(Clone, Debug, Serialize)]
pub struct KnockOut {
    /// The tokens taken out, sorted.
    pub removed: Vec<usize>,
    /// Share of the question→answer attention-path mass that ran through them.
    pub mass_lost: f64,
    /// Σ_{a∈𝒜} f(a) of the conserved flow re-solved without them.
    pub answer_inflow: f64,
    /// Share of the backbone's flow carried by paths through a removed token.
    pub backbone_lost: f64,
    /// How many of the backbone's paths run through a removed token.
    pub paths_lost: usize,
    /// The analysis of the graph without the tokens.
    #[serde(skip)]
    pub result: FlowResult,
}

/// Σ_{q∈Q} h(q): the attention-path mass from the question into the answer.
pub fn path_mass(h: &[f64], spans: Spans) -> f64 {
    spans.question.range().map(|q| h[q]).sum()
}

/// Removes `tokens` from the graph of `m`, re-runs steps 3–9 on what is left between the spans
/// `base` (the analysis of the whole graph, with the same parameters) ran between, and compares.
/// The sink cannot be removed: it is where the flow is measured.
pub fn knock_out(m: &Matrix, params: &Params, base: &FlowResult, tokens: &[usize]) -> Result<KnockOut, String> {
    let spans = base.spans;
    let mut removed = tokens.to_vec();
    removed.sort_unstable();
    removed.dedup();
    if let Some(&k) = removed.iter().find(|&&k| k >= m.n) {
        return Err(format!("cannot knock out token {k}: the trace has {} tokens", m.n));
    }
    if let Some(&k) = removed.iter().find(|&&k| spans.answer.contains(k)) {
        return Err(format!("token {k} is in the sink {} (the positions that wrote the answer): knock-out measures what reaches it, so it stays", spans.answer));
    }
    params.validate()?;
    let mut cut = m.clone();
    remove(&mut cut, &removed);
    let result = solve_graph(&cut, spans, params);
    let before = path_mass(&base.reach, spans);
    let after = path_mass(&result.reach, spans);
    let mass_lost = if before > 0.0 { (1.0 - after / before).clamp(0.0, 1.0) } else { 0.0 };
    let through = |p: &&FlowPath| p.tokens.iter().any(|t| removed.binary_search(t).is_ok());
    let lost: Vec<&FlowPath> = base.backbone.iter().filter(through).collect();
    let total = base.backbone_flow();
    let backbone_lost = if total > 0.0 { lost.iter().map(|p| p.flow).sum::<f64>() / total } else { 0.0 };
    Ok(KnockOut { answer_inflow: result.answer_inflow(), mass_lost, backbone_lost, paths_lost: lost.len(), removed, result })
}

/// Zeroes the rows and columns of `tokens` (sorted): they neither read nor are read.
fn remove(m: &mut Matrix, tokens: &[usize]) {
    for &t in tokens {
        m.row_mut(t).fill(0.0);
        for k in t + 1..m.n {
            m.data[row_offset(k) + t] = 0.0;
        }
    }
}

/// Path mass from the question into each token: r(t) = [t ∈ Q] + Σ_{i<t} M[t,i]·r(i), where
/// answer tokens absorb (paths end at the first answer token they reach).
struct IntoToken<'a> {
    h: &'a [f64],
    spans: Spans,
    r: Vec<f64>,
    /// r(i) where i passes mass on (reaches the answer, not in it), else 0.
    send: Vec<f64>,
}

impl Sweep for IntoToken<'_> {
    type Acc = f64;

    fn gather(&self, _k: usize, row: &[f32], sources: Range<usize>) -> f64 {
        weighted_sum(row, &self.send, sources)
    }

    fn gather_rows(&self, ks: Range<usize>, m: &Matrix, sources: Range<usize>) -> Rows<f64> {
        weighted_sums(ks, m, &self.send, sources)
    }

    fn gather_onto(&self, acc: f64, _k: usize, row: &[f32], sources: Range<usize>) -> f64 {
        weighted_sum_onto(acc, row, &self.send, sources)
    }

    fn combine(a: f64, b: f64) -> f64 {
        a + b
    }

    fn settle(&mut self, k: usize, acc: f64) {
        let r = if self.spans.question.contains(k) { 1.0 } else { 0.0 } + acc;
        self.r[k] = r;
        if self.h[k] > 0.0 && !self.spans.answer.contains(k) {
            self.send[k] = r;
        }
    }
}

/// The knock-out loss of every token on its own (`mass_lost` of removing just that token), in one
/// forward solve: r(t)·h(t) / Σ_q h(q). `spans` are those the analysis ran between
/// (`FlowResult::spans`); sink tokens, which cannot be knocked out, get 0.
pub fn loss_per_token(m: &Matrix, h: &[f64], spans: Spans) -> Vec<f64> {
    let n = m.n;
    let total = path_mass(h, spans);
    if total <= 0.0 || spans.answer.is_empty() {
        return vec![0.0; n];
    }
    let q = spans.question;
    let mut s = IntoToken { h, spans, r: vec![0.0; n], send: vec![0.0; n] };
    forward_sweep(m, q.start, q.start..spans.answer.end, &mut s);
    (0..n)
        .map(|t| if spans.answer.contains(t) { 0.0 } else { (s.r[t] * h[t] / total).clamp(0.0, 1.0) })
        .collect()
}
