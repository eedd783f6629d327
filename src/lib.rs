//! FlowTracer Studio: which tokens of a reasoning trace carried the information from the
//! question to the answer. See `FLOWTRACER.md` for the method; the README for the program.
//!
//! The library holds all the logic (trace loading, the flow pipeline, rendering, export); the
//! binary and the app only call it.
//!
//! Cargo features, all on by default: `app` (the desktop app: egui, eframe; it needs `rl` and
//! `wgpu`), `wgpu` (the wgpu backend), `cuda` (the CUDA backend, loaded at run time), `rl` (the
//! project's policy and RL loop on candle). Without any of them the library is the engine alone:
//! the loader, the CPU pipeline and the export.

pub mod alloc;
pub mod atomic;
pub mod backend;
pub mod bench;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod export;
pub mod fidelity;
pub mod flow;
#[cfg(feature = "wgpu")]
pub mod gpu;
pub mod grid;
pub mod params;
pub mod per_process;
pub mod render;
#[cfg(feature = "rl")]
pub mod rl;
pub mod span;
pub mod subword;
pub mod summary;
pub mod synth;
pub mod trace;

pub use flow::{Cancel, FlowResult, Status, analyze};
pub use params::Params;
pub use span::{Span, Spans};
pub use trace::{Trace, TraceError};

/// The bundled sample: a 4-digit addition the project's own policy solved during a fine-tune
/// (`sample_traces/policy_run/step_000030/sample_0000`).
pub const SAMPLE_TRACE: &[u8] = include_bytes!("../sample_traces/addition.safetensors");
pub const SAMPLE_NAME: &str = "sample_traces/addition.safetensors";

pub fn sample_trace() -> Trace {
    Trace::from_bytes(SAMPLE_TRACE.to_vec(), std::path::Path::new(SAMPLE_NAME)).expect("the bundled sample is valid")
}

#[cfg(feature = "app")]
pub mod app;
