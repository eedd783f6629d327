//! The FlowTracer pipeline (FLOWTRACER.md §1): one module per step, one definition of each.
//! Backends execute these steps; the CPU one here is the reference the others are checked against.

pub mod aggregate;
pub mod backbone;
pub mod conserve;
pub mod credit;
pub mod knockout;
pub mod logarithm;
pub mod matrix;
mod paired;
pub mod pipeline;
pub mod plan;
pub mod provenance;
pub mod reach;
pub mod roles;
pub mod slab_row;
pub mod steps;
mod step_totals;
pub mod sweep;
#[cfg(test)]
pub mod test_rng;
pub mod throughput;
pub mod unit_flow;

pub use backbone::FlowPath;
pub use matrix::Matrix;
pub use pipeline::{AggregateError, Cpu, Offered, Offload, Selected, Solved, execute, rescore, resume, solve_graph};
pub use plan::{Plan, Scope};
pub use provenance::{Executor, Fallback, Provenance, Step};

use crate::params::Params;
use crate::span::Spans;
use crate::trace::{Trace, TraceError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// The answer span is empty: nothing to trace toward; credit 1 everywhere.
    NoAnswer,
    /// No question token reaches the answer: no flow; credit 1 everywhere.
    NoFlow,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Ok, Status::NoAnswer, Status::NoFlow];

    /// The status a [`Status::name`] names.
    pub fn named(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::NoAnswer => "no_answer",
            Status::NoFlow => "no_flow",
        }
    }
}

/// Wall time of each step, for `bench` and the app's status bar.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StepTimes {
    pub aggregate: Duration,
    /// The aggregation kernels alone, uploads excluded (CUDA; zero elsewhere): the aggregation's
    /// speed when the attention is already on the device.
    pub aggregate_on_device: Duration,
    pub reach: Duration,
    pub flow: Duration,
    pub backbone: Duration,
    pub roles: Duration,
    pub credit: Duration,
    /// The backbone's first widest-path sweep ran inside the flow solve's pass over M (the CPU
    /// running both, `unit_flow::unit_flow_and_widths`): `flow` holds it, and `backbone` only
    /// the re-sweeps after each path.
    pub backbone_sweep_in_flow: bool,
}

impl StepTimes {
    pub fn total(&self) -> Duration {
        self.aggregate + self.reach + self.flow + self.backbone + self.roles + self.credit
    }

    /// Adds another run's times, step by step (a batch's sum).
    pub fn add(&mut self, other: &StepTimes) {
        for (a, b) in self.steps_mut().into_iter().zip(other.steps()) {
            *a += b;
        }
        self.backbone_sweep_in_flow |= other.backbone_sweep_in_flow;
    }

    /// Each step's time times `factor` (a sum's mean).
    pub fn scaled(&self, factor: f64) -> StepTimes {
        let mut out = self.clone();
        for a in out.steps_mut() {
            *a = a.mul_f64(factor);
        }
        out
    }

    fn steps(&self) -> [Duration; 7] {
        [self.aggregate, self.aggregate_on_device, self.reach, self.flow, self.backbone, self.roles, self.credit]
    }

    fn steps_mut(&mut self) -> [&mut Duration; 7] {
        [&mut self.aggregate, &mut self.aggregate_on_device, &mut self.reach, &mut self.flow, &mut self.backbone, &mut self.roles, &mut self.credit]
    }
}

/// Everything the pipeline derives from one trace.
#[derive(Clone, Debug)]
pub struct FlowResult {
    pub status: Status,
    /// The spans the steps ran between: the trace's, with the answer replaced by the sink the
    /// flow was conditioned on (`flow::reach::conditioned`).
    pub spans: Spans,
    /// Which executor ran each step, and any fallback with its reason.
    pub provenance: Provenance,
    /// Original layer numbers and head indices that were aggregated (empty: axis absent).
    pub layers: Vec<usize>,
    pub heads: Vec<usize>,
    pub reach: Vec<f64>,
    pub flow: Vec<f64>,
    pub throughput: Vec<f64>,
    pub credit: Vec<f64>,
    /// Effective number of far sources feeding each backbone token (the checkpoint score; 0 off
    /// the backbone). This, the backbone, the hubs and the checkpoints are empty from a run of
    /// [`Scope::Credit`], whose provenance has no backbone or roles step.
    pub far_sources: Vec<f64>,
    pub backbone: Vec<FlowPath>,
    pub hubs: Vec<usize>,
    pub checkpoints: Vec<usize>,
    /// |Q⁺|: question tokens that reach the answer.
    pub question_sources: usize,
    pub times: StepTimes,
}

impl FlowResult {
    /// The flow into the sink: 1 whenever there is flow.
    /// (Both sums start from +0: std's sum of nothing is -0, which the JSON wrote as `-0.0` and
    /// the report showed as `-0.0%` for a trace without an answer.)
    pub fn answer_inflow(&self) -> f64 {
        self.spans.answer.range().fold(0.0, |sum, a| sum + self.flow[a])
    }

    pub fn backbone_flow(&self) -> f64 {
        self.backbone.iter().fold(0.0, |sum, p| sum + p.flow)
    }
}

/// A cancel flag shared between a UI or a Ctrl-C handler and the pipeline.
#[derive(Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed)
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn flag(&self) -> &AtomicBool {
        &self.0
    }
}

/// Every step on the CPU between the trace's own spans: the short way in for the RL code, the
/// probes and the tests.
pub fn analyze(trace: &Trace, params: &Params, cancel: &Cancel) -> Result<FlowResult, TraceError> {
    let plan = Plan::for_trace(trace, params)?;
    execute(trace, &plan, &Cpu, cancel).map(|(r, _)| r)
}
