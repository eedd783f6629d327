//! PNG files of our pictures, compressed in bands of rows so that a tall picture (the credit
//! text of a 4k-token trace is 893×3608 pixels) uses every core: each band is deflated on its
//! own and ends on a byte boundary (a sync flush), the bands' zlib checksums are combined, and a
//! decoder reads one ordinary zlib stream (pigz writes gzip this way).
//!
//! Rows are stored unfiltered and deflated by [`deflate`], which looks for repeats only where
//! our pictures have them: the pixel before, the row above, a glyph drawn again. Filters would
//! not help it (they turn a run into zeros it already codes as a run), and with zlib they did
//! not either: on the 4k-token credit picture libpng's adaptive filters made a larger file (1006
//! against 983 KB at level 2) and cost a third of the encoding.

use super::deflate;

/// The pixel layout, 8 bits per channel.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Channels {
    Rgb,
    /// Straight (not premultiplied) alpha.
    Rgba,
}

impl Channels {
    /// The IHDR colour type.
    fn colour_type(self) -> u8 {
        match self {
            Channels::Rgb => 2,
            Channels::Rgba => 6,
        }
    }

    /// Bytes per pixel.
    pub fn bytes(self) -> usize {
        match self {
            Channels::Rgb => 3,
            Channels::Rgba => 4,
        }
    }
}

/// A band's rows as the PNG stores them: each its filter type (0, none), then its pixels.
pub struct Scanlines {
    bytes: Vec<u8>,
    width: usize,
    channels: Channels,
}

impl Scanlines {
    pub fn new(rows: usize, width: usize, channels: Channels) -> Self {
        let mut bytes = super::spare::bytes();
        bytes.reserve_exact(rows * (width * channels.bytes() + 1));
        Scanlines { bytes, width, channels }
    }

    /// Bytes a row takes, its filter byte included.
    fn stride(&self) -> usize {
        self.width * self.channels.bytes() + 1
    }

    /// The next row, for the caller to fill.
    pub fn row(&mut self) -> &mut [u8] {
        self.bytes.push(0);
        let start = self.bytes.len();
        self.bytes.resize(start + self.width * self.channels.bytes(), 0);
        &mut self.bytes[start..]
    }
}

/// The rows' memory is kept for the thread's next band ([`super::spare`]).
impl Drop for Scanlines {
    fn drop(&mut self) {
        super::spare::keep_bytes(std::mem::take(&mut self.bytes));
    }
}

/// One band of rows, deflated.
pub struct Band {
    deflated: Vec<u8>,
    adler: u32,
    len: usize,
}

/// Deflates a band's `scanlines`; `last` marks the band that ends the picture.
pub fn band(scanlines: &Scanlines, last: bool) -> Band {
    let bytes = &scanlines.bytes;
    let deflated = deflate::rows(bytes, scanlines.stride(), scanlines.channels.bytes(), last);
    Band { deflated, adler: zlib_rs::adler32::adler32(1, bytes), len: bytes.len() }
}

/// The PNG file of a `width`×`height` picture whose rows are `bands`, in order (the last one
/// made with `last`), each laid out as `channels`.
pub fn file(width: u32, height: u32, channels: Channels, bands: &[Band]) -> Vec<u8> {
    let deflated: usize = bands.iter().map(|b| b.deflated.len()).sum();
    let mut idat = Vec::with_capacity(deflated + 6);
    // zlib header: deflate with a 32 KiB window, "fast" level, no dictionary.
    idat.extend_from_slice(&[0x78, 0x5e]);
    let mut adler = 1;
    for b in bands {
        idat.extend_from_slice(&b.deflated);
        adler = zlib_rs::adler32::adler32_combine(adler, b.adler, b.len as u64);
    }
    idat.extend_from_slice(&adler.to_be_bytes());

    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    // 8 bits per channel, deflate, adaptive filtering, not interlaced.
    ihdr.extend_from_slice(&[8, channels.colour_type(), 0, 0, 0]);
    let mut out = Vec::with_capacity(idat.len() + 64);
    out.extend_from_slice(b"\x89PNG\r\n\x1a\n");
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// Our deflate beside zlib-rs at level 2 (what the PNG export used before it, and zlib's fast
/// setting), on one core over the same rows: the alternative a user would pick, measured in
/// the same run (`flowtracer bench`).
#[derive(Clone, Copy, Debug)]
pub struct DeflateComparison {
    /// The scanlines' bytes (filter bytes included) and how many bands they were cut into.
    pub rows_bytes: usize,
    pub bands: usize,
    pub ours: std::time::Duration,
    pub ours_bytes: usize,
    pub zlib: std::time::Duration,
    pub zlib_bytes: usize,
}

/// Times both encoders over `bands` (a picture's rows as the export cuts them), alternating
/// them `repeat` times: the median of each.
pub fn compare_with_zlib(bands: &[Scanlines], repeat: usize) -> Result<DeflateComparison, String> {
    let Some(first) = bands.first() else { return Err("a picture without rows".into()) };
    let (pixel, stride) = (first.channels.bytes(), first.stride());
    let bands: Vec<&[u8]> = bands.iter().map(|b| &b.bytes[..]).collect();
    let ours = || bands.iter().enumerate().map(|(i, b)| deflate::rows(b, stride, pixel, i + 1 == bands.len()).len()).sum::<usize>();
    let mut out = vec![0u8; zlib_rs::compress_bound(bands.iter().map(|b| b.len()).max().unwrap_or(0))];
    let config = zlib_rs::DeflateConfig { level: 2, window_bits: -15, ..Default::default() };
    let mut zlib = || -> Result<usize, String> {
        bands.iter().try_fold(0, |sum, b| match zlib_rs::compress_slice(&mut out, b, config) {
            (deflated, zlib_rs::ReturnCode::Ok) => Ok(sum + deflated.len()),
            (_, code) => Err(format!("zlib-rs could not deflate a band ({code:?})")),
        })
    };
    let (mut ours_times, mut zlib_times, mut sizes) = (Vec::new(), Vec::new(), (0, 0));
    for _ in 0..repeat.max(1) {
        let t = std::time::Instant::now();
        sizes.0 = ours();
        ours_times.push(t.elapsed());
        let t = std::time::Instant::now();
        sizes.1 = zlib()?;
        zlib_times.push(t.elapsed());
    }
    let median = crate::bench::median;
    Ok(DeflateComparison { rows_bytes: bands.iter().map(|b| b.len()).sum(), bands: bands.len(), ours: median(ours_times), ours_bytes: sizes.0, zlib: median(zlib_times), zlib_bytes: sizes.1 })
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Opaque noise, flat runs and ramps: something to compress.
    fn picture(width: usize, height: usize) -> Vec<u8> {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        (0..width * height * 4)
            .map(|i| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                match (i / (width * 4) % 3, i % 4) {
                    (_, 3) => 255,
                    (0, _) => (seed >> 56) as u8,
                    (1, _) => 200,
                    _ => (i / 4 % width * 3) as u8,
                }
            })
            .collect()
    }

    fn idat(png: &[u8]) -> &[u8] {
        let at = png.windows(4).position(|w| w == b"IDAT").expect("an IDAT chunk");
        let len = u32::from_be_bytes(png[at - 4..at].try_into().unwrap()) as usize;
        &png[at + 4..at + 4 + len]
    }

    /// The side-by-side comparison reads back the rows of a file written here and deflates
    /// them both ways; what is not such a file is an error, not a panic.
    #[test]
    fn our_deflate_is_compared_with_zlib_on_the_same_rows() {
        let (w, h) = (120usize, 700usize);
        let rgba = picture(w, h);
        let mut scan = Scanlines::new(h, w, Channels::Rgb);
        for row in rgba.chunks_exact(w * 4) {
            for (o, px) in scan.row().chunks_exact_mut(3).zip(row.chunks_exact(4)) {
                o.copy_from_slice(&px[..3]);
            }
        }
        let png = file(w as u32, h as u32, Channels::Rgb, &[band(&scan, true)]);
        let c = crate::render::compare_png_deflates(&png, 2).unwrap();
        assert_eq!(c.rows_bytes, h * (w * 3 + 1));
        assert!(c.bands >= 2, "cut as the export cuts: {c:?}");
        // A third of the rows is noise: neither encoder can shrink the picture much below that.
        assert!(c.ours_bytes > c.rows_bytes / 4 && c.zlib_bytes > c.rows_bytes / 4 && c.ours_bytes < c.rows_bytes, "{c:?}");
        for bad in [&b"not a png"[..], &png[..40]] {
            assert!(crate::render::compare_png_deflates(bad, 1).is_err());
        }
    }

    /// However the rows are cut into bands, as RGB or RGBA, the file decodes to the same
    /// pixels, and its zlib stream (its combined checksum included: flate2 verifies it) holds a
    /// filter byte and the row for every row.
    #[test]
    fn banded_files_decode_to_the_picture() {
        let (w, h) = (37usize, 50usize);
        let rgba = picture(w, h);
        for channels in [Channels::Rgb, Channels::Rgba] {
            let per_pixel = if channels == Channels::Rgb { 3 } else { 4 };
            for cuts in [vec![50], vec![1, 49], vec![17, 16, 17], vec![1; 50]] {
                let mut start = 0;
                let bands: Vec<Band> = cuts
                    .iter()
                    .enumerate()
                    .map(|(i, &rows)| {
                        let mut scan = Scanlines::new(rows, w, channels);
                        for row in rgba[start * w * 4..(start + rows) * w * 4].chunks_exact(w * 4) {
                            let out = scan.row();
                            for (o, px) in out.chunks_exact_mut(per_pixel).zip(row.chunks_exact(4)) {
                                o.copy_from_slice(&px[..per_pixel]);
                            }
                        }
                        start += rows;
                        band(&scan, i + 1 == cuts.len())
                    })
                    .collect();
                let png = file(w as u32, h as u32, channels, &bands);
                let decoded = resvg::tiny_skia::Pixmap::decode_png(&png).unwrap_or_else(|e| panic!("{channels:?} {cuts:?}: {e}"));
                assert_eq!((decoded.width(), decoded.height()), (w as u32, h as u32));
                assert!(decoded.data() == &rgba[..], "{channels:?} {cuts:?}: other pixels");
                let mut raw = Vec::new();
                flate2::read::ZlibDecoder::new(idat(&png)).read_to_end(&mut raw).unwrap_or_else(|e| panic!("{channels:?} {cuts:?}: {e}"));
                assert_eq!(raw.len(), h * (w * per_pixel + 1), "{channels:?} {cuts:?}");
            }
        }
    }
}
