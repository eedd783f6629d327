//! The credit's top-fraction selection as a shader (`shaders/select.wgsl`): each response token
//! counts how many rank above it, so the choice and its tie rule are the CPU's
//! (`flow::roles::top_by_score`), in f32.

use super::Gpu;
use std::ops::Range;
use wgpu::util::DeviceExt;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    r0: u32,
    r1: u32,
    count: u32,
    _pad: u32,
}

impl Gpu {
    /// The tokens of `range` among the `count` highest `score`s, in token order.
    pub fn top_by_score(&self, score: &[f64], range: Range<usize>, count: usize) -> Result<Vec<usize>, String> {
        if range.is_empty() || count == 0 {
            return Ok(Vec::new());
        }
        let dev = &self.device;
        let init = |label: &str, contents: &[u8], usage: wgpu::BufferUsages| dev.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents, usage });
        let params = Params { r0: range.start as u32, r1: range.end as u32, count: count as u32, _pad: 0 };
        let scores: Vec<f32> = score.iter().map(|&s| s as f32).collect();
        let pbuf = init("select params", bytemuck::bytes_of(&params), wgpu::BufferUsages::UNIFORM);
        let sbuf = init("score", bytemuck::cast_slice(&scores), wgpu::BufferUsages::STORAGE);
        let out = init("selected", bytemuck::cast_slice(&vec![0f32; range.len()]), wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC);
        let bind = super::bind_buffers(dev, "select", &self.select.get_bind_group_layout(0), &[&pbuf, &sbuf, &out]);
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("select") });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("select"), timestamp_writes: None });
            pass.set_pipeline(&self.select);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups((range.len() as u32).div_ceil(256), 1, 1);
        }
        self.queue.submit([enc.finish()]);
        let flags = self.read_back(&out, range.len())?;
        Ok(range.zip(flags).filter(|(_, f)| *f > 0.5).map(|(k, _)| k).collect())
    }
}
