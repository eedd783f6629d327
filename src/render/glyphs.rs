//! Token text drawn from a cache of glyph coverage masks instead of through usvg. Shaping each
//! token's `<text>` and filling its outlines was 145 of the 170 ms (one core) that a 4k-token
//! credit picture took to rasterise, for a few dozen distinct glyphs drawn thousands of times.
//!
//! A mask is the glyph's outline filled by the same anti-aliasing rasteriser resvg uses
//! (tiny-skia), at one of [`PHASES`]² sub-pixel offsets, and it is blended the way tiny-skia
//! blends a solid fill, so a glyph differs from resvg's only by the offset rounded to
//! 1/[`PHASES`] of a pixel. Text this cannot draw exactly as usvg would (a character the font
//! lacks, a combining mark, a wide or right-to-left script) is left to usvg: see [`Face::run`].
//!
//! The masks are kept for the life of the process: an export of a run draws the same few
//! hundred for every trace (rasterising them again was a third of a 600-token credit picture).

use resvg::tiny_skia::{self, FillRule, Mask, Transform};
use skrifa::outline::{DrawSettings, OutlinePen};
use skrifa::prelude::{LocationRef, Size};
use skrifa::charmap::Charmap;
use skrifa::metrics::GlyphMetrics;
use skrifa::{FontRef, GlyphId, MetadataProvider};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

/// Sub-pixel offsets per axis: a glyph lands within 1/32 pixel of where usvg puts it.
const PHASES: u32 = 16;

/// The most bytes of masks the process keeps (a 13-pixel glyph's mask is about 200 bytes, and
/// a picture of English text draws some 500 of them); past it a mask is made and not kept.
const KEPT_BYTES: usize = 8 << 20;

/// The bundled font, read once.
pub struct Face {
    font: FontRef<'static>,
    charmap: Charmap<'static>,
    metrics: GlyphMetrics<'static>,
    units_per_em: f32,
    /// ASCII's glyphs and advances (font units), `None` where [`Face::run`] leaves the
    /// character to usvg: most token text is ASCII, and the charmap's search for each character
    /// was half of placing a 4k-token trace's glyphs.
    ascii: [Option<(GlyphId, f32)>; 128],
    kept: RwLock<Kept>,
}

/// Masks made so far, by glyph, phase and font size (its bits), and their bytes.
#[derive(Default)]
struct Kept {
    masks: HashMap<(Key, u32), Option<Arc<Coverage>>>,
    bytes: usize,
}

impl Kept {
    /// Keeps `mask` unless that would take the masks past `limit` bytes.
    fn keep(&mut self, id: (Key, u32), mask: &Option<Arc<Coverage>>, limit: usize) {
        // A map entry's own size counts too, so that empty masks (spaces) are bounded as well.
        let bytes = std::mem::size_of::<((Key, u32), Option<Arc<Coverage>>)>() + mask.as_ref().map_or(0, |m| std::mem::size_of::<Coverage>() + m.cov.len());
        if self.bytes + bytes <= limit && self.masks.insert(id, mask.clone()).is_none() {
            self.bytes += bytes;
        }
    }
}

/// A glyph at a sub-pixel phase: the cache's key. One integer, glyph then phases, so that a
/// picture's tens of thousands of placed glyphs sort into its distinct masks quickly (compared
/// field by field they took half a millisecond at 4k tokens).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Key(u64);

impl Key {
    fn new(glyph: GlyphId, phase_x: u8, phase_y: u8) -> Key {
        Key(u64::from(glyph.to_u32()) << 16 | u64::from(phase_x) << 8 | u64::from(phase_y))
    }

    fn glyph(self) -> GlyphId {
        GlyphId::new((self.0 >> 16) as u32)
    }

    fn phase_x(self) -> u8 {
        (self.0 >> 8) as u8
    }

    fn phase_y(self) -> u8 {
        self.0 as u8
    }
}

/// A [`Key`] with the font size it is drawn at (a picture's texts may differ in size), as one
/// integer, for the same quick sort.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct SizedKey(u128);

impl SizedKey {
    pub fn new(key: Key, font_size: f32) -> SizedKey {
        SizedKey(u128::from(key.0) << 32 | u128::from(font_size.to_bits()))
    }

    pub fn key(self) -> Key {
        Key((self.0 >> 32) as u64)
    }

    pub fn font_size(self) -> f32 {
        f32::from_bits(self.0 as u32)
    }
}

/// One glyph to draw: its mask's key and the whole pixel its phase is measured from.
#[derive(Clone, Copy, Debug)]
pub struct Placed {
    pub key: Key,
    x: i32,
    y: i32,
}

/// A glyph's coverage at one phase, `left`/`top` from the pixel it is placed at. Its rows are
/// padded with no coverage to a whole number of [`LANES`] pixels, which blend to the pixel they
/// were, so a row blends in whole groups.
pub struct Coverage {
    left: i32,
    top: i32,
    width: usize,
    cov: Vec<u8>,
}

/// Pixels a glyph's row is blended in at once: 16 bytes, one SSE2 register's worth of RGBA,
/// which the compiler vectorises (pixel by pixel it had loaded and inserted each byte alone;
/// that was half of drawing a credit picture's bands).
const LANES: usize = 4;

impl Face {
    pub fn get() -> &'static Face {
        static FACE: OnceLock<Face> = OnceLock::new();
        FACE.get_or_init(|| {
            let font = FontRef::new(super::FONT).expect("the bundled font parses");
            let units_per_em = font.metrics(Size::unscaled(), LocationRef::default()).units_per_em as f32;
            let (charmap, metrics) = (font.charmap(), font.glyph_metrics(Size::unscaled(), LocationRef::default()));
            let ascii = std::array::from_fn(|c| {
                let c = char::from(c as u8);
                let glyph = charmap.map(c).filter(|g| left_to_right_cell(c) && g.to_u32() != 0)?;
                Some((glyph, metrics.advance_width(glyph)?))
            });
            Face { charmap, metrics, font, units_per_em, ascii, kept: RwLock::default() }
        })
    }

    /// A character's glyph and advance, `None` for one [`Face::run`] leaves to usvg.
    fn glyph(&self, c: char) -> Option<(GlyphId, f32)> {
        if let Some(&known) = self.ascii.get(c as usize) {
            return known;
        }
        if !left_to_right_cell(c) {
            return None;
        }
        let glyph = self.charmap.map(c).filter(|g| g.to_u32() != 0)?;
        Some((glyph, self.metrics.advance_width(glyph)?))
    }

    /// The glyphs of `text` with its baseline starting at (`x`, `y`) and `font_size` pixels to
    /// the em, or `None` for text whose look needs shaping or font fallback: a character outside
    /// the left-to-right alphabetic, punctuation and symbol blocks, one the font lacks, or one not
    /// exactly a cell wide (combining marks, format characters, wide characters).
    pub fn run(&self, text: &str, x: f32, y: f32, font_size: f32) -> Option<Vec<Placed>> {
        let scale = font_size / self.units_per_em;
        let mut pen = 0.0f32;
        let mut placed = Vec::with_capacity(text.len());
        let (gy, phase_y) = split(y);
        for c in text.chars() {
            let (glyph, advance) = self.glyph(c)?;
            let (gx, phase_x) = split(x + pen * scale);
            placed.push(Placed { key: Key::new(glyph, phase_x, phase_y), x: gx, y: gy });
            pen += advance;
        }
        Some(placed)
    }

    /// The coverage of `key` at `font_size`, made once in the process; `None` for a glyph with
    /// no outline (a space).
    pub fn coverage(&self, key: Key, font_size: f32) -> Option<Arc<Coverage>> {
        let id = (key, font_size.to_bits());
        if let Some(mask) = self.kept.read().unwrap_or_else(PoisonError::into_inner).masks.get(&id) {
            return mask.clone();
        }
        let mask = self.rasterise(key, font_size).map(Arc::new);
        self.kept.write().unwrap_or_else(PoisonError::into_inner).keep(id, &mask, KEPT_BYTES);
        mask
    }

    fn rasterise(&self, key: Key, font_size: f32) -> Option<Coverage> {
        let outline = self.font.outline_glyphs().get(key.glyph())?;
        let mut pen = Pen(tiny_skia::PathBuilder::new());
        outline.draw(DrawSettings::unhinted(Size::unscaled(), LocationRef::default()), &mut pen).ok()?;
        let path = pen.0.finish()?;
        let scale = font_size / self.units_per_em;
        let (fx, fy) = (key.phase_x() as f32 / PHASES as f32, key.phase_y() as f32 / PHASES as f32);
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
        let width = (w as usize).next_multiple_of(LANES);
        let mut cov = vec![0; width * h as usize];
        cov.chunks_exact_mut(width).zip(mask.data().chunks_exact(w as usize)).for_each(|(to, from)| to[..from.len()].copy_from_slice(from));
        Some(Coverage { left, top, width, cov })
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
            let (groups, rest) = row.as_chunks_mut::<{ 4 * LANES }>();
            let (covs, rest_cov) = cov_row[skip..end].as_chunks::<LANES>();
            for (px, c) in groups.iter_mut().zip(covs) {
                *px = std::array::from_fn(|i| over(px[i], c[i / 4], ink[i % 4]));
            }
            for (px, &c) in rest.chunks_exact_mut(4).zip(rest_cov) {
                px.iter_mut().zip(ink).for_each(|(d, s)| *d = over(*d, c, s));
            }
        }
    }
}

/// A channel `d` under `ink` channel `s` at coverage `c`: tiny-skia's solid fill,
/// `(dst·(255−c) + ink·c + 255) >> 8`, which is `d` itself where `c` is 0.
#[inline(always)]
fn over(d: u8, c: u8, s: u16) -> u8 {
    let c = c as u16;
    ((d as u16 * (255 - c) + s * c + 255) >> 8) as u8
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

    /// A mask is made once in the process and is the glyph's own rasterisation; the masks kept
    /// stay within their bound, and one past it is still drawn, not kept.
    #[test]
    fn masks_are_made_once_and_kept_within_a_bound() {
        let face = Face::get();
        let placed = face.run("g", 3.0, 20.7, 13.0).unwrap();
        let key = placed[0].key;
        let (first, again) = (face.coverage(key, 13.0).unwrap(), face.coverage(key, 13.0).unwrap());
        assert!(Arc::ptr_eq(&first, &again), "made once");
        let fresh = face.rasterise(key, 13.0).unwrap();
        assert_eq!((first.left, first.top, first.width, &first.cov), (fresh.left, fresh.top, fresh.width, &fresh.cov));
        assert!(face.coverage(key, 14.0).unwrap().cov != first.cov, "another size is another mask");

        let mut kept = Kept::default();
        let limit = 4 * (fresh.cov.len() + 128);
        for phase_x in 0..PHASES as u8 {
            let key = Key::new(key.glyph(), phase_x, key.phase_y());
            kept.keep((key, 0), &face.rasterise(key, 13.0).map(Arc::new), limit);
        }
        assert!(kept.bytes <= limit && (2..PHASES as usize).contains(&kept.masks.len()), "{} masks in {} bytes", kept.masks.len(), kept.bytes);
        let before = kept.bytes;
        kept.keep((key, 0), &None, limit);
        kept.keep((key, 0), &None, limit);
        assert!(kept.bytes <= limit && kept.bytes >= before);
    }

    /// A glyph blends as tiny-skia's solid fill blends it, pixel by pixel, wherever it lands:
    /// clipped by the picture's left and right edges and by the band's first and last rows, at
    /// every width the groups of [`LANES`] leave a rest of; its padding changes no pixel.
    #[test]
    fn a_glyph_blends_as_its_pixels_one_by_one() {
        let mut rng = crate::flow::test_rng::XorShift(0x2545_f491_4f6c_dd1d);
        let (width, rows, first_row) = (23usize, 9usize, 40i32);
        for (i, glyph_width) in (1..=9usize).cycle().take(180).enumerate() {
            let (w, h) = (glyph_width.next_multiple_of(LANES), 1 + i % 6);
            let mut cov = vec![0u8; w * h];
            for c in cov.chunks_exact_mut(w).flat_map(|row| &mut row[..glyph_width]) {
                *c = match rng.next_u64() % 3 {
                    0 => 0,
                    1 => 255,
                    _ => rng.next_u64() as u8,
                };
            }
            let mask = Coverage { left: -1, top: -2, width: w, cov };
            let at = Placed { key: Key(0), x: (i as i32 % 33) - 8, y: first_row + (i as i32 % 13) - 3 };
            let ink = [rng.next_u64() as u8, rng.next_u64() as u8, rng.next_u64() as u8];
            let mut pixels: Vec<u8> = (0..width * rows * 4).map(|_| rng.next_u64() as u8).collect();
            pixels.chunks_exact_mut(4).for_each(|px| px[3] = 255);
            let mut expected = pixels.clone();
            for (r, row) in mask.cov.chunks_exact(w).enumerate() {
                let y = at.y + mask.top + r as i32 - first_row;
                for (k, &c) in row[..glyph_width].iter().enumerate() {
                    let x = at.x + mask.left + k as i32;
                    if (0..rows as i32).contains(&y) && (0..width as i32).contains(&x) {
                        let px = &mut expected[(y as usize * width + x as usize) * 4..][..4];
                        let src = [ink[0] as u16, ink[1] as u16, ink[2] as u16, 255];
                        px.iter_mut().zip(src).for_each(|(d, s)| *d = ((*d as u16 * (255 - c as u16) + s * c as u16 + 255) >> 8) as u8);
                    }
                }
            }
            mask.blend(&mut pixels, width, first_row, &at, ink);
            assert_eq!(pixels, expected, "glyph {i}: {glyph_width} wide at ({}, {})", at.x, at.y);
        }
    }

    /// ASCII's table places glyphs as the charmap does: the same glyphs, the same advances, and
    /// the same characters left to usvg.
    #[test]
    fn the_ascii_table_is_the_charmap() {
        let face = Face::get();
        for c in (0u8..128).map(char::from) {
            let slow = face.charmap.map(c).filter(|g| left_to_right_cell(c) && g.to_u32() != 0).and_then(|g| Some((g, face.metrics.advance_width(g)?)));
            assert_eq!(face.glyph(c), slow, "{c:?}");
        }
        assert!(face.glyph('a').is_some() && face.glyph('\n').is_none() && face.glyph('\u{7f}').is_none());
    }

    /// Monospace glyphs advance a cell each, and a position is the pixel below it and the
    /// nearest sixteenth above that.
    #[test]
    fn glyphs_are_placed_a_cell_apart_at_sixteenths() {
        let face = Face::get();
        let glyphs = face.run("abcd", 10.0, 20.3, 13.0).unwrap();
        let cell = 13.0 * 1233.0 / 2048.0;
        for (i, g) in glyphs.iter().enumerate() {
            let x = g.x as f32 + g.key.phase_x() as f32 / PHASES as f32;
            assert!((x - (10.0 + i as f32 * cell)).abs() <= 0.5 / PHASES as f32 + 1e-4, "glyph {i} at {x}");
            assert_eq!((g.y, g.key.phase_y()), (20, 5), "20.3 is 20 and 5/16");
        }
        assert_eq!(split(3.99), (4, 0));
        assert_eq!(split(-0.25), (-1, 12));
    }
}
