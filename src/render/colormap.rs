//! Colour maps. A light sequential map for heat on text (low values stay near white so the text
//! stays readable) and a categorical palette for backbone paths.

/// Yellow-orange-red (ColorBrewer YlOrRd, 9 classes), from near white.
const HEAT: [[u8; 3]; 9] = [
    [0xff, 0xff, 0xf4],
    [0xff, 0xf7, 0xbc],
    [0xfe, 0xe3, 0x91],
    [0xfe, 0xc4, 0x4f],
    [0xfe, 0x99, 0x29],
    [0xec, 0x70, 0x14],
    [0xcc, 0x4c, 0x02],
    [0x99, 0x34, 0x04],
    [0x66, 0x25, 0x06],
];

/// The heat colour of `t` in [0, 1] (clamped; NaN reads as 0).
pub fn heat(t: f64) -> [u8; 3] {
    interpolate(&HEAT, t)
}

/// Linear interpolation between evenly spaced colour stops.
pub fn interpolate(stops: &[[u8; 3]], t: f64) -> [u8; 3] {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * (stops.len() - 1) as f64;
    let i = (x.floor() as usize).min(stops.len() - 2);
    let f = x - i as f64;
    let (a, b) = (stops[i], stops[i + 1]);
    [0, 1, 2].map(|c| (a[c] as f64 + (b[c] as f64 - a[c] as f64) * f).round() as u8)
}

/// Text colour that stays legible on `bg`.
pub fn ink_on(bg: [u8; 3]) -> [u8; 3] {
    let lum = 0.2126 * bg[0] as f64 + 0.7152 * bg[1] as f64 + 0.0722 * bg[2] as f64;
    if lum < 120.0 { [0xff, 0xff, 0xff] } else { [0x1a, 0x1a, 0x1a] }
}

/// Paths and series (Okabe-Ito, safe for colour-blind readers; its black is grey here so it
/// shows on dark backgrounds too).
pub const CATEGORICAL: [[u8; 3]; 8] = [
    [0x00, 0x72, 0xb2],
    [0xd5, 0x5e, 0x00],
    [0x00, 0x9e, 0x73],
    [0xcc, 0x79, 0xa7],
    [0x56, 0xb4, 0xe9],
    [0xe6, 0x9f, 0x00],
    [0x99, 0x99, 0x99],
    [0xf0, 0xe4, 0x42],
];

pub const QUESTION: [u8; 3] = [0x1f, 0x5f, 0xbf];
pub const ANSWER: [u8; 3] = [0x1a, 0x8a, 0x3a];
pub const HUB: [u8; 3] = [0x7b, 0x1f, 0xa2];
pub const CREDIT: [u8; 3] = [0xd0, 0x10, 0x6a];

pub fn hex(c: [u8; 3]) -> String {
    let mut s = String::with_capacity(7);
    push_hex(&mut s, c);
    s
}

/// [`hex`], onto the end of `out`.
pub fn push_hex(out: &mut String, c: [u8; 3]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.push('#');
    for b in c {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
}

/// Display scale of throughput: square root of the share of the largest, so the long tail of
/// small values still shows against a few dominant tokens.
pub fn heat_scale(value: f64, max: f64) -> f64 {
    if max <= 0.0 { 0.0 } else { (value / max).max(0.0).sqrt() }
}
