//! Step 1 on the GPU (`shaders/aggregate.wgsl`): the attention's raw words go up as they are in
//! the file, the shader decodes them and folds every selected slab into the packed matrix.
//! Rows are sent in chunks that fit the adapter's binding limit, so no trace is refused for size.

use super::Gpu;
use crate::flow::Matrix;
use crate::flow::aggregate::{CAUSAL_TOLERANCE, ROW_SUM_TOLERANCE, Selection};
use crate::params::{AggregateParams, Reduce};
use crate::trace::{Attention, Dtype};
use crate::flow::matrix::row_offset as offset;
use wgpu::util::DeviceExt;

/// Why the GPU did not produce the matrix.
#[derive(Debug)]
pub enum AggregateError {
    /// The values break a rule of the format; the CPU path names the exact place.
    BadData,
    /// The device failed (lost, out of memory, a limit): run this trace on the CPU.
    Device(String),
}

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
    pub fn aggregate(&self, att: &Attention, sel: &Selection, p: &AggregateParams) -> Result<Matrix, AggregateError> {
        let n = att.n;
        if offset(n) >= u32::MAX as usize || n * n >= u32::MAX as usize {
            return Err(AggregateError::Device(format!("N = {n} is past what 32-bit shader indices address")));
        }
        let es = att.dtype.size();
        let budget = self.max_binding() as usize;
        let dev = &self.device;
        let mut m = Matrix::zeros(n);
        let mut k0 = 0;
        while k0 < n {
            // As many rows as fit both the attention chunk and the matrix chunk in one binding.
            let mut k1 = k0 + 1;
            while k1 < n && (k1 + 1 - k0) * n * es <= budget && (offset(k1 + 1) - offset(k0)) * 4 <= budget {
                k1 += 1;
            }
            if (k1 - k0) * n * es > budget {
                return Err(AggregateError::Device(format!("one attention row ({} bytes) is over the binding limit", n * es)));
            }
            let rows = k1 - k0;
            let m_len = (offset(k1) - offset(k0)).max(1);
            let mbuf = dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some("M chunk"),
                size: (m_len * 4) as u64,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let mut stats_bufs = Vec::new();
            let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("aggregate") });
            let mut keep = Vec::new();
            for (si, &(l, h)) in sel.slabs.iter().enumerate() {
                let mut words = att.rows_bytes(l, h, k0, k1).to_vec();
                words.resize(words.len().next_multiple_of(4), 0);
                let abuf = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("attention rows"),
                    contents: &words,
                    usage: wgpu::BufferUsages::STORAGE,
                });
                let params = Params {
                    n: n as u32,
                    k0: k0 as u32,
                    rows: rows as u32,
                    dtype: match att.dtype {
                        Dtype::F32 => 0,
                        Dtype::F16 => 1,
                        Dtype::BF16 => 2,
                    },
                    first: (si == 0) as u32,
                    last: (si + 1 == sel.slabs.len()) as u32,
                    reduce: (p.reduce == Reduce::Max) as u32,
                    base: offset(k0) as u32,
                    scale: 1.0 / sel.slabs.len() as f32,
                    threshold: p.threshold as f32,
                    _pad: [0; 2],
                };
                let pbuf = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("aggregate params"),
                    contents: bytemuck::bytes_of(&params),
                    usage: wgpu::BufferUsages::UNIFORM,
                });
                let sbuf = dev.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("row stats"),
                    size: (rows * 16) as u64,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                });
                let bind = super::bind_buffers(dev, "aggregate", &self.aggregate.get_bind_group_layout(0), &[&pbuf, &abuf, &mbuf, &sbuf]);
                {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("aggregate"), timestamp_writes: None });
                    pass.set_pipeline(&self.aggregate);
                    pass.set_bind_group(0, &bind, &[]);
                    pass.dispatch_workgroups((rows as u32).min(65535), (rows as u32).div_ceil(65535), 1);
                }
                keep.push((abuf, pbuf, bind));
                stats_bufs.push(sbuf);
            }
            self.queue.submit([enc.finish()]);
            for sbuf in &stats_bufs {
                let stats = self.read_back(sbuf, rows * 4).map_err(AggregateError::Device)?;
                for s in stats.chunks_exact(4) {
                    let (sum, min, upper, bad) = (s[0] as f64, s[1], s[2], s[3]);
                    if bad > 0.0 || !sum.is_finite() || min < 0.0 || upper > CAUSAL_TOLERANCE || sum > 1.0 + ROW_SUM_TOLERANCE {
                        return Err(AggregateError::BadData);
                    }
                }
            }
            if m_len > 0 && k1 > 1 {
                let chunk = self.read_back(&mbuf, m_len).map_err(AggregateError::Device)?;
                let len = offset(k1) - offset(k0);
                m.data[offset(k0)..offset(k1)].copy_from_slice(&chunk[..len]);
            }
            drop(keep);
            k0 = k1;
        }
        att.mark_causal_checked(&sel.slabs);
        Ok(m)
    }
}
