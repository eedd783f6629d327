//! Steps 3 and 5 on the GPU (`shaders/solve.wgsl`): the backward reach solve and the forward
//! flow solve, in f32, blocked as on the CPU: a few dispatches per block of 64 rows, each binding
//! the buffer of the device matrix that holds its rows.

use super::Gpu;
use super::matrix::{DeviceMatrix, blocks_down, blocks_up};
use crate::flow::unit_flow::UnitFlow;
use crate::span::Spans;
use std::ops::Range;
use wgpu::util::DeviceExt;

pub struct SolvePipelines {
    layout: wgpu::BindGroupLayout,
    reach_block: wgpu::ComputePipeline,
    reach_push: wgpu::ComputePipeline,
    flow_gather: wgpu::ComputePipeline,
    flow_block: wgpu::ComputePipeline,
}

pub fn pipelines(device: &wgpu::Device) -> SolvePipelines {
    let (layout, mut k) = super::kernels(
        device,
        "solve.wgsl",
        concat!(include_str!("../../shaders/block.wgsl"), include_str!("../../shaders/solve.wgsl")),
        &[true, false, false, false, false, true],
        &["reach_block", "reach_push", "flow_gather", "flow_block"],
    );
    let mut next = || k.remove(0);
    SolvePipelines { reach_block: next(), reach_push: next(), flow_gather: next(), flow_block: next(), layout }
}

/// The solves' results on the host, and h and f where they left them on the device (when there
/// is flow) for the throughput and the credit's selection.
pub struct Kept {
    pub h: Vec<f64>,
    pub uf: UnitFlow,
    pub buffers: Option<FlowBuffers>,
    /// How long the reach solve took (its readback included); the flow solve took the rest.
    pub reach_time: std::time::Duration,
}

pub struct FlowBuffers {
    pub h: wgpu::Buffer,
    pub f: wgpu::Buffer,
}

impl Gpu {
    /// Reach and unit flow of the matrix on the device.
    pub fn solve(&self, m: &DeviceMatrix, spans: Spans) -> Result<(Vec<f64>, UnitFlow), String> {
        self.solve_keeping(m, spans).map(|s| (s.h, s.uf))
    }

    /// [`Gpu::solve`], keeping h and f on the device when there is flow.
    pub fn solve_keeping(&self, m: &DeviceMatrix, spans: Spans) -> Result<Kept, String> {
        let t = std::time::Instant::now();
        let n = m.n;
        if spans.answer.is_empty() {
            return Ok(Kept { h: vec![0.0; n], uf: UnitFlow { flow: vec![0.0; n], sources: 0 }, buffers: None, reach_time: t.elapsed() });
        }
        let dev = &self.device;
        let buf = |label: &str, data: &[f32], read_only: bool| {
            let usage = wgpu::BufferUsages::STORAGE | if read_only { wgpu::BufferUsages::empty() } else { wgpu::BufferUsages::COPY_SRC };
            // A binding may not be empty.
            let contents: &[f32] = if data.is_empty() { &[0.0] } else { data };
            dev.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents: bytemuck::cast_slice(contents), usage })
        };
        let zeros = vec![0f32; n];
        let (h, acc, g, f) = (buf("h", &zeros, false), buf("acc", &zeros, false), buf("g", &zeros, false), buf("f", &zeros, false));
        let p = &self.solve;
        let bind = |rows: &Range<usize>, s: &wgpu::Buffer| {
            let (mbuf, base) = m.holding(rows);
            let params = super::BlockParams::new(n, rows.clone(), spans, base);
            let pbuf = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("solve params"),
                contents: bytemuck::bytes_of(&params),
                usage: wgpu::BufferUsages::UNIFORM,
            });
            super::bind_buffers(dev, "solve", &p.layout, &[&pbuf, mbuf, &h, &acc, &g, &f, s])
        };

        // Reach: blocks from the answer's end down to token 0.
        let no_sources = buf("s", &zeros, true);
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("reach") });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("reach"), timestamp_writes: None });
            for rows in blocks_down(spans.answer.end) {
                let bg = bind(&rows, &no_sources);
                pass.set_bind_group(0, &bg, &[]);
                pass.set_pipeline(&p.reach_block);
                pass.dispatch_workgroups(1, 1, 1);
                if rows.start > 0 {
                    pass.set_pipeline(&p.reach_push);
                    pass.dispatch_workgroups((rows.start as u32).div_ceil(256), 1, 1);
                }
            }
        }
        self.queue.submit([enc.finish()]);
        let reach: Vec<f64> = self.read_back(&h, n)?.into_iter().map(|x| x as f64).collect();
        let reach_time = t.elapsed();

        // Sources: the question tokens that reach the answer share one unit.
        let sources = spans.question.range().filter(|&i| reach[i] > 0.0).count();
        if sources == 0 {
            return Ok(Kept { h: reach, uf: UnitFlow { flow: vec![0.0; n], sources: 0 }, buffers: None, reach_time });
        }
        let share: Vec<f32> = (0..n).map(|i| if spans.question.contains(i) && reach[i] > 0.0 { 1.0 / sources as f32 } else { 0.0 }).collect();
        let sbuf = buf("s", &share, true);
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("flow") });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("flow"), timestamp_writes: None });
            for rows in blocks_up(spans.question.start..spans.answer.end) {
                let bg = bind(&rows, &sbuf);
                pass.set_bind_group(0, &bg, &[]);
                pass.set_pipeline(&p.flow_gather);
                pass.dispatch_workgroups(rows.len() as u32, 1, 1);
                pass.set_pipeline(&p.flow_block);
                pass.dispatch_workgroups(1, 1, 1);
            }
        }
        self.queue.submit([enc.finish()]);
        let flow: Vec<f64> = self.read_back(&f, n)?.into_iter().map(|x| x as f64).collect();
        Ok(Kept { h: reach, uf: UnitFlow { flow, sources }, buffers: Some(FlowBuffers { h, f }), reach_time })
    }
}
