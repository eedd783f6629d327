//! The CUDA backend. Compiling the kernels needs only NVRTC (no GPU): that test runs wherever
//! libnvrtc loads, and fails instead of skipping under FLOWTRACER_REQUIRE_NVRTC=1 (CI installs
//! NVIDIA's NVRTC wheel). The parity tests need a CUDA device: without one they say they skipped
//! and why, unless FLOWTRACER_REQUIRE_CUDA=1 (the device script), where they fail.

mod common;
use flowtracer::backend::{self, Backend, Choice, cuda::CudaBackend};
use flowtracer::{Cancel, Params, Trace};
use std::path::Path;

fn cuda() -> Option<&'static flowtracer::cuda::Cuda> {
    let c = common::required_or_skip(flowtracer::cuda::shared(), "FLOWTRACER_REQUIRE_CUDA", "CUDA device", "")?;
    eprintln!("CUDA device: {}", c.name);
    Some(c)
}

fn nvrtc() -> Option<()> {
    let found = flowtracer::cuda::nvrtc_loads();
    let hint = "; pip install nvidia-cuda-nvrtc-cu12, then put its nvidia/cuda_nvrtc/lib on LD_LIBRARY_PATH (or name the library in FLOWTRACER_NVRTC)";
    common::required_or_skip(found, "FLOWTRACER_REQUIRE_NVRTC", "NVRTC", hint)
}

#[test]
fn kernels_compile_with_nvrtc() {
    let Some(()) = nvrtc() else { return };
    let ptx = flowtracer::cuda::compile().unwrap().to_src();
    for kernel in flowtracer::cuda::KERNELS {
        assert!(ptx.contains(&format!(".entry {kernel}(")), "no entry point {kernel} in the PTX");
    }
    // The solves accumulate in double: their PTX must hold f64 fused multiply-adds.
    assert!(ptx.contains("fma.rn.f64"), "the solves do not accumulate in double");
}

#[test]
fn a_broken_kernel_is_a_compile_error_not_a_panic() {
    let Some(()) = nvrtc() else { return };
    let r = flowtracer::cuda::compile_source("extern \"C\" __global__ void k() { undefined_thing(); }");
    let e = r.unwrap_err();
    assert!(e.contains("undefined_thing"), "the compiler's log should name the problem: {e}");
}

#[test]
fn choosing_cuda_without_a_device_is_a_clear_error() {
    if flowtracer::cuda::shared().is_ok() {
        // With a device, auto must pick it.
        assert_eq!(backend::select(Choice::Auto).unwrap().name(), "cuda");
        return;
    }
    let e = backend::select(Choice::Cuda).err().expect("no CUDA here, so --backend cuda must fail");
    assert!(e.to_string().starts_with("--backend cuda:"), "{e}");
    assert_ne!(backend::select(Choice::Auto).unwrap().name(), "cuda");
    let dir = common::temp_dir("no-cuda");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flowtracer"))
        .args(["--export", dir.to_str().unwrap(), "--backend", "cuda", "sample_traces/addition.safetensors"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--backend cuda") && !stderr.contains("panicked"), "{stderr}");
}

fn traces() -> Vec<Trace> {
    let run = flowtracer::trace::run::discover(Path::new("sample_traces")).unwrap();
    let mut v: Vec<Trace> = run.traces.iter().map(|p| Trace::open(p).unwrap()).collect();
    for (n, seed) in [(2usize, 1u64), (3, 2), (63, 3), (64, 4), (65, 5), (1000, 6), (4096, 7)] {
        v.push(Trace::from_bytes(common::random_trace(n, seed).to_bytes(), Path::new(&format!("random-{n}.safetensors"))).unwrap());
    }
    v.push(Trace::from_bytes(common::long_hop_trace(1000, 97).to_bytes(), Path::new("long-hops.safetensors")).unwrap());
    for (dtype, shape) in [
        (flowtracer::trace::Dtype::F16, vec![3, 2, 70, 70]),
        (flowtracer::trace::Dtype::BF16, vec![2, 70, 70]),
        (flowtracer::trace::Dtype::F32, vec![70, 70]),
    ] {
        v.push(Trace::from_bytes(common::chain_builder(70, dtype, shape).to_bytes(), Path::new("layout.safetensors")).unwrap());
    }
    v
}

#[test]
fn cuda_batch_matches_the_cpu_on_samples_and_random_traces() {
    let Some(cuda) = cuda() else { return };
    let traces = traces();
    let refs: Vec<&Trace> = traces.iter().collect();
    let mut max = Params::default();
    max.aggregate.reduce = flowtracer::params::Reduce::Max;
    max.aggregate.threshold = 0.1;
    for params in [Params::default(), max] {
        // The whole set in one batch: sizes 1 to 4096 share the same launches.
        let dev = CudaBackend { cuda }.run_batch(&refs, &params, &Cancel::default());
        for (t, d) in traces.iter().zip(dev) {
            let cpu = flowtracer::analyze(t, &params, &Cancel::default()).unwrap();
            common::assert_matches_cpu(t, &cpu, &d.unwrap(), "cuda");
        }
    }
    // Spans picked in the app: the device traces between them, as the CPU does.
    let t = flowtracer::sample_trace();
    let spans = common::spans((t.spans.question.start, t.spans.question.end), (t.spans.question.end, t.n()), (t.n() - 3, t.n() - 1));
    let (cpu, _) = flowtracer::backend::Cpu.analyze(&t, spans, &Params::default(), &Cancel::default()).unwrap();
    let (dev, m) = CudaBackend { cuda }.analyze(&t, spans, &Params::default(), &Cancel::default()).unwrap();
    assert_eq!(m.n, t.n());
    common::assert_matches_cpu(&t, &cpu, &dev, "cuda");
}

#[test]
fn a_bad_trace_in_a_cuda_batch_gets_the_cpu_error_and_costs_nothing_else() {
    let Some(cuda) = cuda() else { return };
    let builder = common::noncausal_trace(6);
    let bad = Trace::from_bytes(builder.to_bytes(), Path::new("noncausal.safetensors")).unwrap();
    let good = flowtracer::sample_trace();
    let out = CudaBackend { cuda }.run_batch(&[&good, &bad, &good], &Params::default(), &Cancel::default());
    let e = out[1].as_ref().unwrap_err();
    assert_eq!(e.problem, flowtracer::trace::Problem::NonCausal);
    assert!(e.to_string().contains("noncausal.safetensors") && e.to_string().contains("query row 2"), "{e}");
    for r in [&out[0], &out[2]] {
        let cpu = flowtracer::analyze(&good, &Params::default(), &Cancel::default()).unwrap();
        common::assert_matches_cpu(&good, &cpu, r.as_ref().unwrap(), "cuda");
    }
}

#[test]
fn backends_says_what_this_machine_has_and_what_auto_takes() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flowtracer")).arg("backends").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    for (line, name) in lines.iter().zip(["cuda", "wgpu", "cpu"]) {
        assert!(line.starts_with(name), "{text}");
    }
    let cuda_line = lines[0];
    assert_eq!(cuda_line.contains("not available"), flowtracer::cuda::shared().is_err(), "{text}");
    let auto = backend::select(Choice::Auto).unwrap().name();
    assert_eq!(lines.last().copied(), Some(format!("auto  → {auto}").as_str()), "{text}");
}
