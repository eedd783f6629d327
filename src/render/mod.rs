//! Pictures of a result, drawn by the library so the export and the app show the same thing:
//! the text with a heat map, and the backbone as arcs. Both are SVG first; PNG is the SVG
//! rasterised with the bundled font, so images look the same on every machine (the credit
//! picture's token text blended from [`glyphs`]' cache of the same font's outlines).

pub mod axis;
pub mod backbone;
pub mod colormap;
pub(crate) mod decimal;
mod deflate;
mod fill;
mod glyphs;
pub mod graph;
pub mod layout;
mod picture;
mod png;
mod spare;
pub mod text;

pub use picture::{Ink, Picture, Rect};
pub use png::DeflateComparison;

use rayon::prelude::*;
use resvg::tiny_skia::{Pixmap, Transform};
use std::ops::Range;
use std::sync::OnceLock;

/// DejaVu Sans Mono (see `assets/fonts/DejaVu-LICENSE.txt`): monospace keeps layout exact
/// without shaping, and the file ships with the binary, so no system font is needed.
pub const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");
pub const FONT_FAMILY: &str = "DejaVu Sans Mono";
/// Advance of one glyph in em (1233/2048 for DejaVu Sans Mono).
pub const CHAR_WIDTH_EM: f64 = 0.602;

/// The most pixels a picture is rasterised to (128 MiB of RGBA); a larger SVG is drawn scaled
/// down to fit, so no input can make a raster of unbounded size. The SVG keeps every detail.
pub const MAX_RASTER_PIXELS: u64 = 32 << 20;

/// Rasterises an SVG drawn by this module into PNG bytes, within [`MAX_RASTER_PIXELS`].
pub fn svg_to_png(svg: &str) -> Result<Vec<u8>, String> {
    let tree = parse(svg)?;
    let size = tree.size().to_int_size();
    let pixels = size.width() as u64 * size.height() as u64;
    let scale = if pixels > MAX_RASTER_PIXELS { (MAX_RASTER_PIXELS as f64 / pixels as f64).sqrt() as f32 } else { 1.0 };
    let (w, h) = (((size.width() as f32 * scale) as u32).max(1), ((size.height() as f32 * scale) as u32).max(1));
    let mut pixmap = pixmap(w, h)?;
    resvg::render(&tree, Transform::from_scale(scale, scale), &mut pixmap.as_mut());
    Ok(encode(pixmap))
}

fn parse(svg: &str) -> Result<resvg::usvg::Tree, String> {
    static OPTIONS: OnceLock<resvg::usvg::Options<'static>> = OnceLock::new();
    let opt = OPTIONS.get_or_init(|| {
        let mut opt = resvg::usvg::Options { font_family: FONT_FAMILY.into(), ..Default::default() };
        opt.fontdb_mut().load_font_data(FONT.to_vec());
        opt
    });
    resvg::usvg::Tree::from_str(svg, opt).map_err(|e| format!("cannot parse SVG: {e}"))
}

fn pixmap(w: u32, h: u32) -> Result<Pixmap, String> {
    Pixmap::new(w, h).ok_or_else(|| unallocatable(w, h))
}

/// A pixmap of the opaque colour `ground`, written once: a new pixmap is zeroed and filling it
/// wrote every pixel again (the two were a twentieth of drawing a credit picture's bands).
/// Its memory is this thread's spare ([`spare`]): give it back with [`let_go`].
fn grounded_pixmap(w: u32, h: u32, [red, green, blue]: [u8; 3]) -> Result<Pixmap, String> {
    let size = resvg::tiny_skia::IntSize::from_wh(w, h).ok_or_else(|| unallocatable(w, h))?;
    let total = w as usize * h as usize * 4;
    let mut pixels = spare::bytes();
    pixels.try_reserve_exact(total).map_err(|_| unallocatable(w, h))?;
    pixels.extend_from_slice(&[red, green, blue, 255]);
    while pixels.len() < total {
        pixels.extend_from_within(..pixels.len().min(total - pixels.len()));
    }
    Pixmap::from_vec(pixels, size).ok_or_else(|| unallocatable(w, h))
}

/// A band's pixels done with: their memory kept for the thread's next band.
fn let_go(pixmap: Pixmap) {
    spare::keep_bytes(pixmap.take());
}

fn unallocatable(w: u32, h: u32) -> String {
    format!("image of {w}×{h} pixels cannot be allocated")
}

/// Rows per band when a picture is cut for the cores: enough that a band's overlap with its
/// neighbours (a line of text either side) stays a small part of it, few enough that a 4k
/// trace's picture (3 600 rows) makes a dozen bands: at 512 its seven left one core a band
/// behind the other (the PNG 8% slower on two cores).
const BAND_ROWS: u32 = 256;
/// Rows drawn beyond a band on either side and thrown away (see [`Picture::png`]).
const BAND_MARGIN: u32 = 8;

/// The bands of a picture `height` rows tall: cut by the height alone, since each band is a
/// deflate block of its own and the file's bytes follow the cut. Cut by the cores (as it was,
/// into four bands a core from 256 rows up), a 4k trace's credit picture came out in other bytes
/// on 2 cores than on 1 or 16; 256 rows on 2 cores made it 0.02% larger and no slower (8k:
/// 0.1% larger, 5–15% faster: the backbone drawn beside it finds bands to share the cores with).
fn bands(height: u32) -> Vec<Range<u32>> {
    (0..height).step_by(BAND_ROWS as usize).map(|y| y..(y + BAND_ROWS).min(height)).collect()
}

/// PNG bytes of a rasterised picture, its bands compressed in parallel.
fn encode(pixmap: Pixmap) -> Vec<u8> {
    let pieces: Vec<(&Pixmap, Range<u32>)> = bands(pixmap.height()).into_iter().map(|r| (&pixmap, r)).collect();
    encode_pieces(pixmap.width(), &pieces)
}

/// PNG bytes of the picture whose rows are `pieces` in order (rows of pixmaps `width` wide),
/// compressed in parallel: RGB where every pixel is opaque (a quarter fewer bytes to deflate, and
/// our pictures are drawn on a white ground), RGBA otherwise.
fn encode_pieces(width: u32, pieces: &[(&Pixmap, Range<u32>)]) -> Vec<u8> {
    let opaque = pieces.par_iter().all(|(p, r)| rows(p, r).chunks_exact(4).all(|px| px[3] == 255));
    let channels = if opaque { png::Channels::Rgb } else { png::Channels::Rgba };
    let height = pieces.iter().map(|(_, r)| r.len() as u32).sum();
    let compressed: Vec<png::Band> = pieces.par_iter().enumerate().map(|(i, (p, r))| png::band(&scanlines(p, r, channels), i + 1 == pieces.len())).collect();
    png::file(width, height, channels, &compressed)
}

/// Our deflate beside zlib-rs over the rows of `png` (a picture this module wrote), read back
/// and cut into bands as the export cuts them (`flowtracer bench`).
pub fn compare_png_deflates(png: &[u8], repeat: usize) -> Result<png::DeflateComparison, String> {
    let pixmap = Pixmap::decode_png(png).map_err(|e| format!("cannot read the PNG: {e}"))?;
    let opaque = pixmap.data().chunks_exact(4).all(|px| px[3] == 255);
    let channels = if opaque { png::Channels::Rgb } else { png::Channels::Rgba };
    let bands: Vec<png::Scanlines> = bands(pixmap.height()).iter().map(|r| scanlines(&pixmap, r, channels)).collect();
    png::compare_with_zlib(&bands, repeat)
}

fn rows<'a>(p: &'a Pixmap, r: &Range<u32>) -> &'a [u8] {
    let stride = p.width() as usize * 4;
    &p.data()[r.start as usize * stride..r.end as usize * stride]
}

/// The rows `r` of a pixmap as the PNG stores them, as `channels` (RGB only for opaque pixels,
/// which are the same premultiplied or not).
fn scanlines(p: &Pixmap, r: &Range<u32>, channels: png::Channels) -> png::Scanlines {
    let width = p.width() as usize;
    let mut scan = png::Scanlines::new(r.len(), width, channels);
    for row in rows(p, r).chunks_exact(width * 4) {
        let out = scan.row();
        if channels == png::Channels::Rgb {
            rgb_of_rgba(row, out);
        } else {
            for (o, px) in out.chunks_exact_mut(4).zip(row.chunks_exact(4)) {
                let c = resvg::tiny_skia::PremultipliedColorU8::from_rgba(px[0], px[1], px[2], px[3]).expect("premultiplied pixels").demultiply();
                o.copy_from_slice(&[c.red(), c.green(), c.blue(), c.alpha()]);
            }
        }
    }
    scan
}

/// The red, green and blue of each pixel of `rgba` (opaque: the same premultiplied or not).
/// Four pixels at a time: as one byte shuffle of a 16-byte load where the CPU has SSSE3's (all
/// but the first x86-64s), where the compiler's own code for the same gather was a twentieth of
/// an 8k-token credit picture's PNG; otherwise as a 12-byte array (a pixel at a time the copy
/// had been a tenth of compressing a band).
fn rgb_of_rgba(rgba: &[u8], rgb: &mut [u8]) {
    #[inline(always)]
    fn portable(rgba: &[u8], rgb: &mut [u8]) {
        let (out4, out_rest) = rgb.split_at_mut(rgb.len() / 12 * 12);
        let (row4, row_rest) = rgba.split_at(out4.len() / 3 * 4);
        for (o, px) in out4.chunks_exact_mut(12).zip(row4.chunks_exact(16)) {
            let px: &[u8; 16] = px.try_into().expect("16 bytes");
            let rgb: [u8; 12] = std::array::from_fn(|i| px[i / 3 * 4 + i % 3]);
            o.copy_from_slice(&rgb);
        }
        out_rest.chunks_exact_mut(3).zip(row_rest.chunks_exact(4)).for_each(|(o, px)| o.copy_from_slice(&px[..3]));
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "ssse3")]
        fn shuffled(rgba: &[u8], rgb: &mut [u8]) {
            use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_setr_epi8, _mm_shuffle_epi8, _mm_storeu_si128};
            let order = _mm_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1);
            // Each store writes 16 bytes, the last 4 of them the next store's: the final four
            // pixels go the portable way, so no store reaches past the row.
            let pixels = (rgb.len() / 3).min(rgba.len() / 4);
            let vectors = pixels.saturating_sub(4) / 4;
            for v in 0..vectors {
                // SAFETY: vector v reads pixels 4v..4v+4 of `rgba` and writes bytes 12v..12v+16
                // of `rgb`, which holds 3·pixels ≥ 12v + 24 bytes.
                unsafe {
                    let px = _mm_loadu_si128(rgba.as_ptr().add(16 * v).cast::<__m128i>());
                    _mm_storeu_si128(rgb.as_mut_ptr().add(12 * v).cast::<__m128i>(), _mm_shuffle_epi8(px, order));
                }
            }
            portable(&rgba[16 * vectors..], &mut rgb[12 * vectors..]);
        }
        if std::arch::is_x86_feature_detected!("ssse3") {
            // SAFETY: the CPU has SSSE3, checked just above.
            return unsafe { shuffled(rgba, rgb) };
        }
    }
    portable(rgba, rgb)
}

/// A square heat map (row-major `s`×`s` values, scaled to their maximum) as PNG bytes: the
/// matrix view's picture.
pub fn matrix_png(vals: &[f32], s: usize) -> Result<Vec<u8>, String> {
    let max = vals.iter().cloned().fold(0.0f32, f32::max).max(1e-30);
    let mut pixmap = Pixmap::new(s as u32, s as u32).ok_or("empty matrix")?;
    for (px, &v) in pixmap.pixels_mut().iter_mut().zip(vals) {
        let c = colormap::heat(((v / max) as f64).sqrt());
        *px = resvg::tiny_skia::PremultipliedColorU8::from_rgba(c[0], c[1], c[2], 255).expect("opaque");
    }
    Ok(encode(pixmap))
}

/// A share of the unit flow as it is shown: `decimals` places, as it always was, where those
/// show it; a share too small for them (a long trace's paths and tokens carry 10⁻⁵ of it) with
/// two significant digits, where `0.000` on every path of a 4k-token trace had hidden which
/// carried more.
pub fn share(v: f64, decimals: usize) -> String {
    let mut s = String::new();
    share_into(&mut s, v, decimals);
    s
}

/// [`share`], written onto `out` (the report writes one per token).
pub fn share_into(out: &mut String, v: f64, decimals: usize) {
    // (+0 for -0: an empty sum is -0 in std, and "-0.000" reads as a share below nothing)
    let v = v + 0.0;
    let a = v.abs();
    if a == 0.0 || !a.is_finite() || a >= 10f64.powi(-(decimals as i32)) {
        decimal::fixed(out, v, decimals);
    } else if a >= 1e-4 {
        decimal::fixed(out, v, (-a.log10()).ceil() as usize + 1);
    } else {
        decimal::scientific(out, v, 1);
    }
}

/// A share of the unit flow as a percentage, one decimal where that says something.
pub fn percent(v: f64) -> String {
    format!("{}%", share(100.0 * v, 1))
}

/// The answer span as a result's heading shows it, with the positions the flow was conditioned
/// on where they are not the answer itself (by default the positions that wrote it, one
/// earlier): a path ends there, and a reader seeing it end before the answer should know why.
pub fn answer_and_sink(answer: crate::span::Span, sink: crate::span::Span) -> String {
    if sink == answer { answer.to_string() } else { format!("{answer}, written at {sink} (the flow's sink)") }
}

/// Escapes text for SVG/HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s);
    out
}

/// [`escape`], onto the end of `out`.
pub fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push('\u{00b7}'),
            // Not characters XML may hold: an SVG with them does not parse.
            '\u{FFFE}' | '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each pixel's first three bytes, in order, whatever the row's width: the shuffled vectors,
    /// the row's last pixels after them, and rows too short for a vector.
    #[test]
    fn rgb_is_each_pixels_first_three_bytes() {
        let mut rng = crate::flow::test_rng::XorShift(0x853c_49e6_748f_ea9b);
        for width in 0..=41 {
            let rgba: Vec<u8> = (0..4 * width).map(|_| (rng.unit() * 256.0) as u8).collect();
            let mut rgb = vec![0xa5; 3 * width];
            rgb_of_rgba(&rgba, &mut rgb);
            let want: Vec<u8> = rgba.chunks_exact(4).flat_map(|px| px[..3].to_vec()).collect();
            assert_eq!(rgb, want, "{width} pixels");
        }
    }

    #[test]
    fn small_shares_keep_two_significant_digits() {
        use super::{percent, share};
        assert_eq!([share(0.25, 3), share(0.001, 3), share(0.0, 3), share(4.26e-4, 3), share(0.00042, 3), share(3.14e-7, 3)], ["0.250", "0.001", "0.000", "0.00043", "0.00042", "3.1e-7"]);
        assert_eq!([percent(0.5), percent(0.0), percent(1.234e-5), percent(2e-9), percent(-0.0)], ["50.0%", "0.0%", "0.0012%", "2.0e-7%", "0.0%"]);
    }

    /// A heading names the sink only where the flow ran into other positions than the answer.
    #[test]
    fn the_sink_is_named_where_it_is_not_the_answer() {
        use crate::span::Span;
        let answer = Span { start: 48, end: 52 };
        assert_eq!(super::answer_and_sink(answer, answer), "48:52");
        assert_eq!(super::answer_and_sink(answer, Span { start: 47, end: 51 }), "48:52, written at 47:51 (the flow's sink)");
    }

    /// A picture with see-through pixels is stored as RGBA and decodes to what tiny-skia's own
    /// PNG encoder stores; an opaque one as RGB, to the same pixels.
    #[test]
    fn see_through_and_opaque_pictures_keep_their_pixels() {
        let shapes = r##"<circle cx="40" cy="300" r="35" fill="#3366cc" opacity="0.6"/><rect x="10.3" y="5.5" width="60" height="500" fill="#cc3300" fill-opacity="0.3"/>"##;
        for ground in ["", r##"<rect width="100%" height="100%" fill="#ffffff"/>"##] {
            let svg = format!(r##"<svg xmlns="http://www.w3.org/2000/svg" width="80" height="600">{ground}{shapes}</svg>"##);
            let ours = svg_to_png(&svg).unwrap();
            let mut pixmap = Pixmap::new(80, 600).unwrap();
            resvg::render(&parse(&svg).unwrap(), Transform::identity(), &mut pixmap.as_mut());
            let theirs = Pixmap::decode_png(&pixmap.encode_png().unwrap()).unwrap();
            assert!(bands(600).len() >= 2);
            assert_eq!(ours[25], if ground.is_empty() { 6 } else { 2 }, "the IHDR colour type");
            assert!(Pixmap::decode_png(&ours).unwrap().data() == theirs.data(), "{ground:?}: other pixels");
        }
    }
}
