//! Step 3, answer conditioning: h(a) = 1 on the answer (which absorbs), h(i) = Σ_{k>i} W[i,k]·h(k)
//! elsewhere, 0 after the answer. A backward triangular solve in "push" form: once h(k) is final,
//! row k of M adds W[·,k]·h(k) to every earlier token, so M is only ever read by rows.
//!
//! Because each attention row sums to at most 1, h(i) is bounded by the answer length (a backward
//! walk from an answer token visits i at most once): f64 cannot overflow here.

use super::matrix::Matrix;
use super::sweep::BLOCK;
use crate::params::{AnswerParams, Sink};
use crate::span::{Span, Spans};
use rayon::prelude::*;

const CHUNK: usize = 2048;

/// The spans the steps run between: the trace's, with the answer replaced by the positions the
/// flow is conditioned on (`answer.sink`). Every entry point that starts from a trace's spans
/// calls this once; the steps themselves (`flow::solve` and after) take its result as it is.
pub fn conditioned(spans: Spans, p: &AnswerParams) -> Spans {
    let a = spans.answer;
    let sink = match p.sink {
        Sink::Tokens => a,
        _ if a.is_empty() => a,
        Sink::Writers => {
            let writers = Span::new(a.start.saturating_sub(1).max(spans.response.start), a.end - 1);
            if writers.is_empty() { a } else { writers }
        }
    };
    Spans { answer: sink, ..spans }
}

pub fn reach(m: &Matrix, answer: Span) -> Vec<f64> {
    let n = m.n;
    let mut h = vec![0.0f64; n];
    if answer.is_empty() {
        return h;
    }
    let mut acc = vec![0.0f64; n];
    let mut k1 = answer.end;
    while k1 > 0 {
        let k0 = k1.saturating_sub(BLOCK);
        // Inside the block: settle rows from the last, pushing into the block's own earlier tokens.
        for k in (k0..k1).rev() {
            let hk = if answer.contains(k) { 1.0 } else { acc[k] };
            h[k] = hk;
            if hk != 0.0 {
                for (a, &w) in acc[k0..k].iter_mut().zip(&m.row(k)[k0..k]) {
                    *a += w as f64 * hk;
                }
            }
        }
        // Before the block: every earlier token gathers the whole block at once, in parallel.
        let block_h = &h[k0..k1];
        let push = |c: usize, accs: &mut [f64]| {
            let i0 = c * CHUNK;
            for (dk, &hk) in block_h.iter().enumerate() {
                if hk == 0.0 {
                    continue;
                }
                let row = &m.row(k0 + dk)[i0..i0 + accs.len()];
                for (a, &w) in accs.iter_mut().zip(row) {
                    *a += w as f64 * hk;
                }
            }
        };
        if k0 * (k1 - k0) >= 1 << 15 {
            acc[..k0].par_chunks_mut(CHUNK).enumerate().for_each(|(c, accs)| push(c, accs));
        } else {
            acc[..k0].chunks_mut(CHUNK).enumerate().for_each(|(c, accs)| push(c, accs));
        }
        k1 = k0;
    }
    h
}
