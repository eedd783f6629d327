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
