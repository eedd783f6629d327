//! Where a trace's files go to the disk: threads of their own, as many at once as there are
//! slots, so the pool's threads go on to the next trace's pipeline and pictures while the
//! writes wait on the disk.

use super::{Done, Outcome, outputs};
use crate::trace::{Problem, Trace, TraceError};
use std::path::{Path, PathBuf};

/// Where a window's traces' files are written: threads of the window's scope, as many at once
/// as `slots` has free.
#[derive(Clone, Copy)]
pub(super) struct Writers<'scope, 'env> {
    pub scope: &'scope std::thread::Scope<'scope, 'env>,
    pub slots: &'env Slots,
}

/// A trace that failed before its files were made, or its files on their way to the disk. Most
/// of a write is waiting for the disk (each file's fsync, before its rename); on a thread of its
/// own, the wait leaves the pool's thread to the next trace's pipeline and pictures, where it had
/// slept through it (a run of 64 traces of 1k tokens exported 6% faster, every format or none of
/// the pictures).
pub(super) enum Written<'scope> {
    Failed(Outcome),
    Writing(std::thread::ScopedJoinHandle<'scope, (Outcome, Option<Done>)>),
}

impl Written<'_> {
    pub fn settled(self) -> (Outcome, Option<Done>) {
        match self {
            Written::Failed(outcome) => (outcome, None),
            Written::Writing(writer) => writer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
        }
    }
}

/// A count of things under way, at most a set number: a pool's thread takes a slot before it
/// hands a trace's files to a writer, which gives it back when they are on disk, so a slow disk
/// holds the pool back instead of letting a window's files pile up in memory.
pub(super) struct Slots {
    free: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

impl Slots {
    pub fn new(count: usize) -> Slots {
        Slots { free: std::sync::Mutex::new(count.max(1)), freed: std::sync::Condvar::new() }
    }

    /// Waits for a slot; it is given back when the guard goes (also on a panic).
    pub fn take(&self) -> Slot<'_> {
        let mut free = self.freed.wait_while(self.free.lock().unwrap_or_else(|e| e.into_inner()), |free| *free == 0).unwrap_or_else(|e| e.into_inner());
        *free -= 1;
        Slot(self)
    }
}

pub(super) struct Slot<'a>(&'a Slots);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

/// Traces whose attention takes at least this many bytes are let go on a thread of their own.
const LET_GO_APART_FROM: usize = 16 << 20;

/// Writes a result's `files` all or none, letting its `trace` go meanwhile: unmapping a long
/// trace is milliseconds of the kernel's work (3.7 ms for the 256 MB of an 8k-token `[N,N]` F32
/// file), for which the writes, most of them waiting for the disk, leave a core; it had come
/// after them, on the export's path. A small trace goes after the writes, on this thread (a
/// thread of its own would cost more).
pub(super) fn write(outputs: &outputs::Outputs, d: &Done, files: &[(PathBuf, Vec<u8>)], trace: Option<Trace>) -> Result<(), TraceError> {
    let written = match trace {
        Some(trace) if trace.attention.byte_len() >= LET_GO_APART_FROM => std::thread::scope(|s| {
            s.spawn(move || drop(trace));
            outputs.write_all(files)
        }),
        _ => outputs.write_all(files),
    };
    written.map_err(|e| TraceError::new(Path::new(&d.source), Problem::Io, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No more slots are out at once than there are, and one given back (here by a guard
    /// dropped) lets a waiting taker through.
    #[test]
    fn slots_hold_back_a_taker_until_one_is_given_back() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let slots = Slots::new(2);
        let through = AtomicBool::new(false);
        let (a, b) = (slots.take(), slots.take());
        std::thread::scope(|s| {
            let taker = s.spawn(|| {
                let _c = slots.take();
                through.store(true, Ordering::SeqCst);
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(!through.load(Ordering::SeqCst), "a third slot was taken while two were out");
            drop(a);
            taker.join().unwrap();
        });
        assert!(through.load(Ordering::SeqCst));
        drop(b);
        let _all: Vec<Slot> = (0..2).map(|_| slots.take()).collect();
    }
}
