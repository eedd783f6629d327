//! The blocked forward triangular sweep shared by the flow solve and the backbone's widest-path
//! programme: value(k) depends on every earlier value through row k of M. Rows are taken in
//! blocks; the bulk of each block (sources before the block) is gathered on two cores on long
//! traces ([`super::paired`]), the small triangle inside the block sequentially. The same
//! structure maps onto GPU dispatches.

use super::matrix::Matrix;
use super::paired::{Pair, Parts, with_helper};
use std::ops::Range;
use std::sync::{PoisonError, RwLock};

pub const BLOCK: usize = 128;
/// Rows a `gather_rows` call takes at once.
pub const ROWS: usize = 16;
/// A sweep over a trace of this many tokens or more gathers its blocks' bulk on two cores
/// ([`super::paired`]), and reach pushes on two; below it, on one. Below it the other core's
/// start is a good part of the step: at 2k the flow's pass took 0.9 ms on one core and 1.0 on
/// two, at 3k 1.8–2.0 against 1.4–1.6; and a 64-trace 1k batch (whose traces keep both cores
/// busy already) ran 3–4% slower with every sweep on two.
pub const PAIRED_FROM: usize = 3072;

/// What a group of at most [`ROWS`] consecutive rows gathered, held on the stack: a sweep's
/// gathers give one per group of rows, hundreds of times a trace (as a `Vec` each they were half
/// of a 1k-token trace's 600 allocations).
#[derive(Clone, Copy, Debug)]
pub struct Rows<T> {
    values: [T; ROWS],
    len: usize,
}

impl<T: Copy + Default> Rows<T> {
    /// The first `len` (≤ [`ROWS`]) of `values`.
    pub fn new(values: [T; ROWS], len: usize) -> Self {
        assert!(len <= ROWS, "a group of at most {ROWS} rows, not {len}");
        Rows { values, len }
    }

    /// `len` values, the j-th `value(j)`.
    pub fn from_fn(len: usize, mut value: impl FnMut(usize) -> T) -> Self {
        assert!(len <= ROWS, "a group of at most {ROWS} rows, not {len}");
        let mut values = [T::default(); ROWS];
        for (j, v) in values[..len].iter_mut().enumerate() {
            *v = value(j);
        }
        Rows { values, len }
    }
}

impl<T> std::ops::Deref for Rows<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.values[..self.len]
    }
}

pub trait Sweep: Sync + Send {
    type Acc: Copy + Send + Default;
    /// What the settled sources `sources` send to token `k` (row `row` of M).
    fn gather(&self, k: usize, row: &[f32], sources: Range<usize>) -> Self::Acc;
    /// `gather` of the consecutive rows `ks` (at most [`ROWS`]), each from the same sources. A
    /// sweep whose gather is a chain of dependent additions overrides it to run several rows'
    /// chains side by side, each in its own order (the same answer bit for bit, at a few times
    /// the speed).
    fn gather_rows(&self, ks: Range<usize>, m: &Matrix, sources: Range<usize>) -> Rows<Self::Acc> {
        Rows::from_fn(ks.len(), |j| self.gather(ks.start + j, m.row(ks.start + j), sources.clone()))
    }
    /// `gather` of `sources` carried on from `acc`, what the sources just before them gathered:
    /// for a chain of additions the chain goes on (so splitting a row's sources where a block
    /// starts leaves its bits as they were); for a maximum, `combine`.
    fn gather_onto(&self, acc: Self::Acc, k: usize, row: &[f32], sources: Range<usize>) -> Self::Acc;
    fn combine(earlier: Self::Acc, later: Self::Acc) -> Self::Acc;
    /// Fixes token `k`'s value from everything it gathered.
    fn settle(&mut self, k: usize, acc: Self::Acc);
}

/// Σ_i M[k,i]·weights[i] over `sources`: the gather of a sweep that sums its sources' values
/// through row k (the flow solve, the knock-out losses), in the order `Iterator::sum` adds (from
/// −0.0, source by source).
pub fn weighted_sum(row: &[f32], weights: &[f64], sources: Range<usize>) -> f64 {
    row[sources.clone()].iter().zip(&weights[sources]).map(|(&w, &x)| w as f64 * x).sum()
}

/// `weighted_sum`'s chain carried on from `acc` over `sources`.
pub fn weighted_sum_onto(acc: f64, row: &[f32], weights: &[f64], sources: Range<usize>) -> f64 {
    row[sources.clone()].iter().zip(&weights[sources]).fold(acc, |a, (&w, &x)| a + w as f64 * x)
}

/// `weighted_sum` of the consecutive rows `ks`, `ROWS` side by side: each row's chain of
/// additions in `weighted_sum`'s order, but sixteen independent chains keep the adders busy where
/// one waits on each addition.
pub fn weighted_sums(ks: Range<usize>, m: &Matrix, weights: &[f64], sources: Range<usize>) -> Rows<f64> {
    let x = &weights[sources.clone()];
    if ks.len() != ROWS {
        return Rows::from_fn(ks.len(), |j| weighted_sum(m.row(ks.start + j), weights, sources.clone()));
    }
    let rows: [&[f32]; ROWS] = std::array::from_fn(|j| &m.row(ks.start + j)[sources.clone()]);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above; every row is as long as `x`.
        return Rows::new(unsafe { chains_avx2(&rows, x) }, ROWS);
    }
    Rows::new(chains_plain(&rows, x), ROWS)
}

/// Sixteen rows' chains one source at a time: where the CPU has no AVX2, and the reference the
/// vector kernel is tested against.
fn chains_plain(rows: &[&[f32]; ROWS], x: &[f64]) -> [f64; ROWS] {
    let mut acc = [-0.0f64; ROWS];
    for (i, &xi) in x.iter().enumerate() {
        for (a, row) in acc.iter_mut().zip(rows) {
            *a += row[i] as f64 * xi;
        }
    }
    acc
}

/// Sixteen rows' chains, four rows to a vector. Four products of a row are made at once (the
/// same products: a multiplication is one rounding wherever it runs), then a 4×4 transpose puts
/// the four rows' products for one source in one vector, added in the sources' order: each lane
/// is its row's chain, bit for bit.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn chains_avx2(rows: &[&[f32]; ROWS], x: &[f64]) -> [f64; ROWS] {
    use std::arch::x86_64::*;
    let n = x.len();
    assert!(rows.iter().all(|r| r.len() == n));
    let mut acc = [_mm256_set1_pd(-0.0); ROWS / 4];
    let mut i = 0;
    while i + 4 <= n {
        // SAFETY: i + 4 <= n, the length of `x` and of every row.
        let xv = unsafe { _mm256_loadu_pd(x.as_ptr().add(i)) };
        for (g, a) in acc.iter_mut().enumerate() {
            let p: [__m256d; 4] = std::array::from_fn(|r| {
                // SAFETY: as above.
                let w = unsafe { _mm_loadu_ps(rows[4 * g + r].as_ptr().add(i)) };
                _mm256_mul_pd(_mm256_cvtps_pd(w), xv)
            });
            let (t0, t1) = (_mm256_unpacklo_pd(p[0], p[1]), _mm256_unpackhi_pd(p[0], p[1]));
            let (t2, t3) = (_mm256_unpacklo_pd(p[2], p[3]), _mm256_unpackhi_pd(p[2], p[3]));
            *a = _mm256_add_pd(*a, _mm256_permute2f128_pd::<0x20>(t0, t2));
            *a = _mm256_add_pd(*a, _mm256_permute2f128_pd::<0x20>(t1, t3));
            *a = _mm256_add_pd(*a, _mm256_permute2f128_pd::<0x31>(t0, t2));
            *a = _mm256_add_pd(*a, _mm256_permute2f128_pd::<0x31>(t1, t3));
        }
        i += 4;
    }
    let mut out = [0.0f64; ROWS];
    for (g, a) in acc.iter().enumerate() {
        // SAFETY: four f64 into four f64.
        unsafe { _mm256_storeu_pd(out.as_mut_ptr().add(4 * g), *a) };
    }
    for (o, row) in out.iter_mut().zip(rows) {
        for (&w, &xi) in row[i..].iter().zip(&x[i..]) {
            *o += w as f64 * xi;
        }
    }
    out
}

/// Settles tokens `rows` in order; sources start at `first_source`.
pub fn forward_sweep<S: Sweep>(m: &Matrix, first_source: usize, rows: Range<usize>, state: &mut S) {
    sweep(m, first_source, rows, state);
}

/// [`forward_sweep`], answering how many groups of rows the other core gathered.
fn sweep<S: Sweep>(m: &Matrix, first_source: usize, rows: Range<usize>, state: &mut S) -> usize {
    let paired = rows.end >= PAIRED_FROM && rayon::current_num_threads() > 1;
    let gathers = Gathers { m, state: RwLock::new(state) };
    let blocks = |pair: Option<&Pair<Gathers<S>>>| {
        let mut k0 = rows.start;
        while k0 < rows.end {
            let k1 = (k0 + BLOCK).min(rows.end);
            let split = k0.max(first_source);
            let (groups, sources): (Vec<Range<usize>>, _) = ((k0..k1).step_by(ROWS).map(|a| a..(a + ROWS).min(k1)).collect(), first_source..split);
            let partial: Vec<S::Acc> = match pair {
                // A bulk worth sharing: its groups taken by both cores.
                Some(pair) if sources.len() * (k1 - k0) >= 1 << 15 => pair.run(Bulk { groups, sources }).concat(),
                _ => {
                    let st = gathers.state.read().unwrap_or_else(PoisonError::into_inner);
                    let mut partial = Vec::with_capacity(k1 - k0);
                    groups.into_iter().for_each(|ks| partial.extend_from_slice(&st.gather_rows(ks, m, sources.clone())));
                    partial
                }
            };
            settle_block(m, split, k0..k1, &partial, &mut **gathers.state.write().unwrap_or_else(PoisonError::into_inner));
            k0 = k1;
        }
    };
    if !paired {
        blocks(None);
        return 0;
    }
    with_helper(&gathers, |pair| blocks(Some(pair))).1
}

/// A sweep's state while both cores read it for a block's bulk and the caller settles the block
/// between bulks.
struct Gathers<'a, S> {
    m: &'a Matrix,
    state: RwLock<&'a mut S>,
}

/// A block's bulk: its groups of `ROWS` rows, each gathered from `sources`.
struct Bulk {
    groups: Vec<Range<usize>>,
    sources: Range<usize>,
}

impl<S: Sweep> Parts for Gathers<'_, S> {
    type Round = Bulk;
    type Out = Vec<S::Acc>;

    fn count(&self, bulk: &Bulk) -> usize {
        bulk.groups.len()
    }

    fn part(&self, bulk: &Bulk, g: usize) -> Vec<S::Acc> {
        self.state.read().unwrap_or_else(PoisonError::into_inner).gather_rows(bulk.groups[g].clone(), self.m, bulk.sources.clone()).to_vec()
    }
}

/// Settles the block `rows` in order, each row's `partial` (what the sources before `split`
/// sent it) combined with what the block's own settled rows send. `ROWS` rows at a time: what the
/// block's settled rows before them send is gathered side by side, then each row carries that on
/// over the few rows just before it, one at a time as they settle.
fn settle_block<S: Sweep>(m: &Matrix, split: usize, rows: Range<usize>, partial: &[S::Acc], state: &mut S) {
    let (k0, k1) = (rows.start, rows.end);
    for sub in (k0..k1).step_by(ROWS) {
        let sub_end = (sub + ROWS).min(k1);
        let settled = split..sub.max(split);
        let firsts = state.gather_rows(sub..sub_end, m, settled.clone());
        for k in sub..sub_end {
            let inside = state.gather_onto(firsts[k - sub], k, m.row(k), settled.end..k.max(settled.end));
            state.settle(k, S::combine(partial[k - k0], inside));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::test_rng::XorShift;

    /// A sweep whose value is one plus the sum of its sources' values through its row: the
    /// chains of additions the flow solve makes.
    struct Sums(Vec<f64>);

    impl Sweep for Sums {
        type Acc = f64;

        fn gather(&self, _k: usize, row: &[f32], sources: Range<usize>) -> f64 {
            weighted_sum(row, &self.0, sources)
        }

        fn gather_rows(&self, ks: Range<usize>, m: &Matrix, sources: Range<usize>) -> Rows<f64> {
            weighted_sums(ks, m, &self.0, sources)
        }

        fn gather_onto(&self, acc: f64, _k: usize, row: &[f32], sources: Range<usize>) -> f64 {
            weighted_sum_onto(acc, row, &self.0, sources)
        }

        fn combine(a: f64, b: f64) -> f64 {
            a + b
        }

        fn settle(&mut self, k: usize, acc: f64) {
            self.0[k] = 1.0 + acc;
        }
    }

    /// On two cores the other one gathers some of the blocks' groups and every value is the
    /// one-core sweep's, bit for bit.
    #[test]
    fn two_cores_settle_the_bits_of_one() {
        let n = PAIRED_FROM + 900;
        let (m, _) = crate::flow::test_rng::sparse_matrix(n, 0x0dd_ba11_cafe_f00d, 6);
        let solve = || {
            let mut s = Sums(vec![0.0; n]);
            let helped = sweep(&m, 7, 7..n, &mut s);
            (s.0, helped)
        };
        let (want, none) = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(solve);
        assert_eq!(none, 0, "one thread, no helper");
        assert!(want[n - 1] > 1.0 && want.iter().all(|v| v.is_finite()));
        crate::flow::paired::same_bits_on_two_cores(&want, solve);
    }

    /// The vector kernel this CPU takes gives the chains of one source at a time, bit for bit,
    /// for every length of the tail after the last vector of four.
    #[test]
    fn the_vector_chains_are_the_plain_ones() {
        let mut rng = XorShift(0x0123_4567_89ab_cdef);
        let rows: Vec<Vec<f32>> = (0..ROWS).map(|_| (0..203).map(|_| (rng.unit() / 50.0) as f32).collect()).collect();
        let x: Vec<f64> = (0..203).map(|_| rng.unit() * 7.0).collect();
        for len in [200, 201, 202, 203, 3, 0] {
            let rs: [&[f32]; ROWS] = std::array::from_fn(|r| &rows[r][..len]);
            let plain = chains_plain(&rs, &x[..len]);
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2, checked just above.
                let wide = unsafe { chains_avx2(&rs, &x[..len]) };
                assert_eq!(wide.map(f64::to_bits), plain.map(f64::to_bits), "{len} sources");
            }
            let one: Vec<f64> = rs.iter().map(|r| r.iter().zip(&x[..len]).map(|(&w, &x)| w as f64 * x).sum()).collect();
            assert_eq!(plain.map(f64::to_bits).to_vec(), one.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        }
    }
}
