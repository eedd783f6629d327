//! The step graph and the token backbone as text formats graph tools read: Graphviz DOT
//! (through petgraph's writer) and GraphML (nodes and edges with typed attributes).

use crate::flow::steps::{Role, StepGraph};
use petgraph::dot::{Config, Dot};
use petgraph::graph::DiGraph;
use petgraph::visit::{EdgeRef, IntoNodeReferences};
use std::fmt::Write;

/// A node's label: the start of its text, on one line.
fn snippet(text: &[String], tokens: std::ops::Range<usize>, max: usize) -> String {
    let s: String = tokens.map(|k| text[k].as_str()).collect::<String>().split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > max { format!("{}…", s.chars().take(max).collect::<String>()) } else { s }
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn xml_escape(s: &str) -> String {
    super::escape(s)
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Question => "question",
        Role::Step => "step",
        Role::Answer => "answer",
    }
}

/// Steps left to right; each edge's pen width by its flow; the step backbone's edges in red.
pub fn steps_dot(g: &StepGraph, text: &[String]) -> String {
    let on_backbone: std::collections::HashSet<(usize, usize)> =
        g.backbone.iter().flat_map(|p| p.nodes.windows(2).map(|w| (w[0], w[1])).collect::<Vec<_>>()).collect();
    let edge = |_: &DiGraph<_, f64>, e: petgraph::graph::EdgeReference<'_, f64>| {
        let key = (e.source().index(), e.target().index());
        let colour = if on_backbone.contains(&key) { "#c62828" } else { "#9e9e9e" };
        format!("label=\"{}\" penwidth={:.2} color=\"{colour}\"", super::share(*e.weight(), 4), 0.5 + 6.0 * e.weight().min(1.0))
    };
    let node = |_: &DiGraph<_, f64>, (_, n): (petgraph::graph::NodeIndex, &crate::flow::steps::StepNode)| {
        let shape = if n.role == Role::Step { "box" } else { "doubleoctagon" };
        format!(
            "label=\"{} {}:{}\\n{}\\nthroughput {}\" shape={shape}",
            role_name(n.role),
            n.tokens.start,
            n.tokens.end,
            dot_escape(&snippet(text, n.tokens.range(), 40)),
            super::share(n.throughput, 3)
        )
    };
    let body = format!("{:?}", Dot::with_attr_getters(&g.graph, &[Config::EdgeNoLabel, Config::NodeNoLabel], &edge, &node));
    body.replacen("digraph {", "digraph steps {\n    rankdir=LR", 1)
}

/// Tokens of the backbone, each edge the flow of the paths along it.
pub fn backbone_dot(g: &DiGraph<usize, f64>, text: &[String]) -> String {
    let edge = |_: &DiGraph<usize, f64>, e: petgraph::graph::EdgeReference<'_, f64>| format!("label=\"{}\" penwidth={:.2}", super::share(*e.weight(), 4), 0.5 + 6.0 * e.weight().min(1.0));
    let node = |_: &DiGraph<usize, f64>, (_, &k): (petgraph::graph::NodeIndex, &usize)| format!("label=\"#{k} {}\"", dot_escape(&snippet(text, k..k + 1, 24)));
    let body = format!("{:?}", Dot::with_attr_getters(g, &[Config::EdgeNoLabel, Config::NodeNoLabel], &edge, &node));
    body.replacen("digraph {", "digraph backbone {\n    rankdir=LR", 1)
}

fn graphml(keys: &[(&str, &str, &str)], nodes: String, edges: String) -> String {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<graphml xmlns=\"http://graphml.graphdrawing.org/xmlns\">\n");
    for (id, target, ty) in keys {
        let _ = writeln!(s, "  <key id=\"{id}\" for=\"{target}\" attr.name=\"{id}\" attr.type=\"{ty}\"/>");
    }
    let _ = write!(s, "  <graph edgedefault=\"directed\">\n{nodes}{edges}  </graph>\n</graphml>\n");
    s
}

/// Nodes with role, start, end, throughput, inflow and text; edges with flow and whether the
/// step backbone uses them.
pub fn steps_graphml(g: &StepGraph, text: &[String]) -> String {
    let on_backbone: std::collections::HashSet<(usize, usize)> =
        g.backbone.iter().flat_map(|p| p.nodes.windows(2).map(|w| (w[0], w[1])).collect::<Vec<_>>()).collect();
    let mut nodes = String::new();
    for (v, n) in g.graph.node_references() {
        let _ = writeln!(
            nodes,
            "    <node id=\"n{}\"><data key=\"role\">{}</data><data key=\"start\">{}</data><data key=\"end\">{}</data><data key=\"throughput\">{}</data><data key=\"inflow\">{}</data><data key=\"text\">{}</data></node>",
            v.index(),
            role_name(n.role),
            n.tokens.start,
            n.tokens.end,
            n.throughput,
            n.inflow,
            xml_escape(&snippet(text, n.tokens.range(), 200))
        );
    }
    let mut edges = String::new();
    for e in g.graph.edge_references() {
        let (a, b) = (e.source().index(), e.target().index());
        let _ = writeln!(edges, "    <edge source=\"n{a}\" target=\"n{b}\"><data key=\"flow\">{}</data><data key=\"backbone\">{}</data></edge>", e.weight(), on_backbone.contains(&(a, b)));
    }
    let keys = [
        ("role", "node", "string"),
        ("start", "node", "int"),
        ("end", "node", "int"),
        ("throughput", "node", "double"),
        ("inflow", "node", "double"),
        ("text", "node", "string"),
        ("flow", "edge", "double"),
        ("backbone", "edge", "boolean"),
    ];
    graphml(&keys, nodes, edges)
}

/// Nodes with their token index and text, edges with the flow of the paths along them.
pub fn backbone_graphml(g: &DiGraph<usize, f64>, text: &[String]) -> String {
    let mut nodes = String::new();
    for (v, &k) in g.node_references() {
        let _ = writeln!(nodes, "    <node id=\"n{}\"><data key=\"token\">{k}</data><data key=\"text\">{}</data></node>", v.index(), xml_escape(&text[k]));
    }
    let mut edges = String::new();
    for e in g.edge_references() {
        let _ = writeln!(edges, "    <edge source=\"n{}\" target=\"n{}\"><data key=\"flow\">{}</data></edge>", e.source().index(), e.target().index(), e.weight());
    }
    graphml(&[("token", "node", "int"), ("text", "node", "string"), ("flow", "edge", "double")], nodes, edges)
}
