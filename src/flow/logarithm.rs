//! Natural logarithms four at a time, to the bits of `f64::ln`: the far-source entropy of the
//! roles step takes one per edge into every backbone token (Σ φ ln φ), and glibc's `log` one
//! call at a time was 5% of a batch of 1k-token traces. A different logarithm would move the
//! entropies' last bits, and with them the exports, so the vector path is glibc's algorithm
//! (ARM's optimized-routines `log`, in glibc since 2.28, the FMA build its dispatch takes on
//! CPUs with AVX2 and FMA) step by step: its table, its polynomial, its fused multiply-adds in
//! the order that build makes them. It is taken only where a probe of inputs gives `f64::ln`'s
//! bits (another libm, another CPU: `f64::ln` itself), and only for the inputs on that build's
//! main path; values near 1, subnormals, zeros, negatives, infinities and NaN go to `f64::ln`.

/// `out[j] = xs[j].ln()`, bit for bit, for every `j` (`out` at least as long as `xs`).
pub fn ln_each(xs: &[f64], out: &mut [f64]) {
    let out = &mut out[..xs.len()];
    #[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
    if glibc::vector_path() {
        // SAFETY: `vector_path` holds only where the CPU has AVX2 and FMA.
        unsafe { glibc::ln_each_avx2(xs, out) };
        return;
    }
    for (o, &x) in out.iter_mut().zip(xs) {
        *o = x.ln();
    }
}

#[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
mod glibc {
    //! The vector path: glibc's main path on four lanes, its constants and its table, on the
    //! targets whose `f64::ln` may be glibc's.

    /// Whether this machine's `f64::ln` is the logarithm [`ln_each_avx2`] computes: the CPU has AVX2
    /// and FMA, and a probe of inputs over every binade of the main path, each table entry and the
    /// edges of the ranges handed to `f64::ln`, comes out to the same bits.
    pub(super) fn vector_path() -> bool {
        static AGREES: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AGREES.get_or_init(|| {
            if !(std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")) {
                return false;
            }
            let probe = probe_inputs();
            let mut got = vec![0.0; probe.len()];
            // SAFETY: the CPU has AVX2 and FMA, checked just above.
            unsafe { ln_each_avx2(&probe, &mut got) };
            probe.iter().zip(&got).all(|(x, y)| x.ln().to_bits() == y.to_bits())
        })
    }

    /// Inputs whose logarithms tell glibc's algorithm from another: a spread of mantissas in every
    /// binade the main path takes, every table entry's interval, and the edges of the near-1 range.
    fn probe_inputs() -> Vec<f64> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut bits = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut xs: Vec<f64> = (1..2046u64).map(|e| f64::from_bits(e << 52 | (bits() >> 12))).collect();
        xs.extend((0..128u64).map(|i| f64::from_bits(OFF.wrapping_add(i << 45) | (bits() >> 19))));
        xs.extend([NEAR_ONE_FROM, NEAR_ONE_TO].iter().flat_map(|&b| [b - 2, b - 1, b, b + 1]).map(f64::from_bits));
        xs
    }

    /// The main path's offset: the table's intervals start here (glibc's `OFF`).
    const OFF: u64 = 0x3fe6_0000_0000_0000;
    /// Inputs from 1 − 2⁻⁴ up to (not including) 1 + 0x1.09p−4 take another polynomial.
    const NEAR_ONE_FROM: u64 = 0x3fee_0000_0000_0000;
    const NEAR_ONE_TO: u64 = 0x3ff1_0900_0000_0000;
    /// ln 2 in two parts, and the main path's polynomial A[0..5] (glibc's `__log_data`).
    const LN2_HI: u64 = 0x3fe6_2e42_fefa_3800;
    const LN2_LO: u64 = 0x3d2e_f357_93c7_6730;
    const A: [u64; 5] = [0xbfe0_0000_0000_0001, 0x3fd5_5555_5551_305b, 0xbfcf_ffff_ffeb_4590, 0x3fc9_99b3_24f1_0111, 0xbfc5_5575_e506_c89f];

    /// [`super::ln_each`] on this path: four at a time, a lane off glibc's main path by `f64::ln`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn ln_each_avx2(xs: &[f64], out: &mut [f64]) {
        use std::arch::x86_64::*;
        let chunks = xs.len() / 4 * 4;
        for j in (0..chunks).step_by(4) {
            // SAFETY: j + 4 <= chunks <= the length of `xs` and of `out`.
            let x = unsafe { _mm256_loadu_pd(xs.as_ptr().add(j)) };
            let (y, off_path) = unsafe { ln4(x) };
            unsafe { _mm256_storeu_pd(out.as_mut_ptr().add(j), y) };
            if off_path != 0 {
                for l in (0..4).filter(|l| off_path >> l & 1 == 1) {
                    out[j + l] = xs[j + l].ln();
                }
            }
        }
        for j in chunks..xs.len() {
            out[j] = xs[j].ln();
        }
    }

    /// glibc's main path on four lanes, and a bit set for each lane it does not cover.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn ln4(x: std::arch::x86_64::__m256d) -> (std::arch::x86_64::__m256d, i32) {
        use std::arch::x86_64::*;
        let c = |bits: u64| _mm256_set1_pd(f64::from_bits(bits));
        // The main path: normal, finite, positive, and not near 1 (NaN fails every comparison).
        let normal = _mm256_and_pd(_mm256_cmp_pd::<_CMP_GE_OQ>(x, c(0x0010_0000_0000_0000)), _mm256_cmp_pd::<_CMP_LT_OQ>(x, _mm256_set1_pd(f64::INFINITY)));
        let near_one = _mm256_and_pd(_mm256_cmp_pd::<_CMP_GE_OQ>(x, c(NEAR_ONE_FROM)), _mm256_cmp_pd::<_CMP_LT_OQ>(x, c(NEAR_ONE_TO)));
        let off_path = !_mm256_movemask_pd(_mm256_andnot_pd(near_one, normal)) & 0xf;

        let ix = _mm256_castpd_si256(x);
        let tmp = _mm256_sub_epi64(ix, _mm256_set1_epi64x(OFF as i64));
        // i = (tmp >> 45) % 128, each entry two f64: invc at 2i, logc at 2i + 1.
        let i2 = _mm256_slli_epi64::<1>(_mm256_and_si256(_mm256_srli_epi64::<45>(tmp), _mm256_set1_epi64x(127)));
        // Each lane's entry (1/c, ln c) as one 16-byte load, the four then transposed: fewer
        // micro-operations than two gathers.
        let mut at = [0u64; 4];
        // SAFETY: four u64 into four u64.
        unsafe { _mm256_storeu_si256(at.as_mut_ptr() as *mut __m256i, i2) };
        let entry = |l: usize| {
            // SAFETY: each index is 2i with i below 128: an entry of the table.
            unsafe { _mm_loadu_pd((TABLE.as_ptr() as *const f64).add(at[l] as usize)) }
        };
        let (e02, e13) = (_mm256_set_m128d(entry(2), entry(0)), _mm256_set_m128d(entry(3), entry(1)));
        let (invc, logc) = (_mm256_unpacklo_pd(e02, e13), _mm256_unpackhi_pd(e02, e13));
        // k = tmp >> 52 (arithmetic): the top twelve bits, sign-extended, then made a double exactly
        // through 1.5·2⁵² (AVX2 has neither the shift nor the conversion for 64-bit lanes).
        let top = _mm256_srli_epi64::<52>(tmp);
        let k = _mm256_sub_epi64(_mm256_xor_si256(top, _mm256_set1_epi64x(0x800)), _mm256_set1_epi64x(0x800));
        let magic = c(0x4338_0000_0000_0000);
        let kd = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_add_epi64(k, _mm256_castpd_si256(magic))), magic);
        let z = _mm256_castsi256_pd(_mm256_sub_epi64(ix, _mm256_and_si256(tmp, _mm256_set1_epi64x(0xfff0_0000_0000_0000u64 as i64))));

        let r = _mm256_fmadd_pd(z, invc, _mm256_set1_pd(-1.0));
        let w = _mm256_fmadd_pd(kd, c(LN2_HI), logc);
        let hi = _mm256_add_pd(r, w);
        let lo = _mm256_fmadd_pd(kd, c(LN2_LO), _mm256_add_pd(_mm256_sub_pd(w, hi), r));
        let r2 = _mm256_mul_pd(r, r);
        let r3 = _mm256_mul_pd(r, r2);
        let p = _mm256_fmadd_pd(_mm256_fmadd_pd(r, c(A[4]), c(A[3])), r2, _mm256_fmadd_pd(r, c(A[2]), c(A[1])));
        let y = _mm256_add_pd(_mm256_fmadd_pd(r3, p, _mm256_fmadd_pd(r2, c(A[0]), lo)), hi);
        (y, off_path)
    }

    /// glibc's `__log_data.tab`: for each of 128 intervals from `OFF`, 1/c and ln c.
    static TABLE: [[u64; 2]; 128] = [
        [0x3ff734f0c3e0de9f, 0xbfd7cc7f79e69000], [0x3ff713786a2ce91f, 0xbfd76feec20d0000],
        [0x3ff6f26008fab5a0, 0xbfd713e31351e000], [0x3ff6d1a61f138c7d, 0xbfd6b85b38287800],
        [0x3ff6b1490bc5b4d1, 0xbfd65d5590807800], [0x3ff69147332f0cba, 0xbfd602d076180000],
        [0x3ff6719f18224223, 0xbfd5a8ca86909000], [0x3ff6524f99a51ed9, 0xbfd54f4356035000],
        [0x3ff63356aa8f24c4, 0xbfd4f637c36b4000], [0x3ff614b36b9ddc14, 0xbfd49da7fda85000],
        [0x3ff5f66452c65c4c, 0xbfd445923989a800], [0x3ff5d867b5912c4f, 0xbfd3edf439b0b800],
        [0x3ff5babccb5b90de, 0xbfd396ce448f7000], [0x3ff59d61f2d91a78, 0xbfd3401e17bda000],
        [0x3ff5805612465687, 0xbfd2e9e2ef468000], [0x3ff56397cee76bd3, 0xbfd2941b3830e000],
        [0x3ff54725e2a77f93, 0xbfd23ec58cda8800], [0x3ff52aff42064583, 0xbfd1e9e129279000],
        [0x3ff50f22dbb2bddf, 0xbfd1956d2b48f800], [0x3ff4f38f4734ded7, 0xbfd141679ab9f800],
        [0x3ff4d843cfde2840, 0xbfd0edd094ef9800], [0x3ff4bd3ec078a3c8, 0xbfd09aa518db1000],
        [0x3ff4a27fc3e0258a, 0xbfd047e65263b800], [0x3ff4880524d48434, 0xbfcfeb224586f000],
        [0x3ff46dce1b192d0b, 0xbfcf474a7517b000], [0x3ff453d9d3391854, 0xbfcea4443d103000],
        [0x3ff43a2744b4845a, 0xbfce020d44e9b000], [0x3ff420b54115f8fb, 0xbfcd60a22977f000],
        [0x3ff40782da3ef4b1, 0xbfccc00104959000], [0x3ff3ee8f5d57fe8f, 0xbfcc202956891000],
        [0x3ff3d5d9a00b4ce9, 0xbfcb81178d811000], [0x3ff3bd60c010c12b, 0xbfcae2c9ccd3d000],
        [0x3ff3a5242b75dab8, 0xbfca45402e129000], [0x3ff38d22cd9fd002, 0xbfc9a877681df000],
        [0x3ff3755bc5847a1c, 0xbfc90c6d69483000], [0x3ff35dce49ad36e2, 0xbfc87120a645c000],
        [0x3ff34679984dd440, 0xbfc7d68fb4143000], [0x3ff32f5cceffcb24, 0xbfc73cb83c627000],
        [0x3ff3187775a10d49, 0xbfc6a39a9b376000], [0x3ff301c8373e3990, 0xbfc60b3154b7a000],
        [0x3ff2eb4ebb95f841, 0xbfc5737d76243000], [0x3ff2d50a0219a9d1, 0xbfc4dc7b8fc23000],
        [0x3ff2bef9a8b7fd2a, 0xbfc4462c51d20000], [0x3ff2a91c7a0c1bab, 0xbfc3b08abc830000],
        [0x3ff293726014b530, 0xbfc31b996b490000], [0x3ff27dfa5757a1f5, 0xbfc2875490a44000],
        [0x3ff268b39b1d3bbf, 0xbfc1f3b9f879a000], [0x3ff2539d838ff5bd, 0xbfc160c8252ca000],
        [0x3ff23eb7aac9083b, 0xbfc0ce7f57f72000], [0x3ff22a012ba940b6, 0xbfc03cdc49fea000],
        [0x3ff2157996cc4132, 0xbfbf57bdbc4b8000], [0x3ff201201dd2fc9b, 0xbfbe370896404000],
        [0x3ff1ecf4494d480b, 0xbfbd17983ef94000], [0x3ff1d8f5528f6569, 0xbfbbf9674ed8a000],
        [0x3ff1c52311577e7c, 0xbfbadc79202f6000], [0x3ff1b17c74cb26e9, 0xbfb9c0c3e7288000],
        [0x3ff19e010c2c1ab6, 0xbfb8a646b372c000], [0x3ff18ab07bb670bd, 0xbfb78d01b3ac0000],
        [0x3ff1778a25efbcb6, 0xbfb674f145380000], [0x3ff1648d354c31da, 0xbfb55e0e6d878000],
        [0x3ff151b990275fdd, 0xbfb4485cdea1e000], [0x3ff13f0ea432d24c, 0xbfb333d94d6aa000],
        [0x3ff12c8b7210f9da, 0xbfb22079f8c56000], [0x3ff11a3028ecb531, 0xbfb10e4698622000],
        [0x3ff107fbda8434af, 0xbfaffa6c6ad20000], [0x3ff0f5ee0f4e6bb3, 0xbfadda8d4a774000],
        [0x3ff0e4065d2a9fce, 0xbfabbcece4850000], [0x3ff0d244632ca521, 0xbfa9a1894012c000],
        [0x3ff0c0a77ce2981a, 0xbfa788583302c000], [0x3ff0af2f83c636d1, 0xbfa5715e67d68000],
        [0x3ff09ddb98a01339, 0xbfa35c8a49658000], [0x3ff08cabaf52e7df, 0xbfa149e364154000],
        [0x3ff07b9f2f4e28fb, 0xbf9e72c082eb8000], [0x3ff06ab58c358f19, 0xbf9a55f152528000],
        [0x3ff059eea5ecf92c, 0xbf963d62cf818000], [0x3ff04949cdd12c90, 0xbf9228fb8caa0000],
        [0x3ff038c6c6f0ada9, 0xbf8c317b20f90000], [0x3ff02865137932a9, 0xbf8419355daa0000],
        [0x3ff0182427ea7348, 0xbf781203c2ec0000], [0x3ff008040614b195, 0xbf60040979240000],
        [0x3fefe01ff726fa1a, 0x3f6feff384900000], [0x3fefa11cc261ea74, 0x3f87dc41353d0000],
        [0x3fef6310b081992e, 0x3f93cea3c4c28000], [0x3fef25f63ceeadcd, 0x3f9b9fc114890000],
        [0x3feee9c8039113e7, 0x3fa1b0d8ce110000], [0x3feeae8078cbb1ab, 0x3fa58a5bd001c000],
        [0x3fee741aa29d0c9b, 0x3fa95c8340d88000], [0x3fee3a91830a99b5, 0x3fad276aef578000],
        [0x3fee01e009609a56, 0x3fb07598e598c000], [0x3fedca01e577bb98, 0x3fb253f5e30d2000],
        [0x3fed92f20b7c9103, 0x3fb42edd8b380000], [0x3fed5cac66fb5cce, 0x3fb606598757c000],
        [0x3fed272caa5ede9d, 0x3fb7da76356a0000], [0x3fecf26e3e6b2ccd, 0x3fb9ab434e1c6000],
        [0x3fecbe6da2a77902, 0x3fbb78c7bb0d6000], [0x3fec8b266d37086d, 0x3fbd431332e72000],
        [0x3fec5894bd5d5804, 0x3fbf0a3171de6000], [0x3fec26b533bb9f8c, 0x3fc067152b914000],
        [0x3febf583eeece73f, 0x3fc147858292b000], [0x3febc4fd75db96c1, 0x3fc2266ecdca3000],
        [0x3feb951e0c864a28, 0x3fc303d7a6c55000], [0x3feb65e2c5ef3e2c, 0x3fc3dfc33c331000],
        [0x3feb374867c9888b, 0x3fc4ba366b7a8000], [0x3feb094b211d304a, 0x3fc5933928d1f000],
        [0x3feadbe885f2ef7e, 0x3fc66acd2418f000], [0x3feaaf1d31603da2, 0x3fc740f8ec669000],
        [0x3fea82e63fd358a7, 0x3fc815c0f51af000], [0x3fea5740ef09738b, 0x3fc8e92954f68000],
        [0x3fea2c2a90ab4b27, 0x3fc9bb3602f84000], [0x3fea01a01393f2d1, 0x3fca8bed1c2c0000],
        [0x3fe9d79f24db3c1b, 0x3fcb5b515c01d000], [0x3fe9ae2505c7b190, 0x3fcc2967ccbcc000],
        [0x3fe9852ef297ce2f, 0x3fccf635d5486000], [0x3fe95cbaeea44b75, 0x3fcdc1bd3446c000],
        [0x3fe934c69de74838, 0x3fce8c01b8cfe000], [0x3fe90d4f2f6752e6, 0x3fcf5509c0179000],
        [0x3fe8e6528effd79d, 0x3fd00e6c121fb800], [0x3fe8bfce9fcc007c, 0x3fd071b80e93d000],
        [0x3fe899c0dabec30e, 0x3fd0d46b9e867000], [0x3fe87427aa2317fb, 0x3fd13687334bd000],
        [0x3fe84f00acb39a08, 0x3fd1980d67234800], [0x3fe82a49e8653e55, 0x3fd1f8ffe0cc8000],
        [0x3fe8060195f40260, 0x3fd2595fd7636800], [0x3fe7e22563e0a329, 0x3fd2b9300914a800],
        [0x3fe7beb377dcb5ad, 0x3fd3187210436000], [0x3fe79baa679725c2, 0x3fd377266dec1800],
        [0x3fe77907f2170657, 0x3fd3d54ffbaf3000], [0x3fe756cadbd6130c, 0x3fd432eee32fe000],
    ];
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::test_rng::XorShift;

    /// Every input gives `f64::ln`'s bits: random bit patterns over every binade, the values a
    /// flow φ takes (products of probabilities, far below 1), the near-1 range and its edges,
    /// subnormals, zeros, negatives, infinities and NaN, at every offset of a group of four.
    #[test]
    fn every_input_gives_the_bits_of_f64_ln() {
        let mut rng = XorShift(0x5851_f42d_4c95_7f2d);
        let mut xs: Vec<f64> = (0..200_000).map(|_| f64::from_bits(rng.next_u64() >> 1)).collect();
        xs.extend((0..200_000).map(|_| rng.unit() * rng.unit() * 1e-3));
        xs.extend((0..50_000).map(|_| 0.9 + rng.unit() * 0.2));
        // The near-1 range's edges, the least normal, the table's first interval.
        xs.extend([0x3fee_0000_0000_0000u64, 0x3ff1_0900_0000_0000, 0x0010_0000_0000_0000, 0x3fe6_0000_0000_0000].iter().flat_map(|&b| (0..8).map(move |d| f64::from_bits(b - 4 + d))));
        xs.extend([0.0, -0.0, -1.0, 1.0, f64::MIN_POSITIVE / 3.0, f64::MAX, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 2.0, 0.5]);
        for start in 0..4 {
            let xs = &xs[start..];
            let mut out = vec![0.0; xs.len()];
            ln_each(xs, &mut out);
            for (x, y) in xs.iter().zip(&out) {
                let want = x.ln();
                assert!(want.to_bits() == y.to_bits() || (want.is_nan() && y.is_nan()), "ln({x:e}) = {want:e}, got {y:e}");
            }
        }
        // Where glibc's logarithm is the system's, the test above ran the vector path.
        #[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            assert!(glibc::vector_path(), "this glibc's log is not the algorithm `ln4` follows (glibc ≥ 2.28's, FMA build)");
        }
    }
}
