//! A picture drawn in bands across the cores: SVG fragments, rectangles and lines of text, each
//! confined to a range of pixel rows. A band draws what reaches into it, in order, moved up by a
//! whole number of pixels (exact in f32), and lands on the pixels of the whole.
//!
//! Parsing and rasterising a long trace's text picture through usvg was most of its export, so
//! the PNG draws what it can without it: rectangles by the tiny-skia calls resvg makes for an
//! SVG `<rect>` (the same path from the same numbers, the same paint: the same pixels), and text
//! from [`glyphs`]' cache. The SVG is the same either way.

use super::colormap::hex;
use super::{BAND_MARGIN, MAX_RASTER_PIXELS, bands, encode_pieces, escape, fill, glyphs, grounded_pixmap, let_go, parse, pixmap, png, scanlines, svg_to_png};
use rayon::prelude::*;
use resvg::tiny_skia::{self, FillRule, Paint, PathBuilder, Pixmap, Stroke, StrokeDash, Transform};
use std::ops::Range;

pub struct Picture {
    open: String,
    font_size: f32,
    ground: Option<[u8; 3]>,
    parts: Vec<(Range<f64>, String)>,
    rects: Vec<(Range<f64>, Rect)>,
    pub(super) texts: Vec<(Range<f64>, Text)>,
}

/// An axis-aligned rectangle at tenths of a pixel, as `<rect>`: over the SVG fragments, under
/// the text.
pub struct Rect {
    x: f64,
    y: f64,
    width: f64,
    height: f64,
    ink: Ink,
    /// The SVG tooltip; a raster never shows it.
    title: Option<String>,
}

/// How a [`Rect`] is drawn.
pub enum Ink {
    Fill([u8; 3]),
    /// An outline `width` pixels wide, dashed `on`, `off` where given.
    Stroke { colour: [u8; 3], width: f32, dash: Option<(f32, f32)> },
}

impl Rect {
    pub fn new(x: f64, y: f64, width: f64, height: f64, ink: Ink) -> Self {
        Rect { x: tenth(x), y: tenth(y), width: tenth(width), height: tenth(height), ink, title: None }
    }

    pub fn titled(self, title: String) -> Self {
        Rect { title: Some(title), ..self }
    }

    fn svg(&self) -> String {
        let (x, y, w, h) = (self.x, self.y, self.width, self.height);
        let paint = match &self.ink {
            Ink::Fill(c) => format!(r##"fill="{}""##, hex(*c)),
            Ink::Stroke { colour, width, dash } => {
                let dash = dash.map_or(String::new(), |(on, off)| format!(r##" stroke-dasharray="{on},{off}""##));
                format!(r##"fill="none" stroke="{}" stroke-width="{width}"{dash}"##, hex(*colour))
            }
        };
        let end = self.title.as_ref().map_or("/>".to_owned(), |t| format!("><title>{}</title></rect>", escape(t)));
        format!(r##"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" {paint}{end}"##)
    }

    /// What resvg does for this `<rect>`, on a band whose first row is the picture's row `top`:
    /// usvg reads each number as f64 and keeps it as f32, makes the path with
    /// `PathBuilder::from_rect`, and resvg fills or strokes it anti-aliased with the colour at full
    /// opacity (a stroke with butt caps, miter joins, miter limit 4). A fill is worked out by
    /// [`fill::opaque_rect`] where it can be, on the rectangle moved up as tiny-skia moves a path.
    fn draw(&self, pixmap: &mut Pixmap, top: u32) {
        let rect = tiny_skia::Rect::from_xywh(self.x as f32, self.y as f32, self.width as f32, self.height as f32);
        let Some(rect) = rect else { return };
        let up = -(top as f32);
        let mut paint = Paint { anti_alias: true, ..Default::default() };
        match &self.ink {
            Ink::Fill(colour @ [r, g, b]) => {
                let (w, h) = (pixmap.width(), pixmap.height());
                let moved = tiny_skia::Rect::from_ltrb(rect.left(), rect.top() + up, rect.right(), rect.bottom() + up);
                if moved.is_some_and(|m| fill::opaque_rect(pixmap.data_mut(), w, h, m, *colour)) {
                    return;
                }
                paint.set_color_rgba8(*r, *g, *b, 255);
                pixmap.fill_path(&PathBuilder::from_rect(rect), &paint, FillRule::Winding, Transform::from_translate(0.0, up), None);
            }
            Ink::Stroke { colour: [r, g, b], width, dash } => {
                paint.set_color_rgba8(*r, *g, *b, 255);
                let stroke = Stroke { width: *width, dash: dash.and_then(|(on, off)| StrokeDash::new(vec![on, off], 0.0)), ..Default::default() };
                pixmap.stroke_path(&PathBuilder::from_rect(rect), &paint, &stroke, Transform::from_translate(0.0, up), None);
            }
        }
    }
}

/// A line of text, as `<text x y fill xml:space="preserve">`, at tenths of a pixel.
pub(super) struct Text {
    x: f64,
    y: f64,
    /// Pixels to the em where not the picture's.
    size: Option<f32>,
    ink: [u8; 3],
    text: String,
}

impl Text {
    fn svg(&self) -> String {
        let size = self.size.map_or(String::new(), |s| format!(r##" font-size="{s}""##));
        format!(r##"<text x="{:.1}" y="{:.1}"{size} fill="{}" xml:space="preserve">{}</text>"##, self.x, self.y, hex(self.ink), escape(&self.text))
    }
}

/// A coordinate as the SVG writes it, to a tenth of a pixel, and as usvg then reads it (the
/// decimal as f64). Away from a tie, `v·10` rounds to the same whole number of tenths as the
/// decimal does, and dividing it by ten is the f64 nearest that decimal, as parsing it is;
/// near a tie the decimal is formatted and parsed (formatting thousands of coordinates was a
/// fifth of drawing a 4k-token picture).
fn tenth(v: f64) -> f64 {
    let t = v * 10.0;
    if ((t - t.trunc()).abs() - 0.5).abs() > 1e-6 && t.abs() < 1e15 {
        t.round() / 10.0
    } else {
        format!("{v:.1}").parse().expect("a formatted number")
    }
}

impl Picture {
    /// `open`: the `<svg …>` tag, with the picture's size and its `font_size` for text.
    pub fn new(open: String, font_size: f64) -> Self {
        Picture { open, font_size: font_size as f32, ground: None, parts: Vec::new(), rects: Vec::new(), texts: Vec::new() }
    }

    /// The whole picture painted `colour` under everything else, as
    /// `<rect width="100%" height="100%">`. The PNG's bands start from it (the rectangle covers
    /// every pixel whole, so resvg would paint each one the colour), and a picture with an
    /// opaque ground is opaque: each band is stored as RGB and compressed as soon as it is drawn.
    pub fn ground(&mut self, colour: [u8; 3]) {
        self.ground = Some(colour);
    }

    /// `rows`: every pixel row the fragment can touch, strokes and glyphs included.
    pub fn draw(&mut self, rows: Range<f64>, svg: String) {
        self.parts.push((rows, svg));
    }

    /// A rectangle over every fragment, in the order given.
    pub fn rect(&mut self, rows: Range<f64>, rect: Rect) {
        self.rects.push((rows, rect));
    }

    /// A line of `text` in the picture's font, its baseline from (`x`, `y`), at a tenth of a
    /// pixel (as the SVG writes it), over every fragment and rectangle.
    pub fn text(&mut self, rows: Range<f64>, x: f64, y: f64, ink: [u8; 3], text: String) {
        self.texts.push((rows, Text { x: tenth(x), y: tenth(y), size: None, ink, text }));
    }

    /// [`Picture::text`] at `size` pixels to the em.
    pub fn sized_text(&mut self, rows: Range<f64>, x: f64, y: f64, size: f32, ink: [u8; 3], text: String) {
        self.texts.push((rows, Text { x: tenth(x), y: tenth(y), size: Some(size), ink, text }));
    }

    pub fn svg(&self) -> String {
        let mut s = self.open.clone();
        if let Some(c) = self.ground {
            s.push_str(&format!(r##"<rect width="100%" height="100%" fill="{}"/>"##, hex(c)));
        }
        self.parts.iter().for_each(|p| s.push_str(&p.1));
        self.rects.iter().for_each(|r| s.push_str(&r.1.svg()));
        self.texts.iter().for_each(|t| s.push_str(&t.1.svg()));
        s.push_str("</svg>");
        s
    }

    /// The PNG of [`Picture::svg`], its rectangles drawn without usvg and the glyphs of its text
    /// blended from [`glyphs`]' cache.
    pub fn png(&self) -> Result<Vec<u8>, String> {
        self.png_cut(bands)
    }

    /// [`Picture::png`] drawn as one band: for a small picture made while the other cores draw
    /// others (a run's traces), whose fragments are then parsed once rather than once a band.
    pub fn png_whole(&self) -> Result<Vec<u8>, String> {
        self.png_cut(|h| std::iter::once(0..h).collect())
    }

    fn png_cut(&self, cut: impl Fn(u32) -> Vec<Range<u32>>) -> Result<Vec<u8>, String> {
        let size = parse(&format!("{}</svg>", self.open))?.size().to_int_size();
        let (w, h) = (size.width(), size.height());
        if w as u64 * h as u64 > MAX_RASTER_PIXELS {
            return svg_to_png(&self.svg());
        }
        self.png_in(&cut(h), w, h)
    }

    pub(super) fn png_in(&self, bands: &[Range<u32>], w: u32, h: u32) -> Result<Vec<u8>, String> {
        let face = glyphs::Face::get();
        // Each line as glyphs from the cache, or as SVG for usvg.
        let size = |t: &Text| t.size.unwrap_or(self.font_size);
        let lines: Vec<Result<Vec<glyphs::Placed>, String>> =
            self.texts.par_iter().map(|(_, t)| face.run(&t.text, t.x as f32, t.y as f32, size(t)).ok_or_else(|| t.svg())).collect();
        // Each distinct glyph's mask made once, and each placed glyph numbered with its mask as
        // the keys are sorted (looked up by a binary search per glyph a band drew, it was a
        // twentieth of an 8k-token credit picture's PNG). Glyphs are numbered line after line.
        let mut numbered: Vec<(glyphs::SizedKey, u32)> = self
            .texts
            .iter()
            .zip(&lines)
            .flat_map(|((_, t), line)| line.iter().flatten().map(|p| glyphs::SizedKey::new(p.key, size(t))))
            .enumerate()
            .map(|(g, key)| (key, g as u32))
            .collect();
        numbered.sort_unstable();
        let (mut keys, mut mask_of) = (Vec::new(), vec![0u32; numbered.len()]);
        for (key, g) in numbered {
            if keys.last() != Some(&key) {
                keys.push(key);
            }
            mask_of[g as usize] = (keys.len() - 1) as u32;
        }
        let first_glyph: Vec<usize> = lines.iter().scan(0, |next, line| Some(std::mem::replace(next, *next + line.as_ref().map_or(0, Vec::len)))).collect();
        let masks: Vec<Option<std::sync::Arc<glyphs::Coverage>>> = keys.par_iter().map(|&k| face.coverage(k.key(), k.font_size())).collect();

        let (parts, rects, texts) = (in_bands(bands, &self.parts), in_bands(bands, &self.rects), in_bands(bands, &self.texts));
        let draw = |i: usize, r: &Range<u32>| -> Result<(Pixmap, Range<u32>), String> {
            // The rasteriser's anti-aliasing differs on the rows next to a pixmap's edge, so
            // a band is drawn with a margin and cut out of it.
            let (top, bottom) = (r.start.saturating_sub(BAND_MARGIN), (r.end + BAND_MARGIN).min(h));
            let mut band = match self.ground {
                Some(ground) => grounded_pixmap(w, bottom - top, ground)?,
                None => pixmap(w, bottom - top)?,
            };
            let usvg = |band: &mut Pixmap, fragments: &mut dyn Iterator<Item = &str>| -> Result<(), String> {
                let mut fragments = fragments.peekable();
                if fragments.peek().is_none() {
                    return Ok(());
                }
                let mut svg = self.open.clone();
                fragments.for_each(|f| svg.push_str(f));
                svg.push_str("</svg>");
                resvg::render(&parse(&svg)?, Transform::from_translate(0.0, -(top as f32)), &mut band.as_mut());
                Ok(())
            };
            usvg(&mut band, &mut parts[i].iter().map(|&j| self.parts[j].1.as_str()))?;
            rects[i].iter().for_each(|&j| self.rects[j].1.draw(&mut band, top));
            let shaped = texts[i].iter().filter_map(|&j| lines[j].as_ref().err().map(String::as_str));
            usvg(&mut band, &mut shaped.into_iter())?;
            for &j in &texts[i] {
                if let Ok(placed) = &lines[j] {
                    let numbers = &mask_of[first_glyph[j]..first_glyph[j] + placed.len()];
                    for (p, &m) in placed.iter().zip(numbers) {
                        if let Some(m) = masks[m as usize].as_deref() {
                            m.blend(band.data_mut(), w as usize, top as i32, p, self.texts[j].1.ink);
                        }
                    }
                }
            }
            Ok((band, r.start - top..r.end - top))
        };
        if self.ground.is_some() {
            // Opaque: each band is compressed as it is drawn and its pixels let go, so the
            // next band's pixmap reuses their memory instead of faulting in fresh pages.
            let last = bands.len().saturating_sub(1);
            let compressed = bands
                .par_iter()
                .enumerate()
                .map(|(i, r)| {
                    draw(i, r).map(|(band, rows)| {
                        let scan = scanlines(&band, &rows, png::Channels::Rgb);
                        let_go(band);
                        png::band(&scan, i == last)
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            return Ok(png::file(w, h, png::Channels::Rgb, &compressed));
        }
        let rendered = bands.par_iter().enumerate().map(|(i, r)| draw(i, r)).collect::<Result<Vec<(Pixmap, Range<u32>)>, String>>()?;
        Ok(encode_pieces(w, &rendered.iter().map(|(p, r)| (p, r.clone())).collect::<Vec<_>>()))
    }
}

/// For each band, the items whose rows reach into it, in their order (the order they are drawn
/// in). Bands run down the picture in order, so an item's are the run of bands from the first
/// that ends below its top to the last that starts above its bottom: each item is placed once,
/// where every band had looked through every item (a twentieth of an 8k-token credit picture's
/// PNG, on its 8 000 boxes and lines).
fn in_bands<T>(bands: &[Range<u32>], items: &[(Range<f64>, T)]) -> Vec<Vec<usize>> {
    let mut per_band = vec![Vec::new(); bands.len()];
    for (j, (rows, _)) in items.iter().enumerate() {
        let first = bands.partition_point(|b| b.end as f64 <= rows.start);
        for (i, _) in bands.iter().enumerate().skip(first).take_while(|(_, b)| (b.start as f64) < rows.end) {
            per_band[i].push(j);
        }
    }
    per_band
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each band gets the items whose rows overlap its own, in the items' order, as looking
    /// through every item for each band gives them: bands cut evenly or one band whole, items
    /// anywhere (above the picture, past its end, empty, upside down, on a band's edge).
    #[test]
    fn bands_get_the_items_that_reach_into_them_in_order() {
        let mut rng = crate::flow::test_rng::XorShift(0x2545_f491_4f6c_dd1d);
        for h in [1u32, 255, 256, 257, 3000] {
            let items: Vec<(Range<f64>, ())> = (0..400)
                .map(|i| {
                    let start = match i % 4 {
                        0 => (rng.unit() * h as f64 / 64.0).floor() * 64.0,
                        _ => rng.unit() * (h as f64 + 100.0) - 50.0,
                    };
                    (start..start + rng.unit() * 600.0 - 50.0, ())
                })
                .collect();
            let whole: Vec<Range<u32>> = std::iter::once(0..h).collect();
            for cut in [bands(h), whole] {
                let looked: Vec<Vec<usize>> = cut
                    .iter()
                    .map(|r| items.iter().enumerate().filter(|(_, (rows, _))| rows.start < r.end as f64 && rows.end > r.start as f64).map(|(j, _)| j).collect())
                    .collect();
                assert_eq!(in_bands(&cut, &items), looked, "{h} rows in {} bands", cut.len());
            }
        }
    }

    #[test]
    fn tenths_are_the_written_decimals() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut values = vec![0.05, 0.15, 0.25, 0.35, 12.25, -0.05, -7.25, 1e-9, 123456.75, 2.5e14, 1e300, -1e300];
        for _ in 0..200_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let v = (seed >> 11) as f64 / (1u64 << 53) as f64 * 20_000.0 - 5_000.0;
            values.extend([v, (v * 20.0).round() / 20.0, (v * 100.0).round() / 100.0]);
        }
        for v in values {
            let written: f64 = format!("{v:.1}").parse().unwrap();
            assert_eq!(tenth(v).to_bits(), written.to_bits(), "{v:e}");
        }
    }

    /// Rectangles drawn without usvg are usvg's pixel for pixel: fills, outlines, dashed
    /// outlines, at tenths of a pixel, across band edges, on the picture's ground.
    #[test]
    fn rects_are_drawn_as_usvg_draws_them() {
        let (w, h) = (300.0, 700.0);
        let open = format!(r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">"##);
        // On a ground (opaque: each band compressed as drawn) and on a see-through picture whose
        // only ground is a fragment over half of it (its bands kept until all are drawn).
        for grounded in [true, false] {
            let mut picture = Picture::new(open.clone(), 13.0);
            if grounded {
                picture.ground([0xff, 0xfe, 0xf0]);
            } else {
                picture.draw(0.0..h, format!(r##"<rect width="{}" height="{h}" fill="#fffef0"/>"##, w / 2.0));
            }
            let mut rng = crate::flow::test_rng::XorShift(0x2545_f491_4f6c_dd1d);
            let mut next = |scale: f64| rng.unit() * scale;
            for i in 0..400 {
                let (x, y, rw, rh) = (next(280.0), next(680.0), next(60.0) + 0.1, next(30.0) + 0.1);
                let colour = [(i * 37) as u8, (i * 91) as u8, (i * 53) as u8];
                let ink = match i % 3 {
                    0 => Ink::Fill(colour),
                    1 => Ink::Stroke { colour, width: 1.5, dash: None },
                    _ => Ink::Stroke { colour, width: 2.0, dash: Some((3.0, 2.0)) },
                };
                picture.rect(y - 2.0..y + rh + 2.0, Rect::new(x, y, rw, rh, ink));
            }
            let pixels = |png: Vec<u8>| resvg::tiny_skia::Pixmap::decode_png(&png).unwrap();
            let typed = pixels(picture.png().unwrap());
            let usvg = pixels(svg_to_png(&picture.svg()).unwrap());
            assert!(bands(h as u32).len() >= 2);
            assert_eq!((typed.width(), typed.height()), (usvg.width(), usvg.height()));
            assert_eq!(typed.data().chunks_exact(4).all(|px| px[3] == 255), grounded, "opaque only on the ground");
            let differ = typed.data().iter().zip(usvg.data()).filter(|(a, b)| a != b).count();
            assert_eq!(differ, 0, "grounded {grounded}: {differ} bytes differ");
        }
    }
}
