//! The trace as wrapped text, one background per token by the chosen score. Only the lines on
//! screen are laid out into shapes, so an 8k-token trace scrolls at full frame rate.

use super::{Marks, trace_map};
use crate::app::command::Command;
use crate::app::document::{Analysis, Document, Score, normalised};
use crate::app::theme;
use crate::render::layout::{Cell, wrap};
use crate::trace::Trace;
use egui::{Align2, FontId, Rect, Sense, Stroke, StrokeKind, Ui, pos2, vec2};

/// Long traces need density; a short one (a character-level policy's rollout) reads better large.
pub fn font_size(tokens: usize) -> f32 {
    if tokens <= 400 { 18.0 } else { 13.0 }
}
const ROW_GAP: f32 = 7.0;
/// Between the text's scroll bar and the trace map.
const MAP_GAP: f32 = 4.0;

/// Layout of the last frame, kept until the trace or the width changes.
#[derive(Default)]
pub struct TextState {
    /// The scroll area's id: each text column keeps its own scroll.
    pub id: &'static str,
    key: (usize, usize, usize, usize),
    cells: Vec<Cell>,
    line_starts: Vec<usize>,
    /// Screen rectangles of the tokens drawn last frame (tests click through these).
    pub visible: Vec<(usize, Rect)>,
    /// Scroll so this token is in view on the next frame.
    pub scroll_to: Option<usize>,
    /// Scroll to this offset on the next frame (where the trace map was clicked).
    scroll_offset: Option<f32>,
    /// Whether the trace map is beside the text: the text is taller than the view. Decided on
    /// the layout of the frame before, so the text is not wrapped twice a frame.
    map: bool,
}

impl TextState {
    pub fn named(id: &'static str) -> Self {
        TextState { id, ..Default::default() }
    }

    fn layout(&mut self, text: &[String], doc_id: usize, columns: usize) {
        // (the text's address changes when the document decodes its tokens another way)
        let key = (doc_id, text.len(), columns, text.as_ptr() as usize);
        if key == self.key && !self.cells.is_empty() {
            return;
        }
        self.key = key;
        // (what was on screen was another text, or another wrapping of it)
        self.visible.clear();
        self.cells = wrap(text, columns);
        self.line_starts.clear();
        for (i, c) in self.cells.iter().enumerate() {
            if c.line == self.line_starts.len() {
                self.line_starts.push(i);
            }
        }
    }

    pub fn lines(&self) -> usize {
        self.line_starts.len()
    }

    pub fn rect_of(&self, token: usize) -> Option<Rect> {
        self.visible.iter().find(|(k, _)| *k == token).map(|(_, r)| *r)
    }
}

pub fn show(
    ui: &mut Ui,
    doc_id: usize,
    doc: &Document,
    a: &Analysis,
    score: Score,
    marks: &Marks,
    state: &mut TextState,
) -> Option<Command> {
    let trace = &*doc.trace;
    let dark = ui.visuals().dark_mode;
    let font = FontId::monospace(font_size(trace.n()));
    let cw = ui.ctx().fonts_mut(|f| f.glyph_width(&font, 'M'));
    let row_h = ui.ctx().fonts_mut(|f| f.row_height(&font)) + ROW_GAP;
    // A line's pitch in the scroll area: its height and the spacing egui puts between rows.
    let pitch = row_h + ui.spacing().item_spacing.y;
    let (width, height) = (ui.available_width(), ui.available_height());
    let columns_of = |map: bool| ((width - 16.0 - if map { trace_map::WIDTH + MAP_GAP } else { 0.0 }) / cw).floor().max(16.0) as usize;
    state.layout(&doc.text, doc_id, columns_of(state.map));
    // A narrower text has no fewer lines, so the map, once needed, stays needed at that width.
    let needs_map = state.lines() as f32 * pitch > height;
    if needs_map != state.map {
        state.map = needs_map;
        state.layout(&doc.text, doc_id, columns_of(state.map));
    }
    let columns = columns_of(state.map);
    let values = score.values(trace, a).unwrap_or_else(|| a.result.throughput.clone());
    let norm = normalised(&values, a.plan.spans, score);
    let r = &a.result;
    let mut action = None;
    let mut visible = Vec::new();
    let mut area = egui::ScrollArea::vertical().id_salt(state.id).auto_shrink([false, false]);
    // (a token already on screen, clicked there or jumped to, leaves the text where it is)
    if let Some(t) = state.scroll_to.take()
        && state.rect_of(t).is_none()
        && let Some(cell) = state.cells.get(t) {
            area = area.vertical_scroll_offset((cell.line as f32 - 3.0).max(0.0) * pitch);
        }
    if let Some(offset) = state.scroll_offset.take() {
        area = area.vertical_scroll_offset(offset);
    }
    let spans = a.plan.spans;
    let lines_total = state.lines();
    let draw_rows = |ui: &mut Ui, lines: std::ops::Range<usize>| {
        for line in lines {
            let start = state.line_starts[line];
            let end = state.line_starts.get(line + 1).copied().unwrap_or(state.cells.len());
            let (rect, resp) = ui.allocate_exact_size(vec2(columns as f32 * cw, row_h), Sense::click());
            let painter = ui.painter_at(rect.expand(2.0));
            let mut hovered = None;
            // Boxes first, then the line's text over them: a monospace token's last glyph
            // reaches the edge of its cell, where the next token's outline is drawn.
            let mut texts = Vec::with_capacity(end - start);
            for cell in &state.cells[start..end] {
                let k = cell.index;
                let x = rect.left() + cell.col as f32 * cw;
                let cr = Rect::from_min_size(pos2(x, rect.top() + 2.0), vec2(cell.width as f32 * cw, row_h - 4.0));
                visible.push((k, cr));
                let in_prompt = in_prompt(spans, k);
                let bg = if in_prompt { ui.visuals().faint_bg_color } else { theme::heat(norm[k], dark) };
                painter.rect_filled(cr, 2.0, bg);
                let frame = if spans.question.contains(k) {
                    Some(theme::question())
                } else if spans.answer.contains(k) {
                    Some(theme::answer())
                } else {
                    None
                };
                if let Some(c) = frame {
                    painter.rect_stroke(cr, 2.0, Stroke::new(1.5, c), StrokeKind::Inside);
                }
                if r.hubs.binary_search(&k).is_ok() {
                    painter.rect_stroke(cr.expand(1.0), 2.0, Stroke::new(2.0, theme::hub()), StrokeKind::Outside);
                } else if r.checkpoints.binary_search(&k).is_ok() {
                    painter.rect_stroke(cr.expand(1.0), 0.0, Stroke::new(1.5, theme::hub()), StrokeKind::Outside);
                }
                if r.credit[k] > 1.0 {
                    let bar = Rect::from_min_max(pos2(cr.left(), cr.bottom() - 2.5), cr.right_bottom());
                    painter.rect_filled(bar, 0.0, theme::credit());
                }
                if marks.show_changes && marks.changed.contains(&k) {
                    painter.rect_stroke(cr.expand(2.0), 2.0, Stroke::new(2.0, theme::changed()), StrokeKind::Outside);
                }
                if marks.hits.contains(&k) {
                    painter.rect_stroke(cr.expand(1.5), 2.0, Stroke::new(1.5, egui::Color32::YELLOW), StrokeKind::Outside);
                }
                if marks.selected == Some(k) || marks.in_range(k) {
                    painter.rect_stroke(cr.expand(2.5), 3.0, Stroke::new(2.0, ui.visuals().strong_text_color()), StrokeKind::Outside);
                }
                let ink = if in_prompt { ui.visuals().weak_text_color() } else { theme::ink_on(bg) };
                texts.push((pos2(x, cr.center().y), crate::render::layout::fit(&cell.text, cell.width), ink));
                if resp.hovered() && ui.rect_contains_pointer(cr) {
                    hovered = Some(k);
                }
            }
            for (at, text, ink) in texts {
                painter.text(at, Align2::LEFT_CENTER, text, font.clone(), ink);
            }
            if let Some(k) = hovered {
                let resp = resp.clone().on_hover_ui_at_pointer(|ui| tooltip(ui, trace, &doc.text, a, k));
                if resp.clicked() {
                    let extend = ui.input(|i| i.modifiers.shift);
                    action = Some(Command::Select { token: k, extend });
                }
            }
        }
    };
    if !state.map {
        area.show_rows(ui, row_h, lines_total, draw_rows);
    } else {
        // The text and its scroll bar on the left, the map at the right edge, side by side.
        let full = ui.available_rect_before_wrap();
        let text_rect = Rect::from_min_max(full.min, pos2(full.right() - trace_map::WIDTH - MAP_GAP, full.bottom()));
        let map_rect = Rect::from_min_max(pos2(full.right() - trace_map::WIDTH, full.top()), full.max);
        let out = ui.scope_builder(egui::UiBuilder::new().max_rect(text_rect), |ui| area.show_rows(ui, row_h, lines_total, draw_rows)).inner;
        let (view, offset, content) = (out.inner_rect.height(), out.state.clamped_offset().y, out.content_size.y.max(1.0));
        let shown = (offset / content, ((offset + view) / content).min(1.0));
        let mut map_ui = ui.new_child(egui::UiBuilder::new().max_rect(map_rect));
        let clicked = trace_map::show(&mut map_ui, map_rect.height(), &state.cells, lines_total, &norm, spans, r, marks, shown).map(|at| (at * content - view / 2.0).max(0.0));
        ui.advance_cursor_after_rect(full);
        if let Some(offset) = clicked {
            state.scroll_offset = Some(offset);
            ui.ctx().request_repaint();
        }
    }
    state.visible = visible;
    action
}

/// What token `k` reads as, where that is not what the trace holds: a byte-level piece's text
/// (`"Ġthe"` reads `" the"`), or, for a byte of a character whose first byte another token
/// holds (which shows nothing of its own), that character and where it is shown: a raw `"½"`
/// alone had said nothing of the character it is part of.
pub(crate) fn reads_as(tokens: &[String], text: &[String], k: usize) -> Option<String> {
    let (raw, shown) = (&tokens[k], text.get(k)?);
    if shown == raw {
        return None;
    }
    if shown.is_empty() {
        return Some(match (0..k).rev().find(|&j| !text[j].is_empty()) {
            Some(j) => format!("part of {:?} on #{j}", text[j]),
            None => "nothing".to_owned(),
        });
    }
    Some(format!("{shown:?}"))
}

/// A hovered token's first line: its number, the token the trace holds and what it reads as.
fn token_heading(tokens: &[String], text: &[String], k: usize) -> String {
    match reads_as(tokens, text, k) {
        Some(reads) => format!("#{k} {:?} → {reads}", tokens[k]),
        None => format!("#{k} {:?}", tokens[k]),
    }
}

/// A token of the prompt around the question (a system prompt, a chat template's markers): shown
/// faint, as it is not what the flow is about.
pub(super) fn in_prompt(spans: crate::span::Spans, k: usize) -> bool {
    k < spans.response.start && !spans.question.contains(k)
}

pub fn tooltip(ui: &mut Ui, trace: &Trace, text: &[String], a: &Analysis, k: usize) {
    let r = &a.result;
    ui.label(token_heading(&trace.tokens, text, k));
    ui.small(format!(
        "reach {:.3e}\nflow {}\nthroughput {}\ncredit {:.2}",
        r.reach[k],
        crate::render::share(r.flow[k], 4),
        crate::render::share(r.throughput[k], 4),
        r.credit[k]
    ));
}

#[cfg(test)]
mod tests {
    use super::token_heading;
    use crate::subword::Tokenizer;

    /// A byte-level trace's pieces read as their text; the bytes after a character's first say
    /// which character they belong to and where it is shown; a token that reads as it is stored
    /// is shown once.
    #[test]
    fn a_tokens_heading_says_what_it_reads_as() {
        // 中 is E4 B8 AD: three byte-level pieces, the character shown on the first.
        let tokens: Vec<String> = ["Ġ", "ä", "¸", "Ń", "Ġthe", "x"].map(String::from).to_vec();
        let text = crate::trace::text_of(&tokens, Some(Tokenizer::ByteLevel));
        assert_eq!(text, [" ", "中", "", "", " the", "x"]);
        let heading = |k| token_heading(&tokens, &text, k);
        assert_eq!(heading(1), "#1 \"ä\" → \"中\"");
        assert_eq!(heading(3), "#3 \"Ń\" → part of \"中\" on #1");
        assert_eq!(heading(4), "#4 \"Ġthe\" → \" the\"");
        assert_eq!(heading(5), "#5 \"x\"");
        let orphan = [String::from("¸")];
        assert_eq!(token_heading(&orphan, &[String::new()], 0), "#0 \"¸\" → nothing");
    }
}
