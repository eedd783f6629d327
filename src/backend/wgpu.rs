//! The wgpu backend: step 1 (aggregation, the only step that reads the attention), steps 3 and 5
//! (the reach and flow solves), step 7's widest paths and step 9's selection run as compute
//! shaders; throughput and the roles run on the solved flow exactly as on the CPU. A device failure moves that trace to the CPU with a warning; a bad file gets the
//! CPU's error, which names the exact layer, head and row.

use super::Backend;
use crate::flow::{self, Cancel, FlowResult, aggregate};
use crate::gpu::{Gpu, aggregate::AggregateError};
use crate::params::Params;
use crate::trace::{Trace, TraceError};

pub struct Wgpu {
    pub gpu: &'static Gpu,
}

impl Wgpu {
    pub fn analyze(&self, trace: &Trace, params: &Params, cancel: &Cancel) -> Result<FlowResult, TraceError> {
        let fell_back = std::cell::Cell::new(None::<String>);
        let aggregator = |att: &crate::trace::Attention, sel: &aggregate::Selection, p: &crate::params::AggregateParams| {
            match self.gpu.aggregate(att, sel, p) {
                Ok(m) => Ok(m),
                Err(AggregateError::BadData) => aggregate::aggregate(att, sel, p, cancel.flag()),
                Err(AggregateError::Device(e)) => {
                    eprintln!("flowtracer: warning: {}: wgpu failed ({e}); this trace runs on the CPU", trace.path.display());
                    fell_back.set(Some(e));
                    aggregate::aggregate(att, sel, p, cancel.flag())
                }
            }
        };
        let (mut r, _) = flow::analyze_using(trace, trace.spans, params, cancel, &aggregator, Some(&crate::gpu::OnDevice::new(self.gpu))).map_err(|e| e.at(&trace.path))?;
        r.backend = match fell_back.take() {
            None => format!("wgpu: {}", self.gpu.adapter),
            Some(_) => "cpu (wgpu failed)".into(),
        };
        Ok(r)
    }
}

impl Backend for Wgpu {
    fn name(&self) -> &'static str {
        "wgpu"
    }

    /// One queue: traces go through it one after another.
    fn run_batch(&self, traces: &[&Trace], params: &Params, cancel: &Cancel) -> Vec<Result<FlowResult, TraceError>> {
        traces.iter().map(|t| self.analyze(t, params, cancel)).collect()
    }
}
