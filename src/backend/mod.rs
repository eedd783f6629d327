//! The seam between the pipeline's steps and what executes them. A backend runs a batch of
//! traces and answers one result per trace; an error stays with its trace.

use crate::flow::{self, Cancel, Executor, FlowResult, Matrix, Plan, Scope};
use crate::span::Spans;
use crate::params::Params;
use crate::trace::{Trace, TraceError};
use rayon::prelude::*;

#[cfg(feature = "cuda")]
pub mod cuda;
mod spread;
#[cfg(feature = "wgpu")]
pub mod wgpu;

pub trait Backend: Send + Sync {
    fn executor(&self) -> Executor;
    fn name(&self) -> &'static str {
        self.executor().name()
    }
    /// How many traces it takes at once when it has the choice (an export of a folder).
    fn batch_size(&self) -> usize {
        1
    }
    /// The device it runs on, for `bench` and the logs ("" for the CPU).
    fn device(&self) -> String {
        String::new()
    }
    /// What its device's memory and the link to it allow, measured now with `host` (the bench's
    /// mapped trace) as what goes up; None where the backend has no device of its own (the CPU,
    /// whose floor the bench reads from the mapped file itself).
    fn memory_floor(&self, _host: &[u8], _repeat: usize) -> Option<Result<DeviceFloor, String>> {
        None
    }
    /// Every planned trace of a batch, each result with its aggregated matrix, in order.
    fn execute(&self, batch: &[(&Trace, &Plan)], cancel: &Cancel) -> Vec<Result<(FlowResult, Matrix), TraceError>>;

    /// The results alone. A backend that runs traces one by one lets each matrix go as its trace
    /// ends, so a batch holds a matrix per trace in flight rather than one per trace.
    fn execute_results(&self, batch: &[(&Trace, &Plan)], cancel: &Cancel) -> Vec<Result<FlowResult, TraceError>> {
        self.execute(batch, cancel).into_iter().map(|r| r.map(|(r, _)| r)).collect()
    }

    /// The batch between each trace's own spans; a trace whose plan fails keeps its error and
    /// costs the others nothing.
    fn run_batch(&self, traces: &[&Trace], params: &Params, cancel: &Cancel) -> Vec<Result<FlowResult, TraceError>> {
        self.batch_in(Scope::Everything, traces, params, cancel)
    }

    /// [`Backend::run_batch`] making only the credit and what it is made from ([`Scope::Credit`]):
    /// an RL step's rollouts, whose backbone and roles nobody reads.
    fn credit_batch(&self, traces: &[&Trace], params: &Params, cancel: &Cancel) -> Vec<Result<FlowResult, TraceError>> {
        self.batch_in(Scope::Credit, traces, params, cancel)
    }

    /// The batch making what `scope` asks for: where the caller holds the scope as data.
    fn batch_in(&self, scope: Scope, traces: &[&Trace], params: &Params, cancel: &Cancel) -> Vec<Result<FlowResult, TraceError>> {
        planned(traces, params, scope, |ready| self.execute_results(ready, cancel))
    }

    /// [`Backend::run_batch`] with each result's aggregated matrix, for what reads it after the
    /// pipeline (the export's step graphs), where a batch's matrices may all be held at once.
    fn run_batch_with_matrices(&self, traces: &[&Trace], params: &Params, cancel: &Cancel) -> Vec<Result<(FlowResult, Matrix), TraceError>> {
        planned(traces, params, Scope::Everything, |ready| self.execute(ready, cancel))
    }

    /// One trace between `spans`, keeping the aggregated matrix (the app's analyses).
    fn analyze(&self, trace: &Trace, spans: Spans, params: &Params, cancel: &Cancel) -> Result<(FlowResult, Matrix), TraceError> {
        let plan = Plan::new(trace, spans, params)?;
        self.execute(&[(trace, &plan)], cancel).pop().expect("one result per planned trace")
    }
}

/// Each trace planned between its own spans and the planned ones executed together; a trace whose
/// plan fails keeps its error and costs the others nothing.
fn planned<R>(traces: &[&Trace], params: &Params, scope: Scope, execute: impl FnOnce(&[(&Trace, &Plan)]) -> Vec<Result<R, TraceError>>) -> Vec<Result<R, TraceError>> {
    let plans: Vec<Result<Plan, TraceError>> = traces.iter().map(|t| Plan::for_trace(t, params).map(|p| Plan { scope, ..p })).collect();
    let ready: Vec<(&Trace, &Plan)> = traces.iter().zip(&plans).filter_map(|(&t, p)| p.as_ref().ok().map(|p| (t, p))).collect();
    let mut ran = execute(&ready).into_iter();
    plans.into_iter().map(|p| p.and_then(|_| ran.next().expect("one result per planned trace"))).collect()
}

/// A device's floor, bytes/s: the memory's rate for a kernel that streams (a device-to-device
/// copy, each byte read and written) and the link's, host to device, the fastest way the API
/// offers (CUDA: from page-locked memory); and, where the API also takes pageable memory, the
/// rate of that plain upload: the alternative the backend's own way up is read against.
#[derive(Clone, Copy, Debug)]
pub struct DeviceFloor {
    pub memory: f64,
    pub link: f64,
    pub pageable: Option<f64>,
}

/// The reference: f64 solves, rayon across traces and inside each solve.
pub use crate::flow::Cpu;

impl Backend for Cpu {
    fn executor(&self) -> Executor {
        Executor::Cpu
    }

    /// A batch of short traces goes one trace a core ([`spread`]), a long trace or a short batch
    /// across the pool, its steps split there.
    fn execute(&self, batch: &[(&Trace, &Plan)], cancel: &Cancel) -> Vec<Result<(FlowResult, Matrix), TraceError>> {
        let run = |t: &Trace, p: &Plan| flow::execute(t, p, &Cpu, cancel);
        spread::one_trace_a_core(batch, run).unwrap_or_else(|| batch.par_iter().map(|&(t, p)| run(t, p)).collect())
    }

    /// Each matrix goes back to `Matrix::for_overwrite`'s spares as its trace ends: a batch of
    /// 64 traces at N = 1024 had kept all 64 (128 MiB) to the end, each one fresh memory whose
    /// every page was faulted in and zeroed by the kernel, on every batch.
    fn execute_results(&self, batch: &[(&Trace, &Plan)], cancel: &Cancel) -> Vec<Result<FlowResult, TraceError>> {
        let run = |t: &Trace, p: &Plan| flow::execute(t, p, &Cpu, cancel).map(|(r, _)| r);
        spread::one_trace_a_core(batch, run).unwrap_or_else(|| batch.par_iter().map(|&(t, p)| run(t, p)).collect())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Choice {
    /// CUDA, then wgpu, then CPU: the first one present.
    Auto,
    Cpu,
    Wgpu,
    Cuda,
}

/// The backend `auto` picks, chosen once per process (the app's analyses go through it).
pub fn auto() -> &'static dyn Backend {
    static AUTO: std::sync::OnceLock<Box<dyn Backend>> = std::sync::OnceLock::new();
    AUTO.get_or_init(|| select(Choice::Auto).expect("auto always has the CPU")).as_ref()
}

/// Resolves a choice to a backend. `auto` never fails: CUDA if a device answers, else a hardware
/// wgpu adapter, else the CPU (a software adapter such as lavapipe is correct but slower than the
/// CPU backend). Asking for a backend this machine lacks is an error the user should see, not a
/// fallback.
pub fn select(choice: Choice) -> Result<Box<dyn Backend>, Unavailable> {
    let asked = |name: &'static str, reason: String| Unavailable { name, reason };
    match choice {
        Choice::Cpu => Ok(Box::new(Cpu)),
        Choice::Auto => {
            if let Ok(cuda) = cuda_backend() {
                return Ok(cuda);
            }
            // A software adapter is passed over before its device is opened and its pipelines
            // compiled, which cost a short export a third of its time.
            match software_adapter() {
                Ok(false) => Ok(wgpu_backend().unwrap_or_else(|_| Box::new(Cpu))),
                _ => Ok(Box::new(Cpu)),
            }
        }
        Choice::Wgpu => wgpu_backend().map_err(|e| asked("wgpu", e)),
        Choice::Cuda => cuda_backend().map_err(|e| asked("cuda", e)),
    }
}

/// A backend asked for that this machine lacks, and why. It shows as the flag that asked for it;
/// the Python package names its keyword instead.
#[derive(Debug)]
pub struct Unavailable {
    pub name: &'static str,
    pub reason: String,
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "--backend {}: {} (--backend auto takes what this machine has)", self.name, self.reason)
    }
}

/// A GPU device set up in process `owner` serves only that process. A fork copies the device's
/// handles but not the driver's threads and state behind them: NVIDIA's rule is that a child may
/// not touch CUDA its parent started (its calls fail or hang), and Vulkan drivers are no
/// different. Python forks all the time (`multiprocessing`, `datasets.map(num_proc=…)`), so a
/// child is told so by name, and `auto` takes the CPU there.
#[cfg_attr(not(any(feature = "cuda", feature = "wgpu")), allow(dead_code))]
pub(crate) fn not_forked(device: &str, owner: u32) -> Result<(), String> {
    match std::process::id() {
        pid if pid == owner => Ok(()),
        pid => Err(format!(
            "{device} was set up in process {owner}, and this process ({pid}) is a fork of it: a GPU device does not survive a fork. Start worker processes with the 'spawn' method (multiprocessing.get_context('spawn')), or analyse with the CPU backend in them"
        )),
    }
}

#[cfg(any(not(feature = "cuda"), not(feature = "wgpu")))]
fn not_built(feature: &str) -> String {
    format!("this build of flowtracer has no {feature} backend (built without the `{feature}` feature)")
}

/// The CUDA backend, if this build has it and a device answers.
fn cuda_backend() -> Result<Box<dyn Backend>, String> {
    #[cfg(feature = "cuda")]
    return crate::cuda::shared().map(|cuda| Box::new(cuda::CudaBackend { cuda }) as Box<dyn Backend>);
    #[cfg(not(feature = "cuda"))]
    Err(not_built("cuda"))
}

/// The wgpu backend, if this build has it and an adapter answers, and whether the adapter is a
/// software one.
fn wgpu_backend() -> Result<Box<dyn Backend>, String> {
    #[cfg(feature = "wgpu")]
    return crate::gpu::shared().map(|gpu| Box::new(wgpu::Wgpu { gpu }) as Box<dyn Backend>);
    #[cfg(not(feature = "wgpu"))]
    Err(not_built("wgpu"))
}

/// One backend as this machine has it: the device it would run on, or why it cannot run.
pub struct Availability {
    pub name: &'static str,
    pub device: Result<String, String>,
    /// Why `auto` passes over a backend that is there (a software adapter).
    pub note: Option<&'static str>,
}

/// Whether the wgpu adapter is a software one, found without opening its device (and, where no
/// GPU can be there, without looking).
fn software_adapter() -> Result<bool, String> {
    #[cfg(feature = "wgpu")]
    return if crate::gpu::may_have_hardware() { crate::gpu::is_software_adapter() } else { Ok(true) };
    #[cfg(not(feature = "wgpu"))]
    Err(not_built("wgpu"))
}

/// Every backend and whether this machine has it, in the order `auto` tries them
/// (`flowtracer backends` prints it): what a user reads when `auto` did not pick what they expected.
pub fn availability() -> Vec<Availability> {
    let cuda = cuda_backend().map(|b| b.device());
    let wgpu = wgpu_backend().map(|b| b.device());
    let software = wgpu.is_ok() && software_adapter().unwrap_or(false);
    vec![
        Availability { name: "cuda", device: cuda, note: None },
        Availability {
            name: "wgpu",
            device: wgpu,
            note: software.then_some("a software adapter: correct, but slower than the CPU backend, so auto passes it over"),
        },
        Availability { name: "cpu", device: Ok(format!("{} threads", rayon::current_num_threads())), note: None },
    ]
}

/// [`availability`] as text, one backend a line, then what `auto` takes (`flowtracer backends`,
/// the tooltip of the app's status bar).
pub fn availability_report() -> String {
    let mut out = String::new();
    for a in availability() {
        match (&a.device, a.note) {
            (Ok(d), None) => out += &format!("{:<5} {d}\n", a.name),
            (Ok(d), Some(note)) => out += &format!("{:<5} {d}: {note}\n", a.name),
            (Err(why), _) => out += &format!("{:<5} not available: {why}\n", a.name),
        }
    }
    match select(Choice::Auto) {
        Ok(b) => out += &format!("auto  → {}", b.name()),
        Err(e) => out += &format!("auto  → none: {e}"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Step;

    /// A batch making only the credit gives the whole analysis' credit, throughput, reach, flow
    /// and status to the bit, without the backbone's sweep riding in the flow solve; its backbone
    /// and roles are unmade, and its provenance says so.
    #[test]
    fn a_credit_batch_makes_the_credit_of_the_whole_analysis() {
        let traces: Vec<Trace> = (0..3)
            .map(|seed| {
                let spec = crate::synth::SynthSpec { seed, target_tokens: 300, layers: 2, heads: 2, dtype: crate::trace::Dtype::F16, rank: 2, no_answer: seed == 2 };
                Trace::from_bytes(crate::synth::synth_trace(&spec).to_bytes(), std::path::Path::new("t.safetensors")).unwrap()
            })
            .collect();
        let refs: Vec<&Trace> = traces.iter().collect();
        let params = Params::default();
        let (all, credit) = (Cpu.run_batch(&refs, &params, &Cancel::default()), Cpu.credit_batch(&refs, &params, &Cancel::default()));
        assert_eq!(all.len(), credit.len());
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let mut ok = 0;
        for (a, c) in all.iter().zip(&credit) {
            let (a, c) = (a.as_ref().unwrap(), c.as_ref().unwrap());
            assert_eq!(a.status, c.status);
            for (x, y) in [(&a.credit, &c.credit), (&a.throughput, &c.throughput), (&a.reach, &c.reach), (&a.flow, &c.flow)] {
                assert_eq!(bits(x), bits(y));
            }
            assert!(c.backbone.is_empty() && c.hubs.is_empty() && c.checkpoints.is_empty() && c.far_sources.is_empty());
            assert!(!c.times.backbone_sweep_in_flow);
            assert_eq!((c.provenance.on(Step::Backbone), c.provenance.on(Step::Roles)), (None, None));
            assert_eq!(c.provenance.on(Step::Credit), a.provenance.on(Step::Credit));
            if a.status == crate::Status::Ok {
                ok += 1;
                assert!(!a.backbone.is_empty() && a.provenance.on(Step::Backbone).is_some());
                assert!(c.credit.iter().any(|&g| g > 1.0));
            }
        }
        assert_eq!(ok, 2, "two traces with flow, one without an answer");
    }

    /// A device serves the process that set it up; another process is told it is a fork of that one.
    #[test]
    fn a_device_serves_only_the_process_that_set_it_up() {
        let (me, parent) = (std::process::id(), std::process::id().wrapping_add(1));
        assert!(super::not_forked("CUDA", me).is_ok());
        let e = super::not_forked("CUDA", parent).unwrap_err();
        assert!(e.starts_with(&format!("CUDA was set up in process {parent}, and this process ({me}) is a fork of it")), "{e}");
    }
}
