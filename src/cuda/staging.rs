//! Uploads from pageable memory (a mapped trace file, a NumPy array) through page-locked buffers
//! the process keeps. Handed pageable memory, the driver copies it through staging of its own on
//! the calling thread and only then across the link: 6–8 GB/s on an H200's host, a fraction of
//! what the link carries from page-locked memory. Here every core fills the next buffer while the
//! link drains the ones before it, so an upload can run at the link's page-locked rate (`bench
//! --backend cuda` prints the two floors beside the aggregation's end-to-end rate).
//!
//! The ring is the only ordering there is: a buffer is written again only after the event
//! recorded behind its last copy has passed, so the host never overwrites bytes still going up.

use super::driver_err;
use cudarc::driver::{CudaEvent, CudaSlice, CudaStream, DevicePtrMut, PinnedHostSlice, result};
use rayon::prelude::*;

/// Buffers in the ring: one filling while the rest are in flight.
const SLOTS: usize = 4;
/// The longest piece one copy moves, and so each buffer's size: long enough that the per-copy
/// cost of the driver call and the event is small against the transfer (4 MiB is ~80 µs on a
/// PCIe 5 link), short enough that four of them pin little of the machine.
const MAX_PIECE: usize = 4 << 20;
/// An upload goes in at least this many pieces, so even a short one overlaps the host's copy of
/// one piece with the link's of the last.
const MIN_PIECES: usize = 8;
/// Pieces shorter than this are copied on the calling thread: waking the pool costs more.
const PARALLEL_FROM: usize = 256 << 10;

/// Made empty with the device; the buffers are pinned on the first upload and kept, since
/// pinning memory takes milliseconds, too long to pay for each batch.
#[derive(Default)]
pub(crate) struct Staging {
    slots: Vec<Slot>,
    next: usize,
}

struct Slot {
    host: PinnedHostSlice<u8>,
    /// Recorded on the stream behind the copy that last read this buffer.
    drained: CudaEvent,
}

impl Staging {
    fn pin(stream: &CudaStream) -> Result<Vec<Slot>, String> {
        let ctx = stream.context();
        (0..SLOTS)
            .map(|_| {
                // SAFETY: a buffer's bytes are read only after `upload` has written them.
                let host = unsafe { ctx.alloc_pinned_with_flags::<u8>(MAX_PIECE, 0) }.map_err(driver_err)?;
                Ok(Slot { host, drained: ctx.new_event(None).map_err(driver_err)? })
            })
            .collect()
    }

    /// Queues `src` to go up into the start of `dst` on `stream`. Returns once every byte has
    /// left `src` (the caller may let it go); the device has them in stream order, before any
    /// kernel queued after this.
    pub fn upload(&mut self, stream: &CudaStream, src: &[u8], dst: &mut CudaSlice<u8>) -> Result<(), String> {
        assert!(src.len() <= dst.len(), "an upload of {} bytes into {}", src.len(), dst.len());
        if self.slots.is_empty() {
            self.slots = Self::pin(stream)?;
        }
        let piece = src.len().div_ceil(MIN_PIECES).next_multiple_of(64).clamp(64, MAX_PIECE);
        let (base, _written) = dst.device_ptr_mut(stream);
        for (i, part) in src.chunks(piece).enumerate() {
            let slot = &mut self.slots[self.next];
            self.next = (self.next + 1) % SLOTS;
            slot.drained.synchronize().map_err(driver_err)?;
            // Its event has passed (and cudarc's own is never recorded): no copy reads it now.
            let buffer = &mut slot.host.as_mut_slice().map_err(driver_err)?[..part.len()];
            if part.len() < PARALLEL_FROM {
                buffer.copy_from_slice(part);
            } else {
                buffer.par_chunks_mut(PARALLEL_FROM).zip(part.par_chunks(PARALLEL_FROM)).for_each(|(to, from)| to.copy_from_slice(from));
            }
            // SAFETY: the destination range lies within `dst` (`src` fits it); the buffer is
            // page-locked and not written again before `drained`, recorded just below, passes.
            unsafe { result::memcpy_htod_async(base + (i * piece) as u64, &*buffer, stream.cu_stream()) }.map_err(driver_err)?;
            slot.drained.record(stream).map_err(driver_err)?;
        }
        Ok(())
    }
}
