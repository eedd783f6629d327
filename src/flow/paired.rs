//! Work in rounds on two cores, the second kept awake between rounds.
//!
//! The solves are sequences of short parallel rounds with a little sequential work between them:
//! a block's bulk in the forward sweeps (a few tens of microseconds at 4k tokens) before its rows
//! settle in order, a span's push into every earlier token in reach before the next span
//! settles. Handed to the pool a round at a time, each round woke the other core, which on two
//! cores cost more than the half of the round it took (the flow's pass at 4k: 3.4–4.1 ms on one
//! core, 5.3–5.8 across both). Here the other core joins once for the whole solve and waits for
//! each round by spinning: both take the round's parts from one counter, and the caller waits
//! only for the parts the helper took. A part is made exactly as on one core, so the bits are
//! the same.
//!
//! The helper is a job on the pool: where no core is free (the other one runs another trace of a
//! batch) it never starts and every round is made on one core, waiting for nothing; where it
//! stops early (a panic), the caller makes the parts it had taken.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// A round's work, cut into parts any core may take.
pub trait Parts: Sync {
    /// What a round posts, the same for each of its parts.
    type Round: Send + Sync;
    /// What a part makes.
    type Out: Send;
    fn count(&self, round: &Self::Round) -> usize;
    fn part(&self, round: &Self::Round, g: usize) -> Self::Out;
}

/// What the two cores share. `claim` holds the round's number (high 32 bits), its count of parts
/// and the next part to take (16 bits each): a part is taken by one compare-and-swap, which fails
/// once the next round is posted, so a core never makes a part of the wrong round.
struct Shared<P: Parts> {
    claim: AtomicU64,
    round: Mutex<Option<Arc<P::Round>>>,
    results: Mutex<Vec<Option<P::Out>>>,
    done: AtomicUsize,
    /// The caller's work has ended: the helper leaves.
    ended: AtomicBool,
    /// The helper has left (at the end, or early by a panic).
    helper_left: AtomicBool,
    helped: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<P: Parts> Shared<P> {
    /// The next part of the posted round nobody has taken, now this core's.
    fn take(&self) -> Option<usize> {
        let mut w = self.claim.load(SeqCst);
        loop {
            let (count, next) = ((w >> 16 & 0xffff) as usize, (w & 0xffff) as usize);
            if next >= count {
                return None;
            }
            match self.claim.compare_exchange_weak(w, w + 1, SeqCst, SeqCst) {
                Ok(_) => return Some(next),
                Err(now) => w = now,
            }
        }
    }

    /// Makes part `g` of the posted round (taken, so the round cannot change under it).
    fn make(&self, parts: &P, g: usize) {
        let round = lock(&self.round).clone().expect("a part is taken only of a posted round");
        let out = parts.part(&round, g);
        lock(&self.results)[g] = Some(out);
        self.done.fetch_add(1, SeqCst);
    }
}

/// The caller's side: posts rounds and makes their parts with the helper.
pub struct Pair<'a, P: Parts> {
    parts: &'a P,
    shared: &'a Shared<P>,
    posted: std::cell::Cell<u64>,
}

impl<P: Parts> Pair<'_, P> {
    /// Every part of `round`, in order.
    pub fn run(&self, round: P::Round) -> Vec<P::Out> {
        let (parts, shared) = (self.parts, self.shared);
        let count = parts.count(&round);
        assert!(count < 1 << 16, "a round of {count} parts");
        let round = Arc::new(round);
        self.posted.set(self.posted.get() + 1);
        *lock(&shared.round) = Some(round.clone());
        *lock(&shared.results) = (0..count).map(|_| None).collect();
        shared.done.store(0, SeqCst);
        shared.claim.store(self.posted.get() << 32 | (count as u64) << 16, SeqCst);
        while let Some(g) = shared.take() {
            shared.make(parts, g);
        }
        let mut spins = 0;
        while shared.done.load(SeqCst) < count && !shared.helper_left.load(SeqCst) {
            pause(&mut spins);
        }
        let results = std::mem::take(&mut *lock(&shared.results));
        // Parts the helper took but never gave back (it left early) are made here.
        results.into_iter().enumerate().map(|(g, out)| out.unwrap_or_else(|| parts.part(&round, g))).collect()
    }
}

/// Runs `body`, whose rounds (`Pair::run`) the pool's other core helps with; returns what `body`
/// returns and how many parts the helper made (none where it never started).
pub fn with_helper<P: Parts, R: Send>(parts: &P, body: impl FnOnce(&Pair<P>) -> R + Send) -> (R, usize) {
    let shared = Shared::<P> {
        claim: AtomicU64::new(0),
        round: Mutex::new(None),
        results: Mutex::new(Vec::new()),
        done: AtomicUsize::new(0),
        ended: AtomicBool::new(false),
        helper_left: AtomicBool::new(false),
        helped: AtomicUsize::new(0),
    };
    let shared = &shared;
    let got = rayon::scope(|scope| {
        scope.spawn(move |_| {
            let _leaving = Flag(&shared.helper_left);
            let mut spins = 0;
            while !shared.ended.load(SeqCst) {
                match shared.take() {
                    Some(g) => {
                        shared.make(parts, g);
                        shared.helped.fetch_add(1, SeqCst);
                        spins = 0;
                    }
                    None => pause(&mut spins),
                }
            }
        });
        let _ending = Flag(&shared.ended);
        body(&Pair { parts, shared, posted: std::cell::Cell::new(0) })
    });
    (got, shared.helped.load(SeqCst))
}

/// Sets its flag however the scope it guards is left, a panic included, so that neither side
/// waits on for the other.
struct Flag<'a>(&'a AtomicBool);

impl Drop for Flag<'_> {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

/// Spins this many times between looks before yielding the core: the work between two rounds is
/// a few microseconds, and a wait much longer than that means the other thread was descheduled.
const SPINS: u32 = 1 << 12;

fn pause(spins: &mut u32) {
    *spins += 1;
    if *spins < SPINS {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// For the tests of the solves that use a helper: runs `solve` on a pool of two threads until the
/// helper has made a part (at most 200 times: it may start late, or not at all while other tests
/// keep the cores busy), each run's values checked against `want` bit for bit.
#[cfg(test)]
pub(crate) fn same_bits_on_two_cores(want: &[f64], solve: impl Fn() -> (Vec<f64>, usize) + Send + Sync) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    for _ in 0..200 {
        let (got, helped) = pool.install(&solve);
        assert!(got.len() == want.len() && got.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits()), "two cores changed the bits");
        if helped > 0 {
            return;
        }
    }
    panic!("the other core never helped in 200 runs");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sums of squares over ranges, a part per range.
    struct Squares;

    impl Parts for Squares {
        type Round = Vec<std::ops::Range<u64>>;
        type Out = u64;

        fn count(&self, round: &Self::Round) -> usize {
            round.len()
        }

        fn part(&self, round: &Self::Round, g: usize) -> u64 {
            round[g].clone().map(|x| x * x % 7919).sum()
        }
    }

    /// Every round's parts come back in order, whichever core made them; on a pool of two threads
    /// the helper makes some (it may start late, or not at all while other tests keep the cores
    /// busy: tried until it has, at most 200 times, each try checked); on a pool of one it never
    /// starts and nothing waits for it.
    #[test]
    fn rounds_come_back_whole_and_in_order() {
        let rounds: Vec<Vec<std::ops::Range<u64>>> = (0..40).map(|r| (0..1 + r % 9).map(|g| g * 20_000..(g + 1) * 20_000 + r).collect()).collect();
        let want: Vec<Vec<u64>> = rounds.iter().map(|round| (0..round.len()).map(|g| Squares.part(round, g)).collect()).collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| with_helper(&Squares, |pair| rounds.iter().map(|round| pair.run(round.clone())).collect::<Vec<_>>()))
        };
        let mut helped = 0;
        for _ in 0..200 {
            let (got, h) = run(2);
            assert_eq!(got, want);
            helped += h;
            if helped > 0 {
                break;
            }
        }
        assert!(helped > 0, "the helper never made a part in 200 tries");
        let (got, helped) = run(1);
        assert_eq!((got, helped), (want, 0));
    }
}
