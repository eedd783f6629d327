//! The step-level flow on hand-made graphs whose step flows are known, on a longer synthetic
//! trace against the token backbone, and the DOT/GraphML export of both graphs.

mod common;
use flowtracer::flow::steps::{self, Role};
use flowtracer::flow::{Cancel, aggregate, plan::Plan};
use flowtracer::params::{Params, Split};
use flowtracer::span::Span;
use flowtracer::trace::{AttentionInput, Dtype, Trace, TraceBuilder};

/// A trace from explicit attention rows: `rows[k]` lists (key, weight) for query k.
fn trace(tokens: &[&str], rows: &[&[(usize, f32)]], q: (usize, usize), answer: (usize, usize), meta: &[(&str, &str)]) -> (Trace, common::TempDir) {
    let n = tokens.len();
    let mut values = vec![0f32; n * n];
    for (k, row) in rows.iter().enumerate() {
        for &(i, w) in row.iter() {
            values[k * n + i] = w;
        }
    }
    // (a folder per call: the tests run in parallel, and a shared one would be removed under another)
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = common::temp_dir(&format!("steps-{}", CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
    let path = dir.join("t.safetensors");
    let mut b = TraceBuilder::new(
        tokens.iter().map(|s| s.to_string()).collect(),
        Span::new(q.0, q.1),
        Span::new(q.1, n),
        Span::new(answer.0, answer.1),
        AttentionInput { shape: vec![n, n], values, dtype: Dtype::F32 },
    );
    for (k, v) in meta {
        b = b.meta(k, v);
    }
    b.write(&path).unwrap();
    (Trace::open(&path).unwrap(), dir)
}

/// The answer as its own tokens (the literal sink), so the hand-made flows are easy to read.
fn params() -> Params {
    let mut p = Params::default();
    p.answer.sink = flowtracer::params::Sink::Tokens;
    p.aggregate.layers = None;
    p
}

fn graph(t: &Trace, p: &Params) -> steps::StepGraph {
    let r = flowtracer::flow::analyze(t, p, &Cancel::default()).unwrap();
    let plan = Plan::for_trace(t, p).unwrap();
    let m = aggregate::aggregate(&t.attention, &plan.selection, &p.aggregate, &Default::default()).unwrap();
    let given = steps::given_segments(t).unwrap();
    let segs = steps::segments(&t.text(), r.spans, &p.steps, given.as_deref());
    steps::step_graph(&m, &r, &segs, p.steps.max_steps, &p.backbone)
}

fn edge(g: &steps::StepGraph, a: usize, b: usize) -> f64 {
    g.graph.find_edge(petgraph::graph::NodeIndex::new(a), petgraph::graph::NodeIndex::new(b)).map_or(0.0, |e| g.graph[e])
}

#[test]
fn a_chain_of_lines_carries_all_the_flow_through_every_step() {
    // question "Q q" | "a\n" "b\n" | "c\n" "d\n" | answer "=": each token reads its predecessor.
    let toks = ["Q", "q", "a", "b\n", "c", "d\n", "="];
    let rows: Vec<Vec<(usize, f32)>> = (0..toks.len()).map(|k| if k == 0 { vec![(0, 1.0)] } else { vec![(k - 1, 1.0)] }).collect();
    let rows: Vec<&[(usize, f32)]> = rows.iter().map(|r| r.as_slice()).collect();
    let (t, _dir) = trace(&toks, &rows, (0, 2), (6, 7), &[]);
    let g = graph(&t, &params());
    let roles: Vec<(Role, Span)> = g.graph.node_weights().map(|n| (n.role, n.tokens)).collect();
    assert_eq!(roles, vec![(Role::Question, Span::new(0, 2)), (Role::Step, Span::new(2, 4)), (Role::Step, Span::new(4, 6)), (Role::Answer, Span::new(6, 7))]);
    for (a, b) in [(0, 1), (1, 2), (2, 3)] {
        assert!((edge(&g, a, b) - 1.0).abs() < 1e-9, "edge {a}->{b} carries the unit flow: {}", edge(&g, a, b));
    }
    assert_eq!(g.graph.edge_count(), 3, "nothing skips a step");
    assert_eq!(g.backbone.len(), 1);
    assert_eq!(g.backbone[0].nodes, vec![0, 1, 2, 3]);
    assert!((g.explained() - 1.0).abs() < 1e-9);
}

/// More lines than a graph takes steps: runs of adjacent lines are joined, equally, into at most
/// `steps.max_steps` steps that cover the same tokens, never across the answer; the flow still
/// goes through every step to the answer, and the graph says how many lines each step joins.
#[test]
fn a_trace_of_more_lines_than_steps_gets_its_lines_joined() {
    let mut p = params();
    p.steps.max_steps = 100;
    let lines = 2 * p.steps.max_steps + 24;
    let mut toks = vec!["Q", "q"];
    toks.extend(std::iter::repeat_n("a\n", lines));
    toks.push("=");
    toks.push("b\n");
    let answer = 2 + lines;
    let rows: Vec<Vec<(usize, f32)>> = (0..toks.len()).map(|k| if k == 0 { vec![(0, 1.0)] } else { vec![(k - 1, 1.0)] }).collect();
    let rows: Vec<&[(usize, f32)]> = rows.iter().map(|r| r.as_slice()).collect();
    let (t, _dir) = trace(&toks, &rows, (0, 2), (answer, answer + 1), &[]);
    let g = graph(&t, &p);
    let step_spans: Vec<Span> = g.graph.node_weights().filter(|n| n.role == Role::Step).map(|n| n.tokens).collect();
    assert_eq!((g.segments, g.joined), (lines + 1, 3), "{} segments", g.segments);
    assert!(step_spans.len() <= p.steps.max_steps, "{} steps", step_spans.len());
    assert!(step_spans.iter().all(|s| s.len() <= 3 && !s.contains(answer)), "joined three lines at most, never over the answer");
    let covered: usize = step_spans.iter().map(|s| s.len()).sum();
    assert_eq!(covered, lines + 1, "every line in one step");
    assert_eq!(g.backbone.len(), 1);
    assert_eq!(g.backbone[0].nodes.len(), step_spans.len() + 1, "the chain runs through every step before the answer: {:?}", g.backbone[0].nodes.len());
    assert!((g.explained() - 1.0).abs() < 1e-9);

    // A trace's own segments with gaps between them are joined over the gaps, never over the sink.
    let sink = Span::new(1000, 1001);
    let apart: Vec<Span> = (0..1034).map(|i| Span::new(2 * i, 2 * i + 1)).filter(|s| !s.contains(1000)).collect();
    let (joined, g) = steps::join_steps(&apart, sink, 512);
    assert!(joined.len() <= 512 && g == 3, "{} steps of {g}", joined.len());
    assert!(joined.iter().all(|s| !s.contains(1000)) && joined.iter().any(|s| s.end == 999) && joined.iter().any(|s| s.start == 1002));
    assert!(joined.windows(2).all(|w| w[0].end <= w[1].start));
}

#[test]
fn two_routes_split_the_flow_and_the_backbone_takes_both() {
    // The answer reads step A 3/4 and step B 1/4; each step reads only the question.
    let toks = ["Q", "q", "a\n", "b\n", "="];
    let rows: &[&[(usize, f32)]] = &[&[(0, 1.0)], &[(0, 1.0)], &[(1, 1.0)], &[(1, 1.0)], &[(2, 0.75), (3, 0.25)]];
    let (t, _dir) = trace(&toks, rows, (0, 2), (4, 5), &[]);
    let g = graph(&t, &params());
    assert!((edge(&g, 0, 1) - 0.75).abs() < 1e-9 && (edge(&g, 1, 3) - 0.75).abs() < 1e-9);
    assert!((edge(&g, 0, 2) - 0.25).abs() < 1e-9 && (edge(&g, 2, 3) - 0.25).abs() < 1e-9);
    assert_eq!(edge(&g, 1, 2), 0.0);
    let inflow = g.graph.node_weights().find(|n| n.role == Role::Answer).unwrap().inflow;
    assert!((inflow - 1.0).abs() < 1e-9, "the answer's inflow is the unit flow: {inflow}");
    let paths: Vec<(Vec<usize>, f64)> = g.backbone.iter().map(|p| (p.nodes.clone(), p.flow)).collect();
    assert_eq!(paths.len(), 2);
    assert_eq!(paths[0].0, vec![0, 1, 3]);
    assert!((paths[0].1 - 0.75).abs() < 1e-9 && (paths[1].1 - 0.25).abs() < 1e-9);
}

#[test]
fn segments_come_from_lines_sentences_a_cap_or_the_trace() {
    let text: Vec<String> = ["Q", "?", " One", ".", " Two", ".\n", "Three", " four", "=", "7"].iter().map(|s| s.to_string()).collect();
    let spans = flowtracer::span::Spans { question: Span::new(0, 2), response: Span::new(2, 10), answer: Span::new(8, 10) };
    let mut p = Params::default().steps;
    assert_eq!(steps::segments(&text, spans, &p, None), vec![Span::new(2, 6), Span::new(6, 8)], "lines, stopping short of the answer");
    p.split = Split::Sentences;
    assert_eq!(steps::segments(&text, spans, &p, None), vec![Span::new(2, 4), Span::new(4, 6), Span::new(6, 8)]);
    p.split = Split::Lines;
    p.max_tokens = 3;
    assert_eq!(steps::segments(&text, spans, &p, None), vec![Span::new(2, 4), Span::new(4, 6), Span::new(6, 8)], "cut for length between words: ` One.` | ` Two.`");
    p.max_tokens = 2;
    let pieces: Vec<String> = ["Q", "?", " Na", "tal", "ia", " sold", " cl", "ips", "=", "7"].iter().map(|s| s.to_string()).collect();
    assert_eq!(steps::segments(&pieces, spans, &p, None), vec![Span::new(2, 4), Span::new(4, 6), Span::new(6, 8)], "a word longer than the cap is cut where it must");
    p.max_tokens = 4;
    assert_eq!(steps::segments(&pieces, spans, &p, None), vec![Span::new(2, 5), Span::new(5, 8)], "` Natalia` | ` sold clips`");
    let given = [Span::new(2, 3), Span::new(3, 9)];
    assert_eq!(steps::segments(&text, spans, &p, Some(&given)), vec![Span::new(2, 3), Span::new(3, 8)], "a given step is cut at the answer");
}

#[test]
fn a_traces_segments_are_read_and_a_bad_list_is_refused_by_name() {
    let toks = ["Q", "q", "a", "b", "="];
    let rows: &[&[(usize, f32)]] = &[&[(0, 1.0)], &[(0, 1.0)], &[(1, 1.0)], &[(2, 1.0)], &[(3, 1.0)]];
    let (t, _d) = trace(&toks, rows, (0, 2), (4, 5), &[("segments", r#"["2:3", "3:4"]"#)]);
    assert_eq!(steps::given_segments(&t).unwrap(), Some(vec![Span::new(2, 3), Span::new(3, 4)]));
    let g = graph(&t, &params());
    assert_eq!(g.graph.node_count(), 4);
    let (bad, _d2) = trace(&toks, rows, (0, 2), (4, 5), &[("segments", r#"["3:2"]"#)]);
    let e = steps::given_segments(&bad).unwrap_err();
    assert!(format!("{e:?}").contains("segments"), "{e:?}");
}

#[test]
fn on_a_long_trace_the_steps_explain_more_of_the_flow_than_the_token_backbone() {
    let dir = common::temp_dir("steps-long");
    let path = dir.join("long.safetensors");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flowtracer"))
        .args(["synth", "--out", path.to_str().unwrap(), "--tokens", "1024", "--layers", "1", "--heads", "1", "--seed", "3", "--dtype", "f32"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t = Trace::open(&path).unwrap();
    let mut p = Params::default();
    p.steps.max_tokens = 64; // (synthetic text has few line breaks: cap the steps)
    let r = flowtracer::flow::analyze(&t, &p, &Cancel::default()).unwrap();
    let g = graph(&t, &p);
    let token_explained: f64 = r.backbone.iter().map(|b| b.flow).sum();
    assert!(g.graph.node_count() >= 10, "{} nodes", g.graph.node_count());
    assert!(g.explained() > token_explained, "steps {} vs tokens {token_explained}", g.explained());
    let inflow = g.graph.node_weights().find(|n| n.role == Role::Answer).unwrap().inflow;
    let outside: f64 = r.spans.question.range().chain(r.spans.response.range()).filter(|&k| !g.graph.node_weights().any(|n| n.tokens.contains(k))).map(|k| r.flow[k]).sum();
    assert!(inflow <= 1.0 + 1e-9 && inflow > 0.5 && outside < 1e-9, "answer inflow {inflow}");

    // Each edge is its pair's φs summed one by one, rows in order and sources in order in each,
    // to the bit, though the target nodes' sums are made across the cores; and no pair with φ is
    // missing.
    let plan = Plan::for_trace(&t, &p).unwrap();
    let m = aggregate::aggregate(&t.attention, &plan.selection, &p.aggregate, &Default::default()).unwrap();
    let mut node_of = vec![usize::MAX; t.n()];
    for v in g.graph.node_indices() {
        g.graph[v].tokens.range().for_each(|k| node_of[k] = v.index());
    }
    let mut want = std::collections::BTreeMap::new();
    for k in 0..t.n() {
        for i in 0..k {
            let (a, b) = (node_of[i], node_of[k]);
            let phi = flowtracer::flow::conserve::edge_flow(&m, &r.reach, &r.flow, r.spans.answer, i, k);
            if a != usize::MAX && b != usize::MAX && a != b && phi > 0.0 {
                *want.entry((a, b)).or_insert(0.0) += phi;
            }
        }
    }
    assert!(want.len() > 20, "{} edges", want.len());
    let got: std::collections::BTreeMap<(usize, usize), f64> = g.graph.edge_indices().map(|e| {
        let (a, b) = g.graph.edge_endpoints(e).unwrap();
        ((a.index(), b.index()), g.graph[e])
    }).collect();
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    for (pair, phi) in &want {
        assert_eq!(got[pair].to_bits(), phi.to_bits(), "edge {pair:?}");
    }
}

#[test]
fn the_export_writes_both_graphs_as_dot_and_graphml() {
    let out = common::temp_dir("steps-export");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_flowtracer"))
        .args(["--export", out.to_str().unwrap(), "--format", "json,dot,graphml", "sample_traces/addition.safetensors"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let dot = read("addition.steps.dot");
    assert!(dot.starts_with("digraph steps {") && dot.contains("question") && dot.contains("answer") && dot.contains("->"), "{dot}");
    let gml = read("addition.steps.graphml");
    assert!(gml.contains("<graphml") && gml.matches("<node ").count() >= 3 && gml.contains("<edge "), "{gml}");
    assert!(read("addition.backbone.dot").starts_with("digraph backbone {"));
    assert!(read("addition.backbone.graphml").contains("<data key=\"flow\">"));
    // `all` does not aggregate twice unless the graphs are named.
    let out2 = common::temp_dir("steps-export-all");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_flowtracer"))
        .args(["--export", out2.to_str().unwrap(), "sample_traces/addition.safetensors"])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(!out2.join("addition.steps.dot").exists());
}
