//! Element types an attention dump may use, decoded to f32 without alignment assumptions
//! (safetensors does not promise that a tensor starts on an element boundary).

use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Dtype {
    F32,
    F16,
    BF16,
}

impl Dtype {
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
        }
    }

    /// The code the device kernels decode by (`dtype` in `aggregate.wgsl` and `aggregate.cu`).
    pub fn kernel_code(self) -> u32 {
        match self {
            Dtype::F32 => 0,
            Dtype::F16 => 1,
            Dtype::BF16 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
        }
    }

    /// Decodes little-endian elements of this type into `out` (`bytes.len() == out.len() * size`).
    pub fn decode(self, bytes: &[u8], out: &mut [f32]) {
        debug_assert_eq!(bytes.len(), out.len() * self.size());
        match self {
            Dtype::F32 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            Dtype::F16 => {
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("f16c") {
                    // SAFETY: the CPU has F16C (and so AVX), checked just above.
                    unsafe { decode_f16_f16c(bytes, out) };
                    return;
                }
                decode_f16_table(bytes, out);
            }
            Dtype::BF16 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16);
                }
            }
        }
    }
}

/// Half precision by table: one load per element.
fn decode_f16_table(bytes: &[u8], out: &mut [f32]) {
    let table = f16_table();
    for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = table[u16::from_le_bytes([b[0], b[1]]) as usize];
    }
}

/// Half precision eight at a time with the CPU's own conversion (`vcvtph2ps`, exact like the
/// table, subnormals included): the aggregation of an F16 trace spent most of its time on the
/// table's scattered loads.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn decode_f16_f16c(bytes: &[u8], out: &mut [f32]) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm256_cvtph_ps, _mm256_storeu_ps};
    let whole = out.len() / 8 * 8;
    for (o, b) in out[..whole].chunks_exact_mut(8).zip(bytes.chunks_exact(16)) {
        // SAFETY: `b` holds 16 bytes and `o` 8 floats; both accesses are unaligned loads/stores.
        unsafe { _mm256_storeu_ps(o.as_mut_ptr(), _mm256_cvtph_ps(_mm_loadu_si128(b.as_ptr() as *const __m128i))) };
    }
    decode_f16_table(&bytes[whole * 2..], &mut out[whole..]);
}

/// All 65 536 half-precision values, so decoding is one load per element.
fn f16_table() -> &'static [f32] {
    static TABLE: OnceLock<Vec<f32>> = OnceLock::new();
    TABLE.get_or_init(|| (0..=u16::MAX).map(f16_to_f32).collect())
}

/// IEEE 754 binary16 to binary32, subnormals, infinities and NaN included.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = match exp {
        0 if mant == 0 => sign,
        0 => {
            // Subnormal: shift the mantissa up until its leading one is implicit.
            let mut e: i32 = 127 - 15 + 1;
            let mut m = mant;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((m & 0x3ff) << 13)
        }
        0x1f => sign | 0x7f80_0000 | (mant << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (mant << 13),
    };
    f32::from_bits(bits)
}

/// binary32 to binary16 with round-to-nearest-even; used when the project writes its own traces.
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if mant != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = mant | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rounded = (m + half - 1 + ((m >> shift) & 1)) >> shift;
        return sign | rounded as u16;
    }
    let rounded = mant + 0x0fff + ((mant >> 13) & 1);
    let (e, m) = if rounded & 0x80_0000 != 0 { (e + 1, 0) } else { (e, rounded >> 13) };
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    sign | ((e as u16) << 10) | m as u16
}

/// binary32 to bfloat16 with round-to-nearest-even.
pub fn f32_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every one of the 65 536 halves decodes to the same f32 by the CPU's conversion as by the
    /// table (NaNs: still NaN), at every offset of a row's tail.
    #[test]
    fn f16_decoders_agree_on_every_value() {
        let bytes: Vec<u8> = (0..=u16::MAX).flat_map(|h| h.to_le_bytes()).collect();
        for skip in [0usize, 3, 7] {
            let b = &bytes[skip * 2..];
            let (mut by_cpu, mut by_table) = (vec![0f32; b.len() / 2], vec![0f32; b.len() / 2]);
            Dtype::F16.decode(b, &mut by_cpu);
            decode_f16_table(b, &mut by_table);
            for (i, (c, t)) in by_cpu.iter().zip(&by_table).enumerate() {
                assert!(c.to_bits() == t.to_bits() || (c.is_nan() && t.is_nan()), "half {:#06x}: {c} vs {t}", i + skip);
            }
        }
    }

    #[test]
    fn f16_known_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
    }

    #[test]
    fn f16_round_trip_every_finite_value() {
        for h in 0..=u16::MAX {
            let x = f16_to_f32(h);
            if x.is_finite() {
                assert_eq!(f32_to_f16(x), h, "half {h:#06x} -> {x}");
            }
        }
        assert_eq!(f32_to_f16(1e9), 0x7c00);
    }

    #[test]
    fn bf16_round_trip_and_decode() {
        for x in [0.0f32, 1.0, 0.5, 0.123, 3.0e-5, 1.0e30] {
            let b = f32_to_bf16(x);
            let mut out = [0f32];
            Dtype::BF16.decode(&b.to_le_bytes(), &mut out);
            assert!((out[0] - x).abs() <= x.abs() * 0.004, "{x} -> {}", out[0]);
        }
    }
}
