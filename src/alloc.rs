//! A counting allocator: the binary installs it so `bench` can report peak heap per step.
//! Two relaxed atomics per allocation; nothing else changes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            self.grew(layout.size());
        }
        p
    }

    /// The system's own zeroed allocation (calloc): fresh pages from the kernel are already zero,
    /// so a large matrix costs nothing until it is written. Without this, `GlobalAlloc`'s default
    /// allocated and then cleared every byte on one thread (70 ms of a 90 ms aggregation at 8k).
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            self.grew(layout.size());
        }
        p
    }

    /// The system's realloc (which can move a large block's pages instead of copying them).
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
            self.grew(new_size);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

impl Counting {
    fn grew(&self, bytes: usize) {
        INSTALLED.store(1, Ordering::Relaxed);
        let now = CURRENT.fetch_add(bytes, Ordering::Relaxed) + bytes;
        PEAK.fetch_max(now, Ordering::Relaxed);
    }
}

/// Whether the counting allocator is the global one (else the figures are meaningless).
pub fn installed() -> bool {
    INSTALLED.load(Ordering::Relaxed) == 1
}

pub fn current() -> usize {
    CURRENT.load(Ordering::Relaxed)
}

/// Restarts peak tracking from the current level; returns that level.
pub fn reset_peak() -> usize {
    let now = current();
    PEAK.store(now, Ordering::Relaxed);
    now
}

pub fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Zeroed and reallocated blocks are counted like plain ones, and come back zeroed / with
    /// their contents (the system's calloc and realloc do the work).
    #[test]
    fn zeroed_and_grown_blocks_are_counted() {
        let layout = Layout::from_size_align(1 << 20, 16).unwrap();
        unsafe {
            let p = Counting.alloc_zeroed(layout);
            assert!(!p.is_null());
            assert!(std::slice::from_raw_parts(p, layout.size()).iter().all(|&b| b == 0));
            assert!(peak() >= layout.size());
            *p = 7;
            let q = Counting.realloc(p, layout, 4 << 20);
            assert!(!q.is_null());
            assert_eq!(*q, 7);
            assert!(peak() >= 4 << 20);
            Counting.dealloc(q, Layout::from_size_align(4 << 20, 16).unwrap());
        }
    }
}
