//! Step 7 on the GPU (`shaders/backbone.wgsl`): the widths of every path come from a blocked
//! (max, min) sweep on the device, a few dispatches per block of 64 rows; the bookkeeping
//! (`flow::backbone::Decomposition`: which path, how much flow, which residuals) is the CPU's,
//! so both backends take paths by one rule. Residuals go into the device's copy of M; the
//! caller's matrix is untouched.

use super::Gpu;
use crate::flow::Matrix;
use crate::flow::backbone::{Decomposition, FlowPath, NONE, SOURCE};
use crate::flow::matrix::row_offset;
use crate::params::BackboneParams;
use crate::span::Spans;
use std::collections::HashMap;
use wgpu::util::DeviceExt;

const BLOCK: usize = 64;

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
    /// The backbone of `m` given the solved reach `h` and flow `f` (the matrix must fit one
    /// storage binding, as for the solves).
    pub fn backbone(&self, m: &Matrix, h: &[f64], f: &[f64], spans: Spans, sources: usize, p: &BackboneParams) -> Result<Vec<FlowPath>, String> {
        let Some(mut d) = Decomposition::new(h, f, spans, sources, p) else { return Ok(Vec::new()) };
        if (m.data.len() * 4) as u64 > self.max_binding() {
            return Err(format!("the {} MiB matrix is over the adapter's binding limit", m.data.len() * 4 >> 20));
        }
        let n = m.n;
        let dev = &self.device;
        let init = |label: &str, data: &[f32], usage: wgpu::BufferUsages| {
            // A binding may not be empty.
            let contents: Vec<f32> = if data.is_empty() { vec![0.0] } else { data.to_vec() };
            dev.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents: bytemuck::cast_slice(&contents), usage })
        };
        use wgpu::BufferUsages as U;
        let hg: Vec<f32> = (0..n).flat_map(|i| [h[i] as f32, d.g[i] as f32]).collect();
        let to_f32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let mbuf = init("M residual", &m.data, U::STORAGE | U::COPY_DST);
        let hgbuf = init("h g", &hg, U::STORAGE);
        let left = init("source left", &to_f32(&d.source_left), U::STORAGE | U::COPY_DST);
        let wp = init("width pred", &vec![0.0; 2 * n], U::STORAGE | U::COPY_SRC);
        let acc = init("gathered", &vec![0.0; 2 * n], U::STORAGE);
        let pl = &self.backbone;
        // One bind group per block, made once and reused by every path's sweep.
        let mut blocks = Vec::new();
        let mut k0 = spans.question.start;
        while k0 < spans.answer.end {
            let k1 = (k0 + BLOCK).min(spans.answer.end);
            let params = super::BlockParams::new(n, k0..k1, spans);
            let pbuf = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some("backbone params"), contents: bytemuck::bytes_of(&params), usage: U::UNIFORM });
            blocks.push((k1 - k0, super::bind_buffers(dev, "backbone", &pl.layout, &[&pbuf, &mbuf, &hgbuf, &left, &wp, &acc])));
            k0 = k1;
        }
        let mut residuals: HashMap<(usize, usize), f32> = HashMap::new();
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
                    p if p == -2.0 => SOURCE,
                    p if p < 0.0 => NONE,
                    p => p as usize,
                })
                .collect();
            let taken = d.take(&width, &pred, |k, i, residual| {
                let old = residuals.get(&(k, i)).copied().unwrap_or_else(|| m.get(k, i));
                let new = residual(old);
                residuals.insert((k, i), new);
                self.queue.write_buffer(&mbuf, ((row_offset(k) + i) * 4) as u64, bytemuck::bytes_of(&new));
            });
            if !taken {
                break;
            }
            self.queue.write_buffer(&left, 0, bytemuck::cast_slice(&to_f32(&d.source_left)));
        }
        Ok(d.paths)
    }
}
