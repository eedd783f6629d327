//! The blocked forward sweep on two cores, the second kept awake between blocks.
//!
//! A block's bulk (its rows' gathers from every source settled before it) is a few tens of
//! microseconds at 4k tokens, and the inside of the block must be settled in order before the
//! next bulk can start. Handed to the pool a block at a time, each bulk woke the other core,
//! which on two cores cost more than the half it took (the flow's pass at 4k: 3.4–4.1 ms on one
//! core, 5.3–5.8 across both). Here the other core joins once for the whole sweep and waits for
//! each block by spinning: both take the block's groups of rows from one counter, and the
//! settling waits only for the groups the helper took. Each group is gathered exactly as on one
//! core (the same rows, the same sources, the same order of additions), so the bits are too.
//!
//! The helper is a job on the pool: where no core is free (the other one runs another trace of a
//! batch) it never starts and the sweep runs on one core, waiting for nothing; where it stops
//! early (a panic), the sweep gathers what it had taken itself.

use super::matrix::Matrix;
use super::sweep::{BLOCK, ROWS, Sweep};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Mutex, PoisonError, RwLock};

/// The posted block: its groups of rows, each gathered from `sources`.
#[derive(Clone, Default)]
struct Block {
    groups: Vec<Range<usize>>,
    sources: Range<usize>,
}

/// What the two cores share. `claim` holds the posted block's number (high 32 bits), its count
/// of groups and the next group to take (16 bits each): a group is taken by one compare-and-swap,
/// which fails once another block is posted, so a core never gathers a group of the wrong block.
struct Shared<A> {
    claim: AtomicU64,
    block: Mutex<Block>,
    results: Mutex<Vec<Option<Vec<A>>>>,
    done: AtomicUsize,
    /// The sweep has ended: the helper leaves.
    ended: AtomicBool,
    /// The helper has left (at the end, or early by a panic).
    helper_left: AtomicBool,
}

fn claim_word(block: u64, groups: usize, next: usize) -> u64 {
    block << 32 | (groups as u64) << 16 | next as u64
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<A: Copy + Send> Shared<A> {
    /// The next group of the posted block nobody has taken, now this core's.
    fn take(&self) -> Option<usize> {
        let mut w = self.claim.load(SeqCst);
        loop {
            let (groups, next) = ((w >> 16 & 0xffff) as usize, (w & 0xffff) as usize);
            if next >= groups {
                return None;
            }
            match self.claim.compare_exchange_weak(w, w + 1, SeqCst, SeqCst) {
                Ok(_) => return Some(next),
                Err(now) => w = now,
            }
        }
    }

    /// Gathers group `g` of the posted block (taken, so the block cannot change under it).
    fn gather<S: Sweep<Acc = A>>(&self, g: usize, m: &Matrix, state: &RwLock<&mut S>) {
        let (rows, sources) = {
            let b = lock(&self.block);
            (b.groups[g].clone(), b.sources.clone())
        };
        let got = state.read().unwrap_or_else(PoisonError::into_inner).gather_rows(rows, m, sources);
        lock(&self.results)[g] = Some(got);
        self.done.fetch_add(1, SeqCst);
    }
}

/// Marks the helper gone however it leaves.
struct Leaving<'a>(&'a AtomicBool);

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

/// Marks the sweep ended however it ends, so the helper never spins on.
struct Ending<'a>(&'a AtomicBool);

impl Drop for Ending<'_> {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

/// Spins this many times between looks before yielding the core (a block's settling takes a few
/// microseconds; a wait much longer than that means the other thread was descheduled).
const SPINS: u32 = 1 << 12;

fn pause(spins: &mut u32) {
    *spins += 1;
    if *spins < SPINS {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// [`super::sweep::forward_sweep`] with the second core as a helper: the same settling, the
/// same bits. Returns how many groups of rows the helper gathered (none where it never started).
pub fn forward_sweep<S: Sweep>(m: &Matrix, first_source: usize, rows: Range<usize>, state: &mut S) -> usize {
    let shared = Shared::<S::Acc> {
        claim: AtomicU64::new(0),
        block: Mutex::new(Block::default()),
        results: Mutex::new(Vec::new()),
        done: AtomicUsize::new(0),
        ended: AtomicBool::new(false),
        helper_left: AtomicBool::new(false),
    };
    let helped = AtomicUsize::new(0);
    let state = RwLock::new(state);
    rayon::scope(|scope| {
        scope.spawn(|_| {
            let _leaving = Leaving(&shared.helper_left);
            let mut spins = 0;
            while !shared.ended.load(SeqCst) {
                match shared.take() {
                    Some(g) => {
                        shared.gather(g, m, &state);
                        helped.fetch_add(1, SeqCst);
                        spins = 0;
                    }
                    None => pause(&mut spins),
                }
            }
        });
        let _ending = Ending(&shared.ended);
        let mut posted = 0;
        let mut k0 = rows.start;
        while k0 < rows.end {
            let k1 = (k0 + BLOCK).min(rows.end);
            let split = k0.max(first_source);
            let before = first_source..split;
            let groups: Vec<Range<usize>> = (k0..k1).step_by(ROWS).map(|a| a..(a + ROWS).min(k1)).collect();
            let partial: Vec<S::Acc> = if before.len() * (k1 - k0) >= 1 << 15 {
                posted += 1;
                *lock(&shared.block) = Block { groups: groups.clone(), sources: before.clone() };
                *lock(&shared.results) = vec![None; groups.len()];
                shared.done.store(0, SeqCst);
                shared.claim.store(claim_word(posted, groups.len(), 0), SeqCst);
                while let Some(g) = shared.take() {
                    shared.gather(g, m, &state);
                }
                let mut spins = 0;
                while shared.done.load(SeqCst) < groups.len() && !shared.helper_left.load(SeqCst) {
                    pause(&mut spins);
                }
                let results = std::mem::take(&mut *lock(&shared.results));
                // Groups the helper took but never gave back (it left early) are gathered here.
                let st = state.read().unwrap_or_else(PoisonError::into_inner);
                results.into_iter().zip(&groups).flat_map(|(got, ks)| got.unwrap_or_else(|| st.gather_rows(ks.clone(), m, before.clone()))).collect()
            } else {
                let st = state.read().unwrap_or_else(PoisonError::into_inner);
                groups.iter().flat_map(|ks| st.gather_rows(ks.clone(), m, before.clone())).collect()
            };
            let mut st = state.write().unwrap_or_else(PoisonError::into_inner);
            super::sweep::settle_block(m, split, k0..k1, &partial, &mut **st);
            k0 = k1;
        }
    });
    helped.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::sweep::weighted_sums;

    /// A sweep that sums its sources' values through each row, its value the sum plus one: the
    /// chains of additions the flow solve makes.
    struct Sums {
        value: Vec<f64>,
    }

    impl Sweep for Sums {
        type Acc = f64;

        fn gather(&self, _k: usize, row: &[f32], sources: Range<usize>) -> f64 {
            super::super::sweep::weighted_sum(row, &self.value, sources)
        }

        fn gather_rows(&self, ks: Range<usize>, m: &Matrix, sources: Range<usize>) -> Vec<f64> {
            weighted_sums(ks, m, &self.value, sources)
        }

        fn gather_onto(&self, acc: f64, _k: usize, row: &[f32], sources: Range<usize>) -> f64 {
            super::super::sweep::weighted_sum_onto(acc, row, &self.value, sources)
        }

        fn combine(a: f64, b: f64) -> f64 {
            a + b
        }

        fn settle(&mut self, k: usize, acc: f64) {
            self.value[k] = 1.0 + acc;
        }
    }

    /// On a pool of two threads the helper joins (in one run of five at least: it may start
    /// late) and the values are those of the sweep on one core, bit for bit, every run; on a
    /// pool of one it never starts and nothing waits for it.
    #[test]
    fn two_cores_settle_the_bits_of_one() {
        let n = 3000;
        let (m, _) = crate::flow::test_rng::sparse_matrix(n, 0x0dd_ba11_cafe_f00d, 6);
        let one_core = || {
            let mut s = Sums { value: vec![0.0; n] };
            let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
            pool.install(|| super::super::sweep::forward_sweep(&m, 7, 7..n, &mut s));
            s.value
        };
        let want = one_core();
        assert!(want[n - 1] > 1.0 && want.iter().all(|v| v.is_finite()));
        let two = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let mut helped = 0;
        for _ in 0..5 {
            let mut s = Sums { value: vec![0.0; n] };
            helped += two.install(|| forward_sweep(&m, 7, 7..n, &mut s));
            assert!(s.value.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "two cores changed the bits");
        }
        assert!(helped > 0, "the helper never gathered a group");
        let alone = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let mut s = Sums { value: vec![0.0; n] };
        assert_eq!(alone.install(|| forward_sweep(&m, 7, 7..n, &mut s)), 0);
        assert!(s.value.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
