//! PNG files of our pictures, compressed in bands of rows so that a tall picture (the credit
//! text of a 4k-token trace is 893×3608 pixels) uses every core: each band is filtered and
//! deflated on its own and ends on a byte boundary (a sync flush), the bands' zlib checksums
//! are combined, and a decoder reads one ordinary zlib stream (pigz writes gzip this way).
//! Compressing was most of an export before: 190 of 440 ms at N = 4096 with the png crate's
//! default level on one core.

use std::io::Write;

/// Deflate level of every band. On the 4k-token credit picture level 2 took 45 ms where the
/// png crate's default (6) took 150 ms, for 5% more bytes; level 1 took 28 ms for 36% more.
const LEVEL: u32 = 2;

/// One band of rows, filtered and deflated.
pub struct Band {
    deflated: Vec<u8>,
    adler: u32,
    len: usize,
}

/// Filters and deflates `rgba` (whole rows of `width` straight-alpha RGBA pixels). The band's
/// first row is filtered without the row above (it belongs to another band); `last` marks the
/// band that ends the picture.
pub fn band(rgba: &[u8], width: usize, last: bool) -> Band {
    let stride = width * 4;
    let mut filtered = Vec::with_capacity(rgba.len() + rgba.len() / stride.max(1));
    let mut scratch = Filtered::new(stride);
    let mut above: Option<&[u8]> = None;
    for row in rgba.chunks_exact(stride) {
        let (kind, bytes) = scratch.best(above, row);
        filtered.push(kind);
        filtered.extend_from_slice(bytes);
        above = Some(row);
    }
    let adler = adler32(&filtered);
    let mut z = flate2::write::DeflateEncoder::new(Vec::with_capacity(filtered.len() / 4), flate2::Compression::new(LEVEL));
    // Writing into a Vec does not fail.
    z.write_all(&filtered).expect("deflate into memory");
    let deflated = if last {
        z.finish().expect("deflate into memory")
    } else {
        z.flush().expect("deflate into memory");
        std::mem::take(z.get_mut())
    };
    Band { deflated, adler, len: filtered.len() }
}

/// The PNG file of a `width`×`height` RGBA picture whose rows are `bands`, in order (the last
/// one made with `last`).
pub fn file(width: u32, height: u32, bands: &[Band]) -> Vec<u8> {
    let deflated: usize = bands.iter().map(|b| b.deflated.len()).sum();
    let mut idat = Vec::with_capacity(deflated + 6);
    // zlib header: deflate with a 32 KiB window, "fast" level, no dictionary.
    idat.extend_from_slice(&[0x78, 0x5e]);
    let mut adler = 1;
    for b in bands {
        idat.extend_from_slice(&b.deflated);
        adler = adler32_combine(adler, b.adler, b.len);
    }
    idat.extend_from_slice(&adler.to_be_bytes());

    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    // 8 bits per channel, RGBA, deflate, adaptive filtering, not interlaced.
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    let mut out = Vec::with_capacity(idat.len() + 64);
    out.extend_from_slice(b"\x89PNG\r\n\x1a\n");
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    out
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// The five PNG filters of one row, and the choice among them by the smallest sum of absolute
/// (signed) bytes: the heuristic libpng and the png crate use by default.
struct Filtered {
    /// Sub, up, average, paeth (the unfiltered row is the row itself).
    rows: [Vec<u8>; 4],
}

impl Filtered {
    fn new(stride: usize) -> Self {
        Filtered { rows: std::array::from_fn(|_| vec![0; stride]) }
    }

    /// The filter type byte and the filtered row; without `above`, only the filters that do not
    /// read it (none, sub).
    fn best<'a>(&'a mut self, above: Option<&[u8]>, row: &'a [u8]) -> (u8, &'a [u8]) {
        const BPP: usize = 4;
        let [sub, up, avg, paeth] = &mut self.rows;
        let n = row.len();
        sub[..BPP].copy_from_slice(&row[..BPP]);
        for ((o, &x), &a) in sub[BPP..].iter_mut().zip(&row[BPP..]).zip(&row[..n - BPP]) {
            *o = x.wrapping_sub(a);
        }
        let mut costs = [cost(row), cost(sub), u64::MAX, u64::MAX, u64::MAX];
        if let Some(above) = above {
            for ((o, &x), &b) in up.iter_mut().zip(row).zip(above) {
                *o = x.wrapping_sub(b);
            }
            for i in 0..BPP {
                avg[i] = row[i].wrapping_sub(above[i] >> 1);
                paeth[i] = row[i].wrapping_sub(above[i]);
            }
            let rest = row[BPP..].iter().zip(&row[..n - BPP]).zip(above[BPP..].iter().zip(&above[..n - BPP]));
            for ((o, p), ((&x, &a), (&b, &c))) in avg[BPP..].iter_mut().zip(&mut paeth[BPP..]).zip(rest) {
                *o = x.wrapping_sub(((a as u16 + b as u16) >> 1) as u8);
                *p = x.wrapping_sub(paeth_predictor(a, b, c));
            }
            costs[2..].copy_from_slice(&[cost(up), cost(avg), cost(paeth)]);
        }
        let kind = (0..5).min_by_key(|&k| costs[k]).expect("five filters");
        (kind as u8, if kind == 0 { row } else { &self.rows[kind - 1] })
    }
}

/// Summed in u32 over pieces (at most 128 per byte), which vectorises; the pieces in u64.
fn cost(bytes: &[u8]) -> u64 {
    bytes.chunks(1 << 16).map(|piece| piece.iter().map(|&b| (b as i8).unsigned_abs() as u32).sum::<u32>() as u64).sum()
}

fn paeth_predictor(a: u8, b: u8, c: u8) -> u8 {
    let (a16, b16, c16) = (a as i16, b as i16, c as i16);
    let (pa, pb, pc) = ((b16 - c16).abs(), (a16 - c16).abs(), (a16 + b16 - 2 * c16).abs());
    // Branch-free, so the row's loop vectorises.
    let bc = if pb <= pc { b } else { c };
    if pa <= pb && pa <= pc { a } else { bc }
}

const ADLER_MOD: u64 = 65521;

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u64, 0u64);
    // 5552 bytes is the most that cannot overflow the sums between reductions (zlib's NMAX).
    for block in bytes.chunks(5552) {
        for &x in block {
            a += x as u64;
            b += a;
        }
        a %= ADLER_MOD;
        b %= ADLER_MOD;
    }
    ((b << 16) | a) as u32
}

/// The Adler-32 of two pieces joined, from each piece's and the second's length (zlib's
/// `adler32_combine`).
fn adler32_combine(first: u32, second: u32, second_len: usize) -> u32 {
    let rem = second_len as u64 % ADLER_MOD;
    let (a1, b1) = (first as u64 & 0xffff, first as u64 >> 16);
    let (a2, b2) = (second as u64 & 0xffff, second as u64 >> 16);
    let a = (a1 + a2 + ADLER_MOD - 1) % ADLER_MOD;
    let b = (rem * a1 % ADLER_MOD + b1 + b2 + ADLER_MOD - rem) % ADLER_MOD;
    ((b << 16) | a) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Rows made for each filter to win somewhere: after a row of noise, each byte the mean of
    /// its left and upper neighbours (average), a repeat of the row above (up), blank (none), a
    /// horizontal ramp (sub), blocks of two colours (paeth).
    fn picture(width: usize, height: usize) -> Vec<u8> {
        let stride = width * 4;
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut out = vec![0u8; stride * height];
        for y in 0..height {
            let (done, row) = out.split_at_mut(y * stride);
            let row = &mut row[..stride];
            let above = (y > 0).then(|| &done[(y - 1) * stride..]);
            for i in 0..stride {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                row[i] = match (y % 6, above) {
                    // Opaque, as our pictures are: the decoder hands back premultiplied pixels.
                    _ if i % 4 == 3 => 255,
                    (1, Some(a)) => ((if i >= 4 { row[i - 4] } else { 0 } as u16 + a[i] as u16) >> 1) as u8,
                    (2, Some(a)) => a[i],
                    (3, _) => 0,
                    (4, _) => (i / 4 * 3) as u8,
                    (5, _) => if (i / 4 / 5 + y / 3) % 2 == 0 { [200, 30, 60, 255][i % 4] } else { [10, 240, 90, 255][i % 4] },
                    _ => (seed >> 56) as u8,
                };
            }
        }
        out
    }

    fn idat(png: &[u8]) -> &[u8] {
        let at = png.windows(4).position(|w| w == b"IDAT").expect("an IDAT chunk");
        let len = u32::from_be_bytes(png[at - 4..at].try_into().unwrap()) as usize;
        &png[at + 4..at + 4 + len]
    }

    /// However the rows are cut into bands, the file decodes to the same pixels, and its zlib
    /// stream (checksum included: flate2 verifies it) holds one filter byte and the row for
    /// every row.
    #[test]
    fn banded_files_decode_to_the_picture() {
        let (w, h) = (37usize, 50usize);
        let rgba = picture(w, h);
        for cuts in [vec![50], vec![1, 49], vec![17, 16, 17], vec![1; 50]] {
            let mut start = 0;
            let bands: Vec<Band> = cuts
                .iter()
                .enumerate()
                .map(|(i, &rows)| {
                    let b = band(&rgba[start * w * 4..(start + rows) * w * 4], w, i + 1 == cuts.len());
                    start += rows;
                    b
                })
                .collect();
            let png = file(w as u32, h as u32, &bands);
            let decoded = resvg::tiny_skia::Pixmap::decode_png(&png).unwrap_or_else(|e| panic!("{cuts:?}: {e}"));
            assert_eq!((decoded.width(), decoded.height()), (w as u32, h as u32));
            assert!(decoded.data() == &rgba[..], "{cuts:?}: other pixels");
            let mut raw = Vec::new();
            flate2::read::ZlibDecoder::new(idat(&png)).read_to_end(&mut raw).unwrap_or_else(|e| panic!("{cuts:?}: {e}"));
            assert_eq!(raw.len(), h * (w * 4 + 1), "{cuts:?}");
            let kinds: std::collections::BTreeSet<u8> = raw.chunks(w * 4 + 1).map(|r| r[0]).collect();
            if cuts.len() == 1 {
                assert_eq!(kinds.len(), 5, "every filter is chosen somewhere: {kinds:?}");
            }
        }
    }

    #[test]
    fn combined_checksums_are_the_checksum_of_the_whole() {
        let bytes = picture(61, 40);
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
        for cut in [0, 1, 5551, 5552, 5553, 9000, bytes.len()] {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(adler32_combine(adler32(a), adler32(b), b.len()), adler32(&bytes), "cut at {cut}");
        }
    }
}
