//! wgpu compute: one device per process, found the way wgpu's tools do (honouring
//! WGPU_BACKEND, WGPU_ADAPTER_NAME, WGPU_POWER_PREF), so a machine without a GPU uses Mesa's
//! lavapipe and a machine without either says why instead of panicking.

pub mod aggregate;
mod downsample;
pub mod solve;

pub use downsample::Scale;

use std::sync::OnceLock;

pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    /// "llvmpipe (LLVM 15.0.6, 256 bits)", "NVIDIA H200", …
    pub adapter: String,
    pub limits: wgpu::Limits,
    /// A software rasteriser (lavapipe, SwiftShader): correct, but slower than the CPU backend,
    /// so `--backend auto` passes it over.
    pub is_software: bool,
    downsample: wgpu::ComputePipeline,
    aggregate: wgpu::ComputePipeline,
    solve: solve::SolvePipelines,
}

impl Gpu {
    pub fn new() -> Result<Gpu, String> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = pollster::block_on(wgpu::util::initialize_adapter_from_env_or_default(&instance, None))
            .map_err(|e| format!("no wgpu adapter: {e}"))?;
        let info = adapter.get_info();
        // Ask for what the adapter offers: the defaults cap storage buffers at 128 MiB, less than
        // one matrix of an 8k-token trace.
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("flowtracer"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| format!("{}: cannot open the device: {e}", info.name))?;
        let downsample = compute_pipeline(&device, "downsample.wgsl", include_str!("../../shaders/downsample.wgsl"));
        let aggregate = compute_pipeline(&device, "aggregate.wgsl", include_str!("../../shaders/aggregate.wgsl"));
        let solve = solve::pipelines(&device);
        Ok(Gpu {
            device,
            queue,
            adapter: format!("{} ({:?})", info.name, info.backend),
            limits,
            is_software: info.device_type == wgpu::DeviceType::Cpu,
            downsample,
            aggregate,
            solve,
        })
    }

    /// Largest storage buffer one binding may see, in bytes.
    pub fn max_binding(&self) -> u64 {
        (self.limits.max_storage_buffer_binding_size as u64).min(self.limits.max_buffer_size)
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

/// A bind group whose binding i is the whole of `buffers[i]` (every shader here binds that way).
pub fn bind_buffers(device: &wgpu::Device, label: &str, layout: &wgpu::BindGroupLayout, buffers: &[&wgpu::Buffer]) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
        .collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(label), layout, entries: &entries })
}

/// The process's device, created on first use; the error says why there is none.
pub fn shared() -> Result<&'static Gpu, String> {
    static GPU: OnceLock<Result<Gpu, String>> = OnceLock::new();
    GPU.get_or_init(Gpu::new).as_ref().map_err(|e| e.clone())
}
