//! The backbone as arcs over the token axis, question on the left, answer on the right; each
//! path one colour, stroke width proportional to the flow it carries.
//!
//! The picture is made twice in one pass: as the SVG file, and as a [`Picture`] for the PNG
//! whose level text comes from the glyph cache (usvg's parse and fill of that text were a third
//! of the PNG, and the PNG is drawn for every trace of a run at any length).

use super::axis::TokenAxis;
use super::colormap::{self, CATEGORICAL, hex};
use super::{FONT_FAMILY, Picture, escape, layout::display_text};
use crate::flow::FlowResult;
use crate::span::Spans;
use std::collections::BTreeSet;
use std::fmt::Write;

const WIDTH: f64 = 1200.0;
const HEIGHT: f64 = 440.0;

/// The backbone's picture: the SVG, and the same drawing for the PNG.
pub struct Backbone {
    pub svg: String,
    raster: Picture,
}

impl Backbone {
    /// The PNG of [`Backbone::svg`] (its level text from the glyph cache, so within
    /// anti-aliasing of usvg's).
    pub fn png(&self) -> Result<Vec<u8>, String> {
        self.raster.png_whole()
    }
}

/// An element of the picture, into the SVG and, where a PNG is to be made, the raster's drawing.
struct Drawing {
    svg: String,
    raster: Option<Picture>,
}

impl Drawing {
    /// Drawn by usvg in both.
    fn shape(&mut self, element: &str) {
        self.svg.push_str(element);
        if let Some(raster) = &mut self.raster {
            raster.draw(0.0..HEIGHT, element.to_owned());
        }
    }

    /// A level line of `text`, its baseline from (`x`, `y`) as written, `size` pixels to the em,
    /// in `fill` (`#rgb` or `#rrggbb`): from the glyph cache in the raster where usvg's reading
    /// of it is the text as it stands (no whitespace that SVG collapses).
    fn label(&mut self, x: &str, y: &str, size: u8, fill: &str, text: &str) {
        let element = format!(r##"<text x="{x}" y="{y}" font-size="{size}" fill="{fill}">{}</text>"##, escape(text));
        let collapsed = text.trim() != text || text.contains("  ") || text.contains(['\n', '\t', '\r']);
        match (x.parse::<f64>(), y.parse::<f64>(), ink(fill)) {
            (Ok(px), Ok(py), Some(ink)) if !collapsed => {
                self.svg.push_str(&element);
                if let Some(raster) = &mut self.raster {
                    raster.sized_text(0.0..HEIGHT, px, py, size as f32, ink, text.to_owned());
                }
            }
            _ => self.shape(&element),
        }
    }
}

/// `#rgb` or `#rrggbb` as its three channels.
fn ink(fill: &str) -> Option<[u8; 3]> {
    let digits = fill.strip_prefix('#')?;
    let v = u32::from_str_radix(digits, 16).ok()?;
    match digits.len() {
        3 => Some([(v >> 8 & 15) as u8 * 17, (v >> 4 & 15) as u8 * 17, (v & 15) as u8 * 17]),
        6 => Some([(v >> 16) as u8, (v >> 8) as u8, v as u8]),
        _ => None,
    }
}

/// The SVG of [`backbone`], without the drawing for its PNG (the report's pictures, an export
/// without PNG).
pub fn backbone_svg(title: &str, tokens: &[String], text: &[String], spans: Spans, r: &FlowResult) -> String {
    draw(title, tokens, text, spans, r, false).svg
}

/// `tokens` are the raw tokens (the tooltips), `text` what each shows (`Trace::text`).
pub fn backbone(title: &str, tokens: &[String], text: &[String], spans: Spans, r: &FlowResult) -> Backbone {
    let d = draw(title, tokens, text, spans, r, true);
    Backbone { svg: d.svg, raster: d.raster.expect("drawn for the PNG") }
}

fn draw(title: &str, tokens: &[String], text: &[String], spans: Spans, r: &FlowResult, for_png: bool) -> Drawing {
    let (width, height) = (WIDTH, HEIGHT);
    let (left, right) = (40.0, 240.0);
    let axis_y = 330.0;
    let axis = TokenAxis::new(spans, &r.backbone, width - left - right);
    let x_of = |k: usize| axis.x(k, left, width - left - right);
    let half_token = axis.half_token(left, width - left - right);
    let open = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="{FONT_FAMILY}, monospace">"##
    );
    let raster = for_png.then(|| {
        let mut p = Picture::new(open.clone(), 12.0);
        p.ground([0xff, 0xff, 0xff]);
        p
    });
    let mut d = Drawing { svg: open, raster };
    d.svg.push_str(r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    d.label(&left.to_string(), "24", 15, "#1a1a1a", title);

    // Spans on the axis.
    let band = |d: &mut Drawing, a: usize, b: usize, c: [u8; 3], label: &str| {
        if b <= a {
            return;
        }
        let (x0, x1) = (x_of(a) - half_token, x_of(b - 1) + half_token);
        d.shape(&format!(r##"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="8" fill="{}" opacity="0.85"/>"##, axis_y - 4.0, (x1 - x0).max(2.0), hex(c)));
        d.label(&format!("{x0:.1}"), &format!("{:.1}", axis_y + 20.0), 11, &hex(c), label);
    };
    d.shape(&format!(r##"<line x1="{left}" y1="{axis_y}" x2="{:.1}" y2="{axis_y}" stroke="#999" stroke-width="1"/>"##, width - right));
    band(&mut d, spans.question.start, spans.question.end, colormap::QUESTION, "question");
    band(&mut d, spans.answer.start, spans.answer.end, colormap::ANSWER, "answer");
    // Where the axis is shortened, a break across it and, where it fits, how many tokens it
    // leaves out.
    for gap in axis.gaps() {
        let x = left + gap.at * (width - left - right);
        let label = gap.label();
        let text = if gap.label_fits(label.len() as f64 * 10.0 * super::CHAR_WIDTH_EM, width - left - right) {
            format!(r##"<text x="{x:.1}" y="{:.1}" font-size="10" fill="#777" text-anchor="middle">{label}</text>"##, axis_y - 8.0)
        } else {
            String::new()
        };
        d.shape(&format!(r##"<path d="M{:.1},{:.1} l4,-8 M{:.1},{:.1} l4,-8" stroke="#999" stroke-width="1"/>{text}"##, x - 5.0, axis_y + 4.0, x + 1.0, axis_y + 4.0));
    }

    if r.backbone.is_empty() {
        d.label(&left.to_string(), &format!("{:.0}", axis_y - 60.0), 13, "#777", &format!("no backbone: status {}", r.status.name()));
    }
    let max_flow = r.backbone.iter().map(|p| p.flow).fold(0.0, f64::max);
    for (pi, path) in r.backbone.iter().enumerate().rev() {
        let c = hex(CATEGORICAL[pi % CATEGORICAL.len()]);
        let w = 1.0 + 13.0 * path.flow / max_flow.max(1e-300);
        let mut arcs = String::new();
        for e in path.tokens.windows(2) {
            let (x1, x2) = (x_of(e[0]), x_of(e[1]));
            let rx = ((x2 - x1) / 2.0).max(0.5);
            let ry = rx.min(axis_y - 60.0);
            let _ = write!(arcs, "M{x1:.1},{axis_y} A{rx:.1},{ry:.1} 0 0 1 {x2:.1},{axis_y} ");
        }
        d.shape(&format!(
            r##"<path d="{arcs}" fill="none" stroke="{c}" stroke-width="{w:.2}" stroke-opacity="0.7" stroke-linecap="round"><title>path {} carries {} of the unit flow: {}</title></path>"##,
            pi + 1,
            super::share(path.flow, 4),
            escape(&path.tokens.iter().map(|&k| display_text(&text[k])).collect::<Vec<_>>().join(" → "))
        ));
    }

    // Token markers and labels, thinned so labels never overlap.
    let on_path: BTreeSet<usize> = r.backbone.iter().flat_map(|p| p.tokens.iter().copied()).collect();
    let mut last_label = f64::NEG_INFINITY;
    for &k in &on_path {
        let x = x_of(k);
        let hub = r.hubs.contains(&k);
        let cp = r.checkpoints.contains(&k);
        if cp {
            d.shape(&format!(r##"<rect x="{:.1}" y="{:.1}" width="9" height="9" fill="#ffffff" stroke="{}" stroke-width="2"/>"##, x - 4.5, axis_y - 4.5, hex(colormap::HUB)));
        }
        let fill = if hub { hex(colormap::HUB) } else { "#333333".into() };
        d.shape(&format!(r##"<circle cx="{x:.1}" cy="{axis_y}" r="{}" fill="{fill}"><title>#{k} {}</title></circle>"##, if hub { 4.0 } else { 2.5 }, escape(&tokens[k])));
        if x - last_label >= 11.0 {
            last_label = x;
            let label: String = display_text(&text[k]).chars().take(14).collect();
            d.shape(&format!(
                r##"<text transform="translate({:.1},{:.1}) rotate(60)" font-size="11" fill="{}" xml:space="preserve">{}</text>"##,
                x - 2.0,
                axis_y + 30.0,
                if hub { hex(colormap::HUB) } else { "#333333".into() },
                escape(&label)
            ));
        }
    }

    // Legend: one row per path.
    let lx = width - right + 24.0;
    d.label(&lx.to_string(), "60", 12, "#1a1a1a", &format!("backbone {} of flow", super::percent(r.backbone_flow())));
    for (pi, path) in r.backbone.iter().enumerate() {
        let y = 80.0 + pi as f64 * 18.0;
        let c = hex(CATEGORICAL[pi % CATEGORICAL.len()]);
        d.shape(&format!(r##"<rect x="{lx}" y="{:.0}" width="18" height="{:.1}" fill="{c}"/>"##, y - 6.0, 1.0 + 9.0 * path.flow / max_flow.max(1e-300)));
        let row = format!("path {} · {} · {} tokens", pi + 1, super::share(path.flow, 3), path.tokens.len());
        d.label(&format!("{:.0}", lx + 24.0), &format!("{:.0}", y + 3.0), 11, "#333", &row);
    }
    let y = 80.0 + r.backbone.len() as f64 * 18.0 + 12.0;
    d.shape(&format!(r##"<circle cx="{:.0}" cy="{y:.0}" r="4" fill="{}"/>"##, lx + 9.0, hex(colormap::HUB)));
    d.label(&format!("{:.0}", lx + 24.0), &format!("{:.0}", y + 4.0), 11, "#333", "hub");
    d.shape(&format!(r##"<rect x="{:.0}" y="{:.0}" width="9" height="9" fill="#fff" stroke="{}" stroke-width="2"/>"##, lx + 4.5, y + 13.5, hex(colormap::HUB)));
    d.label(&format!("{:.0}", lx + 24.0), &format!("{:.0}", y + 22.0), 11, "#333", "checkpoint");
    d.svg.push_str("</svg>");
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Dtype, Trace};
    use crate::{Cancel, Params, analyze};

    /// The PNG, its level text from the glyph cache, is usvg's picture of the SVG to within
    /// anti-aliasing (a label a pixel off or missing would change far more), and a label usvg
    /// reads otherwise than it stands (collapsed spaces, a script the cache leaves to usvg) is
    /// usvg's own; the SVG is what it was.
    #[test]
    fn the_png_is_the_svg_drawn() {
        let spec = crate::synth::SynthSpec { target_tokens: 400, layers: 1, heads: 1, dtype: Dtype::F32, rank: 2, ..Default::default() };
        let trace = Trace::from_bytes(crate::synth::synth_trace(&spec).to_bytes(), std::path::Path::new("words.safetensors")).unwrap();
        let r = analyze(&trace, &Params::default(), &Cancel::default()).unwrap();
        assert!(r.backbone.len() >= 3, "{:?}", r.backbone);
        let text = trace.text();
        let pixels = |png: Vec<u8>| resvg::tiny_skia::Pixmap::decode_png(&png).unwrap();
        for title in ["words · ok · 400 tokens", "two  spaces · 名前 ", "  "] {
            let b = backbone(title, &trace.tokens, &text, trace.spans, &r);
            let (cached, usvg) = (pixels(b.png().unwrap()), pixels(super::super::svg_to_png(&b.svg).unwrap()));
            assert_eq!((cached.width(), cached.height()), (usvg.width(), usvg.height()));
            let diffs: Vec<u8> = cached.data().iter().zip(usvg.data()).map(|(a, b)| a.abs_diff(*b)).collect();
            let mean = diffs.iter().map(|&d| d as f64).sum::<f64>() / diffs.len() as f64;
            assert!(mean < 0.1, "{title:?}: mean difference {mean} of 255");
            assert!(diffs.iter().all(|&d| d <= 96), "{title:?}: a byte differs by more than 96 of 255");
            let inked = |p: &resvg::tiny_skia::Pixmap| p.data().chunks_exact(4).filter(|px| px[0] < 100 && px[1] < 100 && px[2] < 100).count();
            assert!(inked(&usvg) > 1_000, "the picture has text: {} dark pixels", inked(&usvg));
            assert!(inked(&cached).abs_diff(inked(&usvg)) * 20 < inked(&usvg), "dark pixels: {} cached, {} usvg", inked(&cached), inked(&usvg));
            // The title's row: drawn from the cache where it reads as it stands, else by usvg alone.
            let title_rows = 8 * 1200 * 4..30 * 1200 * 4;
            let same = cached.data()[title_rows.clone()] == usvg.data()[title_rows];
            assert_eq!(same, title.trim() != title || title.contains("  "), "{title:?}");
        }
        assert_eq!(backbone_svg("t", &trace.tokens, &text, trace.spans, &r), backbone("t", &trace.tokens, &text, trace.spans, &r).svg);
    }

    #[test]
    fn fills_read_as_svg_reads_them() {
        assert_eq!([ink("#777"), ink("#1a1a1a"), ink("#fff"), ink("red"), ink("#12345")], [Some([0x77; 3]), Some([0x1a; 3]), Some([0xff; 3]), None, None]);
    }
}
