//! The one assembly of a result. An executor offers steps through [`Offload`]; whatever it does
//! not offer, or fails at, runs here on the CPU, and the [`Provenance`] records which was which
//! and why. The CPU, wgpu (per trace) and CUDA (a batch's launches, then per trace) all come
//! through [`execute`]; a re-score on an earlier run's matrix comes through [`rescore`].

use super::provenance::{Executor, Provenance, Step};
use super::{Cancel, FlowPath, FlowResult, Matrix, Plan, Scope, Status, StepTimes, aggregate, backbone, credit, reach, roles, throughput, unit_flow};
use crate::params::AggregateParams;
use crate::span::Spans;
use crate::trace::{Attention, DataError, Problem, Trace, TraceError};
use std::time::{Duration, Instant};

/// A device's answer for a step: `None` when it does not offer it, `Some(Err(why))` when it
/// tried and failed.
pub type Offered<T> = Option<Result<T, String>>;

/// Steps 3 and 5: the reach h, the unit flow, and how long step 3 took of the whole.
pub type Solved = (Vec<f64>, unit_flow::UnitFlow, Duration);

/// Steps 6 and 9: every token's throughput, and the response tokens selected for γ.
pub type Selected = (Vec<f64>, Vec<usize>);

/// Why a device could not aggregate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AggregateError {
    /// A value breaks a rule of the format: the CPU runs the step again to name the exact layer,
    /// head and row.
    BadData,
    /// The device failed (lost, out of memory, a matrix past its limits).
    Device(String),
}

/// The steps an executor may take over from the CPU. Each answers `None` when it does not offer
/// the step, `Some(Err(why))` when it tried and failed (the CPU then runs it, recorded as a
/// fallback). An executor that offers nothing is the CPU.
pub trait Offload {
    fn executor(&self) -> Executor;
    /// The device it runs on ("" for the CPU).
    fn device(&self) -> String {
        String::new()
    }
    /// Step 1.
    fn aggregate(&self, _att: &Attention, _sel: &aggregate::Selection, _p: &AggregateParams) -> Option<Result<Matrix, AggregateError>> {
        None
    }
    /// The last `aggregate`'s kernels alone, timed by the device, where it can time them: the
    /// wall time around the call also holds the attention's trip up and M's down, and the bench
    /// reads the two against different floors.
    fn aggregate_kernels(&self) -> Option<Duration> {
        None
    }
    /// Steps 3 and 5, and how long step 3 took of the whole.
    fn solve(&self, _m: &Matrix, _spans: Spans) -> Offered<Solved> {
        None
    }
    /// Steps 6 and 9 on the h and f of the last `solve`: every one of the `n` tokens'
    /// throughput, and the response tokens among the `count` highest, in token order.
    fn credit(&self, _n: usize, _spans: Spans, _count: usize) -> Offered<Selected> {
        None
    }
    /// The device's own account of its steps' times, where the wall time around each call is not
    /// it (a batch's shared launches, charged to each trace in part).
    fn charged(&self) -> Option<StepTimes> {
        None
    }
}

/// The reference executor: every step here, in f64.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu;

impl Offload for Cpu {
    fn executor(&self) -> Executor {
        Executor::Cpu
    }
}

/// Every step of `plan` over `trace`, offered to `on` first; the aggregated matrix comes back
/// with the result (the app draws it and reads edge flows from it). Errors name the file.
pub fn execute(trace: &Trace, plan: &Plan, on: &dyn Offload, cancel: &Cancel) -> Result<(FlowResult, Matrix), TraceError> {
    run(trace, plan, on, cancel).map_err(|e| e.at(&trace.path))
}

fn run(trace: &Trace, plan: &Plan, on: &dyn Offload, cancel: &Cancel) -> Result<(FlowResult, Matrix), DataError> {
    let mut prov = Provenance::new(on.executor(), on.device());
    let mut times = StepTimes::default();
    let t = Instant::now();
    let (att, sel, p) = (&trace.attention, &plan.selection, &plan.params.aggregate);
    // Attention on the CUDA device is read there by the CUDA backend alone; the CPU (its checks,
    // a fallback) and any other device read a host copy, made here so that a failed copy is
    // this trace's error.
    if on.executor() != Executor::Cuda {
        att.ensure_host()?;
    }
    let on_cpu = || {
        check(cancel)?;
        att.ensure_host()?;
        aggregate::aggregate(att, sel, p, cancel.flag())
    };
    let m = match on.aggregate(att, sel, p) {
        None => {
            prov.ran(Step::Aggregate, Executor::Cpu);
            on_cpu()?
        }
        Some(Ok(m)) => {
            prov.ran(Step::Aggregate, on.executor());
            times.aggregate_on_device = on.aggregate_kernels().unwrap_or_default();
            m
        }
        // The CPU's checks name the exact place; should they pass, its matrix is the one used.
        Some(Err(AggregateError::BadData)) => {
            let m = on_cpu()?;
            prov.fell_back(Step::Aggregate, "the device flagged a value the CPU's checks accept".into());
            m
        }
        Some(Err(AggregateError::Device(why))) => {
            prov.fell_back(Step::Aggregate, why);
            on_cpu()?
        }
    };
    times.aggregate = t.elapsed();
    check(cancel)?;
    let result = assemble(&m, plan, on, cancel, prov, times)?;
    Ok((result, m))
}

/// Steps 3–9 on the matrix an earlier run aggregated (`aggregated` is that run's provenance),
/// for a plan from [`Plan::reusing`]: what a re-score costs when only later steps' parameters
/// or the spans changed. The steps run on the CPU, and the provenance says so. The matrix is
/// only read, so it can be the one the app shows while this runs.
pub fn rescore(m: &Matrix, plan: &Plan, aggregated: &Provenance, cancel: &Cancel) -> Result<FlowResult, DataError> {
    let mut prov = aggregated.clone();
    prov.steps.retain(|&s, _| s == Step::Aggregate);
    prov.fallbacks.retain(|f| f.step == Step::Aggregate);
    prov.reused_aggregation = true;
    (prov.reused_solution, prov.resumed_at) = (false, None);
    check(cancel)?;
    assemble(m, plan, &Cpu, cancel, prov, StepTimes::default())
}

/// The later steps alone over an earlier result between the same spans on the same matrix, from
/// the step [`Plan::resumes_at`] names: reach and flow (the solves, 2.4 s at 32k tokens) are kept
/// for any change of the backbone, role or credit parameters; the backbone too unless its own
/// parameters changed; a credit change costs O(N). Each re-run step is recorded as the CPU's.
pub fn resume(prev: &FlowResult, m: &Matrix, plan: &Plan, at: Step) -> FlowResult {
    let mut r = prev.clone();
    let (spans, params) = (r.spans, &plan.params);
    r.provenance.reused_solution = true;
    r.provenance.resumed_at = Some(at);
    if at <= Step::Backbone {
        let t = Instant::now();
        r.backbone = backbone::backbone(m, &r.reach, &r.flow, spans, r.question_sources, &params.backbone);
        r.times.backbone = t.elapsed();
        r.provenance.ran(Step::Backbone, Executor::Cpu);
    }
    if at <= Step::Roles {
        let t = Instant::now();
        (r.far_sources, r.hubs, r.checkpoints) = roles_of(m, &r.reach, &r.flow, &r.throughput, spans, &r.backbone, r.status, params);
        r.times.roles = t.elapsed();
        r.provenance.ran(Step::Roles, Executor::Cpu);
    }
    let t = Instant::now();
    r.credit = match r.status {
        Status::Ok => credit::credit(&r.throughput, spans, &params.credit),
        _ => vec![1.0; r.credit.len()],
    };
    r.times.credit = t.elapsed();
    r.provenance.ran(Step::Credit, Executor::Cpu);
    r
}

/// Step 8: far sources, hubs and checkpoints.
#[allow(clippy::too_many_arguments)]
fn roles_of(m: &Matrix, h: &[f64], f: &[f64], tau: &[f64], spans: Spans, backbone: &[FlowPath], status: Status, params: &crate::params::Params) -> (Vec<f64>, Vec<usize>, Vec<usize>) {
    let far = roles::far_sources(m, h, f, spans, backbone, params.roles.checkpoint_min_distance);
    let hubs = if status == Status::Ok { roles::hubs(tau, spans, &params.roles) } else { vec![] };
    let checkpoints = roles::checkpoints(backbone, &far, spans, &params.roles);
    (far, hubs, checkpoints)
}

/// Steps 3–9 on a hand-made graph between `spans` as they are (no sink conditioning): the
/// tests' and the knock-out's way in.
pub fn solve_graph(m: &Matrix, spans: Spans, params: &crate::params::Params) -> FlowResult {
    let plan = Plan { spans, sink: spans, params: params.clone(), selection: aggregate::Selection::default(), n: m.n, scope: Scope::Everything };
    let prov = Provenance::new(Executor::Cpu, String::new());
    assemble(m, &plan, &Cpu, &Cancel::default(), prov, StepTimes::default()).expect("nothing cancels it")
}

fn check(cancel: &Cancel) -> Result<(), DataError> {
    if cancel.is_cancelled() { Err(DataError::new(Problem::Cancelled, "cancelled")) } else { Ok(()) }
}

/// The device's answer for `steps`, recorded: `None` when the CPU must run them (not offered,
/// or failed).
fn offered<T>(prov: &mut Provenance, steps: &[Step], answer: Offered<T>) -> Option<T> {
    match answer {
        Some(Ok(v)) => {
            for &s in steps {
                prov.ran(s, prov.executor);
            }
            Some(v)
        }
        Some(Err(why)) => {
            for &s in steps {
                prov.fell_back(s, why.clone());
            }
            None
        }
        None => {
            for &s in steps {
                prov.ran(s, Executor::Cpu);
            }
            None
        }
    }
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

/// Steps 3–9 between the plan's sink spans; `times` holds the aggregation's already.
fn assemble(m: &Matrix, plan: &Plan, on: &dyn Offload, cancel: &Cancel, mut prov: Provenance, mut times: StepTimes) -> Result<FlowResult, DataError> {
    let (spans, params, n) = (plan.sink, &plan.params, m.n);
    let everything = plan.scope == Scope::Everything;

    let t = Instant::now();
    let (h, uf, first_sweep) = match offered(&mut prov, &[Step::Reach, Step::Flow], on.solve(m, spans)) {
        Some((h, uf, reach)) => {
            (times.reach, times.flow) = (reach, t.elapsed().saturating_sub(reach));
            (h, uf, None)
        }
        None => {
            let t = Instant::now();
            let h = reach::reach(m, spans.answer);
            times.reach = t.elapsed();
            // The backbone's first sweep rides along with the flow solve where the CPU runs both.
            let t = Instant::now();
            let (uf, first) = if everything && params.backbone.max_paths > 0 {
                unit_flow::unit_flow_and_widths(m, &h, spans)
            } else {
                (unit_flow::unit_flow(m, &h, spans), None)
            };
            times.flow = t.elapsed();
            times.backbone_sweep_in_flow = first.is_some();
            (h, uf, first)
        }
    };
    check(cancel)?;
    let status = status(spans, &uf);

    let t = Instant::now();
    // On the host for every executor: a chain of dependent sweeps, which the CPU updates path by
    // path where a device sweeps whole each time (README, "Why the backbone runs on the host").
    let backbone = if everything {
        prov.ran(Step::Backbone, Executor::Cpu);
        backbone::backbone_after(m, &h, &uf.flow, spans, uf.sources, &params.backbone, first_sweep)
    } else {
        Vec::new()
    };
    times.backbone = t.elapsed();
    check(cancel)?;

    // With no flow, throughput is 0 and nothing is selected: nothing to ask of the device.
    let t = Instant::now();
    let count = roles::share_count(params.credit.fraction, spans.response.len());
    let asked = if status == Status::Ok { on.credit(n, spans, count) } else { None };
    let (tau, chosen) = match offered(&mut prov, &[Step::Throughput, Step::Credit], asked) {
        Some((tau, chosen)) => (tau, Some(chosen)),
        None => (throughput::throughput(&uf.flow, &h, spans.answer), None),
    };
    let credit = match (status, chosen) {
        (Status::Ok, Some(chosen)) => credit::credit_from(n, chosen, spans, &params.credit),
        (Status::Ok, None) => credit::credit(&tau, spans, &params.credit),
        _ => vec![1.0; n],
    };
    times.credit = t.elapsed();

    let t = Instant::now();
    let (far, hubs, checkpoints) = if everything {
        prov.ran(Step::Roles, Executor::Cpu);
        roles_of(m, &h, &uf.flow, &tau, spans, &backbone, status, params)
    } else {
        (Vec::new(), Vec::new(), Vec::new())
    };
    times.roles = t.elapsed();

    if let Some(c) = on.charged() {
        charge(&mut times, &c, &prov);
    }
    Ok(FlowResult {
        status,
        spans,
        layers: plan.selection.layers.clone(),
        heads: plan.selection.heads.clone(),
        provenance: prov,
        reach: h,
        flow: uf.flow,
        throughput: tau,
        credit,
        far_sources: far,
        backbone,
        hubs,
        checkpoints,
        question_sources: uf.sources,
        times,
    })
}

/// The device's own times in place of the wall time, for the steps it ran.
fn charge(times: &mut StepTimes, c: &StepTimes, prov: &Provenance) {
    let on_device = |s| prov.on(s) == Some(prov.executor);
    if on_device(Step::Aggregate) {
        times.aggregate = c.aggregate;
    }
    if on_device(Step::Reach) {
        (times.reach, times.flow) = (c.reach, c.flow);
    }
    if on_device(Step::Credit) {
        times.credit = c.credit;
    }
}
