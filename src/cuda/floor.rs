//! What the device allows, measured on the device the backend runs on, so `bench --backend cuda`
//! reads each kernel against the GPU's own memory (as the CPU's steps are read against a plain
//! sum over the mapped file) and the end-to-end aggregation against the link it must cross: at
//! the link's rate from page-locked memory (what the hardware allows) and from pageable memory
//! (what a plain upload of a mapped file gets, through the driver's own staging: the alternative
//! `staging`'s ring of page-locked buffers is there to beat).

use super::{Cuda, driver_err, guard};
use crate::backend::DeviceFloor;
use crate::bench::median;
use std::time::Instant;

/// The floor's buffers stop growing here: a copy this long runs at the memory's full rate, and
/// the bench must not take device memory a large trace's batch needs.
const MAX_BYTES: usize = 1 << 30;
/// Page-locked memory is taken from the whole machine: the link's rate needs far less.
const MAX_PINNED: usize = 256 << 20;

impl Cuda {
    /// Copies `host` (the bench's mapped trace file, pageable memory) up once per run as it is, the same bytes from page-locked memory, and a device buffer as long onto
    /// another; the medians of `repeat` runs after one untimed round (the first copies pay for
    /// setting up). A device-to-device copy reads and writes every byte, so it counts twice: the
    /// memory's rate for a kernel that streams, which no kernel of ours can beat.
    pub fn memory_floor(&self, host: &[u8], repeat: usize) -> Result<DeviceFloor, String> {
        guard("CUDA floor", || {
            let s = &self.stream;
            let bytes = host.len().clamp(1 << 20, MAX_BYTES).min(self.free_memory()? / 4).max(1);
            let host = &host[..bytes.min(host.len())];
            let src = s.alloc_zeros::<u8>(bytes).map_err(driver_err)?;
            let mut dst = s.alloc_zeros::<u8>(bytes).map_err(driver_err)?;
            let pinned_len = host.len().min(MAX_PINNED);
            // SAFETY: every byte is written before it is read (copied from `host` just below).
            let mut pinned = unsafe { s.context().alloc_pinned_with_flags::<u8>(pinned_len, 0) }.map_err(driver_err)?;
            pinned.as_mut_slice().map_err(driver_err)?.copy_from_slice(&host[..pinned_len]);
            // Seconds the work queued by `queue` took on the stream, by events around it.
            let on_device = |queue: &mut dyn FnMut() -> Result<(), cudarc::driver::DriverError>| -> Result<f64, String> {
                let timed = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
                let start = s.record_event(timed).map_err(driver_err)?;
                queue().map_err(driver_err)?;
                let end = s.record_event(timed).map_err(driver_err)?;
                end.synchronize().map_err(driver_err)?;
                Ok(f64::from(start.elapsed_ms(&end).map_err(driver_err)?) / 1e3)
            };
            let (mut upload, mut link, mut copy) = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..=repeat.max(1) {
                // Pageable memory: the driver stages it through its own buffers, on the host's
                // clock as much as the device's, so the wall time is the figure.
                let t = Instant::now();
                s.memcpy_htod(host, &mut dst.slice_mut(0..host.len())).map_err(driver_err)?;
                s.synchronize().map_err(driver_err)?;
                let uploaded = t.elapsed().as_secs_f64();
                let linked = on_device(&mut || s.memcpy_htod(&pinned, &mut dst.slice_mut(0..pinned_len)))?;
                let copied = on_device(&mut || s.memcpy_dtod(&src, &mut dst))?;
                if round > 0 {
                    upload.push(host.len() as f64 / uploaded.max(1e-9));
                    link.push(pinned_len as f64 / linked.max(1e-9));
                    copy.push(2.0 * bytes as f64 / copied.max(1e-9));
                }
            }
            Ok(DeviceFloor { memory: median(copy), link: median(link), pageable: Some(median(upload)) })
        })
    }
}
