//! Invariants of the method, on random traces (odd sizes, block edges) and the bundled samples.

mod common;
use flowtracer::flow::conserve::{conserves, edge_flow, row_sum};
use flowtracer::flow::Matrix;
use flowtracer::trace::Trace;
use flowtracer::{Cancel, FlowResult, Params, Status};
use std::collections::HashMap;
use std::path::Path;

fn check(trace: &Trace, r: &FlowResult, m: &Matrix) {
    // The method's invariants hold between the spans the steps ran between: the trace's, with the
    // answer replaced by the sink (the positions that wrote it, by default).
    let s = r.spans;
    assert_eq!((s.question, s.response), (trace.spans.question, trace.spans.response));
    let writers = flowtracer::flow::reach::conditioned(trace.spans, &Params::default().answer);
    assert_eq!(s, writers);
    let n = trace.n();
    let name = trace.path.display();
    assert!(r.reach.iter().all(|&h| h >= 0.0 && h.is_finite()), "{name}: reach");
    assert!(r.flow.iter().all(|&f| f >= 0.0 && f.is_finite()), "{name}: flow");
    for i in 0..n {
        if conserves(i, &r.reach, s.answer) {
            let sum = row_sum(m, &r.reach, s.answer, i);
            assert!((sum - 1.0).abs() <= 1e-9, "{name}: row {i} of W' sums to {sum}");
        }
    }
    if r.status == Status::Ok {
        let inflow = r.answer_inflow();
        assert!((inflow - 1.0).abs() <= 1e-9, "{name}: inflow into the answer {inflow}");
    }
    // Throughput equals inflow plus the explicit outflow Σ φ.
    for k in 0..n {
        let out: f64 = (k + 1..n).map(|j| edge_flow(m, &r.reach, &r.flow, s.answer, k, j)).sum();
        assert!((r.throughput[k] - (r.flow[k] + out)).abs() <= 1e-9, "{name}: τ({k})");
    }
    // Flow conservation at every token that is neither a source nor the answer.
    for k in s.question.end..s.answer.start {
        let inflow: f64 = (0..k).map(|i| edge_flow(m, &r.reach, &r.flow, s.answer, i, k)).sum();
        assert!((inflow - r.flow[k]).abs() <= 1e-9, "{name}: inflow of {k}");
    }
    // The backbone never uses more flow than there is, on any edge, source or sink.
    let mut used: HashMap<(usize, usize), f64> = HashMap::new();
    let mut from_source: HashMap<usize, f64> = HashMap::new();
    let mut into_sink: HashMap<usize, f64> = HashMap::new();
    for p in &r.backbone {
        assert!(p.flow > 0.0);
        assert!(s.question.contains(p.tokens[0]) && s.answer.contains(*p.tokens.last().unwrap()), "{name}: path ends");
        *from_source.entry(p.tokens[0]).or_default() += p.flow;
        *into_sink.entry(*p.tokens.last().unwrap()).or_default() += p.flow;
        for e in p.tokens.windows(2) {
            assert!(e[0] < e[1]);
            *used.entry((e[0], e[1])).or_default() += p.flow;
        }
    }
    for (&(i, k), &u) in &used {
        let phi = edge_flow(m, &r.reach, &r.flow, s.answer, i, k);
        assert!(u <= phi * (1.0 + 1e-6) + 1e-12, "{name}: edge {i}→{k} carries {u} > φ {phi}");
    }
    let share = 1.0 / r.question_sources.max(1) as f64;
    assert!(from_source.values().all(|&u| u <= share * (1.0 + 1e-9)), "{name}: source edges");
    assert!(into_sink.iter().all(|(&a, &u)| u <= r.flow[a] * (1.0 + 1e-6) + 1e-12), "{name}: sink edges");
    assert!(r.backbone_flow() <= 1.0 + 1e-9);
    // Credit: exactly ⌈fraction·|R|⌉ response tokens get γ (when there is flow).
    if r.status == Status::Ok {
        let p = Params::default();
        let expect = flowtracer::flow::roles::share_count(p.credit.fraction, s.response.len());
        assert_eq!(r.credit.iter().filter(|&&g| g == p.credit.gamma).count(), expect, "{name}: credited count");
    }
}

#[test]
fn random_traces_at_block_edges_and_odd_sizes() {
    for (i, &n) in [2usize, 3, 5, 17, 63, 64, 65, 127, 128, 129, 200, 300].iter().enumerate() {
        for seed in 0..3u64 {
            let b = common::random_trace(n, 100 * i as u64 + seed);
            let path = format!("random-n{n}-s{seed}.safetensors");
            let t = Trace::from_bytes(b.to_bytes(), Path::new(&path)).unwrap();
            let (r, m) = common::analyze_keeping(&t, &Params::default());
            check(&t, &r, &m);
        }
    }
}

#[test]
fn bundled_samples_hold_the_invariants() {
    let mut seen = 0;
    let run = flowtracer::trace::run::discover(Path::new("sample_traces")).unwrap();
    for p in &run.traces {
        let t = Trace::open(p).unwrap();
        let (r, m) = common::analyze_keeping(&t, &Params::default());
        check(&t, &r, &m);
        seen += 1;
    }
    assert!(seen >= 3, "expected the bundled samples, found {seen}");
}

#[test]
fn the_sink_is_the_positions_that_wrote_the_answer() {
    use flowtracer::flow::reach::conditioned;
    use flowtracer::params::{AnswerParams, Sink};
    use flowtracer::span::{Span, Spans};
    let spans = |a: (usize, usize)| Spans { question: Span::new(0, 3), response: Span::new(3, 10), answer: Span::new(a.0, a.1) };
    let writers = AnswerParams { sink: Sink::Writers };
    // `>` at 6 writes the first answer digit 7, digit 7 writes 8; digit 8's own row writes `.`.
    assert_eq!(conditioned(spans((7, 9)), &writers).answer, Span::new(6, 8));
    // Kept inside the response: an answer opening the response is its own first writer …
    assert_eq!(conditioned(spans((3, 6)), &writers).answer, Span::new(3, 5));
    // … and a one-token answer there falls back to itself; no answer stays no answer.
    assert_eq!(conditioned(spans((3, 4)), &writers).answer, Span::new(3, 4));
    assert!(conditioned(spans((9, 9)), &writers).answer.is_empty());
    assert_eq!(conditioned(spans((7, 9)), &AnswerParams { sink: Sink::Tokens }).answer, Span::new(7, 9));
    // The pipeline runs between them and records it; the answer inflow is the sink's.
    let b = common::chain_builder(12, flowtracer::trace::Dtype::F32, vec![12, 12]);
    let t = Trace::from_bytes(b.to_bytes(), Path::new("chain")).unwrap();
    let r = flowtracer::analyze(&t, &Params::default(), &Cancel::default()).unwrap();
    assert_eq!(r.spans.answer, Span::new(10, 11), "answer 11..12: written by position 10");
    assert!((r.answer_inflow() - 1.0).abs() < 1e-9);
    assert_eq!(r.reach[11], 0.0, "the last answer token's own row writes what follows the answer");
}
