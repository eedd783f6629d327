//! Reducing the matrix to a texture on the GPU (`shaders/downsample.wgsl`): block maxima, the
//! same rule as the CPU's `app::views::matrix::downsample`, which the tests hold it to.

use super::Gpu;
use crate::flow::Matrix;
use crate::flow::matrix::row_offset as offset;
use wgpu::util::DeviceExt;

/// Per-row and per-column factors applied before the maximum (see the shader).
pub struct Scale {
    pub row: Vec<f32>,
    pub col: Vec<f32>,
}

impl Scale {
    pub fn ones(n: usize) -> Scale {
        Scale { row: vec![1.0; n], col: vec![1.0; n] }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    s: u32,
    first_out_row: u32,
    out_rows: u32,
    base: u32,
    _pad: [u32; 3],
}


fn block_start(b: usize, n: usize, s: usize) -> usize {
    (b * n).div_ceil(s)
}

impl Gpu {
    /// s×s block maxima of `m` scaled by `scale`, row-major.
    pub fn downsample(&self, m: &Matrix, scale: &Scale, s: usize) -> Result<Vec<f32>, String> {
        let n = m.n;
        let s = s.min(n).max(1);
        if offset(n) >= u32::MAX as usize {
            return Err(format!("N = {n} is past what 32-bit shader indices address"));
        }
        let dev = &self.device;
        let out = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("downsample out"),
            size: (s * s * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let rows = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("row scale"),
            contents: bytemuck::cast_slice(&scale.row),
            usage: wgpu::BufferUsages::STORAGE,
        });
        let cols = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("col scale"),
            contents: bytemuck::cast_slice(&scale.col),
            usage: wgpu::BufferUsages::STORAGE,
        });
        // Upload whole output rows at a time, as many as one binding holds.
        let budget = (self.max_binding() / 4) as usize;
        let mut y0 = 0;
        while y0 < s {
            let k_start = block_start(y0, n, s);
            let mut y1 = y0 + 1;
            while y1 < s && offset(block_start(y1 + 1, n, s).min(n)) - offset(k_start) <= budget {
                y1 += 1;
            }
            let k_end = block_start(y1, n, s).min(n);
            let (a, b) = (offset(k_start), offset(k_end).max(offset(k_start) + 1));
            if b - a > budget {
                return Err(format!("one block of rows needs {} MiB, over the adapter's binding limit", ((b - a) * 4) >> 20));
            }
            let mut chunk = m.data[a..offset(k_end)].to_vec();
            chunk.resize(b - a, 0.0);
            let mbuf = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("matrix rows"),
                contents: bytemuck::cast_slice(&chunk),
                usage: wgpu::BufferUsages::STORAGE,
            });
            let params = Params { n: n as u32, s: s as u32, first_out_row: y0 as u32, out_rows: (y1 - y0) as u32, base: a as u32, _pad: [0; 3] };
            let pbuf = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("downsample params"),
                contents: bytemuck::bytes_of(&params),
                usage: wgpu::BufferUsages::UNIFORM,
            });
            let bind = super::bind_buffers(dev, "downsample", &self.downsample.get_bind_group_layout(0), &[&pbuf, &mbuf, &rows, &cols, &out]);
            let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("downsample") });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("downsample"), timestamp_writes: None });
                pass.set_pipeline(&self.downsample);
                pass.set_bind_group(0, &bind, &[]);
                pass.dispatch_workgroups((s as u32).div_ceil(16), ((y1 - y0) as u32).div_ceil(16), 1);
            }
            self.queue.submit([enc.finish()]);
            y0 = y1;
        }
        self.read_back(&out, s * s)
    }

    /// Copies a storage buffer of `len` f32 back to the host.
    pub fn read_back(&self, buf: &wgpu::Buffer, len: usize) -> Result<Vec<f32>, String> {
        self.read_back_as(buf, len)
    }

    /// The first `len` values of type `T` of `buf`.
    pub fn read_back_as<T: bytemuck::Pod>(&self, buf: &wgpu::Buffer, len: usize) -> Result<Vec<T>, String> {
        let mut out = vec![T::zeroed(); len];
        self.read_back_into(buf, &mut out)?;
        Ok(out)
    }

    /// The start of `buf` into `dst`, straight from the mapping (M is hundreds of MB at 8k: no
    /// second copy of it).
    pub fn read_back_into<T: bytemuck::Pod>(&self, buf: &wgpu::Buffer, dst: &mut [T]) -> Result<(), String> {
        let dev = &self.device;
        let bytes = std::mem::size_of_val(dst) as u64;
        let staging = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("read back"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("read back") });
        enc.copy_buffer_to_buffer(buf, 0, &staging, 0, bytes);
        self.queue.submit([enc.finish()]);
        self.map_into(&staging, dst)
    }

    /// A mappable buffer's start into `dst`, once the work submitted before has written it.
    pub fn map_into<T: bytemuck::Pod>(&self, staging: &wgpu::Buffer, dst: &mut [T]) -> Result<(), String> {
        let dev = &self.device;
        let bytes = std::mem::size_of_val(dst) as u64;
        let slice = staging.slice(..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        dev.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| format!("GPU wait failed: {e}"))?;
        rx.recv().map_err(|e| e.to_string())?.map_err(|e| format!("cannot map the result: {e}"))?;
        let view = slice.get_mapped_range().map_err(|e| format!("cannot read the result: {e}"))?;
        bytemuck::cast_slice_mut::<T, u8>(dst).copy_from_slice(&view);
        drop(view);
        staging.unmap();
        Ok(())
    }
}
