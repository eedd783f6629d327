//! Step 3, answer conditioning: h(a) = 1 on the answer (which absorbs), h(i) = Σ_{k>i} W[i,k]·h(k)
//! elsewhere, 0 after the answer. A backward triangular solve in "push" form: once h(k) is final,
//! row k of M adds W[·,k]·h(k) to every earlier token, so M is only ever read by rows.
//!
//! Because each attention row sums to at most 1, h(i) is bounded by the answer length (a backward
//! walk from an answer token visits i at most once): f64 cannot overflow here.

use super::matrix::Matrix;
use super::paired::{Pair, Parts, with_helper};
use super::sweep::{BLOCK, PAIRED_FROM};
use crate::params::{AnswerParams, Sink};
use crate::span::{Span, Spans};
use std::ops::Range;

/// Rows settled one after another before their pushes into every earlier token go out: four
/// blocks, so each push is a long pass (on one core 2.2–2.4 ms against 3.2–4.8 at 4k, 9.0–9.2
/// against 14.2–14.4 at 8k, than a pass per block in chunks of 2 048 tokens).
const SETTLED_TOGETHER: usize = 4 * BLOCK;
/// A span's push into every earlier token is cut into this many parts for the two cores
/// ([`super::paired`]), each a run of tokens starting on a cache line of f64: more than two, so
/// that a helper that starts late still takes its share.
const PARTS: usize = 8;
const CHUNK_ALIGN: usize = 8;
/// Rows pushed in one pass over a chunk of earlier tokens: sixteen streams keep memory busy and
/// load and store each accumulator once per sixteen rows (20% quicker than eight at 4k, 10% at
/// 8k; thirty-two no longer fit the registers).
const PUSH: usize = 16;

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

/// Spans of `SETTLED_TOGETHER` rows from the answer back, each settled block by block (inside a
/// block row by row, then into the span's earlier tokens), then pushed into every token before the
/// span in one pass. Each token takes its additions in the order of one block after another, so
/// the bits are those of the plain blocked sweep (`rows_pushed_together_give_the_same_bits`).
pub fn reach(m: &Matrix, answer: Span) -> Vec<f64> {
    reach_helped(m, answer).0
}

/// [`reach`], and how many runs of tokens the other core pushed into.
fn reach_helped(m: &Matrix, answer: Span) -> (Vec<f64>, usize) {
    if answer.end >= PAIRED_FROM && rayon::current_num_threads() > 1 {
        return with_helper(&Pushes { m }, |pair| solve(m, answer, Some(pair)));
    }
    (solve(m, answer, None), 0)
}

fn solve(m: &Matrix, answer: Span, pair: Option<&Pair<Pushes>>) -> Vec<f64> {
    let n = m.n;
    let mut h = vec![0.0f64; n];
    if answer.is_empty() {
        return h;
    }
    let mut acc = vec![0.0f64; n];
    let mut big1 = answer.end;
    while big1 > 0 {
        let big0 = big1.saturating_sub(SETTLED_TOGETHER);
        // The blocks of the span one after another, from the last: settle inside the block, then
        // push its rows into the span's tokens before it, here (they are few).
        let mut pushing: Vec<(usize, f64)> = Vec::new();
        let mut k1 = big1;
        while k1 > big0 {
            let k0 = k1.saturating_sub(BLOCK);
            for k in (k0..k1).rev() {
                let hk = if answer.contains(k) { 1.0 } else { acc[k] };
                h[k] = hk;
                if hk != 0.0 {
                    add_rows(&mut acc[k0..k], &[&m.row(k)[k0..k]], &[hk]);
                }
            }
            let block: Vec<(usize, f64)> = (k0..k1).map(|k| (k, h[k])).filter(|&(_, hk)| hk != 0.0).collect();
            push(m, &block, big0, &mut acc[big0..k0]);
            pushing.extend(block);
            k1 = k0;
        }
        // Every token before the span gathers the span's rows, block after block as above: on two
        // cores, each part a run of tokens, where the push is worth sharing.
        let before = &mut acc[..big0];
        match pair {
            Some(pair) if big0 * (big1 - big0) >= 1 << 15 => {
                let share = big0.div_ceil(PARTS).next_multiple_of(CHUNK_ALIGN);
                let runs: Vec<Range<usize>> = (0..big0).step_by(share).map(|c| c..(c + share).min(big0)).collect();
                let accs = runs.iter().map(|r| before[r.clone()].to_vec()).collect();
                for (run, pushed) in runs.iter().zip(pair.run(SpanPush { pushing, runs: runs.clone(), accs })) {
                    before[run.clone()].copy_from_slice(&pushed);
                }
            }
            _ => push(m, &pushing, 0, before),
        }
        big1 = big0;
    }
    h
}

/// A span's push into the tokens before it, a run of tokens a part.
struct Pushes<'a> {
    m: &'a Matrix,
}

struct SpanPush {
    pushing: Vec<(usize, f64)>,
    runs: Vec<Range<usize>>,
    /// Each run's accumulators before the push.
    accs: Vec<Vec<f64>>,
}

impl Parts for Pushes<'_> {
    type Round = SpanPush;
    /// The run's accumulators after it.
    type Out = Vec<f64>;

    fn count(&self, round: &SpanPush) -> usize {
        round.runs.len()
    }

    fn part(&self, round: &SpanPush, g: usize) -> Vec<f64> {
        let mut accs = round.accs[g].clone();
        push(self.m, &round.pushing, round.runs[g].start, &mut accs);
        accs
    }
}

/// The settled rows `pushing` (token, h), in order, add into the tokens from `col0` (`accs` their
/// entries), `PUSH` rows at a time: each token takes their additions in row order as one row at a
/// time would, but from a register, not memory, between them.
fn push(m: &Matrix, pushing: &[(usize, f64)], col0: usize, accs: &mut [f64]) {
    let cols = col0..col0 + accs.len();
    let mut group = pushing.chunks_exact(PUSH);
    for rows in &mut group {
        let ws: [&[f32]; PUSH] = std::array::from_fn(|j| &m.row(rows[j].0)[cols.clone()]);
        let hs: [f64; PUSH] = std::array::from_fn(|j| rows[j].1);
        add_rows(accs, &ws, &hs);
    }
    for &(k, hk) in group.remainder() {
        add_rows(accs, &[&m.row(k)[cols.clone()]], &[hk]);
    }
}

/// acc[i] += ws[0][i]·hs[0], then ws[1][i]·hs[1], ...: each entry's additions in the rows' order,
/// the entries side by side in wide vectors where the CPU has them (the same sums either way).
fn add_rows<const R: usize>(acc: &mut [f64], ws: &[&[f32]; R], hs: &[f64; R]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { add_rows_avx2(acc, ws, hs) };
    }
    add_rows_plain(acc, ws, hs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn add_rows_avx2<const R: usize>(acc: &mut [f64], ws: &[&[f32]; R], hs: &[f64; R]) {
    add_rows_plain(acc, ws, hs)
}

#[inline(always)]
fn add_rows_plain<const R: usize>(acc: &mut [f64], ws: &[&[f32]; R], hs: &[f64; R]) {
    let n = acc.len();
    let ws: [&[f32]; R] = std::array::from_fn(|j| &ws[j][..n]);
    for (i, a) in acc.iter_mut().enumerate() {
        let mut v = *a;
        for (w, &h) in ws.iter().zip(hs) {
            v += w[i] as f64 * h;
        }
        *a = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The push before the block one row at a time through memory, as it was before the rows went
    /// `PUSH` at a time through a register: the two must agree bit for bit.
    fn reach_row_by_row(m: &Matrix, answer: Span) -> Vec<f64> {
        let n = m.n;
        let (mut h, mut acc) = (vec![0.0f64; n], vec![0.0f64; n]);
        let mut k1 = answer.end;
        while k1 > 0 {
            let k0 = k1.saturating_sub(BLOCK);
            for k in (k0..k1).rev() {
                let hk = if answer.contains(k) { 1.0 } else { acc[k] };
                h[k] = hk;
                if hk != 0.0 {
                    for (a, &w) in acc[k0..k].iter_mut().zip(&m.row(k)[k0..k]) {
                        *a += w as f64 * hk;
                    }
                }
            }
            for (k, &hk) in h.iter().enumerate().take(k1).skip(k0) {
                if hk != 0.0 {
                    for (a, &w) in acc[..k0].iter_mut().zip(&m.row(k)[..k0]) {
                        *a += w as f64 * hk;
                    }
                }
            }
            k1 = k0;
        }
        h
    }

    #[test]
    fn rows_pushed_together_give_the_same_bits() {
        // The second is long enough that its pushes go across two cores.
        for n in [1500, PAIRED_FROM + 100] {
            let (m, _) = crate::flow::test_rng::sparse_matrix(n, 0x2545_f491_4f6c_dd1d, 5);
            let answer = Span::new(n - 10, n);
            let (got, want) = (reach(&m, answer), reach_row_by_row(&m, answer));
            assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{n} tokens");
            assert!(got[..1000].iter().filter(|&&v| v > 0.0).count() > 100, "the test reaches far back");
        }
    }

    /// On two cores the other one pushes some of the spans' runs and every value is the one-core
    /// solve's, bit for bit.
    #[test]
    fn two_cores_push_the_bits_of_one() {
        let n = PAIRED_FROM + 1500;
        let (m, _) = crate::flow::test_rng::sparse_matrix(n, 0x7f4a_7c15_9e37_79b9, 4);
        let answer = Span::new(n - 10, n);
        let (want, none) = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(|| reach_helped(&m, answer));
        assert_eq!(none, 0, "one thread, no helper");
        assert!(want[..n / 2].iter().filter(|&&v| v > 0.0).count() > 100, "the test reaches far back");
        crate::flow::paired::same_bits_on_two_cores(&want, || reach_helped(&m, answer));
    }
}
