//! The flow between reasoning steps. On a trace of thousands of subword tokens the token
//! backbone is a handful of two-token arcs carrying a sliver of the unit flow: true, and no help
//! in seeing how the reasoning moved information. Here the response is cut into steps (lines,
//! sentences, or segments the trace names), each step a node with its summed throughput, the
//! question and the flow's sink nodes of their own, and each edge the summed edge flow φ between
//! two nodes' tokens. The step backbone is the same greedy widest-path decomposition as the
//! token backbone, over this graph.
//!
//! Both graphs are `petgraph` graphs, written as Graphviz DOT and GraphML for the graph tools
//! users already have.

use super::backbone::FlowPath;
use super::matrix::Matrix;
use super::FlowResult;
use crate::params::{BackboneParams, Split, StepParams};
use crate::span::{Span, Spans};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use serde::Serialize;
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Question,
    Step,
    /// The positions the flow is conditioned on (the answer, or the tokens that write it).
    Answer,
}

#[derive(Clone, Debug, Serialize)]
pub struct StepNode {
    pub role: Role,
    pub tokens: Span,
    /// Summed throughput of its tokens.
    pub throughput: f64,
    /// Summed flow into it from other nodes (its share of the unit flow passing through).
    pub inflow: f64,
}

/// A path of the step backbone: node indices from the question to the answer, and its flow.
#[derive(Clone, Debug, Serialize)]
pub struct StepPath {
    pub nodes: Vec<usize>,
    pub flow: f64,
}

pub struct StepGraph {
    pub graph: DiGraph<StepNode, f64>,
    pub backbone: Vec<StepPath>,
    /// How many of the given segments each step joins: 1, or more where there were more than
    /// `steps.max_steps` (see [`join_steps`]).
    pub joined: usize,
    /// The segments the steps were made from.
    pub segments: usize,
}

/// `segments` (none holding a token of `sink`), in the order they start, joined `g` to a step,
/// the least `g` that leaves at most `max_steps` (≥ 2 where the sink parts them), never across
/// the sink: a step spans the
/// segments it joins, and the tokens between them where a trace's own segments leave gaps.
/// Returns the steps and `g`.
pub fn join_steps(segments: &[Span], sink: Span, max_steps: usize) -> (Vec<Span>, usize) {
    let mut segments = segments.to_vec();
    segments.sort_by_key(|s| (s.start, s.end));
    let join = |g: usize| {
        let mut out: Vec<Span> = Vec::new();
        let mut in_last = 0;
        for &s in &segments {
            if let Some(last) = out.last_mut() {
                let both = Span::new(last.start.min(s.start), last.end.max(s.end));
                if in_last < g && !(both.start < sink.end && sink.start < both.end) {
                    *last = both;
                    in_last += 1;
                    continue;
                }
            }
            out.push(s);
            in_last = 1;
        }
        out
    };
    // (the sink parts the steps in two at most, so a few steps of `g` reach the bound)
    let mut g = segments.len().div_ceil(max_steps.max(1)).max(1);
    loop {
        let steps = join(g);
        if steps.len() <= max_steps || g >= segments.len() {
            return (steps, g);
        }
        g += 1;
    }
}

impl StepGraph {
    /// The share of the unit flow the step backbone carries.
    pub fn explained(&self) -> f64 {
        self.backbone.iter().fold(0.0, |sum, p| sum + p.flow)
    }
}

/// The response cut into steps, in order, leaving out the sink: a step ends after a token whose
/// text holds a line break (`Lines`), or also after one ending a sentence (`Sentences`), and no
/// step is longer than `max_tokens` (one cut for its length ends between two words where its
/// later half has a place to). `given` (a trace's `segments`) replaces the rule.
pub fn segments(text: &[String], spans: Spans, p: &StepParams, given: Option<&[Span]>) -> Vec<Span> {
    let sink = spans.answer;
    let mut out = Vec::new();
    let push = |a: usize, b: usize, out: &mut Vec<Span>| {
        // (the sink is its own node: a step stops short of it and starts after it)
        for (s, e) in [(a, b.min(sink.start).max(a)), (a.max(sink.end), b)] {
            if s < e {
                out.push(Span::new(s, e));
            }
        }
    };
    if let Some(given) = given {
        for s in given {
            push(s.start.max(spans.response.start), s.end.min(spans.response.end), &mut out);
        }
        return out;
    }
    let ends = |k: usize| {
        let t = text[k].as_str();
        t.contains('\n') || (p.split == Split::Sentences && t.trim_end().ends_with(['.', '?', '!']) && text.get(k + 1).is_none_or(|n| n.starts_with([' ', '\n'])))
    };
    let max = p.max_tokens.max(1);
    let mut start = spans.response.start;
    for k in spans.response.range() {
        if ends(k) || k + 1 == spans.response.end {
            push(start, k + 1, &mut out);
            start = k + 1;
        } else if k + 1 - start >= max {
            // A step cut for its length ends between words where one of its later half can: a
            // step that ended inside a word showed (and was read as) half of it.
            let cut = (start + max / 2 + 1..=k).rev().find(|&j| crate::subword::word_break(&text[j - 1], &text[j])).unwrap_or(k + 1);
            push(start, cut, &mut out);
            start = cut;
        }
    }
    out
}

/// The steps a trace names in its metadata: `segments`, a JSON list of `"start:end"` spans.
pub fn given_segments(trace: &crate::trace::Trace) -> Result<Option<Vec<Span>>, crate::trace::DataError> {
    use crate::trace::{DataError, Problem};
    let Some(v) = trace.meta.extra.get("segments") else { return Ok(None) };
    let bad = || DataError::new(Problem::Metadata, format!("metadata `segments` = `{v}` is not a JSON list of \"start:end\" spans inside the trace"));
    let list: Vec<String> = serde_json::from_str(v).map_err(|_| bad())?;
    list.iter()
        .map(|s| {
            let (a, b) = s.split_once(':').ok_or_else(bad)?;
            let (a, b): (usize, usize) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
            (a < b && b <= trace.n()).then(|| Span::new(a, b)).ok_or_else(bad)
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The step graph of a result over its matrix: `sink` is the span the flow was conditioned on
/// (`result.spans`), `segments` from [`segments`], a step each (joined where more than
/// `max_steps`).
pub fn step_graph(m: &Matrix, r: &FlowResult, segments: &[Span], max_steps: usize, p: &BackboneParams) -> StepGraph {
    let spans = r.spans;
    let (steps, joined) = if segments.len() > max_steps { join_steps(segments, spans.answer, max_steps) } else { (segments.to_vec(), 1) };
    let mut graph = DiGraph::new();
    let mut node_of = vec![u32::MAX; m.n];
    let mut add = |graph: &mut DiGraph<StepNode, f64>, role: Role, tokens: Span| {
        let throughput = tokens.range().map(|k| r.throughput[k]).sum();
        let v = graph.add_node(StepNode { role, tokens, throughput, inflow: 0.0 });
        tokens.range().for_each(|k| node_of[k] = v.index() as u32);
        v
    };
    let mut parts: Vec<(Role, Span)> = steps.iter().map(|&s| (Role::Step, s)).collect();
    parts.push((Role::Question, spans.question));
    parts.push((Role::Answer, spans.answer));
    parts.sort_by_key(|(_, s)| s.start);
    for (role, s) in parts {
        add(&mut graph, role, s);
    }

    // φ summed between nodes (`step_totals`: the same sums, to the bit, as one loop over the
    // rows would add them), then put in the graph in the order of their nodes.
    let mut sorted = super::step_totals::pair_totals(m, &r.reach, &r.flow, spans.answer, &node_of, graph.node_count());
    sorted.sort_by_key(|&((a, b), _)| (a, b));
    for ((a, b), phi) in sorted {
        graph.add_edge(NodeIndex::new(a as usize), NodeIndex::new(b as usize), phi);
        graph[NodeIndex::new(b as usize)].inflow += phi;
    }
    let backbone = widest_paths(&graph, p);
    StepGraph { graph, backbone, joined, segments: segments.len() }
}

/// Greedy decomposition: the widest question → answer path in what is left, its bottleneck
/// taken off its edges, until `max_paths` or `coverage` of the unit flow. Edges run forward in
/// node order (nodes are contiguous runs of tokens, in order), so one pass in that order is a
/// topological sweep.
fn widest_paths(graph: &DiGraph<StepNode, f64>, p: &BackboneParams) -> Vec<StepPath> {
    let find = |role: Role| graph.node_indices().find(|&v| graph[v].role == role);
    let (Some(q), Some(a)) = (find(Role::Question), find(Role::Answer)) else { return Vec::new() };
    let mut left: HashMap<(usize, usize), f64> = graph.edge_references().map(|e| ((e.source().index(), e.target().index()), *e.weight())).collect();
    let mut out = Vec::new();
    let mut explained = 0.0;
    while out.len() < p.max_paths && explained < p.coverage {
        let mut width = vec![0.0f64; graph.node_count()];
        let mut pred = vec![usize::MAX; graph.node_count()];
        width[q.index()] = f64::INFINITY;
        for v in graph.node_indices() {
            for e in graph.edges_directed(v, Direction::Incoming) {
                let u = e.source().index();
                let w = width[u].min(left[&(u, v.index())]);
                if w > width[v.index()] {
                    width[v.index()] = w;
                    pred[v.index()] = u;
                }
            }
        }
        let flow = width[a.index()];
        if !flow.is_finite() || flow <= 1e-12 {
            break;
        }
        let mut nodes = vec![a.index()];
        while *nodes.last().unwrap() != q.index() {
            nodes.push(pred[*nodes.last().unwrap()]);
        }
        nodes.reverse();
        for w in nodes.windows(2) {
            *left.get_mut(&(w[0], w[1])).unwrap() -= flow;
        }
        explained += flow;
        out.push(StepPath { nodes, flow });
    }
    out
}

/// The token backbone as a graph: its tokens as nodes, each edge the flow of the paths along it.
pub fn backbone_graph(paths: &[FlowPath]) -> DiGraph<usize, f64> {
    let mut graph = DiGraph::new();
    let mut node: HashMap<usize, NodeIndex> = HashMap::new();
    let mut edges: HashMap<(NodeIndex, NodeIndex), f64> = HashMap::new();
    for p in paths {
        for w in p.tokens.windows(2) {
            let [a, b] = [w[0], w[1]].map(|k| *node.entry(k).or_insert_with(|| graph.add_node(k)));
            *edges.entry((a, b)).or_default() += p.flow;
        }
    }
    let mut sorted: Vec<_> = edges.into_iter().collect();
    sorted.sort_by_key(|&((a, b), _)| (a, b));
    for ((a, b), f) in sorted {
        graph.add_edge(a, b, f);
    }
    graph
}
