//! Step 5, flow: a super-source feeds each question token that reaches the answer an equal
//! share; f(k) = s(k) + Σ_{i<k} f(i)·W'[i,k]. With g(i) = f(i)/h(i) this is
//! f(k) = s(k) + h(k)·Σ_{i<k} M[k,i]·g(i): a forward solve that reads M by rows.

use super::backbone::{FirstSweep, Widths};
use super::matrix::Matrix;
use super::sweep::{Rows, Sweep, forward_sweep, weighted_sum, weighted_sum_onto, weighted_sums};
use crate::span::Spans;
use std::ops::Range;

pub struct UnitFlow {
    pub flow: Vec<f64>,
    /// |Q⁺|: question tokens with h > 0. Zero means the trace has no flow.
    pub sources: usize,
}

struct Solve<'a> {
    h: &'a [f64],
    spans: Spans,
    share: f64,
    f: Vec<f64>,
    /// f(i)/h(i) for conserving tokens, 0 otherwise (answer tokens absorb).
    g: Vec<f64>,
}

impl Sweep for Solve<'_> {
    type Acc = f64;

    fn gather(&self, _k: usize, row: &[f32], sources: Range<usize>) -> f64 {
        weighted_sum(row, &self.g, sources)
    }

    fn gather_rows(&self, ks: Range<usize>, m: &Matrix, sources: Range<usize>) -> Rows<f64> {
        weighted_sums(ks, m, &self.g, sources)
    }

    fn gather_onto(&self, acc: f64, _k: usize, row: &[f32], sources: Range<usize>) -> f64 {
        weighted_sum_onto(acc, row, &self.g, sources)
    }

    fn combine(a: f64, b: f64) -> f64 {
        a + b
    }

    fn settle(&mut self, k: usize, acc: f64) {
        let hk = self.h[k];
        if hk <= 0.0 {
            return;
        }
        let s = if self.spans.question.contains(k) { self.share } else { 0.0 };
        let fk = s + hk * acc;
        self.f[k] = fk;
        if !self.spans.answer.contains(k) {
            self.g[k] = fk / hk;
        }
    }
}

pub fn unit_flow(m: &Matrix, h: &[f64], spans: Spans) -> UnitFlow {
    solve(m, h, spans, false).0
}

/// [`unit_flow`], and the backbone's first widest-path sweep made in the same pass over M: both
/// are forward sweeps over the same rows, and the widths of row k read g = f/h of the tokens
/// before k, which the solve has settled by then. One read of M where there were two: on one
/// core at 4k tokens the two steps' 8.6 ms took 5.9 (`None` for the sweep when there is no flow).
pub fn unit_flow_and_widths(m: &Matrix, h: &[f64], spans: Spans) -> (UnitFlow, Option<FirstSweep>) {
    solve(m, h, spans, true)
}

fn solve(m: &Matrix, h: &[f64], spans: Spans, with_widths: bool) -> (UnitFlow, Option<FirstSweep>) {
    let n = m.n;
    let q = spans.question;
    let sources = q.range().filter(|&i| h[i] > 0.0).count();
    if sources == 0 || spans.answer.is_empty() {
        return (UnitFlow { flow: vec![0.0; n], sources: 0 }, None);
    }
    let share = 1.0 / sources as f64;
    let solve = Solve { h, spans, share, f: vec![0.0; n], g: vec![0.0; n] };
    let rows = q.start..spans.answer.end;
    if !with_widths {
        let mut s = solve;
        forward_sweep(m, q.start, rows, &mut s);
        return (UnitFlow { flow: s.f, sources }, None);
    }
    // The backbone's super-source: each question token that reaches the answer, its share.
    let source_left: Vec<f64> = (0..n).map(|i| if q.contains(i) && h[i] > 0.0 { share } else { 0.0 }).collect();
    let mut s = WithWidths { solve, widths: Widths::new(h, spans, &source_left) };
    forward_sweep(m, q.start, rows, &mut s);
    (UnitFlow { flow: s.solve.f, sources }, Some(s.widths.into_first()))
}

/// The flow solve with the widest-path sweep beside it: each gathers as it would alone (the same
/// kernels, so the same bits), from the rows just loaded.
struct WithWidths<'a> {
    solve: Solve<'a>,
    widths: Widths<'a>,
}

impl Sweep for WithWidths<'_> {
    type Acc = (f64, (f64, usize));

    fn gather(&self, k: usize, row: &[f32], sources: Range<usize>) -> Self::Acc {
        (self.solve.gather(k, row, sources.clone()), self.widths.gather(&self.solve.g, k, row, sources))
    }

    fn gather_rows(&self, ks: Range<usize>, m: &Matrix, sources: Range<usize>) -> Rows<Self::Acc> {
        let sums = self.solve.gather_rows(ks.clone(), m, sources.clone());
        let widths = self.widths.gather_rows(&self.solve.g, ks, m, sources);
        Rows::from_fn(sums.len(), |j| (sums[j], widths[j]))
    }

    fn gather_onto(&self, acc: Self::Acc, k: usize, row: &[f32], sources: Range<usize>) -> Self::Acc {
        (self.solve.gather_onto(acc.0, k, row, sources.clone()), Widths::combine(acc.1, self.widths.gather(&self.solve.g, k, row, sources)))
    }

    fn combine(a: Self::Acc, b: Self::Acc) -> Self::Acc {
        (Solve::combine(a.0, b.0), Widths::combine(a.1, b.1))
    }

    fn settle(&mut self, k: usize, acc: Self::Acc) {
        self.solve.settle(k, acc.0);
        self.widths.settle(k, acc.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::test_rng::XorShift;
    use crate::flow::sweep::ROWS;
    use crate::span::Span;

    /// Rows side by side (`ROWS` of them) are each row's own chain of additions: the same bits as
    /// `gather`, for every length of the tail after the last vector.
    #[test]
    fn rows_side_by_side_give_each_rows_bits() {
        let n = 700;
        let mut m = Matrix::zeros(n);
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut next = || rng.unit();
        for k in 1..n {
            for w in m.row_mut(k) {
                *w = (next() / k as f64) as f32;
            }
        }
        let h: Vec<f64> = (0..n).map(|_| next()).collect();
        let spans = Spans { question: Span::new(0, 10), response: Span::new(10, n), answer: Span::new(n - 5, n) };
        let s = Solve { h: &h, spans, share: 0.1, f: vec![0.0; n], g: (0..n).map(|_| next() * 3.0).collect() };
        for (k0, cut) in [(600, 1), (640, 2), (680, 3), (683, 4)] {
            let sources = 3..k0 - cut;
            let rows = s.gather_rows(k0..k0 + ROWS, &m, sources.clone());
            for (j, v) in rows.iter().enumerate() {
                assert_eq!(v.to_bits(), s.gather(k0 + j, m.row(k0 + j), sources.clone()).to_bits());
            }
        }
    }

    /// The blocked sweep settles each token as the definition does, one token after another: the
    /// sources before its block in one chain, those inside it in another, each in order. Gathering
    /// rows side by side and carrying chains on across sub-blocks leaves every bit as it was.
    #[test]
    fn the_blocked_sweep_gives_the_flow_of_one_token_at_a_time() {
        use crate::flow::sweep::{BLOCK, PAIRED_FROM};
        // The second is long enough that its blocks gather on two cores.
        for n in [1000, PAIRED_FROM + 100] {
            let (m, mut rng) = crate::flow::test_rng::sparse_matrix(n, 0x51_7cc1_b727_220a, 3);
            let h: Vec<f64> = (0..n).map(|i| if i % 11 == 0 { 0.0 } else { 0.5 + rng.unit() }).collect();
            let spans = Spans { question: Span::new(5, 40), response: Span::new(40, n), answer: Span::new(n - 7, n) };
            let got = unit_flow(&m, &h, spans);
            let q = spans.question;
            let mut s = Solve { h: &h, spans, share: 1.0 / got.sources as f64, f: vec![0.0; n], g: vec![0.0; n] };
            for k in q.start..spans.answer.end {
                let block = q.start + (k - q.start) / BLOCK * BLOCK;
                let split = block.max(q.start);
                let before = weighted_sum(m.row(k), &s.g, q.start..split);
                let inside = weighted_sum(m.row(k), &s.g, split..k.max(split));
                s.settle(k, before + inside);
            }
            assert!(got.flow.iter().zip(&s.f).all(|(a, b)| a.to_bits() == b.to_bits()), "{n} tokens");
            assert!(got.flow[600..n - 7].iter().filter(|&&f| f > 0.0).count() > 300, "the flow reaches far");
        }
    }

    /// The flow with the backbone's first sweep riding along: the flow's bits are the solve's
    /// alone, and the backbone started from that sweep is the one that sweeps for itself.
    #[test]
    fn the_first_sweep_rides_along_exactly() {
        let n = 1000;
        let (m, _) = crate::flow::test_rng::sparse_matrix(n, 0x2545_f491_4f6c_dd1d, 4);
        let spans = Spans { question: Span::new(3, 60), response: Span::new(60, n), answer: Span::new(n - 9, n) };
        let h = crate::flow::reach::reach(&m, spans.answer);
        let alone = unit_flow(&m, &h, spans);
        let (with, first) = unit_flow_and_widths(&m, &h, spans);
        assert_eq!(with.sources, alone.sources);
        assert!(with.flow.iter().zip(&alone.flow).all(|(a, b)| a.to_bits() == b.to_bits()));
        let p = crate::params::BackboneParams { coverage: 1.0, ..Default::default() };
        let want = crate::flow::backbone::backbone(&m, &h, &alone.flow, spans, alone.sources, &p);
        let got = crate::flow::backbone::backbone_after(&m, &h, &with.flow, spans, with.sources, &p, first);
        assert_eq!(got, want);
        assert_eq!(want.len(), p.max_paths, "the paths after the first come from re-sweeps too");
    }
}
