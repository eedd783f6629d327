//! Pictures of a result, drawn by the library so the export and the app show the same thing:
//! the text with a heat map, and the backbone as arcs. Both are SVG first; PNG is the SVG
//! rasterised with the bundled font, so images look the same on every machine.

pub mod backbone;
pub mod colormap;
pub mod graph;
pub mod layout;
pub mod text;

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
    static OPTIONS: OnceLock<resvg::usvg::Options<'static>> = OnceLock::new();
    let opt = OPTIONS.get_or_init(|| {
        let mut opt = resvg::usvg::Options { font_family: FONT_FAMILY.into(), ..Default::default() };
        opt.fontdb_mut().load_font_data(FONT.to_vec());
        opt
    });
    let tree = resvg::usvg::Tree::from_str(svg, opt).map_err(|e| format!("cannot parse SVG: {e}"))?;
    let size = tree.size().to_int_size();
    let pixels = size.width() as u64 * size.height() as u64;
    let scale = if pixels > MAX_RASTER_PIXELS { (MAX_RASTER_PIXELS as f64 / pixels as f64).sqrt() as f32 } else { 1.0 };
    let (w, h) = (((size.width() as f32 * scale) as u32).max(1), ((size.height() as f32 * scale) as u32).max(1));
    let mut pixmap = resvg::tiny_skia::Pixmap::new(w, h).ok_or_else(|| format!("image of {w}×{h} pixels cannot be allocated"))?;
    resvg::render(&tree, resvg::tiny_skia::Transform::from_scale(scale, scale), &mut pixmap.as_mut());
    pixmap.encode_png().map_err(|e| format!("cannot encode PNG: {e}"))
}

/// A square heat map (row-major `s`×`s` values, scaled to their maximum) as PNG bytes: the
/// matrix view's picture.
pub fn matrix_png(vals: &[f32], s: usize) -> Result<Vec<u8>, String> {
    let max = vals.iter().cloned().fold(0.0f32, f32::max).max(1e-30);
    let mut pixmap = resvg::tiny_skia::Pixmap::new(s as u32, s as u32).ok_or("empty matrix")?;
    for (px, &v) in pixmap.pixels_mut().iter_mut().zip(vals) {
        let c = colormap::heat(((v / max) as f64).sqrt());
        *px = resvg::tiny_skia::PremultipliedColorU8::from_rgba(c[0], c[1], c[2], 255).expect("opaque");
    }
    pixmap.encode_png().map_err(|e| e.to_string())
}

/// Escapes text for SVG/HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
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
    out
}
