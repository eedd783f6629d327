//! The wgpu backend: step 1 (aggregation, the only step that reads the attention), steps 3 and 5
//! (the reach and flow solves), step 6's throughput and step 9's selection on the solves' h and
//! f, and step 7's widest paths run as compute shaders; the roles (step 8) run on the host as on
//! the CPU. A device failure moves that trace or step to the CPU with a warning; a bad file gets
//! the CPU's error, which names the exact layer, head and row.

use super::Backend;
use crate::flow::{self, Cancel, FlowResult, Matrix, aggregate};
use crate::span::Spans;
use crate::gpu::{Gpu, aggregate::AggregateError};
use crate::params::Params;
use crate::trace::{Trace, TraceError};
use rayon::prelude::*;

pub struct Wgpu {
    pub gpu: &'static Gpu,
}

impl Wgpu {
    pub fn analyze(&self, trace: &Trace, params: &Params, cancel: &Cancel) -> Result<FlowResult, TraceError> {
        self.analyze_with_matrix(trace, trace.spans, params, cancel).map(|(r, _)| r)
    }

    /// The pipeline on the device, keeping the aggregated matrix the host holds anyway.
    pub fn analyze_with_matrix(&self, trace: &Trace, spans: Spans, params: &Params, cancel: &Cancel) -> Result<(FlowResult, Matrix), TraceError> {
        spans.validate(trace.n()).map_err(|e| TraceError::new(&trace.path, crate::trace::Problem::Span, e))?;
        let fell_back = std::cell::Cell::new(None::<String>);
        let device = crate::gpu::OnDevice::new(self.gpu);
        let aggregator = |att: &crate::trace::Attention, sel: &aggregate::Selection, p: &crate::params::AggregateParams| {
            match device.aggregate(att, sel, p) {
                Ok(m) => Ok(m),
                Err(AggregateError::BadData) => aggregate::aggregate(att, sel, p, cancel.flag()),
                Err(AggregateError::Device(e)) => {
                    eprintln!("flowtracer: warning: {}: wgpu failed ({e}); this trace runs on the CPU", trace.path.display());
                    fell_back.set(Some(e));
                    aggregate::aggregate(att, sel, p, cancel.flag())
                }
            }
        };
        let (mut r, m) = flow::analyze_using(trace, spans, params, cancel, &aggregator, Some(&device)).map_err(|e| e.at(&trace.path))?;
        r.backend = match fell_back.take() {
            None => format!("wgpu: {}", self.gpu.adapter),
            Some(_) => "cpu (wgpu failed)".into(),
        };
        Ok((r, m))
    }
}

impl Backend for Wgpu {
    fn name(&self) -> &'static str {
        "wgpu"
    }

    fn device(&self) -> String {
        self.gpu.adapter.clone()
    }

    fn analyze_spans(&self, trace: &Trace, spans: Spans, params: &Params, cancel: &Cancel) -> Result<(FlowResult, Matrix), TraceError> {
        self.analyze_with_matrix(trace, spans, params, cancel)
    }

    /// Traces of a batch go through the one queue from several threads at once: while one waits
    /// for its readback (the solves' h and f, each backbone path), the others' work runs.
    fn run_batch(&self, traces: &[&Trace], params: &Params, cancel: &Cancel) -> Vec<Result<FlowResult, TraceError>> {
        traces.par_iter().map(|t| self.analyze(t, params, cancel)).collect()
    }

    fn batch_size(&self) -> usize {
        16
    }
}
