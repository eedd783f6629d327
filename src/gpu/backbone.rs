//! Step 7 on the GPU (`shaders/backbone.wgsl`): the widths of every path come from a blocked
//! (max, min) sweep on the device, a few dispatches per block of 64 rows; the bookkeeping
//! (`flow::backbone::Decomposition`: which path, how much flow, which residuals) is the CPU's,
//! so both backends take paths by one rule. Residuals go into the device's copy of M (the one the
//! solves used: M is uploaded once); the caller's matrix is untouched.

use super::Gpu;
use crate::flow::Matrix;
use crate::flow::backbone::{Decomposition, FlowPath, NONE, Residuals, SOURCE};
use super::matrix::{DeviceMatrix, blocks_up};
use crate::span::Spans;
use wgpu::util::DeviceExt;

pub struct BackbonePipelines {
    layout: wgpu::BindGroupLayout,
    gather: wgpu::ComputePipeline,
    block: wgpu::ComputePipeline,
}

pub fn pipelines(device: &wgpu::Device) -> BackbonePipelines {
    let (layout, mut k) = super::kernels(
        device,
        "backbone.wgsl",
        concat!(include_str!("../../shaders/block.wgsl"), include_str!("../../shaders/backbone.wgsl")),
        &[true, true, true, false, false],
        &["widest_gather", "widest_block"],
    );
    let mut next = || k.remove(0);
    BackbonePipelines { gather: next(), block: next(), layout }
}

impl Gpu {
    /// The backbone given the solved reach `h` and flow `f`. `on_device` is `m` uploaded (its
    /// entries on the paths are overwritten with residuals); `m` itself is read, not changed.
    pub fn backbone(&self, m: &Matrix, on_device: &DeviceMatrix, h: &[f64], mut d: Decomposition, spans: Spans) -> Result<Vec<FlowPath>, String> {
        let n = m.n;
        let dev = &self.device;
        let init = |label: &str, data: &[f32], usage: wgpu::BufferUsages| {
            // A binding may not be empty.
            let contents: &[f32] = if data.is_empty() { &[0.0] } else { data };
            dev.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents: bytemuck::cast_slice(contents), usage })
        };
        use wgpu::BufferUsages as U;
        let hg: Vec<f32> = (0..n).flat_map(|i| [h[i] as f32, d.g[i] as f32]).collect();
        let to_f32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let hgbuf = init("h g", &hg, U::STORAGE);
        let left = init("source left", &to_f32(&d.source_left), U::STORAGE | U::COPY_DST);
        let wp = init("width pred", &vec![0.0; 2 * n], U::STORAGE | U::COPY_SRC);
        let acc = init("gathered", &vec![0.0; 2 * n], U::STORAGE);
        let pl = &self.backbone;
        // One bind group per block, made once and reused by every path's sweep.
        let blocks: Vec<(usize, wgpu::BindGroup)> = blocks_up(spans.question.start..spans.answer.end)
            .into_iter()
            .map(|rows| {
                let (mbuf, base) = on_device.holding(&rows);
                let params = super::BlockParams::new(n, rows.clone(), spans, base);
                let pbuf = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some("backbone params"), contents: bytemuck::bytes_of(&params), usage: U::UNIFORM });
                (rows.len(), super::bind_buffers(dev, "backbone", &pl.layout, &[&pbuf, mbuf, &hgbuf, &left, &wp, &acc]))
            })
            .collect();
        let mut residuals = Residuals::default();
        while d.wants_more() {
            let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("widest") });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("widest"), timestamp_writes: None });
                for (rows, bg) in &blocks {
                    pass.set_bind_group(0, bg, &[]);
                    pass.set_pipeline(&pl.gather);
                    pass.dispatch_workgroups(*rows as u32, 1, 1);
                    pass.set_pipeline(&pl.block);
                    pass.dispatch_workgroups(1, 1, 1);
                }
            }
            self.queue.submit([enc.finish()]);
            let raw = self.read_back(&wp, 2 * n)?;
            let width: Vec<f64> = raw.iter().step_by(2).map(|&w| w as f64).collect();
            let pred: Vec<usize> = raw
                .iter()
                .skip(1)
                .step_by(2)
                .map(|&p| match p {
                    -2.0 => SOURCE,
                    p if p < 0.0 => NONE,
                    p => p as usize,
                })
                .collect();
            let taken = d.take(&width, &pred, |k, i, residual| on_device.write(&self.queue, k, i, residuals.cut(m, k, i, residual)));
            if !taken {
                break;
            }
            // Only the path's source token has less left; send that one value, not all N.
            let source = d.paths.last().expect("just taken").tokens[0];
            self.queue.write_buffer(&left, (source * 4) as u64, bytemuck::bytes_of(&(d.source_left[source] as f32)));
        }
        Ok(d.paths)
    }
}
