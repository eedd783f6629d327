//! CUDA: the kernels in `kernels/*.cu`, compiled at run time by NVRTC (`nvrtc`: any version from
//! 11 on) and launched through the driver API, both loaded with `dlopen` (the driver through
//! cudarc's `dynamic-loading`): the binary builds and runs where no CUDA is installed, and says
//! why it has no CUDA instead of failing to start.
//!
//! A missing or partial CUDA install must never take the program down: cudarc panics when a
//! library or one of its symbols is missing, so every entry into it here goes through
//! [`guard`], which turns a panic into an error (and `--backend auto` moves on to wgpu or the CPU).

mod aggregate;
mod credit;
mod floor;
mod nvrtc;
mod resident;
mod solve;
mod staging;

use cudarc::driver::{CudaContext, CudaFunction, CudaStream, DeviceRepr};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// The kernels as one NVRTC program: the shared header first (NVRTC has no include path here).
pub fn source() -> String {
    [
        include_str!("../../kernels/common.cuh"),
        include_str!("../../kernels/aggregate.cu"),
        include_str!("../../kernels/solve.cu"),
        include_str!("../../kernels/credit.cu"),
    ]
    .join("\n")
}

/// The kernel entry points, in the order [`Cuda`] loads them.
pub const KERNELS: [&str; 8] = [
    "aggregate",
    "aggregate_group",
    "reach_block",
    "reach_push",
    "flow_gather",
    "flow_block",
    "throughput",
    "credit_select",
];

/// Runs `f`, turning a panic inside cudarc (a library or symbol it could not load) into an error.
pub(crate) fn guard<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => {
            let why = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            Err(format!("{what}: {}", why.unwrap_or_else(|| "CUDA library failure".into())))
        }
    }
}

/// Whether NVRTC (the run-time compiler) loads, or why not.
pub fn nvrtc_loads() -> Result<(), String> {
    nvrtc::loads()
}

/// Whether the CUDA driver library can be loaded (it says nothing about a device being there).
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the library by its usual names.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Compiles the kernels to PTX. Needs NVRTC only, not a GPU: the tests compile them wherever
/// NVRTC is installed.
pub fn compile() -> Result<cudarc::nvrtc::Ptx, String> {
    compile_source(&source())
}

/// Compiles CUDA C `source` to PTX; the error carries NVRTC's log.
pub fn compile_source(source: &str) -> Result<cudarc::nvrtc::Ptx, String> {
    let ptx = nvrtc::compile(source, "flowtracer.cu").map_err(|e| format!("the kernels did not compile: {e}"))?;
    Ok(cudarc::nvrtc::Ptx::from_src(ptx))
}

/// One CUDA device (the first, or the one `FLOWTRACER_CUDA_DEVICE` names) with the kernels loaded.
pub struct Cuda {
    pub(crate) stream: Arc<CudaStream>,
    /// "NVIDIA H200 (sm_90)".
    pub name: String,
    pub(crate) f: Kernels,
    /// The page-locked buffers uploads go through.
    staging: Mutex<staging::Staging>,
}

pub(crate) struct Kernels {
    pub aggregate: CudaFunction,
    pub aggregate_group: CudaFunction,
    pub reach_block: CudaFunction,
    pub reach_push: CudaFunction,
    pub flow_gather: CudaFunction,
    pub flow_block: CudaFunction,
    pub throughput: CudaFunction,
    pub credit_select: CudaFunction,
}

/// The device a process's CUDA backend runs on, when not the first: one GPU of several a process
/// sees (an RL trainer's rank); the Python package sets it to the device of the first CUDA tensor
/// it is given, unless it is set.
pub const DEVICE_ENV: &str = "FLOWTRACER_CUDA_DEVICE";

/// The device index `DEVICE_ENV` names, 0 when unset.
fn device_ordinal() -> Result<usize, String> {
    match std::env::var(DEVICE_ENV) {
        Err(_) => Ok(0),
        Ok(v) => v.trim().parse().map_err(|_| format!("{DEVICE_ENV}={v:?} is not a device index")),
    }
}

impl Cuda {
    pub fn new() -> Result<Cuda, String> {
        if !driver_present() {
            return Err("no CUDA driver (libcuda.so) on this machine".into());
        }
        let ordinal = device_ordinal()?;
        let ptx = compile()?;
        guard("CUDA driver", || {
            let e = |e: cudarc::driver::DriverError| format!("CUDA: {e}");
            let ctx = CudaContext::new(ordinal).map_err(|err| format!("CUDA device {ordinal}: {err}"))?;
            let (major, minor) = ctx.compute_capability().map_err(e)?;
            let name = format!("{} (sm_{major}{minor})", ctx.name().map_err(e)?);
            let module = ctx.load_module(ptx).map_err(e)?;
            let load = |k: &str| module.load_function(k).map_err(|err| format!("CUDA: kernel {k}: {err}"));
            let f = Kernels {
                aggregate: load(KERNELS[0])?,
                aggregate_group: load(KERNELS[1])?,
                reach_block: load(KERNELS[2])?,
                reach_push: load(KERNELS[3])?,
                flow_gather: load(KERNELS[4])?,
                flow_block: load(KERNELS[5])?,
                throughput: load(KERNELS[6])?,
                credit_select: load(KERNELS[7])?,
            };
            Ok(Cuda { stream: ctx.default_stream(), name, f, staging: Mutex::default() })
        })
    }

    /// Copies a device buffer to the host, waiting for the work queued before it.
    pub(crate) fn read<T: cudarc::driver::DeviceRepr, S: cudarc::driver::DevicePtr<T>>(&self, src: &S) -> Result<Vec<T>, String> {
        let v = self.stream.clone_dtoh(src).map_err(driver_err)?;
        self.stream.synchronize().map_err(driver_err)?;
        Ok(v)
    }

    /// The upload ring, held for one batch's uploads (batches on other threads wait their turn;
    /// they would queue on the one stream anyway).
    pub(crate) fn staging(&self) -> MutexGuard<'_, staging::Staging> {
        self.staging.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The device's index among those CUDA sees.
    pub fn ordinal(&self) -> usize {
        self.stream.context().ordinal()
    }

    /// Bytes free on the device now.
    pub fn free_memory(&self) -> Result<usize, String> {
        guard("CUDA", || self.stream.context().mem_get_info().map(|(free, _)| free).map_err(|e| format!("CUDA: {e}")))
    }
}

/// The process's CUDA device, set up on first use; the error says why there is none (in a process
/// forked after its parent set it up, that it does not survive a fork).
pub fn shared() -> Result<&'static Cuda, String> {
    static CUDA: OnceLock<(u32, Result<Cuda, String>)> = OnceLock::new();
    let (owner, cuda) = CUDA.get_or_init(|| (std::process::id(), Cuda::new()));
    let cuda = cuda.as_ref().map_err(|e| e.clone())?;
    crate::backend::not_forked("CUDA", *owner)?;
    Ok(cuda)
}

/// One trace of a batch as the kernels see it (mirrors `struct Job` in `kernels/common.cuh`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Job {
    /// First float of the trace's packed M in the batch's buffer.
    pub m: u64,
    /// First token of the trace in the batch's vector buffers.
    pub v: u32,
    pub n: u32,
    pub q0: u32,
    pub q1: u32,
    pub a0: u32,
    pub a1: u32,
    /// The response span: the credit's candidates.
    pub r0: u32,
    pub r1: u32,
    /// How many response tokens the credit selects (0 where the trace has no flow).
    pub top: u32,
}

// SAFETY: plain old data with the C layout the kernels declare.
unsafe impl DeviceRepr for Job {}

pub(crate) fn driver_err(e: cudarc::driver::DriverError) -> String {
    format!("CUDA: {e}")
}

pub use aggregate::Aggregated;
pub use nvrtc::NVRTC_ENV;
pub use resident::DeviceBytes;
pub(crate) use aggregate::Fold;
pub(crate) use solve::Solved;

/// Threads of a block that settles one 64-row block of a sweep (`ROWS` in kernels/common.cuh,
/// `grid::BLOCK`): one per row.
pub(crate) const ROWS: u32 = 64;
/// Threads of every other block: a row's gather, a slab row's fold, an elementwise step.
pub(crate) const THREADS: u32 = 256;

/// A launch configuration of `grid` blocks of `threads` threads.
pub(crate) fn cfg(grid: (u32, u32, u32), threads: u32) -> cudarc::driver::LaunchConfig {
    cudarc::driver::LaunchConfig { grid_dim: grid, block_dim: (threads, 1, 1), shared_mem_bytes: 0 }
}
