//! Copies between pageable memory (a mapped trace file, a NumPy array, the host's copy of M) and
//! the device through page-locked buffers the process keeps. Handed pageable memory, the driver
//! copies it through staging of its own on the calling thread, one piece after another: 6–8 GB/s
//! on an H200's host, a fraction of what the link carries from page-locked memory. Here every core
//! fills (or empties) one buffer while the link moves the others, so a copy can run at the link's
//! page-locked rate (`bench --backend cuda` prints the two floors beside the aggregation's
//! end-to-end rate).
//!
//! The ring is the only ordering there is: the host touches a buffer only after the event
//! recorded behind its last copy has passed, so it never overwrites bytes still going up nor
//! reads bytes not yet down.

use super::driver_err;
use cudarc::driver::{CudaEvent, CudaStream, DevicePtr, DevicePtrMut, PinnedHostSlice, result};
use rayon::prelude::*;
use std::sync::Arc;

/// Buffers in the ring: one the host works on while the rest are in flight.
const SLOTS: usize = 4;
/// The longest piece one copy moves, and so each buffer's size: long enough that the per-copy
/// cost of the driver call and the event is small against the transfer (4 MiB is ~80 µs on a
/// PCIe 5 link), short enough that four of them pin little of the machine.
const MAX_PIECE: usize = 4 << 20;
/// A copy goes in at least this many pieces, so even a short one overlaps the host's work on one
/// piece with the link's on the others.
const MIN_PIECES: usize = 8;
/// Pieces shorter than this are copied on the calling thread: waking the pool costs more.
const PARALLEL_FROM: usize = 256 << 10;

/// Made empty with the device; the buffers are pinned on the first copy and kept, since pinning
/// memory takes milliseconds, too long to pay for each batch.
#[derive(Default)]
pub(crate) struct Staging {
    slots: Vec<Slot>,
    next: usize,
    /// Why the buffers could not be pinned, if they could not (a machine that refuses page-locked
    /// memory): the copies then go the driver's own way, slower but the same bytes.
    unpinned: Option<String>,
}

struct Slot {
    host: PinnedHostSlice<u8>,
    /// Recorded on the stream behind the copy that last used this buffer.
    passed: CudaEvent,
}

impl Slot {
    /// The first `len` bytes, once no copy uses them (cudarc's own event is never recorded: the
    /// ring's is the one to wait for).
    fn bytes(&mut self, len: usize) -> Result<&mut [u8], String> {
        self.passed.synchronize().map_err(driver_err)?;
        Ok(&mut self.host.as_mut_slice().map_err(driver_err)?[..len])
    }
}

impl Staging {
    /// Queues `src` to go up into the start of `dst` on `stream`. Returns once every byte has
    /// left `src` (the caller may let it go); the device has them in stream order, before any
    /// kernel queued after this.
    pub fn upload(&mut self, stream: &Arc<CudaStream>, src: &[u8], dst: &mut impl DevicePtrMut<u8>) -> Result<(), String> {
        assert!(src.len() <= dst.len(), "an upload of {} bytes into {}", src.len(), dst.len());
        if !self.pin(stream) {
            return stream.memcpy_htod(src, dst).map_err(driver_err);
        }
        let piece = piece(src.len());
        let (base, _written) = dst.device_ptr_mut(stream);
        for (k, part) in src.chunks(piece).enumerate() {
            let slot = self.take();
            let buffer = slot.bytes(part.len())?;
            copy(part, buffer);
            // SAFETY: the destination range lies within `dst` (`src` fits it); the buffer is
            // page-locked and not touched again before `passed`, recorded just below, passes.
            unsafe { result::memcpy_htod_async(base + (k * piece) as u64, &*buffer, stream.cu_stream()) }.map_err(driver_err)?;
            slot.passed.record(stream).map_err(driver_err)?;
        }
        Ok(())
    }

    /// Copies `src` into `dst` (as long), after the work queued before it. Up to a ring's worth
    /// of pieces are in flight while the host empties the oldest.
    pub fn download<T: bytemuck::Pod + cudarc::driver::DeviceRepr>(&mut self, stream: &Arc<CudaStream>, src: &impl DevicePtr<T>, dst: &mut [T]) -> Result<(), String> {
        assert_eq!(dst.len(), src.len(), "a download into a buffer of another length");
        if !self.pin(stream) {
            stream.memcpy_dtoh(src, dst).map_err(driver_err)?;
            return stream.synchronize().map_err(driver_err);
        }
        let dst: &mut [u8] = bytemuck::cast_slice_mut(dst);
        let piece = piece(dst.len());
        let (base, _read) = src.device_ptr(stream);
        let first = self.next;
        let slot_of = |k: usize| (first + k) % SLOTS;
        let request = |slot: &mut Slot, k: usize, len: usize| -> Result<(), String> {
            let buffer = slot.bytes(len)?;
            // SAFETY: the source range lies within `src` (`dst` fits it); the buffer is
            // page-locked and not read before `passed`, recorded just below, passes.
            unsafe { result::memcpy_dtoh_async(buffer, base + (k * piece) as u64, stream.cu_stream()) }.map_err(driver_err)?;
            slot.passed.record(stream).map_err(driver_err)
        };
        let pieces: Vec<&mut [u8]> = dst.chunks_mut(piece).collect();
        let lens: Vec<usize> = pieces.iter().map(|p| p.len()).collect();
        for (k, &len) in lens.iter().enumerate().take(SLOTS) {
            request(&mut self.slots[slot_of(k)], k, len)?;
        }
        for (k, part) in pieces.into_iter().enumerate() {
            let slot = &mut self.slots[slot_of(k)];
            copy(slot.bytes(part.len())?, part);
            if let Some(&len) = lens.get(k + SLOTS) {
                request(slot, k + SLOTS, len)?;
            }
        }
        self.next = slot_of(lens.len());
        Ok(())
    }

    /// Pins the ring's buffers on the first copy; whether the copies go through them.
    fn pin(&mut self, stream: &CudaStream) -> bool {
        if self.slots.is_empty() && self.unpinned.is_none() {
            let ctx = stream.context();
            let pinned = (0..SLOTS)
                .map(|_| {
                    // SAFETY: a buffer's bytes are read only after a copy has written them.
                    let host = unsafe { ctx.alloc_pinned_with_flags::<u8>(MAX_PIECE, 0) }.map_err(driver_err)?;
                    Ok(Slot { host, passed: ctx.new_event(None).map_err(driver_err)? })
                })
                .collect::<Result<_, String>>();
            match pinned {
                Ok(slots) => self.slots = slots,
                Err(why) => self.unpinned = Some(why),
            }
        }
        self.unpinned.is_none()
    }

    /// The next buffer round the ring.
    fn take(&mut self) -> &mut Slot {
        let k = self.next;
        self.next = (k + 1) % SLOTS;
        &mut self.slots[k]
    }
}

/// The piece a copy of `len` bytes moves at a time.
fn piece(len: usize) -> usize {
    len.div_ceil(MIN_PIECES).next_multiple_of(64).clamp(64, MAX_PIECE)
}

/// `from` into `to` (as long), on every core when it is long.
fn copy(from: &[u8], to: &mut [u8]) {
    if from.len() < PARALLEL_FROM {
        to.copy_from_slice(from);
    } else {
        to.par_chunks_mut(PARALLEL_FROM).zip(from.par_chunks(PARALLEL_FROM)).for_each(|(to, from)| to.copy_from_slice(from));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every copy goes in pieces that fit a buffer, whole cache lines but the last, and in at
    /// least `MIN_PIECES` of them until the pieces reach the buffers' size, so even a slab of a
    /// short trace uses the ring more than once round (which the emulated driver's tests rely on
    /// to catch a buffer touched too early).
    #[test]
    fn pieces_fit_a_buffer_and_go_round_the_ring() {
        for len in [1, 63, 64, 65, 4096, 40_000, 360_000, 4 << 20, 32 << 20, (32 << 20) + 1, 1 << 30] {
            let p = piece(len);
            assert!(p <= MAX_PIECE && p.is_multiple_of(64), "{len}: piece {p}");
            let count = len.div_ceil(p);
            assert!(count >= MIN_PIECES.min(len / 64) || p == MAX_PIECE, "{len}: {count} pieces of {p}");
            if len >= 64 * MIN_PIECES && p < MAX_PIECE {
                assert!(count > SLOTS, "{len}: {count} pieces do not go round a ring of {SLOTS}");
            }
        }
    }
}
