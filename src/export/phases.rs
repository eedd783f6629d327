//! Where an export's time goes: when each of its phases last finished, from its start. On one
//! trace the phases follow one another, so each one's share is its finish less the one before
//! (`flowtracer bench` prints them beside the export's time); across a run's traces they
//! overlap, and the finishes say when the last trace left each phase.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// An export's phases, in the order one trace goes through them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The output folder checked and marked, traces opened and run through the pipeline.
    Pipeline,
    /// Each trace's files made in memory (the pictures are most of it).
    Files,
    /// Each trace's files written, synced and put in place.
    Written,
    /// The run-wide files' rows and report sections made and written.
    Rows,
    /// The run-wide files synced and put in place.
    RunFiles,
    /// `summary.json` written: the export's end.
    Summary,
}

/// How many phases an export has.
const COUNT: usize = 6;

impl Phase {
    pub const ALL: [Phase; COUNT] = [Phase::Pipeline, Phase::Files, Phase::Written, Phase::Rows, Phase::RunFiles, Phase::Summary];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Pipeline => "setup and pipeline",
            Phase::Files => "files made",
            Phase::Written => "written and synced",
            Phase::Rows => "run-wide rows",
            Phase::RunFiles => "run-wide files synced",
            Phase::Summary => "summary",
        }
    }
}

/// The export's clock: the latest finish of each phase, whichever thread reached it.
pub(super) struct Clock {
    start: Instant,
    last: [AtomicU64; COUNT],
}

impl Clock {
    pub fn start() -> Clock {
        Clock { start: Instant::now(), last: std::array::from_fn(|_| AtomicU64::new(0)) }
    }

    pub fn reached(&self, phase: Phase) {
        let ns = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last[phase as usize].fetch_max(ns, Ordering::Relaxed);
    }

    pub fn phases(&self) -> Phases {
        Phases(std::array::from_fn(|i| Duration::from_nanos(self.last[i].load(Ordering::Relaxed))))
    }
}

/// Each phase's latest finish from the export's start, in [`Phase::ALL`]'s order (zero for a
/// phase the export did not go through: the pipeline of a scored run's rows).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Phases(pub [Duration; COUNT]);

impl Phases {
    /// Each phase's own time: its finish less the latest finish before it.
    pub fn spans(&self) -> [(Phase, Duration); COUNT] {
        let mut before = Duration::ZERO;
        std::array::from_fn(|i| {
            let span = self.0[i].saturating_sub(before);
            before = before.max(self.0[i]);
            (Phase::ALL[i], span)
        })
    }

    /// The export's end: the latest finish of any phase.
    pub fn end(&self) -> Duration {
        self.0.iter().copied().max().unwrap_or_default()
    }

    /// The finishes' median over runs, phase by phase (the bench's repeats).
    pub fn median(runs: &[Phases]) -> Option<Phases> {
        (!runs.is_empty()).then(|| Phases(std::array::from_fn(|i| crate::bench::median(runs.iter().map(|p| p.0[i]).collect()))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A phase's own time is what it adds to the latest finish before it; the times add up to
    /// the last finish, also where a phase was skipped.
    #[test]
    fn spans_add_up_to_the_last_finish() {
        let ms = Duration::from_millis;
        let p = Phases([ms(10), ms(26), ms(0), ms(33), ms(37), ms(38)]);
        let spans: Vec<Duration> = p.spans().iter().map(|s| s.1).collect();
        assert_eq!(spans, [ms(10), ms(16), ms(0), ms(7), ms(4), ms(1)]);
        assert_eq!(spans.iter().sum::<Duration>(), ms(38));
        assert_eq!(p.end(), ms(38));
        let runs = [p, Phases([ms(12); 6]), Phases([ms(2); 6])];
        assert_eq!(Phases::median(&runs).unwrap().0[1], ms(12));
    }
}
