//! The FlowTracer pipeline (FLOWTRACER.md §1): one module per step, one definition of each.
//! Backends execute these steps; the CPU one here is the reference the others are checked against.

pub mod aggregate;
pub mod backbone;
pub mod conserve;
pub mod credit;
pub mod knockout;
pub mod matrix;
pub mod reach;
pub mod roles;
pub mod sweep;
pub mod throughput;
pub mod unit_flow;

pub use backbone::FlowPath;
pub use matrix::Matrix;

use crate::params::Params;
use crate::span::Spans;
use crate::trace::{DataError, Problem, Trace, TraceError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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
}

impl StepTimes {
    pub fn total(&self) -> Duration {
        self.aggregate + self.reach + self.flow + self.backbone + self.roles + self.credit
    }
}

/// Everything the pipeline derives from one trace.
#[derive(Clone, Debug)]
pub struct FlowResult {
    pub status: Status,
    /// The spans the steps ran between: the trace's, with the answer replaced by the sink the
    /// flow was conditioned on (`flow::reach::conditioned`).
    pub spans: Spans,
    pub backend: String,
    /// Original layer numbers and head indices that were aggregated (empty: axis absent).
    pub layers: Vec<usize>,
    pub heads: Vec<usize>,
    pub reach: Vec<f64>,
    pub flow: Vec<f64>,
    pub throughput: Vec<f64>,
    pub credit: Vec<f64>,
    /// Effective number of far sources feeding each backbone token (the checkpoint score; 0 off
    /// the backbone).
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
    pub fn answer_inflow(&self) -> f64 {
        self.spans.answer.range().map(|a| self.flow[a]).sum()
    }

    pub fn backbone_flow(&self) -> f64 {
        self.backbone.iter().map(|p| p.flow).sum()
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

/// Runs every step on the CPU and keeps the aggregated matrix (the app draws it; the inspector
/// reads edge flows from it).
pub fn analyze_with_matrix(trace: &Trace, params: &Params, cancel: &Cancel) -> Result<(FlowResult, Matrix), TraceError> {
    analyze_spans(trace, trace.spans, params, cancel)
}

/// Like [`analyze_with_matrix`] with other spans than the file's (the app lets the user pick the
/// question and answer by selecting tokens).
pub fn analyze_spans(trace: &Trace, spans: Spans, params: &Params, cancel: &Cancel) -> Result<(FlowResult, Matrix), TraceError> {
    spans
        .validate(trace.n())
        .map_err(|e| TraceError::new(&trace.path, Problem::Span, e))?;
    analyze_inner(trace, spans, params, cancel).map_err(|e| e.at(&trace.path))
}

/// Runs every step on the CPU.
pub fn analyze(trace: &Trace, params: &Params, cancel: &Cancel) -> Result<FlowResult, TraceError> {
    analyze_with_matrix(trace, params, cancel).map(|(r, _)| r)
}

fn analyze_inner(trace: &Trace, spans: Spans, params: &Params, cancel: &Cancel) -> Result<(FlowResult, Matrix), DataError> {
    analyze_using(trace, spans, params, cancel, &|att, sel, p| aggregate::aggregate(att, sel, p, cancel.flag()), None)
}

/// The steps a device backend takes over from the CPU after aggregation: the reach and flow
/// solves (steps 3 and 5), the throughput (step 6), the backbone's widest paths (step 7) and
/// the credit's selection (step 9). Any may fail (a lost device, a matrix over its limits);
/// that step then runs on the CPU, with a warning.
pub trait Offload {
    /// Steps 3 and 5, and how long step 3 took of the whole.
    fn solve(&self, m: &Matrix, spans: Spans) -> Result<(Vec<f64>, unit_flow::UnitFlow, Duration), String>;
    fn backbone(&self, m: &Matrix, h: &[f64], f: &[f64], spans: Spans, sources: usize, p: &crate::params::BackboneParams) -> Result<Vec<FlowPath>, String>;
    /// Steps 6 and 9 on the h and f of the last `solve`: every one of the `n` tokens'
    /// throughput, and the response tokens among the `count` highest, in token order.
    fn credit(&self, n: usize, spans: Spans, count: usize) -> Result<(Vec<f64>, Vec<usize>), String>;
}

/// How a backend builds the matrix from the selected slabs (step 1); steps 3–9 are shared.
pub type Aggregator<'a> = dyn Fn(&crate::trace::Attention, &aggregate::Selection, &crate::params::AggregateParams) -> Result<Matrix, DataError> + 'a;

/// The pipeline with step 1 done by `aggregator`: backends that aggregate elsewhere (the GPU)
/// run every other step exactly as the CPU does.
pub fn analyze_using(
    trace: &Trace,
    spans: Spans,
    params: &Params,
    cancel: &Cancel,
    aggregator: &Aggregator,
    offload: Option<&dyn Offload>,
) -> Result<(FlowResult, Matrix), DataError> {
    params.validate().map_err(|e| DataError::new(Problem::Params, e))?;
    let spans = reach::conditioned(spans, &params.answer);
    let mut times = StepTimes::default();
    let t = Instant::now();
    let sel = aggregate::select(trace, &params.aggregate)?;
    let mut m = aggregator(&trace.attention, &sel, &params.aggregate)?;
    times.aggregate = t.elapsed();
    let check = || if cancel.is_cancelled() { Err(DataError::new(Problem::Cancelled, "cancelled")) } else { Ok(()) };
    check()?;
    let mut result = match offload {
        None => solve(&mut m, spans, params, &mut times),
        Some(device) => {
            let t = Instant::now();
            match device.solve(&m, spans) {
                Ok((h, uf, reach)) => {
                    (times.reach, times.flow) = (reach, t.elapsed().saturating_sub(reach));
                    finish_offloaded(&mut m, spans, params, &mut times, h, uf, device)
                }
                Err(e) => {
                    eprintln!("flowtracer: warning: {}: the GPU solves failed ({e}); solving on the CPU", trace.path.display());
                    solve(&mut m, spans, params, &mut times)
                }
            }
        }
    };
    result.layers = sel.layers;
    result.heads = sel.heads;
    result.times = times;
    Ok((result, m))
}

/// Steps 3–9 again on a matrix aggregated earlier with the same aggregate parameters: what a
/// re-score costs when only later steps' parameters (credit, backbone, roles) or the spans
/// changed. `aggregated` is the result that came with the matrix.
pub fn rescore(m: &mut Matrix, spans: Spans, params: &Params, aggregated: &FlowResult) -> Result<FlowResult, String> {
    params.validate()?;
    spans.validate(m.n)?;
    let spans = reach::conditioned(spans, &params.answer);
    let mut times = StepTimes::default();
    let mut r = solve(m, spans, params, &mut times);
    r.layers = aggregated.layers.clone();
    r.heads = aggregated.heads.clone();
    r.backend = aggregated.backend.clone();
    r.times = times;
    Ok(r)
}

/// Steps 3–9 on an aggregated matrix. Public so that backends which aggregate elsewhere, and
/// tests with hand-made graphs, run exactly the same steps.
pub fn solve(m: &mut Matrix, spans: Spans, params: &Params, times: &mut StepTimes) -> FlowResult {
    let t = Instant::now();
    let h = reach::reach(m, spans.answer);
    times.reach = t.elapsed();
    let t = Instant::now();
    let uf = unit_flow::unit_flow(m, &h, spans);
    times.flow = t.elapsed();
    finish(m, spans, params, times, h, uf)
}

/// Steps 6–9 from the reach and the flow (solved here or by another backend).
pub fn finish(m: &mut Matrix, spans: Spans, params: &Params, times: &mut StepTimes, h: Vec<f64>, uf: unit_flow::UnitFlow) -> FlowResult {
    finish_with(m, spans, params, times, h, uf, Computed::default())
}

/// Steps 6–9 with the backbone and the credit's selection offloaded to `d`; a step it fails runs
/// on the CPU, with a warning.
fn finish_offloaded(m: &mut Matrix, spans: Spans, params: &Params, times: &mut StepTimes, h: Vec<f64>, uf: unit_flow::UnitFlow, d: &dyn Offload) -> FlowResult {
    let t = Instant::now();
    let backbone = d.backbone(m, &h, &uf.flow, spans, uf.sources, &params.backbone).map_err(|e| eprintln!("flowtracer: warning: the GPU backbone failed ({e}); taking it on the CPU")).ok();
    times.backbone = t.elapsed();
    // With no flow, throughput is 0 and nothing is selected: nothing the device need do.
    let (mut throughput, mut chosen) = (None, None);
    if status(spans, &uf) == Status::Ok {
        let t = Instant::now();
        let count = roles::share_count(params.credit.fraction, spans.response.len());
        match d.credit(m.n, spans, count) {
            Ok((tau, picked)) => (throughput, chosen) = (Some(tau), Some(picked)),
            Err(e) => eprintln!("flowtracer: warning: the GPU throughput and credit selection failed ({e}); taking them on the CPU"),
        }
        times.credit = t.elapsed();
    }
    finish_with(m, spans, params, times, h, uf, Computed { throughput, backbone, chosen })
}

fn status(spans: Spans, uf: &unit_flow::UnitFlow) -> Status {
    if spans.answer.is_empty() {
        Status::NoAnswer
    } else if uf.sources == 0 {
        Status::NoFlow
    } else {
        Status::Ok
    }
}

/// What a device backend already computed of steps 6, 7 and 9 (`None`: not computed there).
#[derive(Default)]
pub struct Computed {
    pub throughput: Option<Vec<f64>>,
    pub backbone: Option<Vec<FlowPath>>,
    /// The credit's selection: the response tokens among the top `fraction` by throughput.
    pub chosen: Option<Vec<usize>>,
}

/// Steps 6–9 from the reach and the flow, taking what a device computed as it is and running
/// the rest here: one place puts a result together, whichever backend did which step. Step
/// times add to those the caller has already set for the steps it ran.
pub fn finish_with(m: &mut Matrix, spans: Spans, params: &Params, times: &mut StepTimes, h: Vec<f64>, uf: unit_flow::UnitFlow, done: Computed) -> FlowResult {
    let n = m.n;
    let status = status(spans, &uf);
    let t = Instant::now();
    let tau = done.throughput.unwrap_or_else(|| throughput::throughput(&uf.flow, &h, spans.answer));
    times.credit += t.elapsed();
    let t = Instant::now();
    let backbone = done.backbone.unwrap_or_else(|| backbone::backbone(m, &h, &uf.flow, spans, uf.sources, &params.backbone));
    times.backbone += t.elapsed();
    let t = Instant::now();
    let far = roles::far_sources(m, &h, &uf.flow, spans, &backbone, params.roles.checkpoint_min_distance);
    let hubs = if status == Status::Ok { roles::hubs(&tau, spans, &params.roles) } else { vec![] };
    let checkpoints = roles::checkpoints(&backbone, &far, spans, &params.roles);
    times.roles += t.elapsed();
    let t = Instant::now();
    let credit = match (status, done.chosen) {
        (Status::Ok, Some(chosen)) => credit::credit_from(n, chosen, spans, &params.credit),
        (Status::Ok, None) => credit::credit(&tau, spans, &params.credit),
        _ => vec![1.0; n],
    };
    times.credit += t.elapsed();
    FlowResult {
        status,
        spans,
        backend: "cpu".into(),
        layers: vec![],
        heads: vec![],
        reach: h,
        flow: uf.flow,
        throughput: tau,
        credit,
        far_sources: far,
        backbone,
        hubs,
        checkpoints,
        question_sources: uf.sources,
        times: times.clone(),
    }
}
