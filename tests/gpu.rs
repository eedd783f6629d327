//! wgpu compute against the CPU reference. Needs a wgpu adapter (Mesa's lavapipe does): without
//! one the tests say they skipped and why, unless FLOWTRACER_REQUIRE_GPU=1 (CI), where they fail.

mod common;
use flowtracer::app::views::matrix::{Layer, downsample, scale_for};
use flowtracer::app::worker::analyse;
use flowtracer::{Cancel, Params, Trace};
use std::path::Path;

fn gpu() -> Option<&'static flowtracer::gpu::Gpu> {
    let g = common::required_or_skip(flowtracer::gpu::shared(), "FLOWTRACER_REQUIRE_GPU", "wgpu adapter", "; install mesa-vulkan-drivers")?;
    eprintln!("wgpu adapter: {}", g.adapter);
    Some(g)
}

#[test]
fn gpu_downsample_matches_the_cpu() {
    let Some(g) = gpu() else { return };
    let mut cases: Vec<(Trace, usize)> = vec![(flowtracer::sample_trace(), 20), (flowtracer::sample_trace(), flowtracer::sample_trace().n())];
    for (n, s) in [(2usize, 2usize), (63, 20), (64, 64), (65, 7), (1000, 768), (300, 299)] {
        let b = common::random_trace(n, n as u64);
        cases.push((Trace::from_bytes(b.to_bytes(), Path::new("random.safetensors")).unwrap(), s));
    }
    for (trace, s) in &cases {
        let a = analyse(&flowtracer::backend::Cpu, trace, trace.spans, Params::default(), None, &Cancel::default()).unwrap();
        for layer in [Layer::Aggregated, Layer::Conserved, Layer::EdgeFlow] {
            let cpu = downsample(trace, &a, layer, *s);
            let scale = scale_for(&a, layer).unwrap();
            let gpu = g.downsample(&a.matrix, &scale, *s).unwrap();
            assert_eq!(cpu.len(), gpu.len());
            for (j, (c, v)) in cpu.iter().zip(&gpu).enumerate() {
                let tol = if layer == Layer::Aggregated { 0.0 } else { 1e-5 * c.abs().max(1e-30) };
                assert!((c - v).abs() <= tol, "N = {}, s = {s}, {layer:?}, cell {j}: CPU {c} vs GPU {v}", trace.n());
            }
        }
    }
}

fn wgpu(g: &'static flowtracer::gpu::Gpu) -> &'static dyn flowtracer::backend::Backend {
    Box::leak(Box::new(flowtracer::backend::wgpu::Wgpu { gpu: g }))
}

/// The status bar's bug (issue 11): a re-score after a change to later steps' parameters runs
/// steps 3–9 on the CPU, on the matrix the device aggregated, and its provenance says exactly that.
#[test]
fn a_rescore_after_a_parameter_change_reports_the_executor_that_ran_it() {
    use flowtracer::flow::{Executor, Step};
    let Some(g) = gpu() else { return };
    let (trace, cancel) = (flowtracer::sample_trace(), Cancel::default());
    let first = analyse(wgpu(g), &trace, trace.spans, Params::default(), None, &cancel).unwrap();
    let p = &first.result.provenance;
    assert_eq!(p.on(Step::Aggregate), Some(Executor::Wgpu));
    assert_eq!(p.on(Step::Reach), Some(Executor::Wgpu));
    assert!(p.summary().starts_with("wgpu: "), "{}", p.summary());

    // A credit change alone: step 9 on the CPU over the device's solution.
    let mut params = Params::default();
    params.credit.fraction = 0.2;
    let recredited = analyse(wgpu(g), &trace, trace.spans, params.clone(), Some(&first), &cancel).unwrap();
    let p = &recredited.result.provenance;
    assert!(p.reused_solution);
    assert_eq!((p.on(Step::Reach), p.on(Step::Credit)), (Some(Executor::Wgpu), Some(Executor::Cpu)));
    assert!(p.summary().starts_with("cpu (credit only; the solution reused from wgpu: "), "{}", p.summary());

    // A backbone change: steps 7–9 on the CPU over the device's solution.
    params.backbone.max_paths = 3;
    let rebackboned = analyse(wgpu(g), &trace, trace.spans, params.clone(), Some(&first), &cancel).unwrap();
    let p = &rebackboned.result.provenance;
    assert!(p.reused_solution);
    assert_eq!((p.on(Step::Reach), p.on(Step::Backbone), p.on(Step::Roles)), (Some(Executor::Wgpu), Some(Executor::Cpu), Some(Executor::Cpu)));
    assert!(p.summary().starts_with("cpu (backbone, roles and credit; the solution reused from wgpu: "), "{}", p.summary());

    // Another sink: steps 3–9 on the CPU, on the device's matrix.
    params.answer.sink = flowtracer::params::Sink::Tokens;
    let again = analyse(wgpu(g), &trace, trace.spans, params.clone(), Some(&first), &cancel).unwrap();
    let p = &again.result.provenance;
    assert!(p.reused_aggregation && !p.reused_solution);
    assert_eq!(p.on(Step::Aggregate), Some(Executor::Wgpu));
    for s in [Step::Reach, Step::Flow, Step::Throughput, Step::Backbone, Step::Roles, Step::Credit] {
        assert_eq!(p.on(s), Some(Executor::Cpu), "{s:?}");
    }
    assert!(p.summary().starts_with("cpu (aggregation reused from wgpu: "), "{}", p.summary());

    // A change to the aggregation is a full run on the device again.
    params.aggregate.threshold = 0.001;
    let full = analyse(wgpu(g), &trace, trace.spans, params, Some(&again), &cancel).unwrap();
    assert!(!full.result.provenance.reused_aggregation);
    assert_eq!(full.result.provenance.on(Step::Reach), Some(Executor::Wgpu));
}

fn compare_backends(trace: &Trace, g: &'static flowtracer::gpu::Gpu, params: &Params) {
    let cpu = flowtracer::analyze(trace, params, &Cancel::default()).unwrap();
    let gpu = wgpu(g).analyze(trace, trace.spans, params, &Cancel::default()).unwrap().0;
    common::assert_matches_cpu(trace, &cpu, &gpu, "wgpu");
}

#[test]
fn wgpu_backend_matches_the_cpu_on_samples_and_random_traces() {
    let Some(g) = gpu() else { return };
    let run = flowtracer::trace::run::discover(Path::new("sample_traces")).unwrap();
    for p in &run.traces {
        compare_backends(&Trace::open(p).unwrap(), g, &Params::default());
    }
    for (n, seed) in [(2usize, 1u64), (3, 2), (63, 3), (64, 4), (65, 5), (1000, 6), (4096, 7)] {
        let b = common::random_trace(n, seed);
        compare_backends(&Trace::from_bytes(b.to_bytes(), Path::new("random.safetensors")).unwrap(), g, &Params::default());
    }
    let long = common::long_hop_trace(400, 70);
    compare_backends(&Trace::from_bytes(long.to_bytes(), Path::new("long-hops.safetensors")).unwrap(), g, &Params::default());
    // Every dtype and layout, mean and max, a head subset and a threshold.
    for (dtype, shape) in [
        (flowtracer::trace::Dtype::F16, vec![3, 2, 70, 70]),
        (flowtracer::trace::Dtype::BF16, vec![2, 70, 70]),
        (flowtracer::trace::Dtype::F32, vec![70, 70]),
    ] {
        let t = Trace::from_bytes(common::chain_builder(70, dtype, shape.clone()).to_bytes(), Path::new("layout.safetensors")).unwrap();
        compare_backends(&t, g, &Params::default());
        let mut p = Params::default();
        p.aggregate.reduce = flowtracer::params::Reduce::Max;
        p.aggregate.threshold = 0.1;
        if shape.len() == 4 {
            p.aggregate.heads = Some(vec![1]);
        }
        compare_backends(&t, g, &p);
    }
}

#[test]
fn wgpu_backend_reports_bad_files_like_the_cpu() {
    let Some(g) = gpu() else { return };
    let builder = common::noncausal_trace(6);
    let t = Trace::from_bytes(builder.to_bytes(), Path::new("noncausal.safetensors")).unwrap();
    let e = wgpu(g).analyze(&t, t.spans, &Params::default(), &Cancel::default()).unwrap_err();
    assert_eq!(e.problem, flowtracer::trace::Problem::NonCausal);
    assert!(e.to_string().contains("noncausal.safetensors") && e.to_string().contains("query row 2"), "{e}");
}

#[test]
fn export_credit_is_identical_between_cpu_and_wgpu() {
    if gpu().is_none() {
        return;
    }
    let dir = common::temp_dir("backends");
    let mut credits = vec![];
    for backend in ["cpu", "wgpu"] {
        let out = dir.join(backend);
        let s = std::process::Command::new(env!("CARGO_BIN_EXE_flowtracer"))
            .args(["--export", out.to_str().unwrap(), "--backend", backend, "--format", "json,credits", "sample_traces"])
            .status()
            .unwrap();
        assert_eq!(s.code(), Some(0));
        let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["backend"], backend);
        let bytes = std::fs::read(out.join("credits.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        credits.push(st.tensor("credit").unwrap().data().to_vec());
    }
    assert!(credits[0] == credits[1], "credit differs between --backend cpu and --backend wgpu");
}

#[test]
fn gpu_solves_match_the_cpu_solves() {
    let Some(g) = gpu() else { return };
    for (n, seed) in [(2usize, 11u64), (3, 12), (63, 13), (64, 14), (65, 15), (129, 16), (1000, 17), (4096, 18)] {
        let b = common::random_trace(n, seed);
        let t = Trace::from_bytes(b.to_bytes(), Path::new("random.safetensors")).unwrap();
        let (_, m) = common::analyze_keeping(&t, &Params::default());
        let h = flowtracer::flow::reach::reach(&m, t.spans.answer);
        let uf = flowtracer::flow::unit_flow::unit_flow(&m, &h, t.spans);
        let (gh, guf) = g.solve(&g.upload(&m).unwrap(), t.spans).expect("the GPU solves run");
        assert_eq!(guf.sources, uf.sources, "N = {n}");
        // A matrix over the binding limit is split across buffers, whole 64-row blocks each: the
        // same numbers, bit for bit.
        let ro = flowtracer::flow::matrix::row_offset;
        let block_bytes = flowtracer::gpu::matrix::blocks_up(0..n).iter().map(|b| ((ro(b.end) - ro(b.start)) * 4) as u64).max().unwrap();
        let split = g.upload_within(&m, block_bytes + 8).unwrap();
        assert!(n <= 64 || split.chunks() > 1, "N = {n}: {} chunk(s)", split.chunks());
        let (sh, suf) = g.solve(&split, t.spans).expect("the split solves run");
        assert_eq!((sh, suf.flow), (gh.clone(), guf.flow.clone()), "N = {n}: split across {} buffers", split.chunks());
        for k in 0..n {
            assert!((h[k] - gh[k]).abs() <= 1e-4 * h[k].abs().max(gh[k].abs()) + 1e-30, "N = {n}: h({k}) cpu {} gpu {}", h[k], gh[k]);
            assert!((uf.flow[k] - guf.flow[k]).abs() <= 1e-4 * uf.flow[k].abs().max(guf.flow[k].abs()) + 1e-12, "N = {n}: f({k}) cpu {} gpu {}", uf.flow[k], guf.flow[k]);
        }
    }
}

#[test]
fn gpu_aggregation_writes_the_device_matrix_the_solves_use() {
    let Some(g) = gpu() else { return };
    let ro = flowtracer::flow::matrix::row_offset;
    for (dtype, shape, n) in [
        (flowtracer::trace::Dtype::F16, vec![3, 2, 200, 200], 200usize),
        (flowtracer::trace::Dtype::BF16, vec![2, 130, 130], 130),
        (flowtracer::trace::Dtype::F32, vec![300, 300], 300),
    ] {
        let t = Trace::from_bytes(common::chain_builder(n, dtype, shape).to_bytes(), Path::new("layout.safetensors")).unwrap();
        let p = Params::default();
        let sel = flowtracer::flow::aggregate::select(&t, &p.aggregate).unwrap();
        let cpu = flowtracer::flow::aggregate::aggregate(&t.attention, &sel, &p.aggregate, &Default::default()).unwrap();
        let wall = std::time::Instant::now();
        let a = g.aggregate(&t.attention, &sel, &p.aggregate).unwrap();
        let wall = wall.elapsed();
        // Where the adapter has timestamps (lavapipe has), the passes are timed apart from the
        // uploads: a time the device measured, within the wall time around the whole step.
        match a.kernels {
            Some(k) => assert!(g.has_timestamps() && k > std::time::Duration::ZERO && k <= wall, "{dtype:?}: passes {k:?} in {wall:?}"),
            None => assert!(!g.has_timestamps(), "{dtype:?}: the adapter has timestamps, the passes no time"),
        }
        let (dm, m) = (a.on_device, a.host);
        for (k, (a, b)) in cpu.data.iter().zip(&m.data).enumerate() {
            assert!((a - b).abs() <= 1e-6 * a.abs().max(b.abs()), "{dtype:?}: packed[{k}] cpu {a} gpu {b}");
        }
        // What stays on the device is what came back to the host.
        assert_eq!(g.download(&dm).unwrap().data, m.data);
        // Buffers of one 64-row block each, attention sent a few rows at a time: the same matrix.
        let block_bytes = flowtracer::gpu::matrix::blocks_up(0..n).iter().map(|b| ((ro(b.end) - ro(b.start)) * 4) as u64).max().unwrap();
        let split = g.aggregate_within(&t.attention, &sel, &p.aggregate, block_bytes + 8).unwrap();
        let (split, ms) = (split.on_device, split.host);
        assert!(split.chunks() > 1, "{dtype:?}: {} chunk(s)", split.chunks());
        assert_eq!(ms.data, m.data, "{dtype:?}: aggregated across {} buffers", split.chunks());
        assert_eq!(g.solve(&split, t.spans).unwrap().1.flow, g.solve(&dm, t.spans).unwrap().1.flow, "{dtype:?}: solves on the split matrix");
    }
}

/// Steps 6 and 9 on the solve's own h and f, left on the device: the throughput is the CPU's
/// rule on those values, exactly (doubling is exact in f32), and the selection the CPU's on it.
#[test]
fn gpu_throughput_and_selection_on_the_solved_flow_match_the_cpu() {
    let Some(g) = gpu() else { return };
    let traces = [common::random_trace(300, 21), common::random_trace(65, 22), common::long_hop_trace(400, 70)];
    for b in traces {
        let t = Trace::from_bytes(b.to_bytes(), Path::new("t.safetensors")).unwrap();
        let (_, m) = common::analyze_keeping(&t, &Params::default());
        let flowtracer::gpu::solve::Kept { h, uf, buffers, .. } = g.solve_keeping(&g.upload(&m).unwrap(), t.spans).unwrap();
        let kept = buffers.expect("a trace with flow keeps h and f on the device");
        let r = t.spans.response;
        let count = flowtracer::flow::roles::share_count(0.4, r.len());
        let (tau, chosen) = g.credit(&kept.h, &kept.f, t.n(), t.spans, count).unwrap();
        assert_eq!(tau, flowtracer::flow::throughput::throughput(&uf.flow, &h, t.spans.answer), "N = {}", t.n());
        let mut cpu = flowtracer::flow::roles::top_by_score(&tau, r.range(), count);
        cpu.sort_unstable();
        assert_eq!(chosen, cpu, "N = {}", t.n());
    }
}

#[test]
fn gpu_credit_selection_matches_the_cpu() {
    let Some(g) = gpu() else { return };
    let mut rng = flowtracer::synth::Rng::new(5);
    for (n, r0) in [(1usize, 0usize), (2, 1), (63, 10), (64, 0), (65, 3), (300, 40), (4096, 100)] {
        // Coarse scores (many exact ties) and fine ones.
        for coarse in [true, false] {
            let score: Vec<f64> = (0..n).map(|_| if coarse { rng.below(7) as f64 / 7.0 } else { rng.f64() }).collect();
            for fraction in [0.0, 0.2, 0.4, 1.0] {
                let count = flowtracer::flow::roles::share_count(fraction, n - r0);
                let mut cpu = flowtracer::flow::roles::top_by_score(&score, r0..n, count);
                cpu.sort_unstable();
                let gpu = g.top_by_score(&score, r0..n, count).unwrap();
                assert_eq!(gpu, cpu, "N = {n}, from {r0}, coarse {coarse}, fraction {fraction}");
            }
        }
    }
}

/// The same, as the user reads it: the status bar after the first analysis and after a
/// parameter change.
#[test]
fn the_status_bar_says_where_each_rescore_ran() {
    use flowtracer::app::{Command, FlowApp, document::Document, recent::Recent};
    let Some(g) = gpu() else { return };
    let mut app = FlowApp::on_backend(vec![], Params::default(), Recent::in_memory(), wgpu(g));
    app.model.rescoring.synchronous = true;
    app.model.add(Document::new(flowtracer::sample_trace()));
    let status = app.model.status.clone();
    assert!(status.contains(" · analysed in ") && status.contains(" ms on wgpu: "), "{status}");
    let mut p = Params::default();
    p.credit.fraction = 0.2;
    app.apply(Command::SetParams(p.clone()));
    let status = app.model.status.clone();
    assert!(status.contains(" · re-scored in ") && status.contains(" ms on cpu (credit only; the solution reused from wgpu: "), "{status}");
    p.backbone.max_paths = 3;
    app.apply(Command::SetParams(p.clone()));
    let status = app.model.status.clone();
    assert!(status.contains(" ms on cpu (backbone, roles and credit; the solution reused from wgpu: "), "{status}");
    p.answer.sink = flowtracer::params::Sink::Tokens;
    app.apply(Command::SetParams(p));
    let status = app.model.status.clone();
    assert!(status.contains(" ms on cpu (aggregation reused from wgpu: "), "{status}");
}

/// `bench --backend wgpu` measures the adapter's own floor in the same run (a buffer copied onto
/// another, the trace written into one) and reads each step against it; the aggregation's passes
/// are timed on the device where the adapter has timestamps (an optional feature; lavapipe has
/// it), and that cell stays empty where it has not.
#[test]
fn the_bench_reads_the_adapter_against_its_own_floor() {
    let Some(g) = gpu() else { return };
    let dir = common::temp_dir("wgpu-bench");
    common::assert_device_floor_table(std::process::Command::new(env!("CARGO_BIN_EXE_flowtracer")), "wgpu", g.has_timestamps(), &dir);
}

/// A device error (memory the device cannot give, a limit broken) inside a step comes back as
/// that step's error, naming the step and the adapter, where wgpu's default would panic and take
/// the whole export down; the device stays usable for the next trace.
#[test]
fn a_device_error_is_the_steps_error_not_a_panic() {
    let Some(g) = gpu() else { return };
    let too_big = g.limits.max_buffer_size.saturating_add(1 << 20).next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT);
    let r: Result<(), String> = g.scoped("probe", || {
        let _ = g.device.create_buffer(&wgpu::BufferDescriptor { label: Some("too big"), size: too_big, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false });
        Ok(())
    });
    let e = r.expect_err("a buffer past the adapter's limit is an error");
    assert!(e.starts_with(&format!("probe on {}: ", g.adapter)), "{e}");
    // The device still works: a trace's steps after it match the CPU.
    let t = flowtracer::sample_trace();
    let p = Params::default();
    let sel = flowtracer::flow::aggregate::select(&t, &p.aggregate).unwrap();
    let a = g.scoped("after", || g.aggregate(&t.attention, &sel, &p.aggregate).map_err(|e| format!("{e:?}"))).unwrap();
    let cpu = flowtracer::flow::aggregate::aggregate(&t.attention, &sel, &p.aggregate, &Default::default()).unwrap();
    assert!(cpu.data.iter().zip(&a.host.data).all(|(x, y)| (x - y).abs() <= 1e-6 * x.abs().max(y.abs())));
}

/// `auto` tells a software adapter by its type before opening it, and on Linux does not look
/// for an adapter where no GPU device node is there: a machine without one has only software
/// adapters (this one's is lavapipe in CI), and takes the CPU either way.
#[test]
fn auto_passes_a_software_adapter_over_without_opening_it() {
    use flowtracer::backend::{Choice, select};
    let software = flowtracer::gpu::is_software_adapter();
    if !flowtracer::gpu::may_have_hardware() {
        assert!(software.as_ref().is_ok_and(|&s| s) || software.is_err(), "no GPU device node, yet a hardware adapter: {software:?}");
    }
    if software.as_ref().is_ok_and(|&s| s) || software.is_err() {
        let auto = select(Choice::Auto).unwrap();
        assert!(auto.name() == "cpu" || auto.name() == "cuda", "auto took {}", auto.name());
    }
}
