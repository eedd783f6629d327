//! A counting allocator: the binary installs it so `bench` can report peak heap per step.
//! It counts only inside a [`measure`]: outside one it is the system allocator plus one
//! relaxed load of a flag no one writes. Counting on every allocation cost the export a sixth
//! of its time at 4k tokens (the rasteriser allocates per glyph on both cores, and every
//! counter update took the shared cache line from the other core).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

pub struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// Growth since the measure began: blocks freed inside it that were taken before it make it
/// negative, which is the heap's true change.
static CURRENT: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            grew(layout.size());
        }
        p
    }

    /// The system's own zeroed allocation (calloc): fresh pages from the kernel are already zero,
    /// so a large matrix costs nothing until it is written. Without this, `GlobalAlloc`'s default
    /// allocated and then cleared every byte on one thread (70 ms of a 90 ms aggregation at 8k).
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            grew(layout.size());
        }
        p
    }

    /// The system's realloc (which can move a large block's pages instead of copying them).
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            shrank(layout.size());
            grew(new_size);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        if COUNTING.load(Ordering::Relaxed) {
            shrank(layout.size());
        }
    }
}

fn grew(bytes: usize) {
    if !INSTALLED.load(Ordering::Relaxed) {
        INSTALLED.store(true, Ordering::Relaxed);
    }
    let now = CURRENT.fetch_add(bytes as isize, Ordering::Relaxed) + bytes as isize;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrank(bytes: usize) {
    CURRENT.fetch_sub(bytes as isize, Ordering::Relaxed);
}

/// Blocks up to this size come from the heap, not fresh from the kernel.
pub const HEAP_BLOCKS_UP_TO: usize = 16 << 20;
/// Freed memory at the heap's top is handed back to the kernel only past this much.
pub const KEEP_FREED: usize = 64 << 20;

/// Has glibc's malloc keep what the process frees for its next allocations instead of handing
/// it back to the kernel: blocks up to [`HEAP_BLOCKS_UP_TO`] come from the heap, whose free top
/// goes back only past [`KEEP_FREED`]. Under glibc's own rule (the mmap threshold following the
/// largest block freed, the heap trimmed past twice that) a run's export gave each trace's
/// pictures (the credit picture's bands, the backbone's pixmap: 1–3 MiB each) back after the
/// trace, to be faulted in and zeroed again for the next one: about a thousand page faults a
/// 1k-token trace, 72 000 of the 73 800 a run of 64 such traces took. Kept, the run took 10 500
/// and 6% less time, for 2 MB more resident at its peak (README, *What makes it fast*). Larger
/// blocks (a 4k-token trace's 32 MiB matrix) still come from the kernel, zeroed for free. Only
/// the binary asks for this: the Python module is loaded into a process whose allocator is not
/// ours to set. Elsewhere than glibc, nothing to do.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets two of malloc's parameters; any value is allowed.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, HEAP_BLOCKS_UP_TO as i32);
        libc::mallopt(libc::M_TRIM_THRESHOLD, KEEP_FREED as i32);
    }
}

/// Whether the counting allocator is the global one and has counted (else the figures are
/// meaningless).
pub fn installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

/// Counting from now until it is dropped; one at a time (the bench's).
pub struct Measure(());

/// Starts counting the heap's growth.
pub fn measure() -> Measure {
    CURRENT.store(0, Ordering::Relaxed);
    PEAK.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::SeqCst);
    Measure(())
}

impl Measure {
    /// The most the heap has grown since the measure began.
    pub fn peak(&self) -> usize {
        PEAK.load(Ordering::Relaxed).max(0) as usize
    }
}

impl Drop for Measure {
    fn drop(&mut self) {
        COUNTING.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minor page faults this thread has taken so far (not the other tests' beside it).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn faults() -> i64 {
        // SAFETY: getrusage fills the struct it is given.
        unsafe {
            let mut u: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_THREAD, &mut u);
            u.ru_minflt
        }
    }

    /// With freed memory kept, a picture's blocks (four of 3 MiB) taken, written and freed again
    /// and again are faulted in once, not each time (3 072 pages a time where they went back to
    /// the kernel, as glibc's own rule gives them back: more than twice the largest block freed).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_blocks_are_taken_again_without_page_faults() {
        keep_freed_memory();
        let touch = || {
            let blocks: Vec<Vec<u8>> = (0..4).map(|i| vec![i as u8 + 1; 3 << 20]).collect();
            std::hint::black_box(&blocks);
        };
        touch();
        let before = faults();
        for _ in 0..20 {
            touch();
        }
        let per_round = (faults() - before) as f64 / 20.0;
        assert!(per_round < 100.0, "{per_round} page faults a round of four blocks");
    }

    /// Zeroed and reallocated blocks are counted like plain ones, and come back zeroed / with
    /// their contents (the system's calloc and realloc do the work); a freed block lowers the
    /// level but not the peak; nothing is counted outside a measure.
    #[test]
    fn zeroed_and_grown_blocks_are_counted_inside_a_measure() {
        let layout = Layout::from_size_align(1 << 20, 16).unwrap();
        unsafe {
            let before = Counting.alloc(layout);
            let m = measure();
            let p = Counting.alloc_zeroed(layout);
            assert!(!p.is_null());
            assert!(std::slice::from_raw_parts(p, layout.size()).iter().all(|&b| b == 0));
            assert!(m.peak() >= layout.size());
            *p = 7;
            let q = Counting.realloc(p, layout, 4 << 20);
            assert!(!q.is_null());
            assert_eq!(*q, 7);
            assert!(m.peak() >= 4 << 20);
            Counting.dealloc(q, Layout::from_size_align(4 << 20, 16).unwrap());
            Counting.dealloc(before, layout);
            assert!(CURRENT.load(Ordering::Relaxed) < 0, "the block taken before the measure was freed inside it");
            assert!(m.peak() >= 4 << 20);
            drop(m);
            let level = CURRENT.load(Ordering::Relaxed);
            let after = Counting.alloc(layout);
            assert_eq!(CURRENT.load(Ordering::Relaxed), level, "counted outside a measure");
            Counting.dealloc(after, layout);
        }
    }
}
