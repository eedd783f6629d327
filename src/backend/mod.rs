//! The seam between the pipeline's steps and what executes them. A backend runs a batch of
//! traces and answers one result per trace; an error stays with its trace.

use crate::flow::{self, Cancel, FlowResult};
use crate::params::Params;
use crate::trace::{Trace, TraceError};
use rayon::prelude::*;

pub mod wgpu;

pub trait Backend: Send + Sync {
    fn name(&self) -> &'static str;
    /// Runs the pipeline on every trace of the batch.
    fn run_batch(&self, traces: &[&Trace], params: &Params, cancel: &Cancel) -> Vec<Result<FlowResult, TraceError>>;
}

/// The reference: f64 solves, rayon across traces and inside each solve.
pub struct Cpu;

impl Backend for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn run_batch(&self, traces: &[&Trace], params: &Params, cancel: &Cancel) -> Vec<Result<FlowResult, TraceError>> {
        traces.par_iter().map(|t| flow::analyze(t, params, cancel)).collect()
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

/// Resolves a choice to a backend. `auto` never fails: a hardware wgpu adapter if there is one,
/// else the CPU (a software adapter such as lavapipe is correct but slower than the CPU backend).
/// Asking for a backend this machine lacks is an error the user should see, not a fallback.
pub fn select(choice: Choice) -> Result<Box<dyn Backend>, String> {
    match choice {
        Choice::Cpu => Ok(Box::new(Cpu)),
        Choice::Auto => match crate::gpu::shared() {
            Ok(gpu) if !gpu.is_software => Ok(Box::new(wgpu::Wgpu { gpu })),
            _ => Ok(Box::new(Cpu)),
        },
        Choice::Wgpu => crate::gpu::shared().map(|gpu| Box::new(wgpu::Wgpu { gpu }) as Box<dyn Backend>).map_err(|e| format!("--backend wgpu: {e}")),
        Choice::Cuda => Err("the CUDA backend is not part of this build yet; use --backend auto, cpu or wgpu".into()),
    }
}
