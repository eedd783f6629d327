//! `flowtracer bench`: time of each pipeline step and of the whole export at several N, peak
//! heap against the one-N×N-matrix budget, and aggregation bandwidth. Synthetic traces are
//! generated first and written to a temporary folder so the mapped-file path is what is timed.

use crate::backend::Backend;
use crate::flow::{Cancel, StepTimes};
use crate::params::Params;
use crate::synth::{SynthSpec, synth_trace};
use crate::trace::{Dtype, Trace};
use std::path::Path;
use std::time::{Duration, Instant};

pub struct BenchRow {
    pub n: usize,
    pub layout: String,
    pub attention_bytes: usize,
    pub steps: StepTimes,
    pub pipeline: Duration,
    pub export: Option<Duration>,
    /// Peak heap above the baseline during the pipeline, bytes (None: allocator not installed).
    pub peak_heap: Option<usize>,
    /// The NumPy/SciPy peer's pipeline time on the same file, when asked for.
    pub peer: Option<Duration>,
}

impl BenchRow {
    pub fn aggregate_gbps(&self) -> f64 {
        self.attention_bytes as f64 / self.steps.aggregate.as_secs_f64().max(1e-9) / 1e9
    }

    /// The GB/s cell: end to end from the mapped file; for CUDA also the kernels alone.
    fn gbps_cell(&self) -> String {
        let end_to_end = format!("{:.2}", self.aggregate_gbps());
        match self.steps.aggregate_on_device.as_secs_f64() {
            0.0 => end_to_end,
            t => format!("{end_to_end} (kernels {:.0})", self.attention_bytes as f64 / t / 1e9),
        }
    }
}

/// Median of each step over `repeat` runs.
/// Each run opens the file afresh, so every run pays for the full first read and its checks.
fn time_pipeline(path: &Path, params: &Params, repeat: usize, backend: &dyn Backend) -> (StepTimes, Duration, Option<usize>, usize) {
    let mut runs: Vec<(StepTimes, Duration, usize)> = Vec::new();
    let mut slabs = 1;
    for _ in 0..repeat.max(1) {
        let trace = Trace::open(path).expect("the bench wrote this file");
        let trace = &trace;
        let base = crate::alloc::reset_peak();
        let t = Instant::now();
        let r = backend.run_batch(&[trace], params, &Cancel::default()).pop().expect("one result").expect("synthetic traces are valid");
        let total = t.elapsed();
        slabs = r.layers.len().max(1) * r.heads.len().max(1);
        runs.push((r.times, total, crate::alloc::peak().saturating_sub(base)));
    }
    let med = |f: &dyn Fn(&(StepTimes, Duration, usize)) -> Duration| {
        let mut v: Vec<Duration> = runs.iter().map(f).collect();
        v.sort();
        v[v.len() / 2]
    };
    let steps = StepTimes {
        aggregate: med(&|r| r.0.aggregate),
        aggregate_on_device: med(&|r| r.0.aggregate_on_device),
        reach: med(&|r| r.0.reach),
        flow: med(&|r| r.0.flow),
        backbone: med(&|r| r.0.backbone),
        roles: med(&|r| r.0.roles),
        credit: med(&|r| r.0.credit),
    };
    let peak = runs.iter().map(|r| r.2).max().unwrap_or(0);
    (steps, med(&|r| r.1), crate::alloc::installed().then_some(peak), slabs)
}

/// Runs the peer script (`python3 SCRIPT FILE --bench REPEAT`) and reads its median pipeline time.
pub fn run_peer(script: &Path, file: &Path, repeat: usize) -> Result<Duration, String> {
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(file)
        .args(["--bench", &repeat.max(1).to_string()])
        .output()
        .map_err(|e| format!("python3 {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!("peer failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("peer output: {e}"))?;
    let ms = v["ms"]["pipeline"].as_f64().ok_or("peer output has no ms.pipeline")?;
    Ok(Duration::from_secs_f64(ms / 1e3))
}

pub struct BenchCase {
    pub n: usize,
    pub layers: usize,
    pub heads: usize,
    pub dtype: Dtype,
}

impl BenchCase {
    pub fn label(&self) -> String {
        if self.layers == 1 && self.heads == 1 {
            format!("[N,N] {}", self.dtype.name())
        } else {
            format!("[{},{},N,N] {}", self.layers, self.heads, self.dtype.name())
        }
    }
}

pub fn run_case(
    case: &BenchCase,
    dir: &Path,
    backend: &dyn Backend,
    repeat: usize,
    with_export: bool,
    peer: Option<&Path>,
) -> Result<BenchRow, String> {
    let rank = if case.layers == 1 && case.heads == 1 { 2 } else { 4 };
    let spec = SynthSpec {
        seed: case.n as u64,
        target_tokens: case.n,
        layers: case.layers,
        heads: case.heads,
        dtype: case.dtype,
        rank,
        no_answer: false,
    };
    let builder = synth_trace(&spec);
    let path = dir.join(format!("bench_{}_{}x{}_{}.safetensors", case.n, case.layers, case.heads, case.dtype.name()));
    builder.write(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    drop(builder);
    let trace = Trace::open(&path).map_err(|e| e.to_string())?;
    let params = Params::default();
    let (steps, pipeline, peak_heap, slabs) = time_pipeline(&path, &params, repeat, backend);
    let peer = peer.map(|script| run_peer(script, &path, repeat)).transpose()?;
    let export = if with_export {
        let out = dir.join(format!("export_{}", case.n));
        let t = Instant::now();
        crate::export::export(&out, std::slice::from_ref(&path), &params, crate::export::Formats::ALL.into(), backend, &Cancel::default(), &|_| {})?;
        Some(t.elapsed())
    } else {
        None
    };
    Ok(BenchRow {
        n: trace.n(),
        layout: case.label(),
        attention_bytes: slabs * trace.n() * trace.n() * trace.attention.dtype.size(),
        steps,
        pipeline,
        export,
        peak_heap,
        peer,
    })
}

pub fn format_table(rows: &[BenchRow]) -> String {
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e3);
    let mut s = String::from(
        "| N | attention | aggregate ms | GB/s | reach ms | flow ms | backbone ms | roles ms | credit ms | pipeline ms | export ms | peak heap MiB | matrix MiB | NumPy peer ms | speed-up |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {} |\n",
            r.n,
            r.layout,
            ms(r.steps.aggregate),
            r.gbps_cell(),
            ms(r.steps.reach),
            ms(r.steps.flow),
            ms(r.steps.backbone),
            ms(r.steps.roles),
            ms(r.steps.credit),
            ms(r.pipeline),
            r.export.map_or("-".into(), ms),
            r.peak_heap.map_or("n/a".into(), |b| format!("{:.0}", b as f64 / (1 << 20) as f64)),
            crate::flow::Matrix::bytes_for(r.n) as f64 / (1 << 20) as f64,
            r.peer.map_or("-".into(), ms),
            r.peer.map_or("-".into(), |p| format!("{:.1}×", p.as_secs_f64() / r.pipeline.as_secs_f64())),
        ));
    }
    s
}

#[cfg(feature = "app")]
/// Interactive figures of the app: one re-score of an N-token trace end to end (what the app does
/// after a parameter change), and the CPU time of one frame of the text view (layout of the
/// visible lines and tessellation, everything but the GPU upload), scrolled to the middle.
pub struct UiBench {
    pub n: usize,
    /// After a credit, backbone or role parameter change (the matrix is reused).
    pub rescore: Duration,
    /// After an aggregation change (the attention is read again).
    pub reaggregate: Duration,
    /// Every token's knock-out loss (the "colour by knock-out loss"), part of each re-score.
    pub knockout: Duration,
    pub frame: Duration,
}

#[cfg(feature = "app")]
pub fn ui_bench(n: usize, repeat: usize) -> UiBench {
    use crate::app::{Command, FlowApp, document::Document, recent::Recent};
    // ([4,8,N,N] would be a 34 GB synthetic trace from 16k tokens: long traces come as [N,N] F16)
    let (layers, heads) = if n >= 16384 { (1, 1) } else { (4, 8) };
    let spec = SynthSpec { seed: n as u64, target_tokens: n, layers, heads, dtype: Dtype::F16, rank: 4, no_answer: false };
    let bytes = synth_trace(&spec).to_bytes();
    let trace = Trace::from_bytes(bytes, Path::new("ui-bench.safetensors")).expect("synthetic traces are valid");
    let n = trace.n();
    let mut app = FlowApp::new(vec![Document::new(trace)], Params::default(), Recent::in_memory());
    app.model.rescoring.synchronous = true;
    let median = |app: &mut FlowApp, change: &dyn Fn(&mut Params, usize)| {
        let mut times = Vec::new();
        for i in 0..repeat.max(1) {
            change(&mut app.model.params, i);
            let t = Instant::now();
            app.model.rescore_now();
            times.push(t.elapsed());
        }
        times.sort();
        times[times.len() / 2]
    };
    app.model.rescore_now();
    let rescore = median(&mut app, &|p, i| p.credit.fraction = if i % 2 == 0 { 0.3 } else { 0.4 });
    let reaggregate = median(&mut app, &|p, i| p.aggregate.threshold = if i % 2 == 0 { 1e-4 } else { 0.0 });
    let ctx = egui::Context::default();
    crate::app::install_fonts(&ctx);
    let input = || egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(1280.0, 800.0))),
        ..Default::default()
    };
    app.apply(Command::Select { token: n / 2, extend: false });
    let mut frames = Vec::new();
    for i in 0..(repeat.max(1) * 4 + 3) {
        let t = Instant::now();
        let out = ctx.run_ui(input(), |ui| app.draw(ui));
        let _ = ctx.tessellate(out.shapes, out.pixels_per_point);
        if i >= 3 {
            frames.push(t.elapsed());
        }
    }
    frames.sort();
    let a = app.model.doc().and_then(|d| d.analysis.clone()).expect("analysed above");
    let mut knock = (0..repeat.max(1))
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(crate::flow::knockout::loss_per_token(&a.matrix, &a.result.reach, a.result.spans));
            t.elapsed()
        })
        .collect::<Vec<_>>();
    knock.sort();
    UiBench { n, rescore, reaggregate, knockout: knock[knock.len() / 2], frame: frames[frames.len() / 2] }
}

/// A batch of `count` different traces of about `n` tokens (`[N,N]` F32), run as one
/// `run_batch` as the RL loop runs a step's rollouts: traces per second, the median of `repeat`.
pub fn batch_throughput(n: usize, count: usize, dir: &Path, backend: &dyn Backend, repeat: usize) -> Result<f64, String> {
    let mut paths = Vec::with_capacity(count);
    for i in 0..count {
        let spec = SynthSpec { seed: 1000 + i as u64, target_tokens: n, layers: 1, heads: 1, dtype: Dtype::F32, rank: 2, no_answer: false };
        let path = dir.join(format!("batch_{n}_{i}.safetensors"));
        synth_trace(&spec).write(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        paths.push(path);
    }
    let params = Params::default();
    let mut rates = Vec::new();
    for _ in 0..repeat.max(1) {
        let traces: Vec<Trace> = paths.iter().map(|p| Trace::open(p).map_err(|e| e.to_string())).collect::<Result<_, _>>()?;
        let refs: Vec<&Trace> = traces.iter().collect();
        let t = Instant::now();
        let results = backend.run_batch(&refs, &params, &Cancel::default());
        let secs = t.elapsed().as_secs_f64();
        if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
            return Err(e.to_string());
        }
        rates.push(count as f64 / secs.max(1e-9));
    }
    for p in &paths {
        let _ = std::fs::remove_file(p);
    }
    rates.sort_by(f64::total_cmp);
    Ok(rates[rates.len() / 2])
}
