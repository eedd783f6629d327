//! Step 1 on the GPU (`shaders/aggregate.wgsl`): the attention's raw words go up as they are in
//! the file, the shader decodes them and folds every selected slab into the packed matrix.
//! The matrix is written straight into the device matrix the solves and the backbone use, buffer
//! by buffer; rows are sent in chunks that fit the adapter's binding limit, so no trace is refused
//! for size. The host gets one copy back for the steps that run on the CPU.

use super::Gpu;
use crate::flow::Matrix;
use crate::flow::aggregate::{Selection, row_passes};
use crate::params::{AggregateParams, Reduce};
use crate::trace::Attention;
use crate::flow::matrix::row_offset as offset;
use super::matrix::DeviceMatrix;
use std::ops::Range;
use std::time::Duration;
use wgpu::util::DeviceExt;

pub use crate::flow::AggregateError;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    k0: u32,
    rows: u32,
    dtype: u32,
    first: u32,
    last: u32,
    reduce: u32,
    base: u32,
    scale: f32,
    threshold: f32,
    _pad: [u32; 2],
}


/// Step 1's matrix: on the device for the solves and the backbone, and its host copy (the CPU's
/// steps and the app read M by rows).
pub struct Aggregated {
    pub on_device: DeviceMatrix,
    pub host: Matrix,
    /// The folding passes alone, by the adapter's timestamps, where it has them.
    pub kernels: Option<Duration>,
}

impl Gpu {
    /// Step 1 into a matrix that stays on the device, and its host copy.
    pub fn aggregate(&self, att: &Attention, sel: &Selection, p: &AggregateParams) -> Result<Aggregated, AggregateError> {
        self.aggregate_within(att, sel, p, self.max_binding())
    }

    /// [`Gpu::aggregate`] with buffers of at most `limit` bytes (tests force small ones).
    pub fn aggregate_within(&self, att: &Attention, sel: &Selection, p: &AggregateParams, limit: u64) -> Result<Aggregated, AggregateError> {
        let n = att.n;
        if offset(n) >= u32::MAX as usize || n * n >= u32::MAX as usize {
            return Err(AggregateError::Device(format!("N = {n} is past what 32-bit shader indices address")));
        }
        let es = att.dtype.size();
        if (n * es) as u64 > limit {
            return Err(AggregateError::Device(format!("one attention row ({} bytes) is over the binding limit", n * es)));
        }
        let dm = self.allocate_within(n, limit).map_err(AggregateError::Device)?;
        let mut kernels = self.timestamp_ns.map(|_| Duration::ZERO);
        for (rows, mbuf) in dm.buffers() {
            // Within one buffer of M, as many rows at a time as their attention fits one binding.
            let per_pass = ((limit as usize) / (n * es)).max(1);
            let mut k0 = rows.start;
            while k0 < rows.end {
                let k1 = (k0 + per_pass).min(rows.end);
                let took = self.aggregate_rows(att, sel, p, k0..k1, mbuf, offset(rows.start))?;
                kernels = kernels.zip(took).map(|(a, b)| a + b);
                k0 = k1;
            }
        }
        att.mark_causal_checked(&sel.slabs);
        let host = self.download(&dm).map_err(AggregateError::Device)?;
        Ok(Aggregated { on_device: dm, host, kernels })
    }

    /// Folds query rows `rows` of every selected slab into `mbuf`, which holds M from packed
    /// index `base` on, and checks each row as the CPU does. Answers how long the passes took on
    /// the device, where the adapter has timestamps.
    fn aggregate_rows(&self, att: &Attention, sel: &Selection, p: &AggregateParams, rows: Range<usize>, mbuf: &wgpu::Buffer, base: usize) -> Result<Option<Duration>, AggregateError> {
        let (n, dev) = (att.n, &self.device);
        let count = rows.len();
        let mut stats_bufs = Vec::new();
        let mut keep = Vec::new();
        // A timestamp before and after each slab's pass.
        let stamps = 2 * sel.slabs.len() as u32;
        let timer = self.timestamp_ns.map(|_| {
            let set = dev.create_query_set(&wgpu::QuerySetDescriptor { label: Some("aggregate passes"), ty: wgpu::QueryType::Timestamp, count: stamps });
            let resolved = dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some("aggregate timestamps"),
                size: 8 * stamps as u64,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            (set, resolved)
        });
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("aggregate") });
        for (si, &(l, h)) in sel.slabs.iter().enumerate() {
            // The file's bytes as they are; a copy only to pad an odd count of 16-bit values.
            let bytes = att.rows_bytes(l, h, rows.start, rows.end);
            let words: std::borrow::Cow<[u8]> = if bytes.len().is_multiple_of(4) {
                bytes.into()
            } else {
                let mut padded = bytes.to_vec();
                padded.resize(bytes.len().next_multiple_of(4), 0);
                padded.into()
            };
            let abuf = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some("attention rows"), contents: &words, usage: wgpu::BufferUsages::STORAGE });
            let params = Params {
                n: n as u32,
                k0: rows.start as u32,
                rows: count as u32,
                dtype: att.dtype.kernel_code(),
                first: (si == 0) as u32,
                last: (si + 1 == sel.slabs.len()) as u32,
                reduce: (p.reduce == Reduce::Max) as u32,
                base: base as u32,
                scale: 1.0 / sel.slabs.len() as f32,
                threshold: p.threshold as f32,
                _pad: [0; 2],
            };
            let pbuf = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some("aggregate params"), contents: bytemuck::bytes_of(&params), usage: wgpu::BufferUsages::UNIFORM });
            let sbuf = dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some("row stats"),
                size: (count * 16) as u64,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let bind = super::bind_buffers(dev, "aggregate", &self.aggregate.get_bind_group_layout(0), &[&pbuf, &abuf, mbuf, &sbuf]);
            {
                let timestamp_writes = timer.as_ref().map(|(set, _)| wgpu::ComputePassTimestampWrites {
                    query_set: set,
                    beginning_of_pass_write_index: Some(2 * si as u32),
                    end_of_pass_write_index: Some(2 * si as u32 + 1),
                });
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("aggregate"), timestamp_writes });
                pass.set_pipeline(&self.aggregate);
                pass.set_bind_group(0, &bind, &[]);
                pass.dispatch_workgroups((count as u32).min(65535), (count as u32).div_ceil(65535), 1);
            }
            keep.push((abuf, pbuf, bind));
            stats_bufs.push(sbuf);
        }
        if let Some((set, resolved)) = &timer {
            enc.resolve_query_set(set, 0..stamps, resolved, 0);
        }
        self.queue.submit([enc.finish()]);
        for sbuf in &stats_bufs {
            let stats = self.read_back(sbuf, count * 4).map_err(AggregateError::Device)?;
            if !stats.chunks_exact(4).all(|s| row_passes(s[0] as f64, s[1], s[2], s[3])) {
                return Err(AggregateError::BadData);
            }
        }
        let (Some((_, resolved)), Some(ns)) = (&timer, self.timestamp_ns) else { return Ok(None) };
        let ticks: Vec<u64> = self.read_back_as(resolved, stamps as usize).map_err(AggregateError::Device)?;
        let took: u64 = ticks.chunks_exact(2).map(|t| t[1].saturating_sub(t[0])).sum();
        Ok(Some(Duration::from_secs_f64(took as f64 * f64::from(ns) / 1e9)))
    }
}
