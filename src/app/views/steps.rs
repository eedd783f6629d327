//! The Backbone view's step mode: the response as reasoning steps along the axis (each a box as
//! wide as its tokens, coloured by its summed throughput), the strongest flows between steps as
//! arcs, the step backbone's paths in their colours. Made for traces of thousands of tokens,
//! where the token paths explain little. Click a step to select its tokens in the text view.

use super::backbone::arc;
use crate::app::command::Command;
use crate::app::document::Analysis;
use crate::app::theme;
use crate::flow::steps::{self, Role, StepGraph};
use crate::render::layout::display_text;
use crate::span::Span;
use crate::trace::Trace;
use egui::{Align2, FontId, Sense, Shape, Stroke, Ui, pos2, vec2};
use petgraph::visit::EdgeRef;
use std::sync::mpsc::Receiver;

/// The arcs drawn besides the backbone's: the strongest edges, so a 1 000-step graph stays legible.
const ARCS: usize = 60;

/// The step graph of the analysis on screen, made once per analysis on a background thread: it
/// sums φ over the whole matrix (which the analysis shares, so nothing is copied).
#[derive(Default)]
pub struct StepCache {
    generation: u64,
    graph: Option<Result<StepGraph, String>>,
    pending: Option<(u64, Receiver<Result<StepGraph, String>>)>,
}

impl StepCache {
    /// The graph of this analysis once it is made; None while it is being made.
    fn get(&mut self, trace: &Trace, text: &[String], a: &Analysis) -> Option<&Result<StepGraph, String>> {
        if self.generation == a.generation && self.graph.is_some() {
            return self.graph.as_ref();
        }
        if let Some((generation, rx)) = &self.pending
            && *generation == a.generation
        {
            let made = rx.try_recv().ok()?;
            (self.graph, self.generation, self.pending) = (Some(made), a.generation, None);
            return self.graph.as_ref();
        }
        let p = &a.plan.params;
        let segments = steps::given_segments(trace).map_err(|e| e.at(&trace.path).to_string()).map(|given| steps::segments(text, a.result.spans, &p.steps, given.as_deref()));
        let (matrix, result, backbone, max_steps) = (a.matrix.clone(), a.result.clone(), p.backbone.clone(), p.steps.max_steps);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(segments.map(|s| steps::step_graph(&matrix, &result, &s, max_steps, &backbone)));
        });
        self.pending = Some((a.generation, rx));
        None
    }
}

pub fn show(ui: &mut Ui, trace: &Trace, text: &[String], a: &Analysis, cache: &mut StepCache) -> Option<Command> {
    let g = match cache.get(trace, text, a) {
        None => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("summing the flow between steps…");
            });
            ui.ctx().request_repaint_after(std::time::Duration::from_millis(50));
            return None;
        }
        Some(Ok(g)) => g,
        Some(Err(e)) => {
            ui.colored_label(ui.visuals().error_fg_color, e);
            return None;
        }
    };
    let steps = g.graph.node_weights().filter(|n| n.role == Role::Step).count();
    let split = if a.plan.params.steps.split == crate::params::Split::Lines { "lines" } else { "sentences" };
    let joined = match g.joined {
        1 => String::new(),
        j => format!(": {} segments, joined up to {j} at a time to keep to {} steps", g.segments, a.plan.params.steps.max_steps),
    };
    ui.label(format!(
        "steps: {steps} (split at {split}, at most {} tokens each{joined}); the step backbone carries {} of the unit flow in {} paths (the token backbone {})",
        a.plan.params.steps.max_tokens,
        crate::render::percent(g.explained()),
        g.backbone.len(),
        crate::render::percent(a.result.backbone_flow())
    ));
    let legend_w = 260.0;
    let size = vec2((ui.available_width() - legend_w).max(200.0), ui.available_height().max(200.0));
    let mut command = None;
    ui.horizontal_top(|ui| {
        let (resp, painter) = ui.allocate_painter(size, Sense::click());
        let rect = resp.rect;
        let axis_y = rect.bottom() - 60.0;
        let spans = a.plan.spans;
        let (lo, hi) = (spans.question.start, spans.answer.end.max(spans.question.end).max(spans.question.start + 1));
        let x_of = |k: usize| rect.left() + 20.0 + (k as f32 - lo as f32) / (hi - lo) as f32 * (rect.width() - 40.0);
        let dark = ui.visuals().dark_mode;
        let t_max = g.graph.node_weights().filter(|n| n.role == Role::Step).map(|n| n.throughput).fold(1e-300, f64::max);

        // Arcs: the strongest edges faint, the backbone's on top in its colours.
        // (the strongest `ARCS` picked out, not every edge sorted each frame)
        let mut edges: Vec<_> = g.graph.edge_references().collect();
        let stronger = |x: &petgraph::graph::EdgeReference<f64>, y: &petgraph::graph::EdgeReference<f64>| y.weight().total_cmp(x.weight());
        if edges.len() > ARCS {
            edges.select_nth_unstable_by(ARCS - 1, stronger);
            edges.truncate(ARCS);
        }
        edges.sort_by(stronger);
        let mid = |v: petgraph::graph::NodeIndex| {
            let s = g.graph[v].tokens;
            (x_of(s.start) + x_of(s.end)) / 2.0
        };
        let weak = ui.visuals().weak_text_color();
        for e in edges.iter().take(ARCS) {
            let w = 0.5 + 8.0 * e.weight().min(1.0) as f32;
            painter.add(Shape::line(arc(mid(e.source()), mid(e.target()), axis_y - 14.0, axis_y - rect.top() - 30.0, rect.width()), Stroke::new(w, weak.gamma_multiply(0.5))));
        }
        for (pi, path) in g.backbone.iter().enumerate().rev() {
            let w = 1.5 + 10.0 * path.flow.min(1.0) as f32;
            for e in path.nodes.windows(2) {
                let (x1, x2) = (mid(e[0].into_index()), mid(e[1].into_index()));
                painter.add(Shape::line(arc(x1, x2, axis_y - 14.0, axis_y - rect.top() - 30.0, rect.width()), Stroke::new(w, theme::path(pi).gamma_multiply(0.85))));
            }
        }

        // Step boxes on the axis; the one under the pointer is outlined and can be clicked.
        let mut hovered = None;
        for v in g.graph.node_indices() {
            let n = &g.graph[v];
            let (x0, x1) = (x_of(n.tokens.start), x_of(n.tokens.end).max(x_of(n.tokens.start) + 2.0));
            let r = egui::Rect::from_min_max(pos2(x0, axis_y - 12.0), pos2(x1 - 1.0, axis_y + 12.0));
            let fill = match n.role {
                Role::Question => theme::question(),
                Role::Answer => theme::answer(),
                Role::Step => theme::heat(n.throughput / t_max, dark),
            };
            painter.rect_filled(r, 1.0, fill);
            if resp.hover_pos().is_some_and(|p| r.expand2(vec2(0.0, 6.0)).contains(p)) {
                hovered = Some(v);
                painter.rect_stroke(r.expand(2.0), 1.0, Stroke::new(2.0, ui.visuals().strong_text_color()), egui::StrokeKind::Outside);
            }
        }
        painter.text(pos2(x_of(spans.question.start), axis_y + 16.0), Align2::LEFT_TOP, "question", FontId::proportional(11.0), theme::question());
        painter.text(pos2(x_of(spans.answer.end), axis_y + 16.0), Align2::RIGHT_TOP, "answer", FontId::proportional(11.0), theme::answer());
        if let Some(v) = hovered {
            let n = &g.graph[v];
            let resp = resp.clone().on_hover_ui_at_pointer(|ui| {
                ui.label(format!("{:?} {}:{} · throughput {} · inflow {}", n.role, n.tokens.start, n.tokens.end, crate::render::share(n.throughput, 4), crate::render::share(n.inflow, 4)));
                ui.label(snippet(text, n.tokens, 160));
            });
            if resp.clicked() {
                command = Some(Command::SelectSpan(n.tokens));
            }
        }
        legend(ui, g, text, legend_w);
    });
    command
}

trait IntoIndex {
    fn into_index(self) -> petgraph::graph::NodeIndex;
}

impl IntoIndex for usize {
    fn into_index(self) -> petgraph::graph::NodeIndex {
        petgraph::graph::NodeIndex::new(self)
    }
}

fn snippet(text: &[String], s: Span, max: usize) -> String {
    let t: String = s.range().map(|k| display_text(&text[k])).collect();
    if t.chars().count() > max { format!("{}…", t.chars().take(max).collect::<String>()) } else { t }
}

/// One row per backbone path: its flow and the steps it runs through.
fn legend(ui: &mut Ui, g: &StepGraph, text: &[String], width: f32) {
    ui.vertical(|ui| {
        ui.set_width(width - 10.0);
        for (pi, p) in g.backbone.iter().enumerate() {
            ui.horizontal(|ui| {
                let (sw, _) = ui.allocate_exact_size(vec2(16.0, 10.0), Sense::hover());
                ui.painter().rect_filled(sw, 1.0, theme::path(pi));
                ui.label(format!("path {} · {} · {} nodes", pi + 1, crate::render::share(p.flow, 3), p.nodes.len()));
            });
            for &v in p.nodes.iter().filter(|&&v| g.graph[v.into_index()].role == Role::Step) {
                ui.small(format!("  {}", snippet(text, g.graph[v.into_index()].tokens, 36)));
            }
        }
    });
}
