//! Deflate (RFC 1951) for our pictures' rows, in one pass over them.
//!
//! A picture of ours is flat colours, text and lines on a ground: almost every pixel is the one
//! to its left or the one above (on the 4k-token credit picture 78% and 10% of them), and most of
//! the rest are glyphs drawn before on the same row. zlib's search looks for repeats at every
//! distance; this encoder asks where ours are: the run of bytes equal to those a pixel before, the
//! run equal to the row above, and, where neither runs far, the last place the next four bytes
//! began (one probe of a hash table). It takes the longest and codes the band under one Huffman
//! code made for it. On that picture it writes 853 KB where zlib-rs at level 2 writes 998 KB, in
//! two thirds of its time (`flowtracer bench` sets the two side by side on the same rows).
//!
//! A band is one dynamic block ended on a byte boundary, by an empty stored block where more
//! bands follow (zlib's sync flush), so bands deflated apart concatenate into one stream.

/// The longest and shortest match deflate codes.
const MAX_MATCH: usize = 258;
const MIN_MATCH: usize = 3;
/// How far back a match may reach.
const WINDOW: usize = 32 * 1024;
/// Longest code of the literal/length and distance alphabets, and of the code-length alphabet.
const MAX_BITS: usize = 15;
const MAX_CODE_LENGTH_BITS: usize = 7;

const LENGTH_BASE: [u16; 29] = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LENGTH_EXTRA: [u8; 29] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DIST_BASE: [u16; 30] =
    [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577];
const DIST_EXTRA: [u8; 30] = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
/// The order the code-length code's lengths are sent in.
const CODE_LENGTH_ORDER: [usize; 19] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];
const END_OF_BLOCK: usize = 256;
/// Where neither the pixel before nor the row above repeat this far, the last place the next
/// four bytes began is looked at too (a glyph drawn again).
const SHORT: usize = 8;
/// Size of the table of those places.
const HASH_BITS: u32 = 14;

/// Deflates `data`, rows of `stride` bytes whose pixels are `pixel` bytes wide, as one block:
/// the stream's last (`last`) or followed by a sync flush.
pub fn rows(data: &[u8], stride: usize, pixel: usize, last: bool) -> Vec<u8> {
    let tokens = Tokens::of(data, stride, pixel);
    let mut out = BitWriter::with_capacity(data.len() / 8 + 1024);
    tokens.write_block(&mut out, last);
    super::spare::keep_words(tokens.list);
    if !last {
        // An empty stored block: three header bits, then LEN 0 and NLEN 0xffff from a byte boundary.
        out.put(0, 3);
        out.extend(&[0, 0, 0xff, 0xff]);
    }
    out.finish()
}

/// A band as literals and matches, with the symbols' counts.
struct Tokens {
    /// Literals and matches, each packed as a [`Token`].
    list: Vec<u32>,
    literal_length: [u32; 286],
    distance: [u32; 30],
}

/// The distance symbol a literal carries: none, coded in no bits.
const NO_DISTANCE: usize = 30;

/// A token packed so that the coding pass neither branches nor does arithmetic: the
/// literal/length symbol (9 bits) and its extra bits (5), the distance symbol (5; a literal's is
/// [`NO_DISTANCE`]) and its extra bits (13).
struct Token;

impl Token {
    fn literal(byte: u8) -> u32 {
        byte as u32 | (NO_DISTANCE as u32) << 14
    }

    /// The match's token, and its length's and its distance's symbols (to count them).
    fn matched(length: usize, distance: usize) -> (u32, usize, usize) {
        let (l, d) = (length_code(length), distance_code(distance));
        let (length_extra, distance_extra) = (length - LENGTH_BASE[l] as usize, distance - DIST_BASE[d] as usize);
        ((257 + l) as u32 | (length_extra as u32) << 9 | (d as u32) << 14 | (distance_extra as u32) << 19, 257 + l, d)
    }
}

/// Each symbol's code, its extra bits' count added to its length, so that a token is coded by
/// table lookups alone.
struct Coder {
    bits: Vec<u16>,
    lengths: Vec<u8>,
    /// The code's length and then the extra bits'.
    total: Vec<u8>,
}

impl Coder {
    fn new(code: &Code, extra: impl Fn(usize) -> u8, symbols: usize) -> Coder {
        // A symbol past the code's alphabet (a literal's empty distance) has no code and no bits.
        let lengths: Vec<u8> = (0..symbols).map(|s| code.lengths.get(s).copied().unwrap_or(0)).collect();
        let bits = (0..symbols).map(|s| code.bits.get(s).copied().unwrap_or(0)).collect();
        let total = (0..symbols).map(|s| lengths[s] + if lengths[s] > 0 { extra(s) } else { 0 }).collect();
        Coder { bits, lengths, total }
    }

    /// The symbol's code with `extra` after it, and how many bits the two take.
    #[inline(always)]
    fn code(&self, symbol: usize, extra: u32) -> (u64, u32) {
        (self.bits[symbol] as u64 | (extra as u64) << self.lengths[symbol], self.total[symbol] as u32)
    }
}

impl Tokens {
    fn of(data: &[u8], stride: usize, pixel: usize) -> Tokens {
        let mut list = super::spare::words();
        list.reserve(data.len() / 4);
        let mut t = Tokens { list, literal_length: [0; 286], distance: [0; 30] };
        let above = if stride <= WINDOW { stride } else { usize::MAX };
        let mut recent = vec![0u32; 1 << HASH_BITS];
        let mut at = 0;
        let four = |i: usize| u32::from_le_bytes(data[i..i + 4].try_into().expect("4 bytes"));
        while at < data.len() {
            let rest = MAX_MATCH.min(data.len() - at);
            let (mut length, mut distance) = (0, 0);
            // No match starts where the next three bytes differ: one comparison says so before
            // a run is counted (a fifth fewer instructions on the 4k credit picture, though only
            // 3–7% less time: the branches that end the runs cost more than the counting).
            let key = (at + 4 <= data.len()).then(|| four(at));
            let starts = |from: usize| key.is_none_or(|k| (k ^ four(from)) & 0xff_ffff == 0);
            if at >= above && starts(at - above) {
                (length, distance) = (common(data, at, at - above), above);
            }
            if length < rest && at >= pixel && starts(at - pixel) {
                let left = common(data, at, at - pixel);
                if left > length {
                    (length, distance) = (left, pixel);
                }
            }
            if let (true, Some(key)) = (length < SHORT, key) {
                // Elsewhere in the window: the last place these four bytes began.
                let slot = &mut recent[(key.wrapping_mul(0x9e37_79b1) >> (32 - HASH_BITS)) as usize];
                let earlier = *slot as usize;
                *slot = at as u32;
                if earlier < at && at - earlier <= WINDOW && starts(earlier) {
                    let there = common(data, at, earlier);
                    if there > length {
                        (length, distance) = (there, at - earlier);
                    }
                }
            }
            if length >= MIN_MATCH {
                let (token, l, d) = Token::matched(length, distance);
                t.list.push(token);
                t.literal_length[l] += 1;
                t.distance[d] += 1;
                at += length;
            } else {
                t.list.push(Token::literal(data[at]));
                t.literal_length[data[at] as usize] += 1;
                at += 1;
            }
        }
        t.literal_length[END_OF_BLOCK] += 1;
        // A code of one symbol is incomplete (one bit, the other pattern unused), which some
        // decoders refuse: each alphabet gets a second symbol, never sent.
        for counts in [&mut t.literal_length[..], &mut t.distance[..]] {
            while counts.iter().filter(|&&c| c > 0).count() < 2 {
                *counts.iter_mut().find(|c| **c == 0).expect("an unused symbol") = 1;
            }
        }
        t
    }

    fn write_block(&self, out: &mut BitWriter, last: bool) {
        let literal_length = Code::new(&self.literal_length, MAX_BITS);
        let distance = Code::new(&self.distance, MAX_BITS);
        out.put(last as u64, 1);
        out.put(2, 2);
        write_code_lengths(out, &literal_length.lengths, &distance.lengths);
        let lengths = Coder::new(&literal_length, |s| if s > END_OF_BLOCK { LENGTH_EXTRA[s - 257] } else { 0 }, 286);
        let distances = Coder::new(&distance, |d| DIST_EXTRA.get(d).copied().unwrap_or(0), NO_DISTANCE + 1);
        // Each token in one write of at most 48 bits, the same for a literal as for a match
        // (whose distance part is then empty): no branch a picture's mix of the two mispredicts.
        for &token in &self.list {
            let (symbol, extra, d, distance_extra) = ((token & 0x1ff) as usize, token >> 9 & 31, (token >> 14 & 31) as usize, token >> 19);
            let (first, first_bits) = lengths.code(symbol, extra);
            let (second, second_bits) = distances.code(d, distance_extra);
            out.put(first | second << first_bits, first_bits + second_bits);
        }
        literal_length.put(out, END_OF_BLOCK);
    }
}

/// How many bytes from `at` equal those from `from` (< `at`), up to the longest match.
#[inline(always)]
fn common(data: &[u8], at: usize, from: usize) -> usize {
    let max = MAX_MATCH.min(data.len() - at);
    let (here, there) = (&data[at..at + max], &data[from..from + max]);
    let mut k = 0;
    while k + 8 <= max {
        let word = |bytes: &[u8]| u64::from_le_bytes(bytes[k..k + 8].try_into().expect("8 bytes"));
        let differ = word(here) ^ word(there);
        if differ != 0 {
            return k + (differ.trailing_zeros() / 8) as usize;
        }
        k += 8;
    }
    while k < max && here[k] == there[k] {
        k += 1;
    }
    k
}

/// The length symbol's index (0 for 3 bytes … 28 for 258) in [`LENGTH_BASE`].
#[inline]
fn length_code(length: usize) -> usize {
    LENGTH_CODES[length - MIN_MATCH] as usize
}

/// The distance symbol's index in [`DIST_BASE`]: from a table for the first 256 distances, and
/// for the longer ones (whose symbols each cover a multiple of 128) by their 128s, as zlib does.
#[inline]
fn distance_code(distance: usize) -> usize {
    let d = distance - 1;
    (if d < 256 { DIST_CODES[d] } else { DIST_CODES[256 + (d >> 7)] }) as usize
}

/// [`length_code`] of every length from [`MIN_MATCH`], made once when the program is compiled.
const LENGTH_CODES: [u8; MAX_MATCH - MIN_MATCH + 1] = {
    let mut codes = [0u8; MAX_MATCH - MIN_MATCH + 1];
    let mut l = 0;
    while l < 29 {
        let mut length = LENGTH_BASE[l] as usize;
        // (258 has a symbol of its own, 28, though 227 + 31 would reach it with symbol 27's bits.)
        let end = if l == 28 { MAX_MATCH + 1 } else { LENGTH_BASE[l + 1] as usize };
        while length < end {
            codes[length - MIN_MATCH] = l as u8;
            length += 1;
        }
        l += 1;
    }
    codes
};

/// [`distance_code`]'s table: distance − 1 below 256, then 256 + (distance − 1) / 128.
const DIST_CODES: [u8; 512] = {
    let mut codes = [0u8; 512];
    let mut d = 0;
    while d < 30 {
        let mut distance = DIST_BASE[d] as usize;
        let end = if d == 29 { WINDOW + 1 } else { DIST_BASE[d + 1] as usize };
        while distance < end {
            let i = distance - 1;
            if i < 256 {
                codes[i] = d as u8;
            } else {
                codes[256 + (i >> 7)] = d as u8;
            }
            distance += 1;
        }
        d += 1;
    }
    codes
};

/// A canonical Huffman code: each symbol's length and its bits, reversed as deflate sends them.
struct Code {
    lengths: Vec<u8>,
    bits: Vec<u16>,
}

impl Code {
    fn new(counts: &[u32], limit: usize) -> Code {
        let lengths = code_lengths(counts, limit);
        let mut per_length = [0u32; MAX_BITS + 2];
        lengths.iter().filter(|&&l| l > 0).for_each(|&l| per_length[l as usize] += 1);
        let mut next = [0u32; MAX_BITS + 2];
        for l in 1..=MAX_BITS {
            next[l + 1] = (next[l] + per_length[l]) << 1;
        }
        let bits = lengths
            .iter()
            .map(|&l| {
                if l == 0 {
                    return 0;
                }
                let code = next[l as usize];
                next[l as usize] += 1;
                (code as u16).reverse_bits() >> (16 - l)
            })
            .collect();
        Code { lengths, bits }
    }

    fn put(&self, out: &mut BitWriter, symbol: usize) {
        out.put(self.bits[symbol] as u64, self.lengths[symbol] as u32);
    }
}

/// Huffman code lengths of at most `limit` bits for symbols seen `counts` times (0: unused).
fn code_lengths(counts: &[u32], limit: usize) -> Vec<u8> {
    let mut symbols: Vec<usize> = (0..counts.len()).filter(|&s| counts[s] > 0).collect();
    let mut lengths = vec![0u8; counts.len()];
    if symbols.len() < 2 {
        symbols.iter().for_each(|&s| lengths[s] = 1);
        return lengths;
    }
    symbols.sort_by_key(|&s| (counts[s], s));
    // Huffman's tree by the two-queue method: leaves in rising count, inner nodes made in rising
    // weight; every node's parent comes after it.
    let n = symbols.len();
    let mut weight: Vec<u64> = symbols.iter().map(|&s| counts[s] as u64).collect();
    let mut parent = vec![0usize; 2 * n - 1];
    let (mut leaf, mut inner) = (0, n);
    for node in n..2 * n - 1 {
        let mut take = || {
            let pick = if leaf < n && (inner >= node || weight[leaf] <= weight[inner]) { &mut leaf } else { &mut inner };
            *pick += 1;
            *pick - 1
        };
        let (a, b) = (take(), take());
        weight.push(weight[a] + weight[b]);
        parent[a] = node;
        parent[b] = node;
    }
    let mut depth = vec![0usize; 2 * n - 1];
    for node in (0..2 * n - 2).rev() {
        depth[node] = depth[parent[node]] + 1;
    }
    // Too-long codes folded in at the limit, then codes lengthened from the limit up until the
    // lengths fit a complete code again (as miniz does).
    let mut per_length = vec![0usize; limit + 1];
    depth[..n].iter().for_each(|&d| per_length[d.min(limit)] += 1);
    let mut total: usize = (1..=limit).map(|l| per_length[l] << (limit - l)).sum();
    while total > 1 << limit {
        per_length[limit] -= 1;
        if let Some(l) = (1..limit).rev().find(|&l| per_length[l] > 0) {
            per_length[l] -= 1;
            per_length[l + 1] += 2;
        }
        total -= 1;
    }
    // The most frequent symbols get the shortest codes.
    let mut rarest_first = symbols.iter();
    for l in (1..=limit).rev() {
        for _ in 0..per_length[l] {
            lengths[*rarest_first.next().expect("a symbol per code")] = l as u8;
        }
    }
    lengths
}

/// Sends the two codes' lengths, run-length coded under the code-length code.
fn write_code_lengths(out: &mut BitWriter, literal_length: &[u8], distance: &[u8]) {
    let used = |lengths: &[u8], least: usize| lengths.iter().rposition(|&l| l > 0).map_or(least, |i| (i + 1).max(least));
    let (hlit, hdist) = (used(literal_length, 257), used(distance, 1));
    let all: Vec<u8> = literal_length[..hlit].iter().chain(&distance[..hdist]).copied().collect();
    // (symbol, extra bits' value, extra bits)
    let mut runs: Vec<(u8, u8, u8)> = Vec::new();
    let mut i = 0;
    while i < all.len() {
        let l = all[i];
        let run = all[i..].iter().take_while(|&&x| x == l).count();
        if l == 0 && run >= 11 {
            let r = run.min(138);
            runs.push((18, (r - 11) as u8, 7));
            i += r;
        } else if l == 0 && run >= 3 {
            runs.push((17, (run - 3) as u8, 3));
            i += run;
        } else if l != 0 && run >= 4 {
            runs.push((l, 0, 0));
            let r = (run - 1).min(6);
            runs.push((16, (r - 3) as u8, 2));
            i += 1 + r;
        } else {
            runs.push((l, 0, 0));
            i += 1;
        }
    }
    let mut counts = [0u32; 19];
    runs.iter().for_each(|&(s, _, _)| counts[s as usize] += 1);
    let code = Code::new(&counts, MAX_CODE_LENGTH_BITS);
    let hclen = CODE_LENGTH_ORDER.iter().rposition(|&s| code.lengths[s] > 0).map_or(4, |i| (i + 1).max(4));
    out.put((hlit - 257) as u64, 5);
    out.put((hdist - 1) as u64, 5);
    out.put((hclen - 4) as u64, 4);
    CODE_LENGTH_ORDER[..hclen].iter().for_each(|&s| out.put(code.lengths[s] as u64, 3));
    for (symbol, extra, bits) in runs {
        code.put(out, symbol as usize);
        out.put(extra as u64, bits as u32);
    }
}

/// Bits least significant first, as deflate packs them. Each write stores the eight bytes of
/// the pending bits where the next byte goes and moves on by the whole bytes among them, so that
/// it does not branch on how full the pending bits are.
struct BitWriter {
    /// The bytes written so far are `bytes[..at]`; past them lies room for a write.
    bytes: Vec<u8>,
    at: usize,
    /// Fewer than 8 bits not yet in a whole byte (they are also in `bytes[at]` already).
    pending: u64,
    count: u32,
}

impl BitWriter {
    fn with_capacity(bytes: usize) -> Self {
        BitWriter { bytes: vec![0; bytes.max(64)], at: 0, pending: 0, count: 0 }
    }

    /// The low `bits` of `value` (at most 56; nothing set above them).
    #[inline(always)]
    fn put(&mut self, value: u64, bits: u32) {
        debug_assert!(bits <= 56 && value >> bits == 0);
        self.pending |= value << self.count;
        self.count += bits;
        if self.at + 8 > self.bytes.len() {
            self.bytes.resize(2 * self.bytes.len() + 8, 0);
        }
        self.bytes[self.at..self.at + 8].copy_from_slice(&self.pending.to_le_bytes());
        let whole = self.count / 8;
        self.at += whole as usize;
        self.pending >>= 8 * whole;
        self.count &= 7;
    }

    /// Pads the last byte with zeros: what is written is whole bytes.
    fn align(&mut self) {
        if self.count > 0 {
            self.at += 1;
            (self.pending, self.count) = (0, 0);
        }
    }

    /// Whole bytes after those written (aligned first).
    fn extend(&mut self, bytes: &[u8]) {
        self.align();
        self.bytes.truncate(self.at);
        self.bytes.extend_from_slice(bytes);
        self.at = self.bytes.len();
    }

    /// The bytes written, aligned.
    fn finish(mut self) -> Vec<u8> {
        self.align();
        self.bytes.truncate(self.at);
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn inflate(deflated: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(deflated).read_to_end(&mut out).expect("a valid deflate stream");
        out
    }

    /// Rows of `stride` bytes like a picture's: a filter byte, runs of a few colours, rows
    /// repeated, a "glyph" drawn again, and noise.
    fn picture(rows: usize, stride: usize, pixel: usize, seed: u64) -> Vec<u8> {
        let mut rng = crate::flow::test_rng::XorShift(seed);
        let mut data = Vec::with_capacity(rows * stride);
        let glyph: Vec<u8> = (0..5 * pixel).map(|_| (rng.unit() * 255.0) as u8).collect();
        for r in 0..rows {
            if r > 0 && rng.unit() < 0.3 {
                data.extend_from_within((r - 1) * stride..r * stride);
                continue;
            }
            data.push(0);
            while data.len() < (r + 1) * stride {
                let room = (r + 1) * stride - data.len();
                match (rng.unit() * 4.0) as u32 {
                    0 => data.extend(std::iter::repeat_n([200, 230, 255, 255][(rng.unit() * 4.0) as usize], room.min((rng.unit() * 300.0) as usize))),
                    1 => data.extend_from_slice(&glyph[..room.min(glyph.len())]),
                    _ => data.extend((0..room.min(1 + (rng.unit() * 9.0) as usize)).map(|_| (rng.unit() * 256.0) as u8)),
                }
            }
        }
        data
    }

    /// Whatever the rows hold and however they are cut into bands, the bands read back as one
    /// stream, through another inflater, to the bytes deflated.
    #[test]
    fn bands_inflate_to_their_rows() {
        let cases = [
            (0, 10, 3),
            (1, 1, 3),
            (1, 7, 4),
            (40, 37 * 3 + 1, 3),
            (30, 101 * 4 + 1, 4),
            (300, 893 * 3 + 1, 3),
            // A row wider than deflate's window: no matches with the row above.
            (3, 11_000 * 3 + 1, 3),
        ];
        for (seed, &(height, stride, pixel)) in cases.iter().enumerate() {
            let data = picture(height, stride, pixel, 0x9e37_79b9_7f4a_7c15 ^ seed as u64);
            for band_rows in [1, 7, height.max(1)] {
                let bands: Vec<&[u8]> = if data.is_empty() { vec![&data[..]] } else { data.chunks(band_rows * stride).collect() };
                let stream: Vec<u8> = bands.iter().enumerate().flat_map(|(i, b)| rows(b, stride, pixel, i + 1 == bands.len())).collect();
                assert!(inflate(&stream) == data, "{height} rows of {stride} in bands of {band_rows}: other bytes");
            }
        }
        // Noise still inflates, at about its size; a flat picture shrinks to almost nothing.
        let noise = picture(50, 301, 3, 7).iter().enumerate().map(|(i, b)| b ^ (i as u8).wrapping_mul(151)).collect::<Vec<_>>();
        assert_eq!(inflate(&rows(&noise, 301, 3, true)), noise);
        let flat = vec![255u8; 1000 * 301];
        let deflated = rows(&flat, 301, 3, true);
        assert!(deflated.len() < 2000, "{} bytes for a flat picture", deflated.len());
        assert_eq!(inflate(&deflated), flat);
    }

    /// Code lengths stay within the limit and make a complete code (Kraft's sum exactly one),
    /// unused symbols get none, and where the limit does not bind the code costs what Huffman's
    /// does.
    #[test]
    fn code_lengths_are_complete_limited_and_optimal() {
        let mut rng = crate::flow::test_rng::XorShift(0x2545_f491_4f6c_dd1d);
        let fibonacci: Vec<u32> = (0..30).scan((1u32, 1u32), |s, _| {
            let f = s.0;
            *s = (s.1, s.0 + s.1);
            Some(f)
        }).collect();
        let mut cases: Vec<(Vec<u32>, usize)> = vec![(fibonacci.clone(), 15), (fibonacci.clone(), 7), (vec![5, 0, 0, 9], 7), (vec![1; 286], 15)];
        for _ in 0..300 {
            let n = 2 + (rng.unit() * 284.0) as usize;
            let skew = rng.unit() * 20.0;
            cases.push(((0..n).map(|_| if rng.unit() < 0.3 { 0 } else { (rng.unit().powf(skew) * 1e6) as u32 + 1 }).collect(), 15));
        }
        for (counts, limit) in cases {
            let lengths = code_lengths(&counts, limit);
            let used = counts.iter().filter(|&&c| c > 0).count();
            assert!(lengths.iter().zip(&counts).all(|(&l, &c)| (l == 0) == (c == 0) && l as usize <= limit), "{counts:?}: {lengths:?}");
            if used >= 2 {
                let kraft: u64 = lengths.iter().filter(|&&l| l > 0).map(|&l| 1u64 << (limit - l as usize)).sum();
                assert_eq!(kraft, 1 << limit, "{counts:?}: an incomplete or overfull code {lengths:?}");
            }
            let cost = |lengths: &[u8]| lengths.iter().zip(&counts).map(|(&l, &c)| l as u64 * c as u64).sum::<u64>();
            let unlimited = code_lengths(&counts, 40);
            if unlimited.iter().all(|&l| l as usize <= limit) && used >= 2 {
                assert_eq!(cost(&lengths), huffman_cost(&counts), "{counts:?}");
            }
        }
    }

    /// Huffman's cost by merging the two lightest weights until one is left.
    fn huffman_cost(counts: &[u32]) -> u64 {
        let mut heap: std::collections::BinaryHeap<std::cmp::Reverse<u64>> = counts.iter().filter(|&&c| c > 0).map(|&c| std::cmp::Reverse(c as u64)).collect();
        let mut cost = 0;
        while heap.len() > 1 {
            let (a, b) = (heap.pop().unwrap().0, heap.pop().unwrap().0);
            cost += a + b;
            heap.push(std::cmp::Reverse(a + b));
        }
        cost
    }

    #[test]
    fn lengths_and_distances_take_their_symbols() {
        for length in MIN_MATCH..=MAX_MATCH {
            let l = length_code(length);
            assert!(LENGTH_BASE[l] as usize <= length && length - (LENGTH_BASE[l] as usize) < 1 << LENGTH_EXTRA[l], "{length}");
            assert!(l == 28 || length < LENGTH_BASE[l + 1] as usize, "{length}");
        }
        for distance in 1..=WINDOW {
            let d = distance_code(distance);
            assert!(DIST_BASE[d] as usize <= distance && distance - (DIST_BASE[d] as usize) < 1 << DIST_EXTRA[d], "{distance}");
            assert!(d == 29 || distance < DIST_BASE[d + 1] as usize, "{distance}");
        }
    }
}
