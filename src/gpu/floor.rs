//! What the adapter allows, measured on it, so `bench --backend wgpu` reads each step against
//! the device's own memory and link as the CPU's steps are read against the mapped file (the
//! link as wgpu offers it: a queue write, its one way up). Timed
//! by the wall clock around a submission and its wait (timestamp queries are an optional
//! feature), which is how the backend's own steps are timed too.

use super::Gpu;
use crate::backend::DeviceFloor;
use crate::bench::median;
use std::time::Instant;

/// The floor's buffers stop growing here: a copy this long runs at the memory's full rate, and
/// the bench must not take memory a large trace needs.
const MAX_BYTES: u64 = 1 << 30;

impl Gpu {
    /// Writes `host` (the bench's mapped trace) into a buffer once per run, and copies that
    /// buffer onto another; the medians of `repeat` runs after one untimed round (a fresh
    /// buffer is cleared on its first use). A copy reads and writes every byte, so it counts
    /// twice.
    pub fn memory_floor(&self, host: &[u8], repeat: usize) -> Result<DeviceFloor, String> {
        let align = wgpu::COPY_BUFFER_ALIGNMENT;
        let bytes = (host.len() as u64).clamp(1 << 20, MAX_BYTES).min(self.limits.max_buffer_size) / align * align;
        let up = &host[..(host.len() as u64).min(bytes) as usize / align as usize * align as usize];
        let buffer = |label| {
            self.device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size: bytes, usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST, mapped_at_creation: false })
        };
        let (src, dst) = (buffer("floor source"), buffer("floor destination"));
        let wait = || self.device.poll(wgpu::PollType::wait_indefinitely()).map(drop).map_err(|e| format!("GPU wait failed: {e}"));
        let (mut upload, mut copy) = (Vec::new(), Vec::new());
        for round in 0..=repeat.max(1) {
            let t = Instant::now();
            self.queue.write_buffer(&src, 0, up);
            self.queue.submit([]);
            wait()?;
            let uploaded = t.elapsed().as_secs_f64();
            let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("floor") });
            encoder.copy_buffer_to_buffer(&src, 0, &dst, 0, bytes);
            let t = Instant::now();
            self.queue.submit([encoder.finish()]);
            wait()?;
            let copied = t.elapsed().as_secs_f64();
            if round > 0 {
                upload.push(up.len() as f64 / uploaded.max(1e-9));
                copy.push(2.0 * bytes as f64 / copied.max(1e-9));
            }
        }
        Ok(DeviceFloor { memory: median(copy), link: median(upload), pageable: None })
    }
}
