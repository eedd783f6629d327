//! The whole trace in a column beside the text, for a trace longer than the screen: each pixel
//! row is the hottest token of the lines it covers, the hubs and checkpoints, search hits and the
//! selection are ticked, and the lines on screen are framed. A click or a drag there scrolls the
//! text to that place, so the few places where an 8k-token trace's credit lies are found at a
//! glance instead of by scrolling through 800 lines.

use super::Marks;
use crate::app::theme;
use crate::flow::FlowResult;
use crate::render::layout::Cell;
use crate::span::Spans;
use egui::{Color32, Rect, Sense, Stroke, StrokeKind, Ui, pos2, vec2};

pub const WIDTH: f32 = 18.0;

/// What a line holds, for its pixel rows in the map.
#[derive(Clone, Copy, Default)]
struct Line {
    /// The hottest token's heat in [0, 1]; none where the line is all prompt.
    heat: Option<f64>,
    role: bool,
    hit: bool,
    selected: bool,
}

/// The map of `lines` laid-out lines (`cells` in order), `shown` the fraction of them on screen;
/// where the user clicked or dragged, as the fraction of the trace to centre on.
#[allow(clippy::too_many_arguments)]
pub fn show(ui: &mut Ui, height: f32, cells: &[Cell], lines: usize, heat: &[f64], spans: Spans, r: &FlowResult, marks: &Marks, shown: (f32, f32)) -> Option<f32> {
    let (rect, resp) = ui.allocate_exact_size(vec2(WIDTH, height), Sense::click_and_drag());
    resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::ScrollBar, true, "trace map"));
    let per_line = summarise(cells, lines, heat, spans, r, marks);
    let painter = ui.painter_at(rect);
    let dark = ui.visuals().dark_mode;
    painter.rect_filled(rect, 0.0, ui.visuals().extreme_bg_color);
    let rows = rect.height().floor().max(1.0) as usize;
    for y in 0..rows {
        let Some(covered) = per_line.get(lines_at(y, rows, lines)) else { continue };
        let fold = covered.iter().fold(Line::default(), |s, l| Line {
            heat: match (s.heat, l.heat) {
                (Some(x), Some(h)) => Some(x.max(h)),
                (x, h) => x.or(h),
            },
            role: s.role || l.role,
            hit: s.hit || l.hit,
            selected: s.selected || l.selected,
        });
        let top = rect.top() + y as f32;
        let row = |x0: f32, x1: f32| Rect::from_min_max(pos2(rect.left() + x0, top), pos2(rect.left() + x1, top + 1.0));
        if let Some(h) = fold.heat {
            painter.rect_filled(row(4.0, WIDTH - 4.0), 0.0, theme::heat(h, dark));
        }
        if fold.role {
            painter.rect_filled(row(0.0, 3.0), 0.0, theme::hub());
        }
        if fold.hit {
            painter.rect_filled(row(WIDTH - 3.0, WIDTH), 0.0, Color32::YELLOW);
        }
        if fold.selected {
            painter.rect_filled(row(0.0, WIDTH).expand2(vec2(0.0, 0.5)), 0.0, ui.visuals().strong_text_color());
        }
    }
    if let Some(p) = resp.hover_pos() {
        let y = ((p.y - rect.top()).max(0.0) as usize).min(rows - 1);
        resp.clone().on_hover_ui_at_pointer(|ui| hover(ui, cells, lines_at(y, rows, lines), heat));
    }
    let (from, to) = shown;
    let frame = Rect::from_min_max(pos2(rect.left(), rect.top() + from * rect.height()), pos2(rect.right(), rect.top() + to * rect.height()));
    painter.rect_stroke(frame, 1.0, Stroke::new(1.5, ui.visuals().strong_text_color()), StrokeKind::Inside);
    if resp.clicked() || resp.dragged() {
        let y = resp.interact_pointer_pos()?.y;
        return Some(((y - rect.top()) / rect.height()).clamp(0.0, 1.0));
    }
    None
}

/// The lines pixel row `y` of `rows` covers: at least one, so where the lines are fewer than
/// the rows each stretches over several.
fn lines_at(y: usize, rows: usize, lines: usize) -> std::ops::Range<usize> {
    let a = y * lines / rows;
    a..((y + 1) * lines / rows).max(a + 1).min(lines)
}

/// Each line's hottest token and marks: one pass over the tokens for the heat, then each list of
/// marked tokens to its lines (`cells` holds one cell per token, in order), so a 32k-token frame
/// does not look every token up in every list.
fn summarise(cells: &[Cell], lines: usize, heat: &[f64], spans: Spans, r: &FlowResult, marks: &Marks) -> Vec<Line> {
    let mut out = vec![Line::default(); lines];
    for cell in cells {
        let k = cell.index;
        if !super::text::in_prompt(spans, k) {
            let line = &mut out[cell.line];
            line.heat = Some(line.heat.map_or(heat[k], |h| h.max(heat[k])));
        }
    }
    let line_of = |k: usize| cells.get(k).map(|c| c.line);
    for l in r.hubs.iter().chain(&r.checkpoints).filter_map(|&k| line_of(k)) {
        out[l].role = true;
    }
    for l in marks.hits.iter().filter_map(|&k| line_of(k)) {
        out[l].hit = true;
    }
    let selected = marks.range.map_or(marks.selected.map(|k| k..k + 1), |(a, b)| Some(a..b + 1));
    for l in selected.into_iter().flatten().filter_map(line_of) {
        out[l].selected = true;
    }
    out
}

/// The lines under the pointer: their tokens and the hottest of them.
fn hover(ui: &mut Ui, cells: &[Cell], lines: std::ops::Range<usize>, heat: &[f64]) {
    let from = cells.partition_point(|c| c.line < lines.start);
    let to = cells.partition_point(|c| c.line < lines.end);
    let Some(hottest) = cells[from..to].iter().max_by(|x, y| heat[x.index].total_cmp(&heat[y.index])) else { return };
    ui.label(format!("tokens #{}–#{}", cells[from].index, cells[to - 1].index));
    ui.small(format!("hottest: #{} {:?}; click to go there", hottest.index, hottest.text.trim()));
}
