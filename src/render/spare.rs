//! Buffers a thread keeps between the bands of pictures it draws and compresses. A band's
//! pixels, its rows as the PNG stores them and its deflate tokens are each a megabyte or so,
//! which the system allocator hands out as fresh pages (mapped anew, or given back to the system
//! when the last was freed): every band paid a fault and the kernel's zeroing per 4 KiB of them,
//! a tenth of drawing a 1k-token trace's two pictures on one core. Taken from here, a band
//! writes into the memory the thread's previous band used.
//!
//! Bounded: two byte buffers and one of words a thread, none over [`LARGEST`] bytes, so a
//! thread keeps at most 12 MiB (a picture's band is 1–2 MiB of pixels; a picture drawn in one
//! piece near the raster's limit is let go as before).

use std::cell::Cell;

/// Buffers kept a thread: a band's pixels and its rows are in use at once.
const KEPT: usize = 2;
/// The largest buffer kept, in bytes: the credit picture's bands (893 pixels by 272 rows) and
/// the backbone picture whole (1200 by 440) fit.
const LARGEST: usize = 4 << 20;

thread_local! {
    static BYTES: Cell<Vec<Vec<u8>>> = const { Cell::new(Vec::new()) };
    static WORDS: Cell<Vec<u32>> = const { Cell::new(Vec::new()) };
}

/// An empty byte buffer, the largest this thread kept where it kept one.
pub fn bytes() -> Vec<u8> {
    BYTES.with(|kept| {
        let mut all = kept.take();
        let largest = all.iter().enumerate().max_by_key(|(_, b)| b.capacity()).map(|(i, _)| i);
        let mut out = largest.map(|i| all.swap_remove(i)).unwrap_or_default();
        kept.set(all);
        out.clear();
        out
    })
}

/// Keeps `buffer` for this thread's next [`bytes`], within the bounds.
pub fn keep_bytes(buffer: Vec<u8>) {
    if buffer.capacity() == 0 || buffer.capacity() > LARGEST {
        return;
    }
    BYTES.with(|kept| {
        let mut all = kept.take();
        all.push(buffer);
        if all.len() > KEPT {
            let smallest = all.iter().enumerate().min_by_key(|(_, b)| b.capacity()).map_or(0, |(i, _)| i);
            all.swap_remove(smallest);
        }
        kept.set(all);
    })
}

/// An empty buffer of words (deflate's tokens), this thread's last where it kept one.
pub fn words() -> Vec<u32> {
    let mut out = WORDS.take();
    out.clear();
    out
}

/// Keeps `buffer` for this thread's next [`words`], within the bounds.
pub fn keep_words(buffer: Vec<u32>) {
    if buffer.capacity() * 4 <= LARGEST {
        WORDS.set(buffer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer kept is handed out again, empty, with its memory; no more than `KEPT` are kept
    /// (the largest), and none over `LARGEST`.
    #[test]
    fn buffers_come_back_empty_and_bounded() {
        std::thread::spawn(|| {
            let mut a = bytes();
            a.extend_from_slice(&[7; 1000]);
            let at = a.as_ptr();
            keep_bytes(a);
            let b = bytes();
            assert!(b.is_empty() && b.capacity() >= 1000 && b.as_ptr() == at);
            for size in [10, 5000, 300, 2000] {
                keep_bytes(Vec::with_capacity(size));
            }
            let (first, second, third) = (bytes(), bytes(), bytes());
            assert_eq!((first.capacity() >= 5000, second.capacity() >= 2000, third.capacity()), (true, true, 0));
            keep_bytes(Vec::with_capacity(LARGEST + 1));
            assert_eq!(bytes().capacity(), 0);
            let mut w = words();
            w.extend([1, 2, 3]);
            keep_words(w);
            let w = words();
            assert!(w.is_empty() && w.capacity() >= 3);
        })
        .join()
        .unwrap();
    }
}
