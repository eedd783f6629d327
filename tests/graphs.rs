//! Hand-made graphs whose flows are known on paper.

mod common;
use common::{matrix, solve, spans};
use flowtracer::flow::roles::share_count;
use flowtracer::{Params, Status};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn chain_carries_the_whole_unit_whatever_the_weights() {
    // 0 → 1 → 2 → 3 with weak edges: reach shrinks along the chain, flow does not.
    let m = matrix(4, &[(1, 0, 0.5), (2, 1, 0.5), (3, 2, 0.5)]);
    let r = solve(&m, spans((0, 1), (1, 4), (3, 4)), &Params::default());
    assert_eq!(r.status, Status::Ok);
    assert!(close(r.reach[2], 0.5) && close(r.reach[1], 0.25) && close(r.reach[0], 0.125), "{:?}", r.reach);
    for k in 0..4 {
        assert!(close(r.flow[k], 1.0), "f({k}) = {}", r.flow[k]);
    }
    assert_eq!(r.throughput, vec![2.0, 2.0, 2.0, 1.0]);
    assert_eq!(r.backbone.len(), 1);
    assert_eq!(r.backbone[0].tokens, vec![0, 1, 2, 3]);
    assert!(close(r.backbone[0].flow, 1.0));
    // Credit: ⌈0.4·3⌉ = 2 of the response tokens {1,2,3}: the two with τ = 2.
    assert_eq!(r.credit, vec![1.0, 1.5, 1.5, 1.0]);
}

#[test]
fn diamond_splits_by_reach_and_merges_at_a_checkpoint() {
    let m = matrix(4, &[(1, 0, 1.0), (2, 0, 1.0), (3, 1, 0.125), (3, 2, 0.375)]);
    let r = solve(&m, spans((0, 1), (1, 4), (3, 4)), &Params::default());
    assert!(close(r.reach[0], 0.5));
    assert!(close(r.flow[1], 0.25) && close(r.flow[2], 0.75) && close(r.flow[3], 1.0), "{:?}", r.flow);
    assert_eq!(r.backbone.len(), 2);
    assert_eq!(r.backbone[0].tokens, vec![0, 2, 3]);
    assert!(close(r.backbone[0].flow, 0.75));
    assert_eq!(r.backbone[1].tokens, vec![0, 1, 3]);
    assert!(close(r.backbone[1].flow, 0.25));
    assert_eq!(r.checkpoints, vec![3], "two backbone paths merge at the answer");
}

#[test]
fn dead_end_branch_loses_all_its_flow() {
    // Token 2 reads the question but nothing that reaches the answer reads token 2.
    let m = matrix(4, &[(1, 0, 0.5), (2, 0, 0.5), (3, 1, 0.5)]);
    let r = solve(&m, spans((0, 1), (1, 4), (3, 4)), &Params::default());
    assert_eq!(r.reach[2], 0.0);
    assert_eq!(r.flow[2], 0.0);
    assert_eq!(r.throughput[2], 0.0);
    assert!(close(r.flow[1], 1.0) && close(r.flow[3], 1.0));
    assert!(r.backbone.iter().all(|p| !p.tokens.contains(&2)));
}

#[test]
fn answer_tokens_absorb_and_later_tokens_get_nothing() {
    // Answer = {2,3}; token 3 reads answer token 2 strongly, but 2 passes nothing on.
    // Token 4 comes after the answer and reads everything.
    let m = matrix(5, &[(1, 0, 1.0), (2, 1, 1.0), (3, 2, 0.75), (3, 1, 0.25), (4, 3, 0.5), (4, 2, 0.5)]);
    let r = solve(&m, spans((0, 1), (1, 5), (2, 4)), &Params::default());
    assert_eq!(r.reach[2], 1.0);
    assert_eq!(r.reach[3], 1.0);
    assert!(close(r.reach[1], 1.25));
    assert!(close(r.flow[2], 0.8) && close(r.flow[3], 0.2), "{:?}", r.flow);
    assert!(close(r.flow[2] + r.flow[3], 1.0));
    assert_eq!(r.throughput[2], r.flow[2], "answer tokens have no outflow");
    assert_eq!((r.reach[4], r.flow[4], r.throughput[4]), (0.0, 0.0, 0.0));
}

#[test]
fn credit_ties_go_to_the_earlier_token() {
    // Tokens 1 and 2 carry half each; τ(1) = τ(2) = τ(3) = 1.
    let m = matrix(4, &[(1, 0, 1.0), (2, 0, 1.0), (3, 1, 0.5), (3, 2, 0.5)]);
    let s = spans((0, 1), (1, 4), (3, 4));
    let mut p = Params::default();
    p.credit.fraction = 0.3; // ⌈0.9⌉ = 1
    assert_eq!(solve(&m, s, &p).credit, vec![1.0, 1.5, 1.0, 1.0]);
    p.credit.fraction = 0.34; // ⌈1.02⌉ = 2
    assert_eq!(solve(&m, s, &p).credit, vec![1.0, 1.5, 1.5, 1.0]);
    p.credit.normalize_mean = true;
    let g = solve(&m, s, &p).credit;
    assert!(close(g[1..].iter().sum::<f64>() / 3.0, 1.0), "{g:?}");
    assert_eq!(g[0], 1.0, "prompt tokens stay 1");
}

#[test]
fn share_count_rounds_up_without_float_noise() {
    assert_eq!(share_count(0.4, 10), 4);
    assert_eq!(share_count(0.4, 11), 5);
    assert_eq!(share_count(0.05, 1), 1);
    assert_eq!(share_count(0.0, 100), 0);
    assert_eq!(share_count(1.0, 7), 7);
}

#[test]
fn no_flow_and_no_answer_give_credit_one() {
    // Token 1 ignores the question: nothing from the question reaches the answer.
    let m = matrix(3, &[(2, 1, 1.0)]);
    let r = solve(&m, spans((0, 1), (1, 3), (2, 3)), &Params::default());
    assert_eq!(r.status, Status::NoFlow);
    assert!(r.credit.iter().all(|&g| g == 1.0));
    assert!(r.flow.iter().all(|&f| f == 0.0) && r.backbone.is_empty() && r.hubs.is_empty());

    let m = matrix(3, &[(1, 0, 1.0), (2, 1, 1.0)]);
    let r = solve(&m, spans((0, 1), (1, 3), (3, 3)), &Params::default());
    assert_eq!(r.status, Status::NoAnswer);
    assert!(r.credit.iter().all(|&g| g == 1.0));
}

#[test]
fn backbone_stops_at_max_paths_and_coverage() {
    let m = matrix(4, &[(1, 0, 1.0), (2, 0, 1.0), (3, 1, 0.125), (3, 2, 0.375)]);
    let s = spans((0, 1), (1, 4), (3, 4));
    let mut p = Params::default();
    p.backbone.max_paths = 1;
    assert_eq!(solve(&m, s, &p).backbone.len(), 1);
    p.backbone.max_paths = 8;
    p.backbone.coverage = 0.7; // the first path alone explains 3/4
    assert_eq!(solve(&m, s, &p).backbone.len(), 1);
}

#[test]
fn threshold_drops_weak_edges_and_max_reduce_is_available() {
    use flowtracer::trace::{AttentionInput, Dtype, TraceBuilder};
    use flowtracer::Span;
    // Two heads: one reads the predecessor, one the question. Mean halves, max keeps both.
    let n = 4;
    let mut v = vec![0f32; 2 * n * n];
    for k in 1..n {
        v[k * n + (k - 1)] = 1.0;
        v[n * n + k * n] = 1.0;
    }
    v[0] = 1.0;
    v[n * n] = 1.0;
    let toks: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    let b = TraceBuilder::new(toks, Span::new(0, 1), Span::new(1, 4), Span::new(3, 4), AttentionInput { shape: vec![1, 2, n, n], values: v, dtype: Dtype::F32 });
    let t = flowtracer::Trace::from_bytes(b.to_bytes(), std::path::Path::new("heads.safetensors")).unwrap();
    let mut p = Params::default();
    let (_, m) = common::analyze_keeping(&t, &p);
    assert_eq!(m.get(2, 1), 0.5);
    p.aggregate.reduce = flowtracer::params::Reduce::Max;
    let (_, m) = common::analyze_keeping(&t, &p);
    assert_eq!(m.get(2, 1), 1.0);
    p.aggregate.reduce = flowtracer::params::Reduce::Mean;
    p.aggregate.heads = Some(vec![1]);
    let (r, m) = common::analyze_keeping(&t, &p);
    assert_eq!((m.get(2, 1), m.get(2, 0)), (0.0, 1.0));
    assert_eq!(r.heads, vec![1]);
    p.aggregate.heads = None;
    p.aggregate.threshold = 0.6;
    let (_, m) = common::analyze_keeping(&t, &p);
    assert_eq!((m.get(2, 1), m.get(2, 0)), (0.0, 0.0), "both 0.5 edges fall under ε = 0.6");
}
