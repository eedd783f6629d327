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


impl Gpu {
    /// Step 1 into a matrix that stays on the device for the solves and the backbone, and its
    /// host copy (the CPU's steps and the app read M by rows).
    pub fn aggregate(&self, att: &Attention, sel: &Selection, p: &AggregateParams) -> Result<(DeviceMatrix, Matrix), AggregateError> {
        self.aggregate_within(att, sel, p, self.max_binding())
    }

    /// [`Gpu::aggregate`] with buffers of at most `limit` bytes (tests force small ones).
    pub fn aggregate_within(&self, att: &Attention, sel: &Selection, p: &AggregateParams, limit: u64) -> Result<(DeviceMatrix, Matrix), AggregateError> {
        let n = att.n;
        if offset(n) >= u32::MAX as usize || n * n >= u32::MAX as usize {
            return Err(AggregateError::Device(format!("N = {n} is past what 32-bit shader indices address")));
        }
        let es = att.dtype.size();
        if (n * es) as u64 > limit {
            return Err(AggregateError::Device(format!("one attention row ({} bytes) is over the binding limit", n * es)));
        }
        let dm = self.allocate_within(n, limit).map_err(AggregateError::Device)?;
        for (rows, mbuf) in dm.buffers() {
            // Within one buffer of M, as many rows at a time as their attention fits one binding.
            let per_pass = ((limit as usize) / (n * es)).max(1);
            let mut k0 = rows.start;
            while k0 < rows.end {
                let k1 = (k0 + per_pass).min(rows.end);
                self.aggregate_rows(att, sel, p, k0..k1, mbuf, offset(rows.start))?;
                k0 = k1;
            }
        }
        att.mark_causal_checked(&sel.slabs);
        let m = self.download(&dm).map_err(AggregateError::Device)?;
        Ok((dm, m))
    }

    /// Folds query rows `rows` of every selected slab into `mbuf`, which holds M from packed
    /// index `base` on, and checks each row as the CPU does.
    fn aggregate_rows(&self, att: &Attention, sel: &Selection, p: &AggregateParams, rows: Range<usize>, mbuf: &wgpu::Buffer, base: usize) -> Result<(), AggregateError> {
        let (n, dev) = (att.n, &self.device);
        let count = rows.len();
        let mut stats_bufs = Vec::new();
        let mut keep = Vec::new();
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
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("aggregate"), timestamp_writes: None });
                pass.set_pipeline(&self.aggregate);
                pass.set_bind_group(0, &bind, &[]);
                pass.dispatch_workgroups((count as u32).min(65535), (count as u32).div_ceil(65535), 1);
            }
            keep.push((abuf, pbuf, bind));
            stats_bufs.push(sbuf);
        }
        self.queue.submit([enc.finish()]);
        for sbuf in &stats_bufs {
            let stats = self.read_back(sbuf, count * 4).map_err(AggregateError::Device)?;
            if !stats.chunks_exact(4).all(|s| row_passes(s[0] as f64, s[1], s[2], s[3])) {
                return Err(AggregateError::BadData);
            }
        }
        Ok(())
    }
}
