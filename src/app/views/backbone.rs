//! The backbone as arcs over the token axis, the same picture as the exported SVG: question
//! left, answer right, one colour per path, width ∝ flow. Hover a path in the legend to light it;
//! click a token marker to select it.

use super::Marks;
use crate::app::command::Command;
use crate::app::document::Analysis;
use crate::app::theme;
use crate::render::axis::TokenAxis;
use crate::render::layout::display_text;
use crate::trace::Trace;
use egui::{Align2, FontId, Pos2, Sense, Shape, Stroke, Ui, pos2, vec2};
use std::collections::BTreeSet;

#[derive(Default)]
pub struct BackboneState {
    pub hovered_path: Option<usize>,
    /// Show the flow between reasoning steps instead of between tokens.
    pub steps: bool,
    pub step_cache: super::steps::StepCache,
}

/// `text`: what each token shows (the document's decoded tokens).
pub fn show(ui: &mut Ui, trace: &Trace, text: &[String], a: &Analysis, marks: &Marks, state: &mut BackboneState) -> Option<Command> {
    let r = &a.result;
    let mut command = None;
    ui.horizontal_wrapped(|ui| {
        ui.selectable_value(&mut state.steps, false, "tokens");
        ui.selectable_value(&mut state.steps, true, "steps");
        ui.separator();
        if !state.steps {
            ui.label(format!("backbone: {} paths, {} of the unit flow", r.backbone.len(), crate::render::percent(r.backbone_flow())));
            if r.backbone_flow() < 0.5 {
                ui.weak("(the token paths explain little of the flow: the steps view sums it between reasoning steps)");
            }
        }
    });
    if state.steps {
        return super::steps::show(ui, trace, text, a, &mut state.step_cache);
    }
    let legend_w = 210.0;
    let size = vec2((ui.available_width() - legend_w).max(200.0), ui.available_height().max(200.0));
    let mut hovered_path = None;
    ui.horizontal_top(|ui| {
        let (resp, painter) = ui.allocate_painter(size, Sense::click());
        let canvas = Canvas::new(resp.rect, a);
        canvas.axis(ui, &painter, a);
        // Hovering an arc lights its path, like hovering its legend row.
        hovered_path = canvas.arcs(&painter, a, state.hovered_path, resp.hover_pos());
        if let Some(k) = canvas.markers(ui, &painter, text, a, marks, resp.hover_pos()) {
            let resp = resp.clone().on_hover_ui_at_pointer(|ui| super::text::tooltip(ui, trace, text, a, k));
            if resp.clicked() {
                command = Some(Command::Select { token: k, extend: false });
            }
        }
        hovered_path = legend(ui, a, legend_w).or(hovered_path);
    });
    state.hovered_path = hovered_path;
    command
}

/// The drawing area and the token axis across it, question left, answer right.
struct Canvas {
    rect: egui::Rect,
    axis_y: f32,
    /// The exported picture's axis: shortened between the paths' tokens where they would crowd.
    tokens: TokenAxis,
}

impl Canvas {
    fn new(rect: egui::Rect, a: &Analysis) -> Self {
        let tokens = TokenAxis::new(a.plan.spans, &a.result.backbone, Self::length(rect));
        Canvas { rect, axis_y: rect.bottom() - 90.0, tokens }
    }

    fn length(rect: egui::Rect) -> f64 {
        (rect.width() - 40.0) as f64
    }

    fn x_of(&self, k: usize) -> f32 {
        self.tokens.x(k, (self.rect.left() + 20.0) as f64, Self::length(self.rect)) as f32
    }

    /// The axis with the question and answer spans marked on it.
    fn axis(&self, ui: &Ui, painter: &egui::Painter, a: &Analysis) {
        let (rect, axis_y, spans) = (self.rect, self.axis_y, a.plan.spans);
        let weak = ui.visuals().weak_text_color();
        painter.line_segment([pos2(rect.left() + 10.0, axis_y), pos2(rect.right() - 10.0, axis_y)], Stroke::new(1.0, weak));
        for (s, c, label) in [(spans.question, theme::question(), "question"), (spans.answer, theme::answer(), "answer")] {
            if !s.is_empty() {
                let (x0, x1) = (self.x_of(s.start) - 2.0, self.x_of(s.end - 1) + 2.0);
                painter.rect_filled(egui::Rect::from_min_max(pos2(x0, axis_y - 4.0), pos2(x1.max(x0 + 3.0), axis_y + 4.0)), 1.0, c);
                // Question labels hang right of the span's start, answer labels left of its end.
                let (at, align) = if label == "question" { (pos2(x0, axis_y + 8.0), Align2::LEFT_TOP) } else { (pos2(x1, axis_y + 8.0), Align2::RIGHT_TOP) };
                painter.text(at, align, label, FontId::proportional(11.0), c);
            }
        }
        for gap in self.tokens.gaps() {
            let x = (self.rect.left() + 20.0) + (gap.at * Self::length(rect)) as f32;
            for dx in [-5.0, 1.0] {
                painter.line_segment([pos2(x + dx, axis_y + 4.0), pos2(x + dx + 4.0, axis_y - 4.0)], Stroke::new(1.0, weak));
            }
            let label = painter.layout_no_wrap(gap.label(), FontId::proportional(11.0), weak);
            if gap.label_fits(label.size().x as f64, Self::length(rect)) {
                painter.galley(pos2(x - label.size().x / 2.0, axis_y - 8.0 - label.size().y), label, weak);
            }
        }
        if a.result.backbone.is_empty() {
            painter.text(rect.center(), Align2::CENTER_CENTER, format!("no backbone (status {})", a.result.status.name()), FontId::proportional(14.0), weak);
        }
    }

    /// Every path's edges as arcs, width ∝ flow, all but `focus` dimmed when one is lit; the
    /// path whose arc is under the pointer.
    fn arcs(&self, painter: &egui::Painter, a: &Analysis, focus: Option<usize>, pointer: Option<Pos2>) -> Option<usize> {
        let backbone = &a.result.backbone;
        let max_flow = backbone.iter().map(|p| p.flow).fold(0.0, f64::max).max(1e-300);
        let mut nearest: Option<(usize, f32)> = None;
        for (pi, path) in backbone.iter().enumerate().rev() {
            let mut c = theme::path(pi);
            if focus.is_some_and(|f| f != pi) {
                c = c.gamma_multiply(0.15);
            }
            let w = 1.0 + 12.0 * (path.flow / max_flow) as f32;
            for e in path.tokens.windows(2) {
                let pts = arc(self.x_of(e[0]), self.x_of(e[1]), self.axis_y, self.axis_y - self.rect.top() - 20.0, self.rect.width());
                if let Some(p) = pointer {
                    let d = pts.iter().map(|q| (*q - p).length()).fold(f32::INFINITY, f32::min);
                    if d < w / 2.0 + 4.0 && nearest.is_none_or(|(_, best)| d < best) {
                        nearest = Some((pi, d));
                    }
                }
                painter.add(Shape::line(pts, Stroke::new(w, c.gamma_multiply(0.8))));
            }
        }
        nearest.map(|(pi, _)| pi)
    }

    /// A marker and a slanted label for every token on the backbone (hubs and checkpoints
    /// marked); the token under the pointer.
    fn markers(&self, ui: &Ui, painter: &egui::Painter, text: &[String], a: &Analysis, marks: &Marks, pointer: Option<Pos2>) -> Option<usize> {
        let (r, axis_y) = (&a.result, self.axis_y);
        let on_path: BTreeSet<usize> = r.backbone.iter().flat_map(|p| p.tokens.iter().copied()).collect();
        let mut near: Option<(usize, f32)> = None;
        let mut last_label = f32::NEG_INFINITY;
        for &k in &on_path {
            let x = self.x_of(k);
            let hub = r.hubs.binary_search(&k).is_ok();
            let selected = marks.selected == Some(k);
            let c = if hub { theme::hub() } else { ui.visuals().text_color() };
            if r.checkpoints.binary_search(&k).is_ok() {
                painter.rect_stroke(egui::Rect::from_center_size(pos2(x, axis_y), vec2(10.0, 10.0)), 0.0, Stroke::new(2.0, theme::hub()), egui::StrokeKind::Middle);
            }
            painter.circle_filled(pos2(x, axis_y), if hub || selected { 4.5 } else { 3.0 }, c);
            if selected {
                painter.circle_stroke(pos2(x, axis_y), 8.0, Stroke::new(2.0, ui.visuals().strong_text_color()));
            }
            if x - last_label > 12.0 {
                last_label = x;
                let label: String = display_text(&text[k]).chars().take(12).collect();
                let galley = ui.ctx().fonts_mut(|f| f.layout_no_wrap(label, FontId::monospace(11.0), c));
                painter.add(egui::epaint::TextShape::new(pos2(x - 3.0, axis_y + 24.0), galley, c).with_angle(std::f32::consts::FRAC_PI_3));
            }
            if let Some(p) = pointer {
                let d = (p - pos2(x, axis_y)).length();
                if d < 8.0 && near.is_none_or(|(_, best)| d < best) {
                    near = Some((k, d));
                }
            }
        }
        near.map(|(k, _)| k)
    }
}

/// One row per path and the marks' key; the path whose row is hovered.
fn legend(ui: &mut Ui, a: &Analysis, width: f32) -> Option<usize> {
    let mut hovered = None;
    ui.vertical(|ui| {
        ui.set_width(width - 10.0);
        for (pi, path) in a.result.backbone.iter().enumerate() {
            let resp = ui
                .horizontal(|ui| {
                    let (sw, _) = ui.allocate_exact_size(vec2(16.0, 10.0), Sense::hover());
                    ui.painter().rect_filled(sw, 1.0, theme::path(pi));
                    ui.label(format!("path {} · {} · {} tokens", pi + 1, crate::render::share(path.flow, 3), path.tokens.len()));
                })
                .response
                .interact(Sense::hover());
            if resp.hovered() {
                hovered = Some(pi);
            }
        }
        ui.separator();
        ui.horizontal(|ui| {
            let (sw, _) = ui.allocate_exact_size(vec2(10.0, 10.0), Sense::hover());
            ui.painter().circle_filled(sw.center(), 4.5, theme::hub());
            ui.label("hub");
        });
        ui.horizontal(|ui| {
            let (sw, _) = ui.allocate_exact_size(vec2(10.0, 10.0), Sense::hover());
            ui.painter().rect_stroke(sw, 0.0, Stroke::new(2.0, theme::hub()), egui::StrokeKind::Inside);
            ui.label("checkpoint");
        });
    });
    hovered
}

/// Half an ellipse from x1 to x2 above the axis, as a polyline. Its height grows with the span
/// it jumps (sub-linearly), so long-range edges use the height of the canvas.
pub(super) fn arc(x1: f32, x2: f32, y: f32, max_h: f32, width: f32) -> Vec<Pos2> {
    let rx = (x2 - x1) / 2.0;
    let ry = max_h.max(10.0) * ((x2 - x1).abs() / width.max(1.0)).clamp(0.0, 1.0).powf(0.6);
    let cx = x1 + rx;
    // About one segment every 6 px of the arc's length: a canvas-wide arc stays round, and the
    // steps view's many small arcs stay cheap.
    let steps = ((std::f32::consts::FRAC_PI_2 * (rx.abs() + ry) / 6.0) as usize).clamp(12, 96);
    (0..=steps)
        .map(|s| {
            let t = std::f32::consts::PI * (1.0 - s as f32 / steps as f32);
            pos2(cx + rx * t.cos(), y - ry * t.sin())
        })
        .collect()
}
