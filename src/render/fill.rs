//! Axis-aligned rectangles filled the way tiny-skia's anti-aliasing rasteriser fills them (what
//! resvg does for a `<rect>`), worked out a pixel row at a time instead of run through its
//! sub-scanlines. Filling a 4k-token picture's ~5 000 token boxes through `fill_path` (edges,
//! four sub-scanlines a pixel row, run-length coverage, a blending pipeline per run) was about
//! half of drawing it.
//!
//! tiny-skia supersamples 4× each way (`SUPERSAMPLE_SHIFT` = 2). A rectangle's two vertical
//! edges land on quarter pixels as its fixed-point edge set-up rounds them, and so do its top
//! and bottom, on sub-scanlines. On each sub-scanline the span adds, to the pixel it starts in
//! and the one it ends in, 16 for every quarter it covers, and to each pixel between 64 (63 on a
//! pixel's last sub-scanline, so that four make 255). A pixel whose sum is 255 takes the colour;
//! any other is blended with it by the low-precision pipeline: `(dst·(255−c) + src·c + 255) >> 8`.

use resvg::tiny_skia;
use std::ops::Range;

const SHIFT: i32 = 2;
/// The largest coordinate tiny-skia supersamples (larger ones it draws without anti-aliasing).
const MAX_COORD: f32 = 8191.0;

/// Fills `rect` (in the pixmap's pixels) with the opaque `colour` into premultiplied RGBA
/// `pixels`, `width`×`height`. `false` where it is not the case worked out here (a rectangle
/// reaching past the pixmap's left or right edge, or coordinates beyond [`MAX_COORD`]): the
/// caller fills it through tiny-skia.
pub fn opaque_rect(pixels: &mut [u8], width: u32, height: u32, rect: tiny_skia::Rect, colour: [u8; 3]) -> bool {
    let (l, t, r, b) = (rect.left(), rect.top(), rect.right(), rect.bottom());
    if width as f32 > MAX_COORD || height as f32 > MAX_COORD || l < 0.0 || r > width as f32 || t < -MAX_COORD || b > MAX_COORD {
        return false;
    }
    // tiny-skia's `fill_path` skips a path less than 1/4096 of a pixel wide or high.
    let nearly_zero = 1.0 / 4096.0;
    if rect.width() <= nearly_zero || rect.height() <= nearly_zero {
        return true;
    }
    // A coordinate in 26.6 fixed point on the supersampled grid (truncated, as `LineEdge::new`
    // does), then rounded to a whole sub-pixel (`fdot6::round`, or `fdot16::round_to_i32` of
    // the same value for x).
    let sub = |v: f32| (((v * (1 << (SHIFT + 6)) as f32) as i32) + 32) >> 6;
    let (x0, x1) = (sub(l), sub(r));
    let rows = sub(t).max(0)..sub(b).min((height as i32) << SHIFT);
    if x1 <= x0 || rows.is_empty() {
        return true;
    }
    let (first, last) = (x0 >> SHIFT, x1 >> SHIFT);
    let (fb, fe) = (x0 & 3, x1 & 3);
    let stride = width as usize * 4;
    let src = [colour[0] as u16, colour[1] as u16, colour[2] as u16, 255];
    for y in rows.start >> SHIFT..=(rows.end - 1) >> SHIFT {
        let covered = rows.start.max(y << SHIFT)..rows.end.min((y + 1) << SHIFT);
        let k = covered.len() as u16;
        let whole = 64 * k - covered.contains(&((y << SHIFT) + 3)) as u16;
        let row = &mut pixels[y as usize * stride..][..stride];
        let mut put = |xs: Range<i32>, alpha: u16| blend(&mut row[xs.start as usize * 4..xs.end as usize * 4], alpha, src);
        if first == last {
            put(first..first + 1, k * (fe - fb) as u16 * 16);
            continue;
        }
        let middle = if fb == 0 {
            first
        } else {
            put(first..first + 1, k * (4 - fb) as u16 * 16);
            first + 1
        };
        put(middle..last, whole);
        if fe != 0 {
            put(last..last + 1, k * fe as u16 * 16);
        }
    }
    true
}

/// Pixels under `alpha` of 255 of the opaque `src`, as tiny-skia's anti-aliased blitter draws
/// them: the colour where whole, its lerp pipeline (coverage as f32 and back) otherwise.
fn blend(pixels: &mut [u8], alpha: u16, src: [u16; 4]) {
    match alpha {
        0 => {}
        255 => {
            let colour = src.map(|c| c as u8);
            pixels.chunks_exact_mut(4).for_each(|px| px.copy_from_slice(&colour));
        }
        a => {
            let c = ((a as f32 * (1.0 / 255.0)) * 255.0 + 0.5) as u16;
            let src = src.map(|s| s * c + 255);
            for px in pixels.chunks_exact_mut(4) {
                px.iter_mut().zip(src).for_each(|(d, s)| *d = ((*d as u16 * (255 - c) + s) >> 8) as u8);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use resvg::tiny_skia::{FillRule, Paint, PathBuilder, Pixmap, Transform};

    /// Random rectangles over a striped ground, at any fraction of a pixel, from slivers to
    /// wide boxes, reaching past the top and bottom: tiny-skia's own fill, byte for byte.
    #[test]
    fn rectangles_are_filled_as_tiny_skia_fills_them() {
        let (w, h) = (120u32, 90u32);
        let mut rng = crate::flow::test_rng::XorShift(0x853c_49e6_748f_ea9b);
        let mut next = |scale: f32| (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * scale;
        let mut ground = Pixmap::new(w, h).unwrap();
        for (i, px) in ground.pixels_mut().iter_mut().enumerate() {
            let v = (i * 7 % 256) as u8;
            *px = tiny_skia::PremultipliedColorU8::from_rgba(v, 255 - v, v / 2, 255).unwrap();
        }
        let (mut ours, mut theirs) = (ground.clone(), ground);
        for i in 0..3000 {
            let quantum = [1.0, 0.5, 0.25, 0.1, 1.0 / 64.0, 0.0][i % 6];
            let snap = |v: f32| if quantum > 0.0 { (v / quantum).round() * quantum } else { v };
            let (x, y) = (snap(next(w as f32)), snap(next(h as f32 + 20.0) - 10.0));
            let (rw, rh) = (snap(next(if i % 5 == 0 { 1.5 } else { 40.0 })), snap(next(if i % 7 == 0 { 1.5 } else { 25.0 })));
            let Some(rect) = tiny_skia::Rect::from_xywh(x, y, rw, rh) else { continue };
            let colour = [(i * 37) as u8, (i * 91) as u8, (i * 53) as u8];
            if !opaque_rect(ours.data_mut(), w, h, rect, colour) {
                assert!(rect.right() > w as f32, "{rect:?} is inside the pixmap");
                continue;
            }
            let mut paint = Paint { anti_alias: true, ..Default::default() };
            paint.set_color_rgba8(colour[0], colour[1], colour[2], 255);
            theirs.fill_path(&PathBuilder::from_rect(rect), &paint, FillRule::Winding, Transform::identity(), None);
            if let Some(at) = ours.data().iter().zip(theirs.data()).position(|(a, b)| a != b) {
                let (x, y) = (at / 4 % w as usize, at / 4 / w as usize);
                panic!("rectangle {i} {rect:?}: pixel ({x}, {y}) differs");
            }
        }
    }
}
