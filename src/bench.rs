//! `flowtracer bench`: time of each pipeline step and of the whole export at several N, peak
//! heap against the one-N×N-matrix budget, and aggregation bandwidth. Synthetic traces are
//! generated first and written to a temporary folder so the mapped-file path is what is timed.

use crate::backend::Backend;
use crate::flow::{Cancel, StepTimes};
use crate::params::Params;
use crate::render::share;
use crate::synth::{SynthSpec, synth_trace};
use crate::trace::{Dtype, Trace};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct BenchRow {
    pub n: usize,
    pub layout: String,
    pub attention_bytes: usize,
    pub steps: StepTimes,
    pub pipeline: Duration,
    pub export: Option<Duration>,
    /// The same export without its PNG pictures: what everything but the rasteriser costs.
    pub export_without_png: Option<Duration>,
    /// Peak heap above the baseline during the pipeline, bytes (None: allocator not installed).
    pub peak_heap: Option<usize>,
    /// The NumPy/SciPy peer's pipeline time on the same file, when asked for.
    pub peer: Option<Duration>,
    /// This machine's read bandwidth over the same mapped file, with the same threads, bytes/s:
    /// the floor every step's figure is a ratio to.
    pub floor: f64,
    /// Where every timed run's aggregation wrote a matrix fresh from the system (none of a
    /// dropped one's storage to take over: a trace's first run, or a matrix larger than the
    /// spares keep): how fast this machine hands out and first writes that much new memory with
    /// the same threads, bytes/s (`first_touch_floor`).
    pub first_touch: Option<f64>,
    /// The backend's own device, measured in the same run (`Backend::memory_floor`): what its
    /// kernels and the upload they wait for are read against.
    pub device: Option<crate::backend::DeviceFloor>,
}

/// The bytes a step must at least read or write, by its definition: the aggregation reads the
/// attention once and writes the packed matrix; reach, flow and the backbone each read the
/// matrix at least once; roles and credit touch O(N) and are left out.
#[derive(Clone, Copy, Debug)]
pub struct StepBytes {
    pub aggregate: usize,
    pub reach: usize,
    pub flow: usize,
    pub backbone: usize,
}

impl StepBytes {
    pub fn of(attention_bytes: usize, n: usize) -> Self {
        let matrix = crate::flow::Matrix::bytes_for(n);
        StepBytes { aggregate: attention_bytes + matrix, reach: matrix, flow: matrix, backbone: matrix }
    }

    pub fn total(&self) -> usize {
        self.aggregate + self.reach + self.flow + self.backbone
    }
}

/// The middle of `runs` (the upper one of an even count): every figure the bench reports.
pub(crate) fn median<T: PartialOrd + Copy>(mut runs: Vec<T>) -> T {
    runs.sort_by(|a, b| a.partial_cmp(b).expect("times and rates are numbers"));
    runs[runs.len() / 2]
}

/// The wrapping sum of a byte slice as u64 words, in 1 MiB blocks on the rayon pool: the plain
/// read the floor is made of.
fn sum_words(bytes: &[u8]) -> u64 {
    let sum = |block: &[u8]| -> u64 {
        // SAFETY: every bit pattern is a valid u64; align_to only reinterprets the aligned middle.
        let (head, words, tail) = unsafe { block.align_to::<u64>() };
        let bytes = head.iter().chain(tail).fold(0u64, |a, &b| a.wrapping_add(b as u64));
        // Eight lanes, so the adds vectorise and do not wait on one another.
        let mut lanes = [0u64; 8];
        for chunk in words.chunks_exact(8) {
            for (l, &w) in lanes.iter_mut().zip(chunk) {
                *l = l.wrapping_add(w);
            }
        }
        let rest = words.chunks_exact(8).remainder().iter().fold(0u64, |a, &w| a.wrapping_add(w));
        lanes.iter().fold(bytes.wrapping_add(rest), |a, &l| a.wrapping_add(l))
    };
    bytes.par_chunks(1 << 20).map(sum).reduce(|| 0, u64::wrapping_add)
}

/// Fresh memory of `bytes` from the allocator (zeroed, so mapped anew as a large matrix is) and
/// written once in 1 MiB blocks on the rayon pool: the kernel's page faults and zeroing, which a
/// fresh matrix costs the aggregation on top of reading the attention, and which no kernel of
/// ours can skip (`MADV_POPULATE_WRITE` and 2 MiB pages were measured no faster on this
/// machine). Bytes/s, the median of `repeat`.
pub fn first_touch_floor(bytes: usize, repeat: usize) -> f64 {
    let mut rates = Vec::new();
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        let mut fresh = vec![0u64; bytes.div_ceil(8)];
        fresh.par_chunks_mut(1 << 17).for_each(|block| block.iter_mut().enumerate().for_each(|(i, w)| *w = i as u64));
        std::hint::black_box(&fresh);
        rates.push(bytes as f64 / t.elapsed().as_secs_f64().max(1e-9));
    }
    median(rates)
}

/// A plain sum over a mapped file, in 1 MiB blocks on the rayon pool the pipeline uses: how fast
/// this machine reads those bytes from the page cache (the file was just read, so it is there)
/// through a new mapping, as the pipeline reads a trace; bytes/s, the median of `repeat`.
pub fn read_floor(path: &Path, repeat: usize) -> Result<f64, String> {
    // Mapped afresh each time, as the loader maps a trace: the page faults are part of the floor.
    let mut rates = Vec::new();
    for _ in 0..repeat.max(1) {
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let t = Instant::now();
        // SAFETY: the bench wrote this file and nothing changes it while it is mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| format!("{}: {e}", path.display()))?;
        std::hint::black_box(sum_words(&map));
        rates.push(map.len() as f64 / t.elapsed().as_secs_f64().max(1e-9));
    }
    Ok(median(rates))
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
/// Also whether every run's matrix was fresh (no dropped one's storage taken over).
fn time_pipeline(path: &Path, params: &Params, repeat: usize, backend: &dyn Backend) -> (StepTimes, Duration, Option<usize>, usize, bool) {
    let mut runs: Vec<(StepTimes, Duration, usize)> = Vec::new();
    let mut slabs = 1;
    let mut fresh = true;
    for _ in 0..repeat.max(1) {
        let trace = Trace::open(path).expect("the bench wrote this file");
        let trace = &trace;
        let heap = crate::alloc::measure();
        // A dropped matrix's storage the pipeline writes over (`Matrix::for_overwrite`) was heap
        // before the run: it counts in the peak, as the fresh allocation it replaces would.
        let reused = crate::flow::matrix::reused_bytes();
        let t = Instant::now();
        let r = backend.run_batch(&[trace], params, &Cancel::default()).pop().expect("one result").expect("synthetic traces are valid");
        let total = t.elapsed();
        slabs = r.layers.len().max(1) * r.heads.len().max(1);
        let taken_over = crate::flow::matrix::reused_bytes() - reused;
        fresh &= taken_over == 0;
        runs.push((r.times, total, heap.peak() + taken_over));
    }
    let med = |f: &dyn Fn(&(StepTimes, Duration, usize)) -> Duration| median(runs.iter().map(f).collect());
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
    (steps, med(&|r| r.1), crate::alloc::installed().then_some(peak), slabs, fresh)
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
    let (steps, pipeline, peak_heap, slabs, fresh) = time_pipeline(&path, &params, repeat, backend);
    let floor = read_floor(&path, repeat)?;
    let device = {
        let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        // SAFETY: the bench wrote this file and nothing changes it while it is mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| format!("{}: {e}", path.display()))?;
        backend.memory_floor(&map, repeat).transpose().map_err(|e| format!("the device's floor: {e}"))?
    };
    let first_touch = fresh.then(|| first_touch_floor(crate::flow::Matrix::bytes_for(trace.n()), repeat));
    let peer = peer.map(|script| run_peer(script, &path, repeat)).transpose()?;
    // The median of `repeat` exports, each into a folder of its own (an export never writes over
    // an earlier one's files, so a second run into the same folder would time the renaming),
    // removed after it unless it was there before.
    let export = |formats: crate::export::Formats, name: &str| -> Result<Duration, String> {
        let times = (0..repeat.max(1))
            .map(|i| {
                let out = dir.join(format!("{name}_{}_{i}", case.n));
                let ours = !out.exists();
                let t = Instant::now();
                crate::export::export(&out, crate::export::plan(std::slice::from_ref(&path), Some(&out), false), &params, formats, backend, &Cancel::default(), &|_| {})?;
                let elapsed = t.elapsed();
                if ours {
                    let _ = std::fs::remove_dir_all(&out);
                }
                Ok(elapsed)
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(median(times))
    };
    let (export, export_without_png) = if with_export {
        let all = export(crate::export::Formats::ALL, "export")?;
        let without_png = export(crate::export::Formats { png: false, ..crate::export::Formats::ALL }, "export_without_png")?;
        (Some(all), Some(without_png))
    } else {
        (None, None)
    };
    Ok(BenchRow {
        n: trace.n(),
        layout: case.label(),
        attention_bytes: slabs * trace.n() * trace.n() * trace.attention.dtype.size(),
        steps,
        pipeline,
        export,
        export_without_png,
        peak_heap,
        peer,
        floor,
        first_touch,
        device,
    })
}

/// Each row's steps against this machine's floor: the bytes each must touch, at what rate it
/// touched them, and that rate's share of the read floor; the pipeline and the export as
/// multiples of the time its bytes take at the floor. Where the matrix was fresh, the
/// aggregation also against reading the attention at the read floor plus first writing the
/// matrix at the first-touch floor.
pub fn format_floor_table(rows: &[BenchRow]) -> String {
    let mut s = String::from(
        "| N | attention | read floor GB/s | aggregate: MB · GB/s · % of floor | fresh matrix: first-touch GB/s · aggregate % of read + first touch | reach | flow | backbone | pipeline: MB · ms at the floor · × floor | export × pipeline: all formats · without PNG |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let b = StepBytes::of(r.attention_bytes, r.n);
        let cell = |bytes: usize, t: Duration| {
            let rate = bytes as f64 / t.as_secs_f64().max(1e-9);
            format!("{:.0} · {:.2} · {:.0}%", bytes as f64 / 1e6, rate / 1e9, 100.0 * rate / r.floor)
        };
        let at_floor = b.total() as f64 / r.floor;
        let fresh = r.first_touch.map_or("-".into(), |touch| {
            let matrix = crate::flow::Matrix::bytes_for(r.n) as f64;
            let floor_time = r.attention_bytes as f64 / r.floor + matrix / touch;
            format!("{:.2} · {:.0}%", touch / 1e9, 100.0 * floor_time / r.steps.aggregate.as_secs_f64().max(1e-9))
        });
        s.push_str(&format!(
            "| {} | {} | {:.1} | {} | {} | {} | {} | {} | {:.0} · {:.1} · {:.1}× | {} |\n",
            r.n,
            r.layout,
            r.floor / 1e9,
            cell(b.aggregate, r.steps.aggregate),
            fresh,
            cell(b.reach, r.steps.reach),
            cell(b.flow, r.steps.flow),
            cell(b.backbone, r.steps.backbone),
            b.total() as f64 / 1e6,
            at_floor * 1e3,
            r.pipeline.as_secs_f64() / at_floor,
            match (r.export, r.export_without_png) {
                (Some(all), Some(without)) => format!("{:.1}× · {:.1}×", all.as_secs_f64() / r.pipeline.as_secs_f64(), without.as_secs_f64() / r.pipeline.as_secs_f64()),
                _ => "-".into(),
            },
        ));
    }
    s
}

/// The rows a device ran, each step against that device's own floor: the aggregation's kernels
/// (events around each launch) and the solves against its memory, the aggregation end to end
/// against the link its attention must cross, the pipeline against its bytes at both. None when
/// no row ran on a device that measured one.
pub fn format_device_floor_table(rows: &[BenchRow]) -> Option<String> {
    let mut s = String::from(
        "| N | attention | memory floor GB/s (device copy) | link floor GB/s (host → device) · from pageable memory | aggregate kernels: MB · GB/s · % of memory | aggregate end to end: GB/s · % of link | reach | flow | backbone | pipeline: ms at the floor · × floor |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut any = false;
    for r in rows {
        let Some(d) = r.device else { continue };
        any = true;
        let b = StepBytes::of(r.attention_bytes, r.n);
        // Two significant digits where a figure is small: an emulated or tiny run's rates are
        // far below a GPU's, and "0.0" would say nothing.
        let cell = |bytes: usize, t: Duration| {
            let rate = bytes as f64 / t.as_secs_f64().max(1e-9);
            format!("{} · {} · {}%", share(bytes as f64 / 1e6, 0), share(rate / 1e9, 1), share(100.0 * rate / d.memory, 0))
        };
        let kernels = match r.steps.aggregate_on_device {
            t if t.is_zero() => "-".into(),
            t => cell(b.aggregate, t),
        };
        let end_to_end = r.attention_bytes as f64 / r.steps.aggregate.as_secs_f64().max(1e-9);
        let at_floor = r.attention_bytes as f64 / d.link + b.total() as f64 / d.memory;
        s.push_str(&format!(
            "| {} | {} | {} | {} · {} | {} | {} · {}% | {} | {} | {} | {} · {}× |\n",
            r.n,
            r.layout,
            share(d.memory / 1e9, 0),
            share(d.link / 1e9, 1),
            d.pageable.map_or("-".into(), |p| share(p / 1e9, 1)),
            kernels,
            share(end_to_end / 1e9, 1),
            share(100.0 * end_to_end / d.link, 0),
            cell(b.reach, r.steps.reach),
            cell(b.flow, r.steps.flow),
            cell(b.backbone, r.steps.backbone),
            share(at_floor * 1e3, 2),
            share(r.pipeline.as_secs_f64() / at_floor, 1),
        ));
    }
    any.then_some(s)
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
    /// After a credit parameter change (step 9 over the earlier solution).
    pub rescore: Duration,
    /// After a backbone parameter change (steps 7–9 over the earlier solution).
    pub rebackbone: Duration,
    /// After a role parameter change (steps 8–9).
    pub reroles: Duration,
    /// After an aggregation change (the attention is read again).
    pub reaggregate: Duration,
    /// Every token's knock-out loss (the "colour by knock-out loss"), part of each re-score.
    pub knockout: Duration,
    pub frame: Duration,
    /// The Backbone view's steps mode: cutting the response into steps and summing φ between them
    /// (off the UI thread in the app).
    pub steps: Duration,
    /// The matrix view's overview texture reduced on the CPU, and a zoomed window of
    /// `DETAIL_MAX` tokens a side reduced again (on the UI thread, once the view is still).
    pub overview: Duration,
    pub detail: Duration,
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
    let median_rescore = |app: &mut FlowApp, change: &dyn Fn(&mut Params, usize)| {
        let mut times = Vec::new();
        for i in 0..repeat.max(1) {
            change(&mut app.model.params, i);
            let t = Instant::now();
            app.model.rescore_now();
            times.push(t.elapsed());
        }
        median(times)
    };
    app.model.rescore_now();
    let rescore = median_rescore(&mut app, &|p, i| p.credit.fraction = if i % 2 == 0 { 0.3 } else { 0.4 });
    let rebackbone = median_rescore(&mut app, &|p, i| p.backbone.max_paths = if i % 2 == 0 { 6 } else { 8 });
    let reroles = median_rescore(&mut app, &|p, i| p.roles.hub_fraction = if i % 2 == 0 { 0.1 } else { 0.05 });
    let reaggregate = median_rescore(&mut app, &|p, i| p.aggregate.threshold = if i % 2 == 0 { 1e-4 } else { 0.0 });
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
    let a = app.model.doc().and_then(|d| d.analysis.clone()).expect("analysed above");
    let knock = (0..repeat.max(1))
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(crate::flow::knockout::loss_per_token(&a.matrix, &a.result.reach, a.result.spans));
            t.elapsed()
        })
        .collect::<Vec<_>>();
    let d = app.model.doc().expect("opened above");
    let text = d.text.clone();
    let steps = median_of(repeat, || {
        let p = &a.plan.params;
        let given = crate::flow::steps::given_segments(&d.trace).expect("synthetic traces give no segments");
        let segments = crate::flow::steps::segments(&text, a.result.spans, &p.steps, given.as_deref());
        std::hint::black_box(crate::flow::steps::step_graph(&a.matrix, &a.result, &segments, &p.backbone));
    });
    use crate::app::views::matrix::{DETAIL_MAX, Layer, MAX_TEXTURE, Window, downsample, downsample_window};
    let overview = median_of(repeat, || {
        std::hint::black_box(downsample(&d.trace, &a, Layer::Aggregated, MAX_TEXTURE));
    });
    let w = DETAIL_MAX.min(n);
    let detail = median_of(repeat, || {
        std::hint::black_box(downsample_window(&d.trace, &a, Layer::Aggregated, Window { x0: (n - w) / 2, y0: n - w, w }, MAX_TEXTURE));
    });
    UiBench { n, rescore, rebackbone, reroles, reaggregate, knockout: median(knock), frame: median(frames), steps, overview, detail }
}

#[cfg(feature = "app")]
/// Opening a run of many small traces in the app: the time until its Run view is drawn, a frame
/// of that view afterwards, and the time until every row's status has been filled in (in the
/// background, through the backend `auto` picks).
pub struct RunOpenBench {
    pub count: usize,
    /// Listing the folder, opening its first trace and drawing the first frame of the Run view.
    pub open: Duration,
    pub frame: Duration,
    pub filled: Duration,
}

#[cfg(feature = "app")]
pub fn run_open_bench(count: usize, dir: &Path) -> Result<RunOpenBench, String> {
    use crate::app::{Command, FlowApp, recent::Recent};
    let root = dir.join(format!("run_{count}"));
    for i in 0..count {
        let step = root.join(format!("step_{:06}", i / 64));
        std::fs::create_dir_all(&step).map_err(|e| format!("{}: {e}", step.display()))?;
        let path = step.join(format!("sample_{:04}.safetensors", i % 64));
        if !path.exists() {
            let spec = SynthSpec { seed: i as u64, target_tokens: 48, layers: 1, heads: 1, dtype: Dtype::F16, rank: 2, no_answer: false };
            synth_trace(&spec).write(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    let ctx = egui::Context::default();
    crate::app::install_fonts(&ctx);
    let input = || egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(1280.0, 800.0))),
        ..Default::default()
    };
    let mut app = FlowApp::new(vec![], Params::default(), Recent::in_memory());
    let t = Instant::now();
    app.apply(Command::Open(root.clone()));
    let out = ctx.run_ui(input(), |ui| app.draw(ui));
    let _ = ctx.tessellate(out.shapes, out.pixels_per_point);
    let open = t.elapsed();
    let mut frames = Vec::new();
    let mut filled = None;
    while filled.is_none() || frames.len() < 9 {
        let f = Instant::now();
        let out = ctx.run_ui(input(), |ui| app.draw(ui));
        let _ = ctx.tessellate(out.shapes, out.pixels_per_point);
        frames.push(f.elapsed());
        let run = app.model.run.as_ref().ok_or("the run did not open")?;
        if filled.is_none() && run.rows.iter().all(|r| r.status.is_some()) {
            filled = Some(t.elapsed());
        }
        if filled.is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = std::fs::remove_dir_all(&root);
    Ok(RunOpenBench { count, open, frame: median(frames), filled: filled.expect("the loop ends when filled") })
}

/// The median time of `repeat` runs of `f` (at least one).
#[cfg(feature = "app")]
fn median_of(repeat: usize, mut f: impl FnMut()) -> Duration {
    median(
        (0..repeat.max(1))
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

/// A batch's rate and the rate its bytes allow: traces per second.
pub struct BatchRate {
    pub rate: f64,
    /// Each trace's bytes (its file read once, its matrix written and read by each solve) at
    /// the read bandwidth measured over the batch's own files.
    pub floor: f64,
}

/// A batch of `count` different traces of about `n` tokens (`[N,N]` F32), run as one
/// `run_batch` as the RL loop runs a step's rollouts: traces per second, the median of `repeat`.
pub fn batch_throughput(n: usize, count: usize, dir: &Path, backend: &dyn Backend, repeat: usize) -> Result<BatchRate, String> {
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
    // The floor over all the batch's files at once (one small file is read too fast to time),
    // the files taken on the pool's threads as the batch takes its traces.
    let read_one = |p: &PathBuf| -> Result<usize, String> {
        let file = std::fs::File::open(p).map_err(|e| format!("{}: {e}", p.display()))?;
        // SAFETY: the bench wrote these files and nothing changes them while mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| format!("{}: {e}", p.display()))?;
        std::hint::black_box(sum_words(&map));
        Ok(map.len())
    };
    let mut floors = Vec::new();
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        let bytes: usize = paths.par_iter().map(read_one).collect::<Result<Vec<usize>, String>>()?.iter().sum();
        floors.push(bytes as f64 / t.elapsed().as_secs_f64().max(1e-9));
    }
    for p in &paths {
        let _ = std::fs::remove_file(p);
    }
    let per_trace = StepBytes::of(n * n * 4, n).total() as f64;
    Ok(BatchRate { rate: median(rates), floor: median(floors) / per_trace })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(first_touch: Option<f64>) -> BenchRow {
        let n = 1000;
        let steps = StepTimes { aggregate: Duration::from_millis(10), ..Default::default() };
        BenchRow { n, layout: "[N,N] F32".into(), attention_bytes: 4_000_000, steps, pipeline: Duration::from_millis(20), export: None, export_without_png: None, peak_heap: None, peer: None, floor: 4e9, first_touch, device: None }
    }

    /// A fresh matrix's aggregation is set against reading the attention at the read floor plus
    /// first writing the matrix at the first-touch floor; a reused one's shows no such cell.
    #[test]
    fn a_fresh_matrix_is_measured_against_read_and_first_touch() {
        let matrix = crate::flow::Matrix::bytes_for(1000) as f64;
        // 4 MB at 4 GB/s is 1 ms; the matrix at 1 GB/s is matrix/1e9 s; over the step's 10 ms
        let share = 100.0 * (1e-3 + matrix / 1e9) / 10e-3;
        let table = format_floor_table(&[row(Some(1e9)), row(None)]);
        let lines: Vec<&str> = table.lines().skip(2).collect();
        let cells = |l: &str| l.split(" | ").map(str::to_string).collect::<Vec<_>>();
        assert_eq!(cells(lines[0])[4], format!("1.00 · {share:.0}%"), "{table}");
        assert_eq!(cells(lines[1])[4], "-", "{table}");
        assert_eq!(cells(lines[0]).len(), cells(table.lines().next().unwrap()).len(), "a cell per column");
    }

    /// A device's rows are read against its own memory and link: the kernels' bytes (attention
    /// read, matrix written) over their event time against the copy rate, the aggregation end to
    /// end against the link, the pipeline against its attention going up plus every step's
    /// bytes at the memory's rate. Kernels without a timer get no figure; a CPU run no table.
    #[test]
    fn a_device_row_is_read_against_its_own_floor() {
        assert!(format_device_floor_table(&[row(None)]).is_none());
        let device = Some(crate::backend::DeviceFloor { memory: 100e9, link: 4e9, pageable: Some(2e9) });
        let mut timed = BenchRow { device, ..row(None) };
        timed.steps.aggregate_on_device = Duration::from_millis(1);
        timed.steps.reach = Duration::from_millis(2);
        let untimed = BenchRow { device, ..row(None) };
        let table = format_device_floor_table(&[timed, untimed]).expect("rows on a device");
        let lines: Vec<&str> = table.lines().collect();
        let cells = |l: &str| l.split(" | ").map(str::to_string).collect::<Vec<_>>();
        let (a, b) = (cells(lines[2]), cells(lines[3]));
        assert_eq!(a.len(), cells(lines[0]).len(), "a cell per column: {table}");
        let matrix = crate::flow::Matrix::bytes_for(1000) as f64;
        // 6.0 MB in 1 ms: 6.0 GB/s, 6% of 100; 2.0 MB in 2 ms: 1.0 GB/s, 0.999%; small shares keep
        // two significant digits.
        assert_eq!(a[4], "6 · 6.0 · 6%", "{table}");
        assert_eq!(a[3], "4.0 · 2.0", "the link, and from pageable memory: {table}");
        assert_eq!(a[5], "0.4 · 10%", "{table}");
        assert_eq!(a[6], "2 · 1.0 · 1.00%", "{table}");
        let at_floor = 4e6 / 4e9 + (4e6 + 4.0 * matrix) / 100e9;
        assert_eq!(a[9].trim_end_matches(" |"), format!("{:.2} · {:.1}×", at_floor * 1e3, 20e-3 / at_floor), "{table}");
        assert_eq!(b[4], "-", "{table}");
    }
}
