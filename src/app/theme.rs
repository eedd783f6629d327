//! Colours of the app, per theme, and the colour-map legend every heat map carries.

use crate::render::colormap;
use egui::{Color32, Rect, Stroke, StrokeKind, Ui, pos2, vec2};

pub fn rgb(c: [u8; 3]) -> Color32 {
    Color32::from_rgb(c[0], c[1], c[2])
}

/// Inferno-like map for dark backgrounds: low values sink into the background.
const DARK: [[u8; 3]; 7] = [
    [0x22, 0x22, 0x26],
    [0x3b, 0x0f, 0x70],
    [0x8c, 0x29, 0x81],
    [0xde, 0x49, 0x68],
    [0xfe, 0x9f, 0x6d],
    [0xfc, 0xe6, 0x9c],
    [0xff, 0xff, 0xe0],
];

pub fn heat(t: f64, dark: bool) -> Color32 {
    if !dark {
        return rgb(colormap::heat(t));
    }
    rgb(colormap::interpolate(&DARK, t))
}

pub fn ink_on(bg: Color32) -> Color32 {
    rgb(colormap::ink_on([bg.r(), bg.g(), bg.b()]))
}

pub fn question() -> Color32 {
    rgb([0x4a, 0x8c, 0xff])
}
pub fn answer() -> Color32 {
    rgb([0x2e, 0xb8, 0x5c])
}
pub fn hub() -> Color32 {
    rgb([0xb0, 0x5c, 0xe6])
}
pub fn credit() -> Color32 {
    rgb(colormap::CREDIT)
}
pub fn changed() -> Color32 {
    rgb([0x00, 0xc8, 0xd2])
}
pub fn path(i: usize) -> Color32 {
    rgb(colormap::CATEGORICAL[i % colormap::CATEGORICAL.len()])
}

/// A horizontal colour bar with its two ends labelled.
pub fn legend(ui: &mut Ui, label: &str, lo: &str, hi: &str, dark: bool) {
    let ramp = vec2(120.0, 12.0);
    let parts = [text_width(ui, label, egui::TextStyle::Body), text_width(ui, lo, egui::TextStyle::Small), ramp.x, text_width(ui, hi, egui::TextStyle::Small)];
    in_one_piece(ui, &parts, |ui| {
        if !label.is_empty() {
            ui.label(label);
        }
        ui.small(lo);
        let (rect, _) = ui.allocate_exact_size(ramp, egui::Sense::hover());
        let steps = 40;
        for s in 0..steps {
            let x0 = rect.left() + rect.width() * s as f32 / steps as f32;
            let r = Rect::from_min_max(pos2(x0, rect.top()), pos2(x0 + rect.width() / steps as f32 + 0.5, rect.bottom()));
            ui.painter().rect_filled(r, 0.0, heat(s as f64 / (steps - 1) as f64, dark));
        }
        ui.painter().rect_stroke(rect, 0.0, Stroke::new(1.0, ui.visuals().weak_text_color()), StrokeKind::Outside);
        ui.small(hi);
    });
}

/// Lays out left to right, in one piece as wide as `parts` (widths, a zero one left out) and the
/// spacing between them: a wrapped row moves it whole to the next line instead of running it
/// past the view's edge.
fn in_one_piece(ui: &mut Ui, parts: &[f32], add: impl FnOnce(&mut Ui)) {
    let gap = ui.spacing().item_spacing.x;
    let width = parts.iter().filter(|&&w| w > 0.0).map(|w| w + gap).sum::<f32>() - gap;
    let size = vec2(width.max(0.0), ui.spacing().interact_size.y);
    ui.allocate_ui_with_layout(size, egui::Layout::left_to_right(egui::Align::Center), add);
}

/// How wide `text` is written in `style`.
fn text_width(ui: &Ui, text: &str, style: egui::TextStyle) -> f32 {
    if text.is_empty() {
        return 0.0;
    }
    ui.painter().layout_no_wrap(text.to_owned(), style.resolve(ui.style()), Color32::PLACEHOLDER).size().x
}

/// The marks the text view draws, each with its swatch.
pub fn marks_legend(ui: &mut Ui) {
    let swatch = |ui: &mut Ui, label: &str, draw: &dyn Fn(&egui::Painter, Rect) -> egui::layers::ShapeIdx| {
        in_one_piece(ui, &[18.0, text_width(ui, label, egui::TextStyle::Small)], |ui| {
            let (r, _) = ui.allocate_exact_size(vec2(18.0, 12.0), egui::Sense::hover());
            draw(ui.painter(), r);
            ui.small(label);
        });
    };
    ui.add_space(12.0);
    swatch(ui, "credit γ > 1", &|p, r| {
        p.rect_filled(Rect::from_min_max(pos2(r.left(), r.bottom() - 3.0), r.right_bottom()), 0.0, credit())
    });
    swatch(ui, "question", &|p, r| p.rect_stroke(r, 2.0, Stroke::new(1.5, question()), StrokeKind::Inside));
    swatch(ui, "answer", &|p, r| p.rect_stroke(r, 2.0, Stroke::new(1.5, answer()), StrokeKind::Inside));
    swatch(ui, "hub", &|p, r| p.rect_stroke(r, 2.0, Stroke::new(2.0, hub()), StrokeKind::Inside));
    swatch(ui, "checkpoint", &|p, r| p.rect_stroke(r, 0.0, Stroke::new(1.5, hub()), StrokeKind::Inside));
}
