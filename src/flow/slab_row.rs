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

/// Adds the row `bytes` (in `dtype`, `acc.len()` values) into `acc` by `reduce` and returns its
/// `row_stats`. `buf` (at least `acc.len()` long) holds the decoded row where the work takes
/// two passes. Under the mean (the default) on a CPU with AVX it takes one: eight values decoded
/// at a time, summed, and added into `acc` from registers.
pub fn accumulate(dtype: Dtype, bytes: &[u8], acc: &mut [f64], reduce: Reduce, buf: &mut [f32]) -> (f64, f32) {
    #[cfg(target_arch = "x86_64")]
    if reduce == Reduce::Mean {
        use std::arch::is_x86_feature_detected as has;
        // SAFETY: each kernel runs only on a CPU with the features it is compiled for.
        match dtype {
            Dtype::F16 if has!("f16c") => return unsafe { mean_f16(bytes, acc) },
            Dtype::BF16 if has!("avx2") => return unsafe { mean_bf16(bytes, acc) },
            Dtype::F32 if has!("avx") => return unsafe { mean_f32(bytes, acc) },
            _ => {}
        }
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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn mean_f16(bytes: &[u8], acc: &mut [f64]) -> (f64, f32) {
    use std::arch::x86_64::*;
    // SAFETY (of each load): `mean_eight` passes pointers to 8 whole values inside `bytes`.
    unsafe { mean_eight(Dtype::F16, bytes, acc, |p| _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn mean_bf16(bytes: &[u8], acc: &mut [f64]) -> (f64, f32) {
    use std::arch::x86_64::*;
    // A bfloat16 is the top half of the f32 it stands for.
    unsafe { mean_eight(Dtype::BF16, bytes, acc, |p| _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i))))) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn mean_f32(bytes: &[u8], acc: &mut [f64]) -> (f64, f32) {
    use std::arch::x86_64::*;
    unsafe { mean_eight(Dtype::F32, bytes, acc, |p| _mm256_loadu_ps(p as *const f32)) }
}

/// How far ahead of the values in use a row is asked for (bytes).
#[cfg(target_arch = "x86_64")]
const AHEAD: usize = 1024;

/// `accumulate` under the mean, eight values at a time as `load` decodes them from a pointer to
/// eight whole values. The same lanes as `row_stats` (lane l sums values l, l+8, ... in order),
/// `vminps` with the accumulated minimum second (so a NaN value leaves it, as `f32::min` does),
/// and each value widened exactly to f64 before it is added. Inlined into each kernel above, so
/// it is compiled with that kernel's features.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn mean_eight(dtype: Dtype, bytes: &[u8], acc: &mut [f64], load: impl Fn(*const u8) -> std::arch::x86_64::__m256) -> (f64, f32) {
    use std::arch::x86_64::*;
    let (n, es) = (acc.len(), dtype.size());
    assert_eq!(bytes.len(), es * n, "a row of {n} values");
    let whole = n / 8 * 8;
    let (src, dst) = (bytes.as_ptr(), acc.as_mut_ptr());
    // SAFETY: AVX is enabled in every caller; j + 8 ≤ n, so 8 values from byte es·j and 8 f64
    // from j lie inside `bytes` and `acc`; a prefetch may point anywhere.
    unsafe {
        let mut sums = _mm256_setzero_ps();
        let mut mins = _mm256_set1_ps(f32::INFINITY);
        for j in (0..whole).step_by(8) {
            _mm_prefetch::<_MM_HINT_T0>(src.wrapping_add(es * j + AHEAD) as *const i8);
            let v = load(src.add(es * j));
            sums = _mm256_add_ps(sums, v);
            mins = _mm256_min_ps(v, mins);
            let lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
            let hi = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v));
            _mm256_storeu_pd(dst.add(j), _mm256_add_pd(_mm256_loadu_pd(dst.add(j)), lo));
            _mm256_storeu_pd(dst.add(j + 4), _mm256_add_pd(_mm256_loadu_pd(dst.add(j + 4)), hi));
        }
        let (mut s, mut m) = ([0f32; 8], [0f32; 8]);
        _mm256_storeu_ps(s.as_mut_ptr(), sums);
        _mm256_storeu_ps(m.as_mut_ptr(), mins);
        let mut tail = [0f32; 8];
        let tail = &mut tail[..n - whole];
        dtype.decode(&bytes[es * whole..], tail);
        for (a, &x) in acc[whole..].iter_mut().zip(tail.iter()) {
            *a += x as f64;
        }
        finish_stats(s, m, tail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass kernels give the two-pass path's accumulator and sum to the bit, and the
    /// same verdict on the minimum, for each storage type, on rows of every length mod 8 with
    /// subnormals, zeros of both signs, a negative, an infinity and a NaN among the values.
    #[test]
    fn one_pass_is_the_two_pass_path() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // (the bits of one in each type, below which the ordinary values lie, then the bits of
        // the special values)
        let types = [
            (Dtype::F16, 0x3c00u64, [0x0001u32, 0x8000, 0xbc00, 0x7c00, 0x7e00]),
            (Dtype::BF16, 0x3f80, [0x0001, 0x8000, 0xbf80, 0x7f80, 0x7fc0]),
            (Dtype::F32, 0x3f80_0000, [0x0000_0001, 0x8000_0000, 0xbf80_0000, 0x7f80_0000, 0x7fc0_0000]),
        ];
        for (dtype, one, specials) in types {
            for n in [1usize, 7, 8, 9, 15, 16, 17, 100, 1023, 1030] {
                for special in std::iter::once(None).chain(specials.map(Some)) {
                    let mut values: Vec<u32> = (0..n).map(|_| (next() % one) as u32).collect();
                    if let Some(s) = special {
                        let at = (next() as usize) % n;
                        values[at] = s;
                    }
                    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()[..dtype.size()].to_vec()).collect();
                    let start: Vec<f64> = (0..n).map(|i| (i as f64) * 0.25).collect();
                    let (mut fused, mut plain) = (start.clone(), start.clone());
                    let mut buf = vec![0f32; n];
                    let got = accumulate(dtype, &bytes, &mut fused, Reduce::Mean, &mut buf);
                    dtype.decode(&bytes, &mut buf);
                    let want = row_stats(&buf);
                    plain.iter_mut().zip(&buf).for_each(|(a, &x)| *a += x as f64);
                    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    let case = format!("{dtype:?}, n = {n}, special {special:?}");
                    assert_eq!(bits(&fused), bits(&plain), "{case}");
                    assert_eq!(got.0.to_bits(), want.0.to_bits(), "sum, {case}");
                    assert_eq!(got.1 < 0.0, want.1 < 0.0, "minimum's sign, {case}");
                    assert_eq!(got.1.abs().to_bits(), want.1.abs().to_bits(), "minimum, {case}");
                }
            }
        }
    }
}
