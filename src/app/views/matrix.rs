//! The aggregated attention (or W', or edge flow φ, or one layer and head) as a heat map that
//! zooms and pans, with the backbone drawn over it. Large matrices are reduced to a texture of at
//! most `MAX_TEXTURE` pixels a side, each pixel the largest entry of its block, so a lone strong
//! edge never disappears when zoomed out. Zoomed in on a long trace, the window shown is reduced
//! again on its own (a detail texture, once the view is still), down to one pixel per token: the
//! overview of a 32k-token trace has 43 tokens a pixel, the detail of a 768-token window one.

use super::Marks;
use crate::app::command::Command;
use crate::app::document::Analysis;
use crate::app::theme;
use crate::flow::conserve::{conserved, conserves, edge_flow};
use crate::trace::Trace;
use egui::{Color32, ColorImage, Pos2, Rect, Sense, Stroke, TextureHandle, TextureOptions, Ui, pos2, vec2};

pub const MAX_TEXTURE: usize = 768;
/// The widest window (in tokens) that gets a detail texture: reducing it reads at most this
/// squared entries on the UI thread (4 M, a few ms), and wider windows gain little over the overview.
pub const DETAIL_MAX: usize = 2048;

/// A square window of the matrix in tokens: columns (keys) from `x0`, rows (queries) from `y0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub x0: usize,
    pub y0: usize,
    pub w: usize,
}

impl Window {
    pub fn all(n: usize) -> Self {
        Window { x0: 0, y0: 0, w: n }
    }

    /// The tokens a view (fractions of the matrix) shows, rounded out to whole tokens.
    pub fn of(view: Rect, n: usize) -> Self {
        let nf = n as f32;
        let w = ((view.width() * nf).ceil() as usize + 1).clamp(1, n);
        let x0 = ((view.left() * nf).floor().max(0.0) as usize).min(n - w);
        let y0 = ((view.top() * nf).floor().max(0.0) as usize).min(n - w);
        Window { x0, y0, w }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// The aggregated M.
    Aggregated,
    /// W' = the conserved kernel.
    Conserved,
    /// φ(i,k) = f(i)·W'[i,k].
    EdgeFlow,
    /// One layer and head of the file.
    Slab(usize, usize),
}

pub struct MatrixState {
    pub layer: Layer,
    /// Where the last texture was reduced: the GPU adapter, or the CPU and why.
    pub reduced_on: String,
    /// Visible window in matrix coordinates (keys on x, queries on y), as fractions [0,1].
    pub view: Rect,
    /// Colours on a logarithmic scale (the top [`LOG_DECADES`] decades of the cells) instead of
    /// the square root of each cell's share of the top.
    pub log_scale: bool,
    texture: Option<(TextureKey, TextureHandle, f64)>,
    /// The window shown at a finer resolution than the overview has, when zoomed in.
    detail: Option<Detail>,
}

/// The analysis generation, the matrix shown, the theme, the log scale.
type TextureKey = (u64, Layer, bool, bool);

/// How many decades below the top of the scale the log scale shows; weaker cells take its
/// bottom colour. Attention in a long trace spans many decades (a row of 8k tokens averages
/// 1.2e-4 a cell, its sink and its neighbours near 1), where the square-root scale leaves all but
/// the strongest cells dark.
pub const LOG_DECADES: f64 = 4.0;

/// A cell's colour: `v` against the top of the scale `max`.
pub fn cell_colour(v: f32, max: f32, log_scale: bool, dark: bool) -> Color32 {
    let t = if !log_scale {
        ((v / max) as f64).sqrt()
    } else if v > 0.0 {
        ((v / max) as f64).log10() / LOG_DECADES + 1.0
    } else {
        0.0
    };
    theme::heat(t.clamp(0.0, 1.0), dark)
}

/// A window's own texture: its pixels a side, and the top of its colour scale (a zoomed window of
/// a long trace is often far below the matrix's values and would be black on the matrix's scale).
struct Detail {
    key: TextureKey,
    window: Window,
    side: usize,
    max: f32,
    texture: TextureHandle,
}

impl Default for MatrixState {
    fn default() -> Self {
        MatrixState { layer: Layer::Aggregated, reduced_on: String::new(), view: Rect::from_min_max(pos2(0.0, 0.0), pos2(1.0, 1.0)), log_scale: false, texture: None, detail: None }
    }
}

/// The per-row and per-column factors that turn M into the chosen matrix (None: not derived
/// from M, i.e. a raw layer and head of the file).
pub fn scale_for(a: &Analysis, layer: Layer) -> Option<crate::gpu::Scale> {
    let r = &a.result;
    let n = r.reach.len();
    let conserving = |i: usize| crate::flow::conserve::conserves(i, &r.reach, r.spans.answer);
    match layer {
        Layer::Aggregated => Some(crate::gpu::Scale::ones(n)),
        Layer::Conserved => Some(crate::gpu::Scale {
            row: r.reach.iter().map(|&h| h as f32).collect(),
            col: (0..n).map(|i| if conserving(i) { (1.0 / r.reach[i]) as f32 } else { 0.0 }).collect(),
        }),
        Layer::EdgeFlow => Some(crate::gpu::Scale {
            row: r.reach.iter().map(|&h| h as f32).collect(),
            col: (0..n).map(|i| if conserving(i) { (r.flow[i] / r.reach[i]) as f32 } else { 0.0 }).collect(),
        }),
        Layer::Slab(..) => None,
    }
}

/// The texture's values: on the GPU when there is one and the matrix derives from M, else on
/// the CPU. Returns the values and where they were computed.
pub fn reduce(trace: &Trace, a: &Analysis, layer: Layer, s: usize) -> (Vec<f32>, String) {
    if let Some(scale) = scale_for(a, layer) {
        match crate::gpu::shared().and_then(|g| g.scoped("wgpu downsample", || g.downsample(&a.matrix, &scale, s)).map(|v| (v, g.adapter.clone()))) {
            Ok((v, adapter)) => return (v, format!("reduced on {adapter}")),
            Err(e) => return (downsample(trace, a, layer, s), format!("reduced on the CPU ({e})")),
        }
    }
    (downsample(trace, a, layer, s), "reduced on the CPU".into())
}

/// Downsampled values (row-major, s×s) of the chosen matrix; block maxima. The CPU reference.
pub fn downsample(trace: &Trace, a: &Analysis, layer: Layer, s: usize) -> Vec<f32> {
    downsample_window(trace, a, layer, Window::all(trace.n()), s)
}

/// Downsampled values (row-major, s×s) of a window of the chosen matrix; block maxima. With
/// `s == win.w` each value is one entry. Token t of the window belongs to block (t − start)·s/w;
/// output rows are made in parallel (the overview of a 32k-token trace reads half a billion
/// entries). A row of blocks first takes each column's largest entry over its rows, one row after
/// another, and then each block's largest over its columns: the first is a vector max over
/// contiguous memory, where a fold per block and row had been a chain of dependent maxima (at 8k
/// tokens, blocks of 11 columns, 35 ms for the overview on two cores).
pub fn downsample_window(trace: &Trace, a: &Analysis, layer: Layer, win: Window, s: usize) -> Vec<f32> {
    use rayon::prelude::*;
    let n = trace.n();
    let Window { x0, y0, w } = win;
    let s = s.min(w).max(1);
    // The first token of each block, as offsets into the window: ceil(b·w/s).
    let starts: Vec<usize> = (0..=s).map(|b| (b * w).div_ceil(s)).collect();
    let r = &a.result;
    let (h, f, answer) = (&r.reach, &r.flow, r.spans.answer);
    let mut out = vec![0f32; s * s];
    out.par_chunks_mut(s).enumerate().for_each(|(y, cells)| {
        let mut slab = if matches!(layer, Layer::Slab(..)) { vec![0f32; n] } else { Vec::new() };
        // Each column's largest entry over the block row's rows, from 0 (a cell past a row's
        // diagonal stays 0).
        let mut top = vec![0f32; w];
        for k in y0 + starts[y]..(y0 + starts[y + 1]).min(n) {
            let (row, upto): (&[f32], usize) = match layer {
                Layer::Slab(l, hd) => {
                    trace.attention.row(l, hd, k, &mut slab);
                    (&slab, k + 1)
                }
                _ => (a.matrix.row(k), k),
            };
            let end = upto.min(x0 + w);
            if end <= x0 {
                continue;
            }
            let (top, entries) = (&mut top[..end - x0], &row[x0..end]);
            let scaled = |top: &mut [f32], weight: &dyn Fn(usize) -> f64| {
                for ((t, &m), i) in top.iter_mut().zip(entries).zip(x0..) {
                    *t = larger(*t, if conserves(i, h, answer) { (weight(i) * (m as f64 * h[k] / h[i])) as f32 } else { 0.0 });
                }
            };
            match layer {
                Layer::Aggregated | Layer::Slab(..) => top.iter_mut().zip(entries).for_each(|(t, &m)| *t = larger(*t, m)),
                Layer::Conserved => scaled(top, &|_| 1.0),
                Layer::EdgeFlow => scaled(top, &|i| f[i]),
            }
        }
        for (x, cell) in cells.iter_mut().enumerate() {
            *cell = top[starts[x]..starts[x + 1]].iter().copied().fold(0.0, larger);
        }
    });
    out
}

/// The larger of the two, `a` where `b` is NaN (as `f32::max` has it against a number): written
/// as x86's max instruction reads it, so that a loop of them over a slice becomes vector maxima.
#[inline]
fn larger(a: f32, b: f32) -> f32 {
    if b > a { b } else { a }
}

pub fn show(ui: &mut Ui, trace: &Trace, a: &Analysis, marks: &Marks, state: &mut MatrixState) -> Option<Command> {
    let n = trace.n();
    header(ui, trace, state);
    if !state.reduced_on.is_empty() {
        ui.small(format!("{}×{} tokens, {}; {}", n, n, state.reduced_on, state.resolution_note(n)));
    }
    let texture = texture(ui, trace, a, state);
    let side = ui.available_width().min(ui.available_height()).max(100.0);
    let (resp, painter) = ui.allocate_painter(vec2(side, side), Sense::click_and_drag());
    let moving = navigate(ui, &resp, n, &mut state.view);
    painter.image(texture, resp.rect, state.view, Color32::WHITE);
    detail(ui, &painter, resp.rect, trace, a, state, moving);
    overlay(ui, &painter, resp.rect, n, a, marks, state.view);
    hover(&resp, trace, a, state)
}

/// The matrix picker, the zoom reset and the legend.
fn header(ui: &mut Ui, trace: &Trace, state: &mut MatrixState) {
    let dark = ui.visuals().dark_mode;
    // Wrapped, so a narrow view shows the whole legend instead of cutting it off.
    ui.horizontal_wrapped(|ui| {
        egui::ComboBox::from_label("matrix").selected_text(layer_name(state.layer)).show_ui(ui, |ui| {
            for l in [Layer::Aggregated, Layer::Conserved, Layer::EdgeFlow] {
                ui.selectable_value(&mut state.layer, l, layer_name(l));
            }
            let att = &trace.attention;
            if att.slabs() > 1 {
                ui.separator();
                let original = trace.original_layers();
                for l in 0..att.layers {
                    for h in 0..att.heads {
                        ui.selectable_value(&mut state.layer, Layer::Slab(l, h), layer_name_of(&original, att.has_head_axis, l, h));
                    }
                }
            }
        });
        if ui.button("reset zoom").clicked() {
            state.view = Rect::from_min_max(pos2(0.0, 0.0), pos2(1.0, 1.0));
        }
        ui.checkbox(&mut state.log_scale, "log").on_hover_text(format!("colours on a log scale over the top {LOG_DECADES} decades"));
        let bottom = if state.log_scale { format!("10^-{LOG_DECADES} × top") } else { "0".into() };
        theme::legend(ui, "", &bottom, "99.5th percentile and above", dark);
        ui.small("rows: query token ↓   columns: key token →   circles: backbone edges");
    });
}

/// The downsampled picture of the chosen matrix, made again only when the analysis, the matrix
/// or the theme changed.
fn texture(ui: &Ui, trace: &Trace, a: &Analysis, state: &mut MatrixState) -> egui::TextureId {
    let dark = ui.visuals().dark_mode;
    let key: TextureKey = (a.generation, state.layer, dark, state.log_scale);
    if state.texture.as_ref().is_none_or(|t| t.0 != key) {
        let s = MAX_TEXTURE.min(trace.n());
        let (vals, on) = reduce(trace, a, state.layer, s);
        state.reduced_on = on;
        let max = top_of_scale(&vals);
        let pixels: Vec<Color32> = vals.iter().map(|&v| cell_colour(v, max, key.3, dark)).collect();
        let tex = ui.ctx().load_texture("matrix", ColorImage::new([s, s], pixels), TextureOptions::NEAREST);
        state.texture = Some((key, tex, max as f64));
    }
    state.texture.as_ref().expect("just made").1.id()
}

/// The value the colours top out at: the 99.5th percentile of the cells that are not zero (of up
/// to 65 536 of them, spread by the golden ratio, which no row length lines up with as a stride
/// can), so that an attention sink's column, hundreds of times the rest of its rows, does not
/// leave every other cell black; the cells above it take the top colour (the tooltip has each
/// cell's value).
pub fn top_of_scale(vals: &[f32]) -> f32 {
    const SAMPLES: usize = 65_536;
    let mut sample: Vec<f32> = if vals.len() <= SAMPLES {
        vals.iter().copied().filter(|&v| v > 0.0).collect()
    } else {
        let golden = 0.618_033_988_749_894_9_f64;
        (0..SAMPLES).map(|j| vals[((j as f64 * golden).fract() * vals.len() as f64) as usize]).filter(|&v| v > 0.0).collect()
    };
    if sample.is_empty() {
        return 1e-30;
    }
    let k = (sample.len() - 1) * 995 / 1000;
    let (_, top, _) = sample.select_nth_unstable_by(k, f32::total_cmp);
    top.max(1e-30)
}

/// The window shown, again at up to one pixel per token, over the overview. It is reduced once
/// the view is still (while the user drags or scrolls, the last detail moves with the overview),
/// and only where the overview is coarser than the window needs.
fn detail(ui: &Ui, painter: &egui::Painter, rect: Rect, trace: &Trace, a: &Analysis, state: &mut MatrixState, moving: bool) {
    let n = trace.n();
    let win = Window::of(state.view, n);
    let key: TextureKey = (a.generation, state.layer, ui.visuals().dark_mode, state.log_scale);
    let overview_coarser = n > MAX_TEXTURE && win.w * MAX_TEXTURE.min(n) < n * MAX_TEXTURE.min(win.w);
    if !overview_coarser || win.w > DETAIL_MAX {
        state.detail = None;
        return;
    }
    if state.detail.as_ref().is_some_and(|d| d.key != key) {
        state.detail = None;
    }
    if moving {
        ui.ctx().request_repaint();
    } else if state.detail.as_ref().is_none_or(|d| d.window != win) {
        let side = MAX_TEXTURE.min(win.w);
        let vals = downsample_window(trace, a, state.layer, win, side);
        let max = top_of_scale(&vals);
        let pixels: Vec<Color32> = vals.iter().map(|&v| cell_colour(v, max, key.3, key.2)).collect();
        let texture = ui.ctx().load_texture("matrix-detail", ColorImage::new([side, side], pixels), TextureOptions::NEAREST);
        state.detail = Some(Detail { key, window: win, side, max, texture });
        ui.ctx().request_repaint(); // the line above the matrix says what the detail shows
    }
    let Some(Detail { window: w, texture: tex, .. }) = &state.detail else { return };
    let v = state.view;
    let to_screen = |tx: usize, ty: usize| {
        let (fx, fy) = (tx as f32 / n as f32, ty as f32 / n as f32);
        pos2(rect.left() + (fx - v.left()) / v.width() * rect.width(), rect.top() + (fy - v.top()) / v.height() * rect.height())
    };
    let at = Rect::from_min_max(to_screen(w.x0, w.y0), to_screen(w.x0 + w.w, w.y0 + w.w));
    painter.with_clip_rect(rect).image(tex.id(), at, Rect::from_min_max(pos2(0.0, 0.0), pos2(1.0, 1.0)), Color32::WHITE);
}

impl MatrixState {
    /// The window shown in detail and its tokens per pixel (1: every entry its own pixel).
    pub fn detail(&self) -> Option<(Window, f32)> {
        self.detail.as_ref().map(|d| (d.window, d.window.w as f32 / d.side as f32))
    }

    /// What the picture shows, for the line above the matrix.
    fn resolution_note(&self, n: usize) -> String {
        let max = self.detail.as_ref().map_or(0.0, |d| d.max);
        let overall = self.texture.as_ref().map_or(0.0, |t| t.2);
        let scale = format!("colours top out at this window's 99.5th percentile {max:.3e} (the matrix's: {overall:.3e})");
        match self.detail() {
            Some((w, per)) if per <= 1.0 => format!("window {}×{} tokens from query {}, key {} at full resolution, {scale}", w.w, w.w, w.y0, w.x0),
            Some((w, per)) => format!("window {}×{} tokens at {per:.1} tokens a pixel (zoom in for full resolution), {scale}", w.w, w.w),
            None if n > MAX_TEXTURE => format!("{:.1} tokens a pixel; zoom in for full resolution", n as f32 / MAX_TEXTURE as f32),
            None => "full resolution".into(),
        }
    }
}

/// Zoom with the wheel around the pointer, pan by dragging; the window stays inside the matrix.
/// True while the view is moving.
fn navigate(ui: &Ui, resp: &egui::Response, n: usize, view: &mut Rect) -> bool {
    let rect = resp.rect;
    let v = *view;
    if let Some(p) = resp.hover_pos() {
        let scroll = ui.input(|i| i.smooth_scroll_delta.y);
        if scroll != 0.0 {
            let factor = (-scroll * 0.003).exp().clamp(0.5, 2.0);
            let at = pos2(v.left() + (p.x - rect.left()) / rect.width() * v.width(), v.top() + (p.y - rect.top()) / rect.height() * v.height());
            let w = (v.width() * factor).clamp(4.0 / n as f32, 1.0);
            let f = w / v.width();
            *view = Rect::from_min_size(pos2(at.x - (at.x - v.left()) * f, at.y - (at.y - v.top()) * f), vec2(w, w));
        }
    }
    if resp.dragged() {
        let d = resp.drag_delta();
        *view = view.translate(vec2(-d.x / rect.width() * view.width(), -d.y / rect.height() * view.height()));
    }
    let w = view.width().min(1.0);
    *view = Rect::from_min_size(pos2(view.left().clamp(0.0, 1.0 - w), view.top().clamp(0.0, 1.0 - w)), vec2(w, w));
    *view != v || resp.dragged()
}

/// The backbone over the matrix (each edge i→k is the entry at row k, column i) and the
/// selected token's row.
fn overlay(ui: &Ui, painter: &egui::Painter, rect: Rect, n: usize, a: &Analysis, marks: &Marks, view: Rect) {
    let to_screen = |i: usize, k: usize| -> Pos2 {
        let (x, y) = ((i as f32 + 0.5) / n as f32, (k as f32 + 0.5) / n as f32);
        pos2(rect.left() + (x - view.left()) / view.width() * rect.width(), rect.top() + (y - view.top()) / view.height() * rect.height())
    };
    for (pi, path) in a.result.backbone.iter().enumerate() {
        let pts: Vec<Pos2> = path.tokens.windows(2).map(|e| to_screen(e[0], e[1])).collect();
        for p in &pts {
            if rect.contains(*p) {
                painter.circle_stroke(*p, 3.0, Stroke::new(1.5, theme::path(pi)));
            }
        }
        painter.add(egui::Shape::line(pts, Stroke::new(1.0, theme::path(pi).gamma_multiply(0.6))));
    }
    if let Some(k) = marks.selected {
        let (a0, a1) = (to_screen(0, k), to_screen(n - 1, k));
        painter.line_segment([pos2(rect.left(), a0.y), pos2(rect.right(), a1.y)], Stroke::new(1.0, ui.visuals().strong_text_color().gamma_multiply(0.5)));
    }
}

/// The cell under the pointer in a tooltip; a click selects its query token.
fn hover(resp: &egui::Response, trace: &Trace, a: &Analysis, state: &MatrixState) -> Option<Command> {
    let (rect, view, n) = (resp.rect, state.view, trace.n());
    let p = resp.hover_pos()?;
    let i = ((view.left() + (p.x - rect.left()) / rect.width() * view.width()) * n as f32) as usize;
    let k = ((view.top() + (p.y - rect.top()) / rect.height() * view.height()) * n as f32) as usize;
    if i >= n || k >= n {
        return None;
    }
    let r = &a.result;
    let value = match state.layer {
        Layer::Aggregated => a.matrix.get(k, i) as f64,
        Layer::Conserved => conserved(&a.matrix, &r.reach, r.spans.answer, i, k),
        Layer::EdgeFlow => edge_flow(&a.matrix, &r.reach, &r.flow, r.spans.answer, i, k),
        Layer::Slab(l, h) => {
            let mut row = vec![0f32; n];
            trace.attention.row(l, h, k, &mut row);
            row[i] as f64
        }
    };
    let resp = resp.clone().on_hover_text_at_pointer(format!("query #{k} {:?}\nkey #{i} {:?}\n{}: {value:.4e}", trace.tokens[k], trace.tokens[i], layer_name(state.layer)));
    resp.clicked().then_some(Command::Select { token: k, extend: false })
}

fn layer_name(l: Layer) -> String {
    match l {
        Layer::Aggregated => "attention M (aggregated)".into(),
        Layer::Conserved => "conserved W'".into(),
        Layer::EdgeFlow => "edge flow φ".into(),
        Layer::Slab(l, h) => format!("layer slot {l}, head {h}"),
    }
}

fn layer_name_of(original: &[usize], heads: bool, l: usize, h: usize) -> String {
    if heads { format!("layer {}, head {h}", original[l]) } else { format!("layer {}", original[l]) }
}

#[cfg(test)]
mod tests {
    use super::{LOG_DECADES, cell_colour, top_of_scale};
    use crate::app::theme;

    /// The log scale spreads the decades below the top evenly; the default keeps the square root.
    #[test]
    fn the_log_scale_spreads_the_decades_below_the_top() {
        let top = 0.02f32;
        for dark in [false, true] {
            assert_eq!(cell_colour(top, top, true, dark), theme::heat(1.0, dark));
            assert_eq!(cell_colour(5.0 * top, top, true, dark), theme::heat(1.0, dark), "above the top: the top colour");
            assert_eq!(cell_colour(top * 10f32.powi(-(LOG_DECADES as i32) / 2), top, true, dark), theme::heat(0.5, dark));
            assert_eq!(cell_colour(top * 1e-6, top, true, dark), theme::heat(0.0, dark), "below the decades shown: the bottom");
            assert_eq!(cell_colour(0.0, top, true, dark), theme::heat(0.0, dark));
            assert_eq!(cell_colour(top / 4.0, top, false, dark), theme::heat(0.5, dark), "the square root of a quarter");
        }
        // A thousandth of the top is dark on the square-root scale and a quarter of the way up on the log one.
        let (sqrt, log) = (cell_colour(top * 1e-3, top, false, false), cell_colour(top * 1e-3, top, true, false));
        assert_eq!((sqrt, log), (theme::heat((1e-3f64).sqrt(), false), theme::heat(0.25, false)));
    }

    /// A sink's column, hundreds of times the other cells, does not set the scale; the scale is
    /// near the top of the others.
    #[test]
    fn an_attention_sink_does_not_set_the_colour_scale() {
        let s = 1024;
        let vals: Vec<f32> = (0..s * s).map(|i| if i % s == 0 { 0.9 } else if i % s <= i / s { 1e-3 * (1 + i % 7) as f32 } else { 0.0 }).collect();
        let top = top_of_scale(&vals);
        assert!((6e-3..=7e-3).contains(&top), "{top}");
        assert_eq!(top_of_scale(&[0.0; 16]), 1e-30);
    }
}
