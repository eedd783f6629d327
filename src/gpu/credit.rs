//! Steps 6 and 9 on the GPU (`shaders/credit.wgsl`): the throughput from the flow solve's h and
//! f without their leaving the device, then the credit's top-fraction selection on it; each
//! response token counts how many rank above it, so the choice and its tie rule are the CPU's
//! (`flow::roles::top_by_score`), in f32.

use super::Gpu;
use crate::span::{Span, Spans};
use std::ops::Range;
use wgpu::util::DeviceExt;

pub struct CreditPipelines {
    layout: wgpu::BindGroupLayout,
    throughput: wgpu::ComputePipeline,
    select: wgpu::ComputePipeline,
}

pub fn pipelines(device: &wgpu::Device) -> CreditPipelines {
    let (layout, mut k) = super::kernels(device, "credit.wgsl", include_str!("../../shaders/credit.wgsl"), &[true, true, false, false], &["throughput", "select_top"]);
    let mut next = || k.remove(0);
    CreditPipelines { throughput: next(), select: next(), layout }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    a0: u32,
    a1: u32,
    r0: u32,
    r1: u32,
    count: u32,
    _pad: [u32; 2],
}

/// Where the throughput comes from: the solve's buffers, or scores given by the caller.
#[derive(Clone, Copy)]
enum Scores<'a> {
    Flow { h: &'a wgpu::Buffer, f: &'a wgpu::Buffer },
    Given(&'a [f64]),
}

impl Gpu {
    /// The throughput of each of the `n` tokens from the solve's `h` and `f` on the device, and
    /// the response tokens among its `count` highest, in token order.
    pub fn credit(&self, h: &wgpu::Buffer, f: &wgpu::Buffer, n: usize, spans: Spans, count: usize) -> Result<(Vec<f64>, Vec<usize>), String> {
        self.run_credit(Scores::Flow { h, f }, n, spans, count)
    }

    /// The tokens of `range` among the `count` highest `score`s, in token order (the selection
    /// alone, on scores from elsewhere).
    pub fn top_by_score(&self, score: &[f64], range: Range<usize>, count: usize) -> Result<Vec<usize>, String> {
        let spans = Spans { question: Span::new(0, 0), response: Span::new(range.start, range.end), answer: Span::new(0, 0) };
        self.run_credit(Scores::Given(score), score.len(), spans, count).map(|(_, chosen)| chosen)
    }

    fn run_credit(&self, scores: Scores, n: usize, spans: Spans, count: usize) -> Result<(Vec<f64>, Vec<usize>), String> {
        let dev = &self.device;
        let init = |label: &str, contents: &[u8], usage: wgpu::BufferUsages| dev.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents, usage });
        use wgpu::BufferUsages as U;
        let u = |x: usize| x as u32;
        let (r, a) = (spans.response.range(), spans.answer.range());
        let params = Params { n: u(n), a0: u(a.start), a1: u(a.end), r0: u(r.start), r1: u(r.end), count: u(count), _pad: [0; 2] };
        let pbuf = init("credit params", bytemuck::bytes_of(&params), U::UNIFORM);
        // A binding may not be empty.
        let floats = |len: usize| vec![0f32; len.max(1)];
        let given: Vec<f32> = match scores {
            Scores::Given(s) => s.iter().map(|&x| x as f32).collect(),
            Scores::Flow { .. } => floats(n),
        };
        let tau = init("tau", bytemuck::cast_slice(&given), U::STORAGE | U::COPY_SRC);
        let selected = init("selected", bytemuck::cast_slice(&floats(r.len())), U::STORAGE | U::COPY_SRC);
        let unused = init("unused", bytemuck::cast_slice(&floats(1)), U::STORAGE);
        let (h, f) = match scores {
            Scores::Flow { h, f } => (h, f),
            Scores::Given(_) => (&unused, &unused),
        };
        let pl = &self.credit;
        let bind = super::bind_buffers(dev, "credit", &pl.layout, &[&pbuf, h, f, &tau, &selected]);
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("credit") });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("credit"), timestamp_writes: None });
            pass.set_bind_group(0, &bind, &[]);
            if matches!(scores, Scores::Flow { .. }) {
                pass.set_pipeline(&pl.throughput);
                pass.dispatch_workgroups(u(n).div_ceil(256), 1, 1);
            }
            if !r.is_empty() && count > 0 {
                pass.set_pipeline(&pl.select);
                pass.dispatch_workgroups(u(r.len()).div_ceil(256), 1, 1);
            }
        }
        self.queue.submit([enc.finish()]);
        let throughput = match scores {
            Scores::Flow { .. } => self.read_back(&tau, n)?.into_iter().map(|x| x as f64).collect(),
            Scores::Given(_) => Vec::new(),
        };
        let chosen = if r.is_empty() || count == 0 { Vec::new() } else { r.clone().zip(self.read_back(&selected, r.len())?).filter(|(_, s)| *s > 0.5).map(|(k, _)| k).collect() };
        Ok((throughput, chosen))
    }
}
