//! The aggregated attention (or W', or edge flow φ, or one layer and head) as a heat map that
//! zooms and pans, with the backbone drawn over it. Large matrices are reduced to a texture of at
//! most `MAX_TEXTURE` pixels a side, each pixel the largest entry of its block, so a lone strong
//! edge never disappears when zoomed out.

use super::Marks;
use crate::app::command::Command;
use crate::app::document::Analysis;
use crate::app::theme;
use crate::flow::conserve::{conserved, edge_flow};
use crate::trace::Trace;
use egui::{Color32, ColorImage, Pos2, Rect, Sense, Stroke, TextureHandle, TextureOptions, Ui, pos2, vec2};

pub const MAX_TEXTURE: usize = 768;

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
    texture: Option<(TextureKey, TextureHandle, f64)>,
}

/// The analysis generation, the matrix shown, the theme.
type TextureKey = (u64, Layer, bool);

impl Default for MatrixState {
    fn default() -> Self {
        MatrixState { layer: Layer::Aggregated, reduced_on: String::new(), view: Rect::from_min_max(pos2(0.0, 0.0), pos2(1.0, 1.0)), texture: None }
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
        match crate::gpu::shared().and_then(|g| g.downsample(&a.matrix, &scale, s).map(|v| (v, g.adapter.clone()))) {
            Ok((v, adapter)) => return (v, format!("reduced on {adapter}")),
            Err(e) => return (downsample(trace, a, layer, s), format!("reduced on the CPU ({e})")),
        }
    }
    (downsample(trace, a, layer, s), "reduced on the CPU".into())
}

/// Downsampled values (row-major, s×s) of the chosen matrix; block maxima. The CPU reference.
pub fn downsample(trace: &Trace, a: &Analysis, layer: Layer, s: usize) -> Vec<f32> {
    let n = trace.n();
    let s = s.min(n).max(1);
    let mut out = vec![0f32; s * s];
    let r = &a.result;
    let mut row = vec![0f32; n];
    for k in 0..n {
        let y = k * s / n;
        match layer {
            Layer::Slab(l, h) => trace.attention.row(l, h, k, &mut row),
            _ => row[..k].copy_from_slice(a.matrix.row(k)),
        }
        let upto = if matches!(layer, Layer::Slab(..)) { k + 1 } else { k };
        for i in 0..upto {
            let v = match layer {
                Layer::Aggregated | Layer::Slab(..) => row[i] as f64,
                Layer::Conserved => conserved(&a.matrix, &r.reach, r.spans.answer, i, k),
                Layer::EdgeFlow => edge_flow(&a.matrix, &r.reach, &r.flow, r.spans.answer, i, k),
            } as f32;
            let cell = &mut out[y * s + i * s / n];
            *cell = cell.max(v);
        }
    }
    out
}

pub fn show(ui: &mut Ui, trace: &Trace, a: &Analysis, marks: &Marks, state: &mut MatrixState) -> Option<Command> {
    let n = trace.n();
    header(ui, trace, state);
    if !state.reduced_on.is_empty() {
        ui.small(format!("{}×{} tokens, {}", n, n, state.reduced_on));
    }
    let texture = texture(ui, trace, a, state);
    let side = ui.available_width().min(ui.available_height()).max(100.0);
    let (resp, painter) = ui.allocate_painter(vec2(side, side), Sense::click_and_drag());
    navigate(ui, &resp, n, &mut state.view);
    painter.image(texture, resp.rect, state.view, Color32::WHITE);
    overlay(ui, &painter, resp.rect, n, a, marks, state.view);
    hover(&resp, trace, a, state)
}

/// The matrix picker, the zoom reset and the legend.
fn header(ui: &mut Ui, trace: &Trace, state: &mut MatrixState) {
    let dark = ui.visuals().dark_mode;
    ui.horizontal(|ui| {
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
        theme::legend(ui, "", "0", "max", dark);
        ui.small("rows: query token ↓   columns: key token →   circles: backbone edges");
    });
}

/// The downsampled picture of the chosen matrix, made again only when the analysis, the matrix
/// or the theme changed.
fn texture(ui: &Ui, trace: &Trace, a: &Analysis, state: &mut MatrixState) -> egui::TextureId {
    let dark = ui.visuals().dark_mode;
    let key: TextureKey = (a.generation, state.layer, dark);
    if state.texture.as_ref().is_none_or(|t| t.0 != key) {
        let s = MAX_TEXTURE.min(trace.n());
        let (vals, on) = reduce(trace, a, state.layer, s);
        state.reduced_on = on;
        let max = vals.iter().cloned().fold(0.0f32, f32::max).max(1e-30);
        let pixels: Vec<Color32> = vals.iter().map(|&v| theme::heat(((v / max) as f64).sqrt(), dark)).collect();
        let tex = ui.ctx().load_texture("matrix", ColorImage::new([s, s], pixels), TextureOptions::NEAREST);
        state.texture = Some((key, tex, max as f64));
    }
    state.texture.as_ref().expect("just made").1.id()
}

/// Zoom with the wheel around the pointer, pan by dragging; the window stays inside the matrix.
fn navigate(ui: &Ui, resp: &egui::Response, n: usize, view: &mut Rect) {
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
