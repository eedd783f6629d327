//! The trace as text, each token's background by throughput, credited tokens underlined,
//! question and answer framed, hubs outlined.

use super::colormap::{self, hex};
use super::{CHAR_WIDTH_EM, FONT_FAMILY, Ink, Picture, Rect, escape, layout};
use crate::flow::FlowResult;
use crate::span::Spans;
use std::fmt::Write;

pub struct TextStyle {
    pub columns: usize,
    pub font_size: f64,
    pub line_height: f64,
    pub margin: f64,
    /// Each token's numbers as an SVG tooltip. A raster never shows them, so a picture drawn
    /// for PNG leaves them out: formatting and parsing them was a twentieth of a 4k trace's PNG.
    pub tooltips: bool,
}

impl Default for TextStyle {
    fn default() -> Self {
        TextStyle { columns: 110, font_size: 13.0, line_height: 21.0, margin: 16.0, tooltips: true }
    }
}

impl TextStyle {
    /// The default look, for a picture that is only rasterised.
    pub fn raster() -> Self {
        TextStyle { tooltips: false, ..Default::default() }
    }
}

/// `tokens` are the trace's raw tokens (the tooltips), `text` what each shows (`Trace::text`).
/// Each token's boxes and its text are fragments of the picture, each confined to its own line
/// and the lines either side (outlines stick out of a line by a pixel or two, tall glyphs by more), so the
/// PNG of a long trace is drawn in bands across the cores.
pub fn credit_picture(title: &str, tokens: &[String], text: &[String], spans: Spans, r: &FlowResult, style: &TextStyle) -> Picture {
    let cw = style.font_size * CHAR_WIDTH_EM;
    let lh = style.line_height;
    let cells = layout::wrap(text, style.columns);
    let lines = cells.last().map_or(1, |c| c.line + 1);
    let header = 64.0;
    let width = style.margin * 2.0 + cw * style.columns as f64;
    let height = header + lines as f64 * lh + style.margin;
    let tau_max = spans.response.range().chain(spans.question.range()).map(|k| r.throughput[k]).fold(0.0, f64::max);
    let gamma_max = r.credit.iter().cloned().fold(1.0, f64::max);
    let hubs: std::collections::HashSet<usize> = r.hubs.iter().copied().collect();
    let checkpoints: std::collections::HashSet<usize> = r.checkpoints.iter().copied().collect();

    let mut picture = Picture::new(format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="{FONT_FAMILY}, monospace" font-size="{fs}">"##,
        fs = style.font_size
    ), style.font_size);
    picture.ground([0xff; 3]);
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<text x="{m}" y="22" font-size="15" fill="#1a1a1a">{t}</text>"##,
        m = style.margin,
        t = escape(title)
    );
    legend(&mut s, style.margin, 36.0);
    picture.draw(0.0..header, s);

    // Boxes first, then every token's text over them: a monospace token's last glyph reaches
    // the edge of its cell, where the next token's outline is drawn.
    for c in &cells {
        let k = c.index;
        let x = style.margin + c.col as f64 * cw;
        let y = header + c.line as f64 * lh;
        let w = c.width as f64 * cw;
        let rows = y - lh..y + 2.0 * lh;
        let (bg, _) = colours(k, spans, r, tau_max);
        let cell = Rect::new(x, y + 1.0, w, lh - 4.0, Ink::Fill(bg));
        picture.rect(rows.clone(), if style.tooltips { cell.titled(tooltip(tokens, r, k)) } else { cell });
        let span_colour = if spans.question.contains(k) {
            Some(colormap::QUESTION)
        } else if spans.answer.contains(k) {
            Some(colormap::ANSWER)
        } else {
            None
        };
        if let Some(colour) = span_colour {
            picture.rect(rows.clone(), Rect::new(x, y + 0.5, w, lh - 3.0, Ink::Stroke { colour, width: 1.5, dash: None }));
        }
        if hubs.contains(&k) || checkpoints.contains(&k) {
            let dash = (checkpoints.contains(&k) && !hubs.contains(&k)).then_some((3.0, 2.0));
            picture.rect(rows.clone(), Rect::new(x - 1.0, y - 0.5, w + 2.0, lh - 1.0, Ink::Stroke { colour: colormap::HUB, width: 2.0, dash }));
        }
        if r.credit[k] > 1.0 {
            let thick = 1.0 + 2.0 * ((r.credit[k] - 1.0) / (gamma_max - 1.0).max(1e-9)).min(1.0);
            let top = y + lh - 4.0 - thick;
            picture.rect(rows, Rect::new(x, top, w, thick, Ink::Fill(colormap::CREDIT)));
        }
    }
    for c in &cells {
        let k = c.index;
        let x = style.margin + c.col as f64 * cw;
        let y = header + c.line as f64 * lh;
        let (_, ink) = colours(k, spans, r, tau_max);
        picture.text(y - lh..y + 2.0 * lh, x, y + lh * 0.68, ink, super::layout::fit(&c.text, c.width));
    }
    picture
}

/// A token's cell and ink colours: its throughput, or greys for the prompt around the question.
fn colours(k: usize, spans: Spans, r: &FlowResult, tau_max: f64) -> ([u8; 3], [u8; 3]) {
    let in_prompt = k < spans.response.start && !spans.question.contains(k);
    if in_prompt {
        ([0xf2, 0xf2, 0xf2], [0x80, 0x80, 0x80])
    } else {
        let bg = colormap::heat(colormap::heat_scale(r.throughput[k], tau_max));
        (bg, colormap::ink_on(bg))
    }
}

fn tooltip(tokens: &[String], r: &FlowResult, k: usize) -> String {
    format!(
        "#{k} {:?}  reach {:.3e}  flow {}  throughput {}  credit {:.2}",
        tokens[k],
        r.reach[k],
        super::share(r.flow[k], 4),
        super::share(r.throughput[k], 4),
        r.credit[k]
    )
}

fn legend(s: &mut String, x0: f64, y: f64) {
    let _ = write!(s, r##"<text x="{x0}" y="{:.0}" font-size="11" fill="#555">throughput</text>"##, y + 10.0);
    let bx = x0 + 80.0;
    for i in 0..40 {
        let c = colormap::heat(i as f64 / 39.0);
        let _ = write!(s, r##"<rect x="{:.1}" y="{y}" width="3.2" height="12" fill="{}"/>"##, bx + i as f64 * 3.0, hex(c));
    }
    let mut x = bx + 136.0;
    let mut item = |s: &mut String, label: &str, shape: String| {
        s.push_str(&shape.replace("{X}", &format!("{x:.1}")));
        let _ = write!(s, r##"<text x="{:.1}" y="{:.0}" font-size="11" fill="#555">{label}</text>"##, x + 22.0, y + 10.0);
        x += 34.0 + label.len() as f64 * 6.7;
    };
    item(s, "question", format!(r##"<rect x="{{X}}" y="{y}" width="16" height="12" fill="none" stroke="{}" stroke-width="1.5"/>"##, hex(colormap::QUESTION)));
    item(s, "answer", format!(r##"<rect x="{{X}}" y="{y}" width="16" height="12" fill="none" stroke="{}" stroke-width="1.5"/>"##, hex(colormap::ANSWER)));
    item(s, "hub", format!(r##"<rect x="{{X}}" y="{y}" width="16" height="12" fill="none" stroke="{}" stroke-width="2"/>"##, hex(colormap::HUB)));
    item(s, "checkpoint", format!(r##"<rect x="{{X}}" y="{y}" width="16" height="12" fill="none" stroke="{}" stroke-width="2" stroke-dasharray="3,2"/>"##, hex(colormap::HUB)));
    item(s, "credit γ > 1", format!(r##"<rect x="{{X}}" y="{:.0}" width="16" height="3" fill="{}"/>"##, y + 9.0, hex(colormap::CREDIT)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Cancel, analyze};
    use crate::params::Params;
    use crate::synth::{SynthSpec, synth_trace};
    use crate::trace::{Dtype, Trace};

    /// Every token's text is drawn after every box (backgrounds, frames, outlines, credit bars):
    /// the last glyph of a word token reaches the edge of its cell, and the next token's outline,
    /// drawn over it, had hidden part of it.
    #[test]
    fn no_box_is_drawn_over_a_tokens_text() {
        let spec = SynthSpec { target_tokens: 300, layers: 1, heads: 1, dtype: Dtype::F32, rank: 2, ..Default::default() };
        let trace = Trace::from_bytes(synth_trace(&spec).to_bytes(), std::path::Path::new("words.safetensors")).unwrap();
        let mut r = analyze(&trace, &Params::default(), &Cancel::default()).unwrap();
        r.hubs = (0..trace.n()).step_by(2).collect();
        let picture = credit_picture("words", &trace.tokens, &trace.text(), trace.spans, &r, &TextStyle::raster());
        assert_eq!(picture.texts.len(), trace.n(), "a line of text per token");
        let svg = picture.svg();
        let first_text = svg.find(r#"xml:space="preserve""#).expect("tokens have text");
        assert!(svg.rfind("<rect").is_some_and(|last_box| last_box < first_text), "a box drawn after the first token's text");
    }

    /// The text of a long trace, cut into bands for the cores, has every pixel of the picture
    /// drawn whole: with outlines on most tokens (so some straddle every band edge) and glyphs
    /// that reach above and below their line.
    #[test]
    fn a_tall_picture_drawn_in_bands_is_the_whole_picture() {
        let spec = SynthSpec { target_tokens: 2000, layers: 1, heads: 1, dtype: Dtype::F32, rank: 2, ..Default::default() };
        let trace = Trace::from_bytes(synth_trace(&spec).to_bytes(), std::path::Path::new("tall.safetensors")).unwrap();
        let mut r = analyze(&trace, &Params::default(), &Cancel::default()).unwrap();
        let n = trace.n();
        r.hubs = (0..n).step_by(3).collect();
        r.checkpoints = (1..n).step_by(4).collect();
        r.credit.iter_mut().step_by(2).for_each(|g| *g = 1.5);
        let mut text = trace.text();
        for k in (7..n).step_by(11) {
            text[k] = ["Ǻ̈̈̈̂", "ʝ̣̣̣̣", "漢字", "\u{1f600}"][k % 4].to_owned();
        }
        let picture = credit_picture("tall", &trace.tokens, &text, trace.spans, &r, &TextStyle::default());
        let pixels = |png: Vec<u8>| resvg::tiny_skia::Pixmap::decode_png(&png).unwrap();
        let banded = pixels(picture.png().unwrap());
        let (w, h) = (banded.width(), banded.height());
        let every_row = 0..h;
        let whole = pixels(picture.png_in(std::slice::from_ref(&every_row), w, h).unwrap());
        assert!(super::super::bands(h).len() >= 3, "{h} rows");
        assert_eq!((whole.width(), whole.height()), (w, h));
        let stride = w as usize * 4;
        let differ: Vec<usize> = (0..h as usize).filter(|&y| whole.data()[y * stride..][..stride] != banded.data()[y * stride..][..stride]).collect();
        assert!(differ.is_empty(), "rows {differ:?} differ");
    }

    /// A picture's file is the same bytes on any number of cores: its bands (each a deflate
    /// block) are cut by its height, not by the threads drawing them.
    #[test]
    fn a_tall_picture_is_the_same_bytes_on_any_number_of_cores() {
        let spec = SynthSpec { target_tokens: 3000, layers: 1, heads: 1, dtype: Dtype::F32, rank: 2, ..Default::default() };
        let trace = Trace::from_bytes(synth_trace(&spec).to_bytes(), std::path::Path::new("tall.safetensors")).unwrap();
        let r = analyze(&trace, &Params::default(), &Cancel::default()).unwrap();
        let picture = credit_picture("tall", &trace.tokens, &trace.text(), trace.spans, &r, &TextStyle::raster());
        let on = |threads: usize| rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| picture.png().unwrap());
        let one = on(1);
        let h = u32::from_be_bytes(one[20..24].try_into().unwrap());
        assert!(super::super::bands(h).len() >= 8, "{h} rows: cut in bands");
        for threads in [2, 3, 16] {
            assert!(on(threads) == one, "{threads} threads wrote other bytes than one");
        }
    }

    /// The token text blended from the glyph cache is usvg's text to within anti-aliasing: a
    /// glyph a pixel off, missing or drawn twice would change hundreds of bytes by far more.
    /// (usvg fills a line's glyphs as one path, whose coverage where two glyphs meet in a pixel
    /// differs a little from each glyph's own, and the cache rounds a glyph's position to a
    /// sixteenth of a pixel.)
    #[test]
    fn cached_glyphs_draw_the_text_usvg_draws() {
        let spec = SynthSpec { target_tokens: 600, layers: 1, heads: 1, dtype: Dtype::F32, rank: 2, ..Default::default() };
        let trace = Trace::from_bytes(synth_trace(&spec).to_bytes(), std::path::Path::new("words.safetensors")).unwrap();
        let r = analyze(&trace, &Params::default(), &Cancel::default()).unwrap();
        let mut text = trace.text();
        for (k, t) in text.iter_mut().enumerate().skip(5).step_by(7) {
            *t = [" ÀÉîõü", "{[(<@#$%&>)]}", " Ωλπ·→↵", " привет", "ǅﬁ‰€"][k % 5].to_owned();
        }
        let picture = credit_picture("words", &trace.tokens, &text, trace.spans, &r, &TextStyle::raster());
        let cached = resvg::tiny_skia::Pixmap::decode_png(&picture.png().unwrap()).unwrap();
        let usvg = resvg::tiny_skia::Pixmap::decode_png(&super::super::svg_to_png(&picture.svg()).unwrap()).unwrap();
        assert_eq!((cached.width(), cached.height()), (usvg.width(), usvg.height()));
        let diffs: Vec<u8> = cached.data().iter().zip(usvg.data()).map(|(a, b)| a.abs_diff(*b)).collect();
        let mean = diffs.iter().map(|&d| d as f64).sum::<f64>() / diffs.len() as f64;
        let far = diffs.iter().filter(|&&d| d > 96).count();
        assert!(mean < 1.0, "mean difference {mean} of 255");
        assert!(far == 0, "{far} bytes differ by more than 96 of 255");
        let inked = |p: &resvg::tiny_skia::Pixmap| p.data().chunks_exact(4).filter(|px| px[0] < 100 && px[1] < 100 && px[2] < 100).count();
        assert!(inked(&usvg) > 10_000, "the picture has text: {} dark pixels", inked(&usvg));
        assert!(inked(&cached).abs_diff(inked(&usvg)) * 50 < inked(&usvg), "dark pixels: {} cached, {} usvg", inked(&cached), inked(&usvg));
    }
}
