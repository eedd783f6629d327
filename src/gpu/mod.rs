//! wgpu compute: one device per process, found the way wgpu's tools do (honouring
//! WGPU_BACKEND, WGPU_ADAPTER_NAME, WGPU_POWER_PREF), so a machine without a GPU uses Mesa's
//! lavapipe and a machine without either says why instead of panicking.

pub mod aggregate;
mod credit;
pub mod matrix;
mod downsample;
mod floor;
pub mod solve;

pub use downsample::Scale;

use std::path::Path;
use std::sync::OnceLock;

pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    /// "llvmpipe (LLVM 15.0.6, 256 bits)", "NVIDIA H200", …
    pub adapter: String,
    pub limits: wgpu::Limits,
    /// Nanoseconds per tick of the adapter's timestamps, where it has them (an optional feature):
    /// the aggregation's passes are then timed on the device, apart from the uploads.
    timestamp_ns: Option<f32>,
    downsample: wgpu::ComputePipeline,
    aggregate: wgpu::ComputePipeline,
    solve: solve::SolvePipelines,
    credit: credit::CreditPipelines,
}

/// The adapter wgpu would run on, and the instance it came from, found once per process.
/// Finding it is cheap next to opening its device and compiling the pipelines (on lavapipe, a
/// third of a short CLI export), which `--backend auto` skips for a software adapter.
struct Found {
    _instance: wgpu::Instance,
    adapter: wgpu::Adapter,
}

fn found() -> Result<&'static Found, String> {
    static FOUND: OnceLock<Result<Found, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
            // Compute needs no window system: unless WGPU_BACKEND says otherwise, leave out GL, whose
            // EGL probe complains on the terminal about a missing Wayland session.
            if std::env::var_os("WGPU_BACKEND").is_none() {
                desc.backends = wgpu::Backends::PRIMARY;
            }
            let instance = wgpu::Instance::new(desc);
            let adapter = pollster::block_on(wgpu::util::initialize_adapter_from_env_or_default(&instance, None))
                .map_err(|e| format!("no wgpu adapter: {e}"))?;
            Ok(Found { _instance: instance, adapter })
        })
        .as_ref()
        .map_err(|e| e.clone())
}

/// Whether a hardware adapter can be there at all. On Linux a GPU's driver needs its device
/// node (a DRM render node, NVIDIA's, WSL's `/dev/dxg`); where there is none only a software
/// adapter can answer, and creating a Vulkan instance to find that out loads every installed
/// driver (on the CI machine 40 ms, a third of a short CLI export). Elsewhere, and where a
/// `WGPU_*` variable asks for an adapter, it is looked for.
pub fn may_have_hardware() -> bool {
    if !cfg!(target_os = "linux") || ["WGPU_BACKEND", "WGPU_ADAPTER_NAME"].iter().any(|v| std::env::var_os(v).is_some()) {
        return true;
    }
    let dri = std::fs::read_dir("/dev/dri").is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("renderD"))));
    dri || Path::new("/dev/nvidiactl").exists() || Path::new("/dev/dxg").exists()
}

/// Whether the process's adapter is a software one (lavapipe, SwiftShader), without opening it:
/// correct, but slower than the CPU backend, so `--backend auto` passes it over.
pub fn is_software_adapter() -> Result<bool, String> {
    found().map(|f| f.adapter.get_info().device_type == wgpu::DeviceType::Cpu)
}

impl Gpu {
    pub fn new() -> Result<Gpu, String> {
        let adapter = &found()?.adapter;
        let info = adapter.get_info();
        // Ask for what the adapter offers: the defaults cap storage buffers at 128 MiB, less than
        // one matrix of an 8k-token trace.
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("flowtracer"),
            required_features: adapter.features() & wgpu::Features::TIMESTAMP_QUERY,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| format!("{}: cannot open the device: {e}", info.name))?;
        let timestamp_ns = device.features().contains(wgpu::Features::TIMESTAMP_QUERY).then(|| queue.get_timestamp_period());
        let downsample = compute_pipeline(&device, "downsample.wgsl", include_str!("../../shaders/downsample.wgsl"));
        let aggregate = compute_pipeline(&device, "aggregate.wgsl", include_str!("../../shaders/aggregate.wgsl"));
        let solve = solve::pipelines(&device);
        let credit = credit::pipelines(&device);
        Ok(Gpu {
            device,
            queue,
            adapter: format!("{} ({:?})", info.name, info.backend),
            limits,
            timestamp_ns,
            downsample,
            aggregate,
            solve,
            credit,
        })
    }

    /// Runs `f` with the device's errors caught on this thread and returned, naming `what`:
    /// memory the device cannot give (a trace too large for it) or a limit broken. wgpu's
    /// default for an error nobody captured is to panic, which would take a whole export (or
    /// the app) down for one trace; caught here, that trace's steps fall back to the CPU.
    pub fn scoped<T>(&self, what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
        let scopes = [wgpu::ErrorFilter::OutOfMemory, wgpu::ErrorFilter::Validation, wgpu::ErrorFilter::Internal].map(|filter| self.device.push_error_scope(filter));
        let r = f();
        // Popped innermost first, as scopes must be; the first error found is the one told.
        let mut caught = None;
        for scope in scopes.into_iter().rev() {
            caught = caught.or(pollster::block_on(scope.pop()));
        }
        match caught {
            Some(e) => Err(format!("{what} on {}: {e}", self.adapter)),
            None => r,
        }
    }

    /// Whether the adapter times passes itself (the aggregation's kernels apart from the uploads).
    pub fn has_timestamps(&self) -> bool {
        self.timestamp_ns.is_some()
    }

    /// Largest storage buffer one binding may see, in bytes.
    pub fn max_binding(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size)
    }
}

/// A compute pipeline from WGSL source with entry point `main` and the layout the shader implies.
pub fn compute_pipeline(device: &wgpu::Device, label: &str, source: &str) -> wgpu::ComputePipeline {
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some(label), source: wgpu::ShaderSource::Wgsl(source.into()) });
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(label),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    })
}

/// The uniform of the blocked sweeps (`solve.wgsl`):
/// the block of rows and the spans.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockParams {
    pub n: u32,
    pub k0: u32,
    pub k1: u32,
    pub q0: u32,
    pub q1: u32,
    pub a0: u32,
    pub a1: u32,
    /// Packed index of the first entry of the M buffer bound with these parameters.
    pub base: u32,
}

impl BlockParams {
    pub fn new(n: usize, rows: std::ops::Range<usize>, spans: crate::span::Spans, base: u32) -> BlockParams {
        let u = |x: usize| x as u32;
        BlockParams {
            n: u(n),
            k0: u(rows.start),
            k1: u(rows.end),
            q0: u(spans.question.start),
            q1: u(spans.question.end),
            a0: u(spans.answer.start),
            a1: u(spans.answer.end),
            base,
        }
    }
}

/// A layout of a uniform at binding 0 and storage buffers after it (`read_only[i]` for binding
/// i + 1), and one pipeline per entry point of `source` on it: the multi-kernel shaders' shape.
pub fn kernels(device: &wgpu::Device, label: &str, source: &str, read_only: &[bool], entries: &[&str]) -> (wgpu::BindGroupLayout, Vec<wgpu::ComputePipeline>) {
    let buffer = |ty| wgpu::BindingType::Buffer { ty, has_dynamic_offset: false, min_binding_size: None };
    let mut layout_entries = vec![wgpu::BindGroupLayoutEntry { binding: 0, visibility: wgpu::ShaderStages::COMPUTE, ty: buffer(wgpu::BufferBindingType::Uniform), count: None }];
    for (i, &read_only) in read_only.iter().enumerate() {
        layout_entries.push(wgpu::BindGroupLayoutEntry {
            binding: i as u32 + 1,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: buffer(wgpu::BufferBindingType::Storage { read_only }),
            count: None,
        });
    }
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(label), entries: &layout_entries });
    let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor { label: Some(label), bind_group_layouts: &[Some(&layout)], immediate_size: 0 });
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some(label), source: wgpu::ShaderSource::Wgsl(source.into()) });
    let pipelines = entries
        .iter()
        .map(|entry| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&pl),
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
        })
        .collect();
    (layout, pipelines)
}

/// A bind group whose binding i is the whole of `buffers[i]` (every shader here binds that way).
pub fn bind_buffers(device: &wgpu::Device, label: &str, layout: &wgpu::BindGroupLayout, buffers: &[&wgpu::Buffer]) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
        .collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(label), layout, entries: &entries })
}

/// The process's device, created on first use; the error says why there is none (in a process
/// forked after its parent created it, that it does not survive a fork).
pub fn shared() -> Result<&'static Gpu, String> {
    static GPU: OnceLock<(u32, Result<Gpu, String>)> = OnceLock::new();
    let (owner, gpu) = GPU.get_or_init(|| (std::process::id(), Gpu::new()));
    let gpu = gpu.as_ref().map_err(|e| e.clone())?;
    crate::backend::not_forked("wgpu", *owner)?;
    Ok(gpu)
}

/// The device's side of one trace's analysis: M, aggregated on the device, is kept for the
/// solves (or uploaded for them); the solves' h and f are kept for the throughput and the
/// credit's selection. The backbone (step 7) runs on the host, on the matrix that came back for
/// it and the roles: a chain of up to `max_paths` widest-path sweeps, each a full sweep and a
/// read-back on the device (112 ms at N = 8200 on an H200, 2026-12-04), where the CPU sweeps once
/// and then updates only what each path changed (10 ms at 8k on two cores).
pub struct OnDevice<'g> {
    pub gpu: &'g Gpu,
    matrix: std::cell::RefCell<Option<matrix::DeviceMatrix>>,
    solved: std::cell::RefCell<Option<solve::FlowBuffers>>,
    aggregate_kernels: std::cell::Cell<Option<std::time::Duration>>,
}

impl<'g> OnDevice<'g> {
    pub fn new(gpu: &'g Gpu) -> Self {
        OnDevice { gpu, matrix: Default::default(), solved: Default::default(), aggregate_kernels: Default::default() }
    }

    /// Step 1 on the device: the matrix stays there for the later steps; the host gets its copy.
    pub fn aggregate(&self, att: &crate::trace::Attention, sel: &crate::flow::aggregate::Selection, p: &crate::params::AggregateParams) -> Result<crate::flow::Matrix, aggregate::AggregateError> {
        let a = self.gpu.aggregate(att, sel, p)?;
        *self.matrix.borrow_mut() = Some(a.on_device);
        self.aggregate_kernels.set(a.kernels);
        Ok(a.host)
    }

    /// The device's copy of `m`: the one aggregation left, else an upload.
    fn take_or_upload(&self, m: &crate::flow::Matrix) -> Result<matrix::DeviceMatrix, String> {
        match self.matrix.borrow_mut().take() {
            Some(d) if d.n == m.n => Ok(d),
            _ => self.gpu.upload(m),
        }
    }
}

impl crate::flow::Offload for OnDevice<'_> {
    fn executor(&self) -> crate::flow::Executor {
        crate::flow::Executor::Wgpu
    }

    fn device(&self) -> String {
        self.gpu.adapter.clone()
    }

    fn aggregate(&self, att: &crate::trace::Attention, sel: &crate::flow::aggregate::Selection, p: &crate::params::AggregateParams) -> Option<Result<crate::flow::Matrix, aggregate::AggregateError>> {
        // The format's own verdict (bad data) passes through the scope as a value.
        let r = self.gpu.scoped("wgpu aggregate", || Ok(OnDevice::aggregate(self, att, sel, p)));
        Some(r.unwrap_or_else(|e| {
            // What the device holds of M is not to be trusted: the later steps upload the CPU's.
            *self.matrix.borrow_mut() = None;
            Err(aggregate::AggregateError::Device(e))
        }))
    }

    fn aggregate_kernels(&self) -> Option<std::time::Duration> {
        self.aggregate_kernels.get()
    }

    fn solve(&self, m: &crate::flow::Matrix, spans: crate::span::Spans) -> crate::flow::Offered<crate::flow::Solved> {
        Some(self.gpu.scoped("wgpu solve", || {
            let on_device = self.take_or_upload(m)?;
            let kept = self.gpu.solve_keeping(&on_device, spans)?;
            *self.solved.borrow_mut() = kept.buffers;
            Ok((kept.h, kept.uf, kept.reach_time))
        }))
    }

    fn credit(&self, n: usize, spans: crate::span::Spans, count: usize) -> crate::flow::Offered<crate::flow::Selected> {
        let solved = self.solved.borrow();
        Some(match solved.as_ref() {
            Some(b) => self.gpu.scoped("wgpu credit", || self.gpu.credit(&b.h, &b.f, n, spans, count)),
            None => Err("the flow was not solved on the device".into()),
        })
    }
}
