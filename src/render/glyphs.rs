//! Token text drawn from a cache of glyph coverage masks instead of through usvg. Shaping each
//! token's `<text>` and filling its outlines was 145 of the 170 ms (one core) that a 4k-token
//! credit picture took to rasterise, for a few dozen distinct glyphs drawn thousands of times.
//!
//! A mask is the glyph's outline filled by the same anti-aliasing rasteriser resvg uses
//! (tiny-skia), at one of [`PHASES`]² sub-pixel offsets, and it is blended the way tiny-skia
//! blends a solid fill, so a glyph differs from resvg's only by the offset rounded to
//! 1/[`PHASES`] of a pixel. Text this cannot draw exactly as usvg would (a character the font
//! lacks, a combining mark, a wide or right-to-left script) is left to usvg: see [`Face::run`].

use resvg::tiny_skia::{self, FillRule, Mask, Transform};
use skrifa::outline::{DrawSettings, OutlinePen};
use skrifa::prelude::{LocationRef, Size};
use skrifa::charmap::Charmap;
use skrifa::metrics::GlyphMetrics;
use skrifa::{FontRef, GlyphId, MetadataProvider};
use std::sync::OnceLock;

/// Sub-pixel offsets per axis: a glyph lands within 1/32 pixel of where usvg puts it.
const PHASES: u32 = 16;

/// The bundled font, read once.
pub struct Face {
    font: FontRef<'static>,
    charmap: Charmap<'static>,
    metrics: GlyphMetrics<'static>,
    units_per_em: f32,
}

/// A glyph at a sub-pixel phase: the cache's key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Key {
    glyph: u32,
    phase_x: u8,
    phase_y: u8,
}

/// One glyph to draw: its mask's key and the whole pixel its phase is measured from.
#[derive(Clone, Copy, Debug)]
pub struct Placed {
    pub key: Key,
    x: i32,
    y: i32,
}

/// A glyph's coverage at one phase, `left`/`top` from the pixel it is placed at.
pub struct Coverage {
    left: i32,
    top: i32,
    width: usize,
    cov: Vec<u8>,
}

impl Face {
    pub fn get() -> &'static Face {
        static FACE: OnceLock<Face> = OnceLock::new();
        FACE.get_or_init(|| {
            let font = FontRef::new(super::FONT).expect("the bundled font parses");
            let units_per_em = font.metrics(Size::unscaled(), LocationRef::default()).units_per_em as f32;
            Face { charmap: font.charmap(), metrics: font.glyph_metrics(Size::unscaled(), LocationRef::default()), font, units_per_em }
        })
    }

    /// The glyphs of `text` with its baseline starting at (`x`, `y`) and `font_size` pixels to
    /// the em, or `None` for text whose look needs shaping or font fallback: a character outside
    /// the left-to-right alphabetic, punctuation and symbol blocks, one the font lacks, or one not
    /// exactly a cell wide (combining marks, format characters, wide characters).
    pub fn run(&self, text: &str, x: f32, y: f32, font_size: f32) -> Option<Vec<Placed>> {
        let scale = font_size / self.units_per_em;
        let mut pen = 0.0f32;
        let mut placed = Vec::with_capacity(text.len());
        for c in text.chars() {
            if !left_to_right_cell(c) {
                return None;
            }
            let glyph = self.charmap.map(c).filter(|g| g.to_u32() != 0)?;
            let (gx, phase_x) = split(x + pen * scale);
            let (gy, phase_y) = split(y);
            placed.push(Placed { key: Key { glyph: glyph.to_u32(), phase_x, phase_y }, x: gx, y: gy });
            pen += self.metrics.advance_width(glyph)?;
        }
        Some(placed)
    }

    /// The coverage of `key` at `font_size`; `None` for a glyph with no outline (a space).
    pub fn coverage(&self, key: Key, font_size: f32) -> Option<Coverage> {
        let outline = self.font.outline_glyphs().get(GlyphId::new(key.glyph))?;
        let mut pen = Pen(tiny_skia::PathBuilder::new());
        outline.draw(DrawSettings::unhinted(Size::unscaled(), LocationRef::default()), &mut pen).ok()?;
        let path = pen.0.finish()?;
        let scale = font_size / self.units_per_em;
        let (fx, fy) = (key.phase_x as f32 / PHASES as f32, key.phase_y as f32 / PHASES as f32);
        // Outlines are in font units, y up; a margin of a pixel each side for anti-aliasing.
        let b = path.bounds();
        let left = (b.left() * scale + fx).floor() as i32 - 1;
        let right = (b.right() * scale + fx).ceil() as i32 + 1;
        let top = (-b.bottom() * scale + fy).floor() as i32 - 1;
        let bottom = (-b.top() * scale + fy).ceil() as i32 + 1;
        let (w, h) = ((right - left) as u32, (bottom - top) as u32);
        let mut mask = Mask::new(w, h)?;
        let ts = Transform::from_row(scale, 0.0, 0.0, -scale, fx - left as f32, fy - top as f32);
        mask.fill_path(&path, FillRule::Winding, true, ts);
        Some(Coverage { left, top, width: w as usize, cov: mask.data().to_vec() })
    }
}

/// Characters drawn one glyph per cell with no shaping: Latin, Greek, Cyrillic, Armenian and
/// their extensions, and the punctuation, arrow, mathematical, technical, box-drawing and
/// symbol blocks, less the format characters among them. Everything else goes through usvg.
fn left_to_right_cell(c: char) -> bool {
    let u = c as u32;
    let block = matches!(u, 0x20..=0x7e | 0xa0..=0x58f | 0x1d00..=0x1fff | 0x2010..=0x2027 | 0x2030..=0x205e | 0x2070..=0x2bff);
    block && unicode_width::UnicodeWidthChar::width(c) == Some(1)
}

/// A coordinate as the whole pixel below it and the phase of the rest.
fn split(v: f32) -> (i32, u8) {
    let whole = v.floor();
    let phase = ((v - whole) * PHASES as f32).round() as u32;
    if phase == PHASES { (whole as i32 + 1, 0) } else { (whole as i32, phase as u8) }
}

struct Pen(tiny_skia::PathBuilder);

impl OutlinePen for Pen {
    fn move_to(&mut self, x: f32, y: f32) {
        self.0.move_to(x, y);
    }
    fn line_to(&mut self, x: f32, y: f32) {
        self.0.line_to(x, y);
    }
    fn quad_to(&mut self, cx0: f32, cy0: f32, x: f32, y: f32) {
        self.0.quad_to(cx0, cy0, x, y);
    }
    fn curve_to(&mut self, cx0: f32, cy0: f32, cx1: f32, cy1: f32, x: f32, y: f32) {
        self.0.cubic_to(cx0, cy0, cx1, cy1, x, y);
    }
    fn close(&mut self) {
        self.0.close();
    }
}

impl Coverage {
    /// Blends `ink` into premultiplied RGBA `pixels` (`width` wide, whose first row is the
    /// picture's row `first_row`) where the glyph placed at (`x`, `y`) covers them: tiny-skia's
    /// solid fill, `(dst·(255−c) + ink·c + 255) >> 8` per channel, which is the ink itself where
    /// the coverage is whole and the pixel as it was where there is none (so no branch on it:
    /// a row of a glyph blends as one vectorised loop).
    pub fn blend(&self, pixels: &mut [u8], width: usize, first_row: i32, at: &Placed, ink: [u8; 3]) {
        let rows = (pixels.len() / (width * 4)) as i32;
        let ink = [ink[0] as u16, ink[1] as u16, ink[2] as u16, 255];
        let x0 = at.x + self.left;
        // The columns of the mask that land on the picture.
        let (skip, end) = ((-x0).max(0) as usize, (width as i32 - x0).clamp(0, self.width as i32) as usize);
        if skip >= end {
            return;
        }
        for (r, cov_row) in self.cov.chunks_exact(self.width).enumerate() {
            let y = at.y + self.top + r as i32 - first_row;
            if !(0..rows).contains(&y) {
                continue;
            }
            let row = &mut pixels[(y as usize * width + (x0 + skip as i32) as usize) * 4..][..(end - skip) * 4];
            for (px, &c) in row.chunks_exact_mut(4).zip(&cov_row[skip..end]) {
                let c = c as u16;
                px.iter_mut().zip(ink).for_each(|(d, s)| *d = ((*d as u16 * (255 - c) + s * c + 255) >> 8) as u8);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Left-to-right text the font has, a glyph a cell, is drawn from the cache; anything that
    /// needs shaping or another font is left to usvg.
    #[test]
    fn only_text_without_shaping_is_drawn_from_the_cache() {
        let face = Face::get();
        for drawn in ["hello, world", " x = 3·4 → 12 ↵", "Ωμέγα привет ÀÉ", "  ", "{[<>]}|\\~"] {
            let glyphs = face.run(drawn, 10.0, 20.0, 13.0).unwrap_or_else(|| panic!("{drawn:?} is drawn from the cache"));
            assert_eq!(glyphs.len(), drawn.chars().count(), "{drawn:?}");
        }
        for shaped in ["e\u{301}", "漢字", "שלום", "مرحبا", "a\u{200d}b", "\u{1f600}", "\u{fffd}", "क"] {
            assert!(face.run(shaped, 10.0, 20.0, 13.0).is_none(), "{shaped:?} is left to usvg");
        }
    }

    /// Monospace glyphs advance a cell each, and a position is the pixel below it and the
    /// nearest sixteenth above that.
    #[test]
    fn glyphs_are_placed_a_cell_apart_at_sixteenths() {
        let face = Face::get();
        let glyphs = face.run("abcd", 10.0, 20.3, 13.0).unwrap();
        let cell = 13.0 * 1233.0 / 2048.0;
        for (i, g) in glyphs.iter().enumerate() {
            let x = g.x as f32 + g.key.phase_x as f32 / PHASES as f32;
            assert!((x - (10.0 + i as f32 * cell)).abs() <= 0.5 / PHASES as f32 + 1e-4, "glyph {i} at {x}");
            assert_eq!((g.y, g.key.phase_y), (20, 5), "20.3 is 20 and 5/16");
        }
        assert_eq!(split(3.99), (4, 0));
        assert_eq!(split(-0.25), (-1, 12));
    }
}
