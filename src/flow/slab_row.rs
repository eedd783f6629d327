//! One query row of one (layer, head) slab on its way into the aggregate: its values added into
//! (or maxed with) the row's accumulator, and its sum and minimum for the checks, in one pass
//! where the CPU allows. An `[L,H,N,N]` trace is read through here once per selected slab, so
//! this loop is most of the aggregation's time.

use crate::params::Reduce;
use crate::trace::Dtype;

/// Sum and minimum of a row in one branch-free pass: a NaN or ∞ poisons the sum, a negative
/// shows in the minimum. Eight lanes so the additions pipeline instead of waiting on each other.
pub fn row_stats(row: &[f32]) -> (f64, f32) {
    let mut sums = [0f32; 8];
    let mut mins = [f32::INFINITY; 8];
    let chunks = row.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..8 {
            sums[l] += c[l];
            mins[l] = mins[l].min(c[l]);
        }
    }
    finish_stats(sums, mins, rest)
}

/// The lanes folded and the tail added, in the one order every path uses (so the fused pass
/// gives `row_stats`'s sum to the bit).
fn finish_stats(sums: [f32; 8], mins: [f32; 8], rest: &[f32]) -> (f64, f32) {
    let mut sum: f64 = sums.iter().map(|&x| x as f64).sum();
    let mut min = mins.iter().copied().fold(f32::INFINITY, f32::min);
    for &x in rest {
        sum += x as f64;
        min = min.min(x);
    }
    // f32::min ignores NaN; make sure a NaN anywhere still shows.
    if sums.iter().any(|s| s.is_nan()) {
        sum = f64::NAN;
    }
    (sum, min)
}

/// How many slabs' rows `accumulate_rows` takes in one pass.
pub const GROUP: usize = 4;

/// `accumulate` of up to `GROUP` rows into the same accumulator, in order, with each row's
/// stats. Four rows under the mean go through the accumulator once instead of four times: each
/// entry is loaded, has the four values added in the rows' order (the sums `accumulate` makes,
/// bit for bit) and is stored. At 8k tokens the accumulator (64 KiB) is past the first-level
/// cache, and its traffic, eight times the attention's, had bounded the aggregation.
/// `first`: the group starts the row, and `acc` holds nothing yet (whatever it holds is taken for
/// the reduction's start, 0 or -∞): under the mean the sums then start from zero in registers,
/// the accumulator neither cleared nor read first (`0 + x` as before, bit for bit).
pub fn accumulate_rows(dtype: Dtype, rows: &[&[u8]], acc: &mut [f64], reduce: Reduce, buf: &mut [f32], first: bool) -> [(f64, f32); GROUP] {
    let mut stats = [(0.0, 0.0); GROUP];
    #[cfg(target_arch = "x86_64")]
    if reduce == Reduce::Mean {
        // A group of two or three (the last of a selection, or all of it: the default layers
        // of a 4-layer `[L,N,N]` trace are three slabs) goes through the accumulator once too.
        fn took<const R: usize>(got: Option<[(f64, f32); R]>, stats: &mut [(f64, f32); GROUP]) -> bool {
            got.map(|got| stats[..R].copy_from_slice(&got)).is_some()
        }
        let fresh = first;
        let done = match *rows {
            [a, b, c, d] => took(with_eight(dtype, Mean { rows: [a, b, c, d], acc, fresh }), &mut stats),
            [a, b, c] => took(with_eight(dtype, Mean { rows: [a, b, c], acc, fresh }), &mut stats),
            [a, b] => took(with_eight(dtype, Mean { rows: [a, b], acc, fresh }), &mut stats),
            [a] => took(with_eight(dtype, Mean { rows: [a], acc, fresh }), &mut stats),
            _ => false,
        };
        if done {
            return stats;
        }
    }
    if first {
        acc.fill(if reduce == Reduce::Max { f64::NEG_INFINITY } else { 0.0 });
    }
    for (s, row) in stats.iter_mut().zip(rows) {
        *s = accumulate(dtype, row, acc, reduce, buf);
    }
    stats
}

/// Adds the row `bytes` (in `dtype`, `acc.len()` values) into `acc` by `reduce` and returns its
/// `row_stats`. `buf` (at least `acc.len()` long) holds the decoded row where the work takes
/// two passes. Under the mean (the default) on a CPU with AVX it takes one: eight values decoded
/// at a time, summed, and added into `acc` from registers.
pub fn accumulate(dtype: Dtype, bytes: &[u8], acc: &mut [f64], reduce: Reduce, buf: &mut [f32]) -> (f64, f32) {
    #[cfg(target_arch = "x86_64")]
    if reduce == Reduce::Mean
        && let Some([stats]) = with_eight(dtype, Mean { rows: [bytes], acc, fresh: false })
    {
        return stats;
    }
    let row = &mut buf[..acc.len()];
    dtype.decode(bytes, row);
    let stats = row_stats(row);
    match reduce {
        Reduce::Mean => acc.iter_mut().zip(row.iter()).for_each(|(a, &x)| *a += x as f64),
        Reduce::Max => acc.iter_mut().zip(row.iter()).for_each(|(a, &x)| *a = a.max(x as f64)),
    }
    stats
}

/// The row `bytes` (in `dtype`, `out.len()` values) decoded into `out`, with its `row_stats`.
/// A single slab's aggregation (an `[N,N]` file, or one layer and head) is this: its values are
/// M's own. On a CPU with AVX it takes one pass, eight values decoded, stored, summed and
/// minimised at a time, where decoding and then reading the row again had cost as much as
/// copying it (a batch of 64 `[N,N]` F32 traces at 1k spent 10% of its time in `row_stats`).
/// `ahead`: where not 0, each cache line read has the one `ahead` bytes on asked for ([`ask_for`]).
pub fn decode_row(dtype: Dtype, bytes: &[u8], out: &mut [f32], ahead: usize) -> (f64, f32) {
    #[cfg(target_arch = "x86_64")]
    if let Some(stats) = with_eight(dtype, Decode { row: bytes, out, ahead }) {
        return stats;
    }
    dtype.decode(bytes, out);
    row_stats(out)
}

/// `decode_row` eight values at a time as `load` decodes them: the lanes, the minimum and the
/// tail as in `mean_eight`, so the stats are `row_stats`'s to the bit. A single slab's rows lie
/// one after another in the file, so the hardware's prefetcher follows them unasked, within a
/// page (rows of a page or less have the next asked for, `ahead`: `aggregate`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn decode_eight(dtype: Dtype, row: &[u8], out: &mut [f32], ahead: usize, load: impl Fn(*const u8) -> std::arch::x86_64::__m256) -> (f64, f32) {
    use std::arch::x86_64::*;
    let (n, es) = (out.len(), dtype.size());
    assert_eq!(row.len(), es * n, "a row of {n} values");
    let whole = n / 8 * 8;
    let dst = out.as_mut_ptr();
    // SAFETY: AVX is enabled in every caller; j + 8 ≤ n, so 8 values from byte es·j of the row
    // and 8 f32 from j lie inside the row and `out`.
    unsafe {
        let (mut sums, mut mins) = (_mm256_setzero_ps(), _mm256_set1_ps(f32::INFINITY));
        for j in (0..whole).step_by(8) {
            if ahead != 0 && j % (64 / es) == 0 {
                ask_for(row.as_ptr().wrapping_add(es * j).wrapping_add(ahead));
            }
            let v = load(row.as_ptr().add(es * j));
            _mm256_storeu_ps(dst.add(j), v);
            sums = _mm256_add_ps(sums, v);
            mins = _mm256_min_ps(v, mins);
        }
        let (mut s, mut m) = ([0f32; 8], [0f32; 8]);
        _mm256_storeu_ps(s.as_mut_ptr(), sums);
        _mm256_storeu_ps(m.as_mut_ptr(), mins);
        let tail = &mut out[whole..];
        dtype.decode(&row[es * whole..], tail);
        finish_stats(s, m, tail)
    }
}

/// Work on rows that runs with a storage type's way of decoding eight values at once: the one
/// definition of each type's AVX load and of the check that this CPU has what it needs, shared by
/// the mean's kernel and the single slab's.
#[cfg(target_arch = "x86_64")]
trait Eight {
    type Out;
    /// Runs with `load`, which decodes eight values from a pointer to eight whole values.
    ///
    /// # Safety
    /// Called only from a kernel below (compiled with the features `load` needs), into which it
    /// is inlined.
    unsafe fn run(self, dtype: Dtype, load: impl Fn(*const u8) -> std::arch::x86_64::__m256) -> Self::Out;

    /// `run` on a CPU that also has AVX-512F, where work that gains from eight f64 to a register
    /// (the mean's accumulator) uses them.
    ///
    /// # Safety
    /// As `run`'s, from a kernel compiled with AVX-512F as well.
    unsafe fn run_wide(self, dtype: Dtype, load: impl Fn(*const u8) -> std::arch::x86_64::__m256) -> Self::Out
    where
        Self: Sized,
    {
        // SAFETY: as the caller's.
        unsafe { self.run(dtype, load) }
    }
}

/// `work` run by the kernel for `dtype`, where this CPU has what that kernel is compiled for,
/// with AVX-512F where it has that too.
#[cfg(target_arch = "x86_64")]
fn with_eight<W: Eight>(dtype: Dtype, work: W) -> Option<W::Out> {
    with_eight_as(dtype, work, std::arch::is_x86_feature_detected!("avx512f"))
}

/// `with_eight`, told whether to take the AVX-512F kernels (which the caller has checked this
/// CPU has): the tests run both.
#[cfg(target_arch = "x86_64")]
fn with_eight_as<W: Eight>(dtype: Dtype, work: W, wide: bool) -> Option<W::Out> {
    use std::arch::is_x86_feature_detected as has;
    // SAFETY: each kernel runs only on a CPU with the features it is compiled for.
    unsafe {
        match dtype {
            Dtype::F16 if has!("f16c") => Some(if wide { eight_f16_wide(work) } else { eight_f16(work) }),
            Dtype::BF16 if has!("avx2") => Some(if wide { eight_bf16_wide(work) } else { eight_bf16(work) }),
            Dtype::F32 if has!("avx") => Some(if wide { eight_f32_wide(work) } else { eight_f32(work) }),
            _ => None,
        }
    }
}

// Each storage type's load of eight values as f32, inlined into the kernels below (compiled with
// the features it needs). SAFETY (of each): the work passes pointers to 8 whole values inside a row.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn load_f16(p: *const u8) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
}

/// A bfloat16 is the top half of the f32 it stands for.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn load_bf16(p: *const u8) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    unsafe { _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i)))) }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn load_f32(p: *const u8) -> std::arch::x86_64::__m256 {
    unsafe { std::arch::x86_64::_mm256_loadu_ps(p as *const f32) }
}

/// A kernel: `work` run with a storage type's load, compiled with the features that load needs
/// (and, for the wide ones, AVX-512F, which `run_wide` may use).
macro_rules! kernel {
    ($name:ident, $features:literal, $run:ident, $dtype:expr, $load:ident) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name<W: Eight>(work: W) -> W::Out {
            // SAFETY: called by `with_eight_as` only on a CPU with the features above.
            unsafe { work.$run($dtype, |p| $load(p)) }
        }
    };
}

kernel!(eight_f16, "avx,f16c", run, Dtype::F16, load_f16);
kernel!(eight_bf16, "avx2", run, Dtype::BF16, load_bf16);
kernel!(eight_f32, "avx", run, Dtype::F32, load_f32);
kernel!(eight_f16_wide, "avx,f16c,avx512f", run_wide, Dtype::F16, load_f16);
kernel!(eight_bf16_wide, "avx2,avx512f", run_wide, Dtype::BF16, load_bf16);
kernel!(eight_f32_wide, "avx,avx512f", run_wide, Dtype::F32, load_f32);

/// The one-pass mean of `R` rows (`mean_eight`).
#[cfg(target_arch = "x86_64")]
struct Mean<'a, const R: usize> {
    rows: [&'a [u8]; R],
    acc: &'a mut [f64],
    /// The sums start from zero, not from `acc` (see `accumulate_rows`).
    fresh: bool,
}

#[cfg(target_arch = "x86_64")]
impl<const R: usize> Eight for Mean<'_, R> {
    type Out = [(f64, f32); R];
    #[inline(always)]
    unsafe fn run(self, dtype: Dtype, load: impl Fn(*const u8) -> std::arch::x86_64::__m256) -> Self::Out {
        // SAFETY: as `run`'s.
        unsafe {
            match self.fresh {
                true => mean_eight::<R, false, true>(dtype, self.rows, self.acc, load),
                false => mean_eight::<R, false, false>(dtype, self.rows, self.acc, load),
            }
        }
    }

    #[inline(always)]
    unsafe fn run_wide(self, dtype: Dtype, load: impl Fn(*const u8) -> std::arch::x86_64::__m256) -> Self::Out {
        // SAFETY: as `run_wide`'s.
        unsafe {
            match self.fresh {
                true => mean_eight::<R, true, true>(dtype, self.rows, self.acc, load),
                false => mean_eight::<R, true, false>(dtype, self.rows, self.acc, load),
            }
        }
    }
}

/// One row decoded with its stats (`decode_eight`).
#[cfg(target_arch = "x86_64")]
struct Decode<'a> {
    row: &'a [u8],
    out: &'a mut [f32],
    ahead: usize,
}

#[cfg(target_arch = "x86_64")]
impl Eight for Decode<'_> {
    type Out = (f64, f32);
    #[inline(always)]
    unsafe fn run(self, dtype: Dtype, load: impl Fn(*const u8) -> std::arch::x86_64::__m256) -> Self::Out {
        // SAFETY: as `run`'s.
        unsafe { decode_eight(dtype, self.row, self.out, self.ahead, load) }
    }
}

/// How far ahead of the values in use a row is asked for (bytes). A row of one slab is followed
/// in the pass by the same row of the next slab, far away in the file, so the hardware's own
/// prefetcher starts over at every row; asking a kilobyte ahead gained 5–10%.
pub(crate) const AHEAD: usize = 1024;

/// Asks for the cache line `AHEAD` bytes past `values[at]` (a hint: any address is allowed).
#[inline(always)]
pub(crate) fn prefetch_ahead<T>(values: &[T], at: usize) {
    ask_for(values.as_ptr().cast::<u8>().wrapping_add(at * size_of::<T>() + AHEAD));
}

/// Asks for the cache line at `address` (a hint: nothing is read, nothing can fault, any
/// address is allowed).
#[inline(always)]
pub(crate) fn ask_for(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch does not fault, whatever the address; SSE is part of x86_64.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(address.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

/// Whether every byte is zero. `ahead`: where not 0, each cache line read has the one `ahead`
/// bytes on asked for ([`AHEAD`], or the same place in a lone slab's next row).
/// Compiled for the widest vectors this CPU has, as the rest of a row's pass is: built for the
/// baseline it OR-ed 16 bytes an instruction, and a 64-trace batch of 1k-token `[N,N]` F32 traces
/// (half of whose bytes are this check's) ran 2–4% faster with AVX-512 on one thread and 1–8% on
/// two (alternated runs).
pub(crate) fn all_zero(bytes: &[u8], ahead: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { zero_avx512(bytes, ahead) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { zero_avx2(bytes, ahead) };
        }
    }
    zero_words(bytes, ahead)
}

/// [`all_zero`] as whole words OR-ed in blocks of 64 (vectorised, no branch per word), the
/// answer looked at once per block, so a non-zero block still stops the scan early.
#[inline(always)]
fn zero_words(bytes: &[u8], ahead: usize) -> bool {
    // SAFETY: every bit pattern is a valid u64; align_to only reinterprets the aligned middle.
    let (head, words, tail) = unsafe { bytes.align_to::<u64>() };
    let zero_block = |c: &[u64]| {
        if ahead != 0 {
            (0..c.len()).step_by(8).for_each(|w| ask_for(c.as_ptr().wrapping_add(w).cast::<u8>().wrapping_add(ahead)));
        }
        c.iter().fold(0u64, |a, &w| a | w) == 0
    };
    head.iter().all(|&b| b == 0) && words.chunks(64).all(zero_block) && tail.iter().all(|&b| b == 0)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn zero_avx512(bytes: &[u8], ahead: usize) -> bool {
    zero_words(bytes, ahead)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn zero_avx2(bytes: &[u8], ahead: usize) -> bool {
    zero_words(bytes, ahead)
}

/// Whether this CPU's hardware prefetcher is one that stops at a page's end, so that a stream of
/// rows a page long gains from asking for the next row as the row before is read: Intel's, as
/// measured; not AMD's (and no other, unmeasured). Asked once a process.
pub(crate) fn prefetcher_stops_at_pages() -> bool {
    static INTEL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *INTEL.get_or_init(crate::cpu::is_intel)
}

/// M's row from the accumulated one: each entry times `scale` (the mean's 1/slabs; None under
/// the max), 0 below `threshold`, as f32. Compiled for the widest vectors this CPU has: built for
/// the baseline x86-64 it took two f64 at a time, a quarter of a 3-slab `[L,N,N]` aggregation's
/// time. The same operations on each entry whatever the width, so the same bits.
pub fn finish_row(acc: &[f64], out: &mut [f32], scale: Option<f64>, threshold: f64) {
    #[inline(always)]
    fn each(acc: &[f64], out: &mut [f32], scale: Option<f64>, threshold: f64) {
        for (o, &a) in out.iter_mut().zip(acc) {
            let v = match scale {
                Some(s) => a * s,
                None => a,
            };
            *o = if v < threshold { 0.0 } else { v as f32 };
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        fn wide(acc: &[f64], out: &mut [f32], scale: Option<f64>, threshold: f64) {
            each(acc, out, scale, threshold)
        }
        #[target_feature(enable = "avx")]
        fn avx(acc: &[f64], out: &mut [f32], scale: Option<f64>, threshold: f64) {
            each(acc, out, scale, threshold)
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { wide(acc, out, scale, threshold) };
        }
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU has AVX, checked just above.
            return unsafe { avx(acc, out, scale, threshold) };
        }
    }
    each(acc, out, scale, threshold)
}

/// `accumulate` of `R` rows under the mean, eight values at a time as `load` decodes them from a
/// pointer to eight whole values. The same lanes as `row_stats` (lane l sums values l, l+8, ...
/// in order), `vminps` with the accumulated minimum second (so a NaN value leaves it, as
/// `f32::min` does), and each value widened exactly to f64 and added in the rows' order. Inlined
/// into each kernel above, so it is compiled with that kernel's features. `WIDE` (AVX-512F) widens
/// and adds the eight values as one register instead of two halves: the same additions in the
/// same order, a third fewer instructions, and this loop is bound by the cores (a third faster
/// on a Zen 4 with the rows in cache).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn mean_eight<const R: usize, const WIDE: bool, const FRESH: bool>(dtype: Dtype, rows: [&[u8]; R], acc: &mut [f64], load: impl Fn(*const u8) -> std::arch::x86_64::__m256) -> [(f64, f32); R] {
    use std::arch::x86_64::*;
    let (n, es) = (acc.len(), dtype.size());
    for row in rows {
        assert_eq!(row.len(), es * n, "a row of {n} values");
    }
    let whole = n / 8 * 8;
    let dst = acc.as_mut_ptr();
    // SAFETY: AVX is enabled in every caller; j + 8 ≤ n, so 8 values from byte es·j of each row
    // and 8 f64 from j lie inside the rows and `acc`.
    unsafe {
        let mut sums = [_mm256_setzero_ps(); R];
        let mut mins = [_mm256_set1_ps(f32::INFINITY); R];
        for j in (0..whole).step_by(8) {
            // (eight f64 of the accumulator as two halves or as one register; the way not taken
            // is never used, and the compiler drops it)
            // (FRESH: from zero, as the cleared accumulator was)
            let (mut lo, mut hi) = if FRESH || WIDE { (_mm256_setzero_pd(), _mm256_setzero_pd()) } else { (_mm256_loadu_pd(dst.add(j)), _mm256_loadu_pd(dst.add(j + 4))) };
            let mut all = if WIDE && !FRESH { _mm512_loadu_pd(dst.add(j)) } else { _mm512_setzero_pd() };
            for r in 0..R {
                prefetch_ahead(rows[r], es * j);
                let v = load(rows[r].as_ptr().add(es * j));
                sums[r] = _mm256_add_ps(sums[r], v);
                mins[r] = _mm256_min_ps(v, mins[r]);
                if WIDE {
                    all = _mm512_add_pd(all, _mm512_cvtps_pd(v));
                } else {
                    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
                    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v)));
                }
            }
            if WIDE {
                _mm512_storeu_pd(dst.add(j), all);
            } else {
                _mm256_storeu_pd(dst.add(j), lo);
                _mm256_storeu_pd(dst.add(j + 4), hi);
            }
        }
        // A loop, not `std::array::from_fn`: its closure runs inside core's generic code,
        // compiled without AVX, where the stores below became calls (a sixth of a 1k-token
        // `[4,8,N,N]` F16 aggregation's time went to these few lines a slab's row).
        let mut stats = [(0.0, 0.0); R];
        for (r, stat) in stats.iter_mut().enumerate() {
            let (mut s, mut m) = ([0f32; 8], [0f32; 8]);
            _mm256_storeu_ps(s.as_mut_ptr(), sums[r]);
            _mm256_storeu_ps(m.as_mut_ptr(), mins[r]);
            let mut tail = [0f32; 8];
            let tail = &mut tail[..n - whole];
            dtype.decode(&rows[r][es * whole..], tail);
            for (a, &x) in acc[whole..].iter_mut().zip(tail.iter()) {
                *a = if FRESH && r == 0 { 0.0 } else { *a } + x as f64;
            }
            *stat = finish_stats(s, m, tail);
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::test_rng::XorShift;

    /// Every build of the zero check this CPU can run answers as a byte-by-byte check does: for
    /// each start and length, all zero, and one byte set at each place.
    #[test]
    fn every_zero_check_finds_any_byte_set() {
        let mut bytes = vec![0u8; 1200];
        for start in 0..9 {
            for len in [0, 1, 7, 8, 9, 63, 64, 65, 511, 512, 513, 1100] {
                let checks = |b: &[u8]| {
                    let mut got = vec![zero_words(b, 0), zero_words(b, AHEAD), all_zero(b, AHEAD), all_zero(b, 4096)];
                    #[cfg(target_arch = "x86_64")]
                    {
                        if std::arch::is_x86_feature_detected!("avx2") {
                            // SAFETY: the CPU has AVX2, checked just above.
                            got.push(unsafe { zero_avx2(b, AHEAD) });
                        }
                        if std::arch::is_x86_feature_detected!("avx512f") {
                            // SAFETY: the CPU has AVX-512F, checked just above.
                            got.push(unsafe { zero_avx512(b, 0) });
                        }
                    }
                    got
                };
                let span = start..start + len;
                assert!(checks(&bytes[span.clone()]).iter().all(|&z| z), "zeros from {start}, {len} bytes");
                for at in span.clone() {
                    bytes[at] = 0x80;
                    assert!(checks(&bytes[span.clone()]).iter().all(|&z| !z), "byte {at} set, from {start}, {len} bytes");
                    bytes[at] = 0;
                }
            }
        }
    }

    /// For each storage type and row length (every length mod 8), six rows of values below one:
    /// one ordinary, and one each with a subnormal, a negative zero, a negative, an infinity and
    /// a NaN among them.
    fn rows() -> Vec<(Dtype, usize, Vec<Vec<u8>>)> {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut next = move || rng.next_u64();
        // (the bits of one in each type, below which the ordinary values lie, then the bits of
        // the special values)
        let types = [
            (Dtype::F16, 0x3c00u64, [0x0001u32, 0x8000, 0xbc00, 0x7c00, 0x7e00]),
            (Dtype::BF16, 0x3f80, [0x0001, 0x8000, 0xbf80, 0x7f80, 0x7fc0]),
            (Dtype::F32, 0x3f80_0000, [0x0000_0001, 0x8000_0000, 0xbf80_0000, 0x7f80_0000, 0x7fc0_0000]),
        ];
        let mut out = Vec::new();
        for (dtype, one, specials) in types {
            for n in [1usize, 7, 8, 9, 15, 16, 17, 100, 1023, 1030] {
                let rows = std::iter::once(None)
                    .chain(specials.map(Some))
                    .map(|special| {
                        let mut values: Vec<u32> = (0..n).map(|_| (next() % one) as u32).collect();
                        if let Some(s) = special {
                            values[(next() as usize) % n] = s;
                        }
                        values.iter().flat_map(|v| v.to_le_bytes()[..dtype.size()].to_vec()).collect()
                    })
                    .collect();
                out.push((dtype, n, rows));
            }
        }
        out
    }

    /// The rows added one after another by the two-pass path: the accumulator and each row's
    /// stats.
    /// The accumulator the tests start from (`start`), or zero where the group is `fresh`.
    fn start(n: usize, fresh: bool) -> Vec<f64> {
        (0..n).map(|i| if fresh { 0.0 } else { (i as f64) * 0.25 }).collect()
    }

    fn two_pass(dtype: Dtype, rows: &[&[u8]], n: usize) -> (Vec<f64>, Vec<(f64, f32)>) {
        two_pass_from(dtype, rows, start(n, false))
    }

    fn two_pass_from(dtype: Dtype, rows: &[&[u8]], mut acc: Vec<f64>) -> (Vec<f64>, Vec<(f64, f32)>) {
        let n = acc.len();
        let mut buf = vec![0f32; n];
        let stats = rows
            .iter()
            .map(|row| {
                dtype.decode(row, &mut buf);
                acc.iter_mut().zip(&buf).for_each(|(a, &x)| *a += x as f64);
                row_stats(&buf)
            })
            .collect();
        (acc, stats)
    }

    fn assert_same(got: (Vec<f64>, Vec<(f64, f32)>), want: (Vec<f64>, Vec<(f64, f32)>), case: &str) {
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got.0), bits(&want.0), "accumulator, {case}");
        for (g, w) in got.1.iter().zip(&want.1) {
            assert_eq!(g.0.to_bits(), w.0.to_bits(), "sum, {case}");
            // (a minimum of zeros may be either zero: only its verdict, < 0, is used)
            assert_eq!((g.1 < 0.0, g.1.abs().to_bits()), (w.1 < 0.0, w.1.abs().to_bits()), "minimum, {case}");
        }
    }

    /// One row in one pass gives the two-pass path's accumulator and stats to the bit.
    #[test]
    fn one_pass_is_the_two_pass_path() {
        for (dtype, n, rows) in rows() {
            for (i, row) in rows.iter().enumerate() {
                let start: Vec<f64> = (0..n).map(|i| (i as f64) * 0.25).collect();
                let mut acc = start;
                let stats = accumulate(dtype, row, &mut acc, Reduce::Mean, &mut vec![0f32; n]);
                assert_same((acc, vec![stats]), two_pass(dtype, &[row], n), &format!("{dtype:?}, n = {n}, row {i}"));
            }
        }
    }

    /// A row decoded and summed in one pass is the decode and `row_stats`, to the bit.
    #[test]
    fn decoding_a_row_with_its_stats_is_decode_then_stats() {
        for (dtype, n, rows) in rows() {
            for (i, row) in rows.iter().enumerate() {
                let (mut got, mut want) = (vec![0f32; n], vec![0f32; n]);
                let stats = decode_row(dtype, row, &mut got, if i % 2 == 0 { 0 } else { 4096 });
                dtype.decode(row, &mut want);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                let case = format!("{dtype:?}, n = {n}, row {i}");
                assert_eq!(bits(&got), bits(&want), "values, {case}");
                assert_same((Vec::new(), vec![stats]), (Vec::new(), vec![row_stats(&want)]), &case);
            }
        }
    }

    /// M's row as the plain loop makes it, to the bit, at every length and on both sides of the
    /// threshold (ties, zeros of both signs, values that round to f32's subnormals).
    #[test]
    fn a_finished_row_is_the_plain_loop() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for n in [0, 1, 7, 8, 9, 31, 64, 1000] {
            let mut acc: Vec<f64> = (0..n).map(|_| rng.unit() * 3.0).collect();
            if n > 8 {
                acc[..5].copy_from_slice(&[0.0, -0.0, 0.5, 1e-40, 3e-39]);
            }
            for (scale, threshold) in [(Some(1.0 / 3.0), 0.0), (Some(0.25), 0.5 * 0.25), (None, 0.5), (None, 0.0)] {
                let mut got = vec![f32::NAN; n];
                finish_row(&acc, &mut got, scale, threshold);
                let want: Vec<u32> = acc.iter().map(|&a| {
                    let v = scale.map_or(a, |s| a * s);
                    (if v < threshold { 0.0 } else { v as f32 }).to_bits()
                }).collect();
                assert_eq!(got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want, "n = {n}, {scale:?}, {threshold}");
            }
        }
    }

    /// One to four rows through the accumulator at once give them added one after another; a
    /// group that starts the row (`first`) adds them to zero, whatever the accumulator held.
    #[test]
    fn rows_at_once_are_rows_in_turn() {
        for (dtype, n, rows) in rows() {
            for (size, first) in (1..=GROUP).flat_map(|size| [(size, 0), (size, 2)]) {
                let group: Vec<&[u8]> = rows[first..first + size].iter().map(|r| r.as_slice()).collect();
                for fresh in [false, true] {
                    let mut acc = start(n, false);
                    let stats = accumulate_rows(dtype, &group, &mut acc, Reduce::Mean, &mut vec![0f32; n], fresh);
                    let case = format!("{dtype:?}, n = {n}, rows {first}..{}, first {fresh}", first + size);
                    assert_same((acc, stats[..size].to_vec()), two_pass_from(dtype, &group, start(n, fresh)), &case);
                }
            }
        }
    }

    /// The mean's kernel with AVX-512F's eight f64 to a register and without give the same bits
    /// (the dispatch takes the first wherever the CPU has it, so both are checked here).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_wide_and_the_plain_mean_are_the_same() {
        let wides: &[bool] = if std::arch::is_x86_feature_detected!("avx512f") {
            &[false, true]
        } else {
            eprintln!("the_wide_and_the_plain_mean_are_the_same: no AVX-512F on this CPU, only the plain kernel is checked");
            &[false]
        };
        for (dtype, n, rows) in rows() {
            for &wide in wides {
                for (first, fresh) in [(0, false), (2, false), (0, true), (2, true)] {
                    let group: [&[u8]; GROUP] = std::array::from_fn(|r| rows[first + r].as_slice());
                    let mut acc = start(n, false);
                    let Some(stats) = with_eight_as(dtype, Mean { rows: group, acc: &mut acc, fresh }, wide) else { continue };
                    let case = format!("{dtype:?}, n = {n}, rows {first}.., wide {wide}, fresh {fresh}");
                    assert_same((acc, stats.to_vec()), two_pass_from(dtype, &group, start(n, fresh)), &case);
                }
            }
        }
    }
}
