//! Step 1 on the GPU (`shaders/aggregate.wgsl`): the attention's raw words go up as they are in
//! the file, the shader decodes them and folds every selected slab into the packed matrix.
//! The matrix is written straight into the device matrix the solves use, buffer by buffer; rows
//! are sent in chunks that fit the adapter's binding limit, so no trace is refused
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

/// Attention bytes one submission sends up at most: each slab's rows go up in a buffer of their
/// own, alive until its submission is done, so a trace of many selected heads does not ask the
/// device for all of them at once (two submissions are alive: one runs while the next is filled).
const UPLOAD_BYTES: u64 = 256 << 20;

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


/// Step 1's matrix: on the device for the solves, and its host copy (the CPU's
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

    /// [`Gpu::aggregate`] with buffers of at most `limit` bytes, and submissions of at most that
    /// much attention (tests force small ones).
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
        let budget = limit.min(UPLOAD_BYTES);
        let mut kernels = self.timestamp_ns.map(|_| Duration::ZERO);
        for (rows, mbuf) in dm.buffers() {
            // Within one buffer of M, as many rows at a time as their attention fits one binding
            // and one submission.
            let per_pass = ((budget as usize) / (n * es)).max(1);
            let mut k0 = rows.start;
            while k0 < rows.end {
                let k1 = (k0 + per_pass).min(rows.end);
                let took = self.aggregate_rows(att, sel, p, k0..k1, mbuf, offset(rows.start), budget)?;
                kernels = kernels.zip(took).map(|(a, b)| a + b);
                k0 = k1;
            }
        }
        att.mark_causal_checked(&sel.slabs);
        let host = self.download(&dm).map_err(AggregateError::Device)?;
        Ok(Aggregated { on_device: dm, host, kernels })
    }

    /// Folds query rows `rows` of every selected slab into `mbuf`, which holds M from packed
    /// index `base` on, and checks each row as the CPU does. The slabs go up in groups of at most
    /// `budget` bytes, one submission each, the next group filled while the last one runs.
    /// Answers how long the passes took on the device, where the adapter has timestamps.
    #[allow(clippy::too_many_arguments)]
    fn aggregate_rows(&self, att: &Attention, sel: &Selection, p: &AggregateParams, rows: Range<usize>, mbuf: &wgpu::Buffer, base: usize, budget: u64) -> Result<Option<Duration>, AggregateError> {
        let slab_bytes = (rows.len() * att.n * att.dtype.size()) as u64;
        let per_group = (budget / slab_bytes.max(1)).max(1) as usize;
        let mut took = self.timestamp_ns.map(|_| Duration::ZERO);
        let mut in_flight: Option<Passes> = None;
        for first in (0..sel.slabs.len()).step_by(per_group) {
            let (commands, passes) = self.record_passes(att, sel, p, rows.clone(), mbuf, base, first..(first + per_group).min(sel.slabs.len()));
            if let Some(done) = in_flight.take() {
                took = took.zip(self.settle(done)?).map(|(a, b)| a + b);
            }
            self.queue.submit([commands]);
            in_flight = Some(passes);
        }
        if let Some(done) = in_flight {
            took = took.zip(self.settle(done)?).map(|(a, b)| a + b);
        }
        Ok(took)
    }

    /// The passes of slabs `which` (indices into the selection) over query rows `rows`, with
    /// their row checks and timestamps copied into one buffer to read back.
    #[allow(clippy::too_many_arguments)]
    fn record_passes(&self, att: &Attention, sel: &Selection, p: &AggregateParams, rows: Range<usize>, mbuf: &wgpu::Buffer, base: usize, which: Range<usize>) -> (wgpu::CommandBuffer, Passes) {
        let (n, dev) = (att.n, &self.device);
        let count = rows.len();
        let stats_bytes = (count * 16) as u64;
        // A timestamp before and after each slab's pass.
        let stamps = 2 * which.len() as u32;
        let report_bytes = stats_bytes * which.len() as u64 + if self.timestamp_ns.is_some() { 8 * stamps as u64 } else { 0 };
        let report = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("aggregate report"),
            size: report_bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
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
        let mut buffers = Vec::with_capacity(which.len());
        for (at, si) in which.clone().enumerate() {
            let (l, h) = sel.slabs[si];
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
                size: stats_bytes,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let bind = super::bind_buffers(dev, "aggregate", &self.aggregate.get_bind_group_layout(0), &[&pbuf, &abuf, mbuf, &sbuf]);
            {
                let timestamp_writes = timer.as_ref().map(|(set, _)| wgpu::ComputePassTimestampWrites {
                    query_set: set,
                    beginning_of_pass_write_index: Some(2 * at as u32),
                    end_of_pass_write_index: Some(2 * at as u32 + 1),
                });
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("aggregate"), timestamp_writes });
                pass.set_pipeline(&self.aggregate);
                pass.set_bind_group(0, &bind, &[]);
                pass.dispatch_workgroups((count as u32).min(65535), (count as u32).div_ceil(65535), 1);
            }
            enc.copy_buffer_to_buffer(&sbuf, 0, &report, stats_bytes * at as u64, stats_bytes);
            buffers.push((abuf, pbuf, sbuf, bind));
        }
        if let Some((set, resolved)) = &timer {
            enc.resolve_query_set(set, 0..stamps, resolved, 0);
            enc.copy_buffer_to_buffer(resolved, 0, &report, stats_bytes * which.len() as u64, 8 * stamps as u64);
        }
        (enc.finish(), Passes { report, slabs: which.len(), rows: count, _buffers: buffers })
    }

    /// Waits for a submission's passes and reads what they report: an error if a row fails the
    /// CPU's checks, else their device time where the adapter has timestamps.
    fn settle(&self, passes: Passes) -> Result<Option<Duration>, AggregateError> {
        let stats_len = passes.slabs * passes.rows * 4;
        let mut report = vec![0u32; (passes.report.size() / 4) as usize];
        self.map_into(&passes.report, &mut report).map_err(AggregateError::Device)?;
        let (stats, stamps) = report.split_at(stats_len);
        let stats: &[f32] = bytemuck::cast_slice(stats);
        if !stats.chunks_exact(4).all(|s| row_passes(s[0] as f64, s[1], s[2], s[3])) {
            return Err(AggregateError::BadData);
        }
        let Some(ns) = self.timestamp_ns else { return Ok(None) };
        let ticks: &[u64] = bytemuck::cast_slice(stamps);
        let took: u64 = ticks.chunks_exact(2).map(|t| t[1].saturating_sub(t[0])).sum();
        Ok(Some(Duration::from_secs_f64(took as f64 * f64::from(ns) / 1e9)))
    }
}

/// A submission of aggregation passes in flight: what they report comes back in `report`, each
/// of `slabs` slabs' `rows` row checks (four f32 each), then the passes' timestamps. Its
/// buffers (the slabs' rows among them) are let go once it is settled.
struct Passes {
    report: wgpu::Buffer,
    slabs: usize,
    rows: usize,
    _buffers: Vec<(wgpu::Buffer, wgpu::Buffer, wgpu::Buffer, wgpu::BindGroup)>,
}
