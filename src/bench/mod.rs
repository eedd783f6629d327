//! `flowtracer bench`: time of each pipeline step and of the whole export at several N, peak
//! heap against the one-N×N-matrix budget, and aggregation bandwidth. Synthetic traces are
//! generated first and written to a temporary folder so the mapped-file path is what is timed.

#[cfg(feature = "app")]
mod app;
mod floor;
mod scratch;
mod tables;

#[cfg(feature = "app")]
pub use app::{RunOpenBench, UiBench, run_open_bench, ui_bench};
pub use floor::{files_read_floor, first_touch_floor, read_floor};
pub use scratch::Scratch;
pub use tables::{format_device_floor_table, format_export_phases, format_floor_table, format_png_lines, format_table};

use crate::backend::Backend;
use crate::flow::{Cancel, Scope, StepTimes};
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
    /// The same export without its PNG pictures: what everything but the rasteriser costs.
    pub export_without_png: Option<Duration>,
    /// The export's credit picture compressed by our deflate and by zlib-rs, side by side.
    pub png: Option<crate::render::DeflateComparison>,
    /// When each of the export's phases last finished (the medians over its runs).
    pub export_phases: Option<crate::export::phases::Phases>,
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
/// matrix at least once, flow and the backbone once together where the backbone's first sweep
/// rode along with the flow solve; roles and credit touch O(N) and are left out.
#[derive(Clone, Copy, Debug)]
pub struct StepBytes {
    pub aggregate: usize,
    pub reach: usize,
    pub flow: usize,
    pub backbone: usize,
}

impl StepBytes {
    pub fn of(attention_bytes: usize, n: usize, times: &StepTimes) -> Self {
        let matrix = crate::flow::Matrix::bytes_for(n);
        let backbone = if times.backbone_sweep_in_flow { 0 } else { matrix };
        StepBytes { aggregate: attention_bytes + matrix, reach: matrix, flow: matrix, backbone }
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

/// What [`time_pipeline`] measured: the median of each step and of the whole pipeline, the peak
/// heap, the slabs aggregated, whether every run's matrix was fresh, and the file's read floor
/// (bytes/s) taken between the runs.
struct Timed {
    steps: StepTimes,
    pipeline: Duration,
    peak_heap: Option<usize>,
    slabs: usize,
    fresh: bool,
    floor: f64,
}

/// Untimed rounds of a case's runs before the timed ones. A file just written reads faster pass
/// after pass over its first three or four (on a 4k `[N,N]` F32 trace the read floor's first
/// passes ran at 20, 30, 36 and 42 GB/s, then 42–48; the pipeline's at 15.1 ms, its matrix
/// fresh memory, then 8.0, 7.1 and 6.6–7.0): two rounds of the pipeline and the floor take
/// those passes, so that the timed runs all read the file as warm as one another.
const WARM_UP_ROUNDS: usize = 2;

/// The pipeline and the file's read floor, taking turns `repeat` times after
/// [`WARM_UP_ROUNDS`], the median of each. Each run opens the file afresh, so every run pays for
/// its mapping and its checks. The turns give the two the same warmth (the pipeline the earlier
/// pass of each turn), where the pipeline's runs had all come before the floor's, on a file
/// still warming, and been read against the floor of a warm one (at 4k, 10.0 ms against
/// 7.0–7.4 now).
fn time_pipeline(path: &Path, params: &Params, repeat: usize, backend: &dyn Backend) -> Result<Timed, String> {
    let open = || Trace::open(path).map_err(|e| e.to_string());
    let run = |trace: &Trace| backend.run_batch(&[trace], params, &Cancel::default()).pop().expect("one result").map_err(|e| e.to_string());
    for _ in 0..WARM_UP_ROUNDS {
        run(&open()?)?;
        read_floor(path, 1)?;
    }
    let mut runs: Vec<(StepTimes, Duration, usize)> = Vec::new();
    let mut floors = Vec::new();
    let mut slabs = 1;
    let mut fresh = true;
    for _ in 0..repeat.max(1) {
        let trace = open()?;
        let heap = crate::alloc::measure();
        // A dropped matrix's storage the pipeline writes over (`Matrix::for_overwrite`) was heap
        // before the run: it counts in the peak, as the fresh allocation it replaces would.
        let reused = crate::flow::matrix::reused_bytes();
        let t = Instant::now();
        let r = run(&trace)?;
        let total = t.elapsed();
        slabs = r.layers.len().max(1) * r.heads.len().max(1);
        let taken_over = crate::flow::matrix::reused_bytes() - reused;
        fresh &= taken_over == 0;
        runs.push((r.times, total, heap.peak() + taken_over));
        floors.push(read_floor(path, 1)?);
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
        // Every run of one case takes the same path.
        backbone_sweep_in_flow: runs.iter().any(|r| r.0.backbone_sweep_in_flow),
    };
    let peak = runs.iter().map(|r| r.2).max().unwrap_or(0);
    Ok(Timed { steps, pipeline: med(&|r| r.1), peak_heap: crate::alloc::installed().then_some(peak), slabs, fresh, floor: median(floors) })
}

/// Runs the peer script (`python3 SCRIPT FILE --bench REPEAT`) and reads its median pipeline time.
pub fn run_peer(script: &Path, file: &Path, repeat: usize) -> Result<Duration, String> {
    let out = python3(script, &[script.as_os_str(), file.as_os_str(), "--bench".as_ref(), repeat.max(1).to_string().as_ref()])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("peer output: {e}"))?;
    let ms = v["ms"]["pipeline"].as_f64().ok_or("peer output has no ms.pipeline")?;
    Ok(Duration::from_secs_f64(ms / 1e3))
}

/// Whether the peer can run at all, asked once before the first case: the script is a file and
/// `python3` imports what it needs. A missing SciPy is then said at once, not after the first
/// case's timing.
pub fn check_peer(script: &Path) -> Result<(), String> {
    if !script.is_file() {
        return Err(format!("peer {}: no such file", script.display()));
    }
    python3(script, &["-c".as_ref(), "import numpy, scipy.linalg".as_ref()]).map(|_| ())
}

/// `python3 ARGS` on the peer's behalf: its output where it succeeded, or what went wrong.
fn python3(script: &Path, args: &[&std::ffi::OsStr]) -> Result<std::process::Output, String> {
    let out = std::process::Command::new("python3").args(args).output().map_err(|e| format!("peer {}: python3: {e}", script.display()))?;
    match out.status.success() {
        true => Ok(out),
        false => Err(peer_failure(script, &out)),
    }
}

/// What a failed peer says: a missing module as Python's one line and what to install (the
/// traceback above it says no more); anything else with Python's whole message.
fn peer_failure(script: &Path, out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no message");
    match last.starts_with("ModuleNotFoundError") {
        true => format!("peer {}: {last}: it needs NumPy and SciPy where `python3` runs (pip install numpy scipy)", script.display()),
        false => format!("peer {} failed ({}): {}", script.display(), out.status, stderr.trim_end()),
    }
}

pub struct BenchCase {
    pub n: usize,
    /// 2: `[N,N]`, 3: `[L,N,N]` (heads averaged), 4: `[L,H,N,N]`.
    pub rank: usize,
    pub layers: usize,
    pub heads: usize,
    pub dtype: Dtype,
}

impl BenchCase {
    pub fn label(&self) -> String {
        match self.rank {
            2 => format!("[N,N] {}", self.dtype.name()),
            3 => format!("[{},N,N] {}", self.layers, self.dtype.name()),
            _ => format!("[{},{},N,N] {}", self.layers, self.heads, self.dtype.name()),
        }
    }
}

/// From this many tokens a bench trace is `[N,N]` F16 (as long traces are stored; its
/// `[L,H,N,N]` F16 would be 34 GB at 16k) and the peer is not run: NumPy's float64 pipeline took
/// 110 s and 9 GB at 16k (2026-12-06), and at 32k its copies of the matrix alone would outgrow a
/// 24 GiB machine.
pub const LONG: usize = 16384;

/// The cases at `n` tokens, the first one exported: `[N,N]` F32, as a short trace is stored (from
/// 16k tokens F16, as long ones are), then unless `no_heads` the `[L,H,N,N]` F16 a model's capture
/// writes; with `layouts` every element type in every layout below 16k, for the aggregation (the
/// one step that reads the attention, so the one its layout and type change).
pub fn cases(n: usize, no_heads: bool, layouts: bool) -> Vec<BenchCase> {
    let long = n >= LONG;
    let (l, h) = if n >= 8192 { (2, 4) } else { (4, 8) };
    let case = |rank: usize, dtype: Dtype| match rank {
        2 => BenchCase { n, rank, layers: 1, heads: 1, dtype },
        3 => BenchCase { n, rank, layers: l, heads: 1, dtype },
        _ => BenchCase { n, rank, layers: l, heads: h, dtype },
    };
    let mut cases = vec![case(2, if long { Dtype::F16 } else { Dtype::F32 })];
    if long {
        return cases;
    }
    if !no_heads {
        cases.push(case(4, Dtype::F16));
    }
    if layouts {
        for dtype in [Dtype::F32, Dtype::F16, Dtype::BF16] {
            for rank in [2, 3, 4] {
                if !cases.iter().any(|c| c.rank == rank && c.dtype == dtype) {
                    cases.push(case(rank, dtype));
                }
            }
        }
    }
    cases
}

pub fn run_case(
    case: &BenchCase,
    dir: &Path,
    backend: &dyn Backend,
    repeat: usize,
    with_export: bool,
    peer: Option<&Path>,
) -> Result<BenchRow, String> {
    let spec = SynthSpec {
        seed: case.n as u64,
        target_tokens: case.n,
        layers: case.layers,
        heads: case.heads,
        dtype: case.dtype,
        rank: case.rank,
        no_answer: false,
    };
    spec.check()?;
    let builder = synth_trace(&spec);
    let path = dir.join(format!("bench_{}_{}x{}_{}.safetensors", case.n, case.layers, case.heads, case.dtype.name()));
    builder.write(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    drop(builder);
    let trace = Trace::open(&path).map_err(|e| e.to_string())?;
    let params = Params::default();
    let Timed { steps, pipeline, peak_heap, slabs, fresh, floor } = time_pipeline(&path, &params, repeat, backend)?;
    let device = {
        let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        // SAFETY: the bench wrote this file and nothing changes it while it is mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| format!("{}: {e}", path.display()))?;
        backend.memory_floor(&map, repeat).transpose().map_err(|e| format!("the device's floor: {e}"))?
    };
    let first_touch = fresh.then(|| first_touch_floor(crate::flow::Matrix::bytes_for(trace.n()), repeat));
    let peer = peer.filter(|_| case.n < LONG).map(|script| run_peer(script, &path, repeat)).transpose()?;
    // The median of `repeat` exports, each into a folder of its own (an export never writes over
    // an earlier one's files, so a second run into the same folder would time the renaming),
    // removed after it unless it was there before. The first one's credit picture is kept.
    // Where the pipeline's matrix was fresh memory in every run, so is each export's.
    let mut credit_png = None;
    let mut phases = Vec::new();
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let mut export = |formats: crate::export::Formats, name: &str| -> Result<Duration, String> {
        let times = (0..repeat.max(1))
            .map(|i| {
                let out = dir.join(format!("{name}_{}_{i}", case.n));
                let ours = !out.exists();
                if fresh {
                    crate::flow::matrix::drop_spares();
                }
                let t = Instant::now();
                let (_, phased) = crate::export::export_phased(&out, crate::export::plan(std::slice::from_ref(&path), Some(&out), false), &params, formats, backend)?;
                let elapsed = t.elapsed();
                if formats == crate::export::Formats::ALL {
                    phases.push(phased);
                }
                if formats.png && credit_png.is_none() {
                    let file = out.join(format!("{stem}.credit.png"));
                    credit_png = Some(std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?);
                }
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
    let png = credit_png.map(|bytes| crate::render::compare_png_deflates(&bytes, repeat)).transpose().map_err(|e| format!("the credit picture: {e}"))?;
    Ok(BenchRow {
        n: trace.n(),
        layout: case.label(),
        attention_bytes: slabs * trace.n() * trace.n() * trace.attention.dtype.size(),
        steps,
        pipeline,
        export,
        export_without_png,
        png,
        export_phases: crate::export::phases::Phases::median(&phases),
        peak_heap,
        peer,
        floor,
        first_touch,
        device,
    })
}

/// A batch's rate, on the pool and on one thread, and the rate its files allow: traces per
/// second.
pub struct BatchRate {
    pub count: usize,
    pub n: usize,
    pub backend: &'static str,
    /// The pool's threads.
    pub threads: usize,
    pub rate: f64,
    /// The same batch on a pool of one thread: `rate` over this is what the batch gains from
    /// the pool's threads.
    pub one_thread: f64,
    /// The same batch as an RL step runs it, making only the credit (`Backend::credit_batch`),
    /// on the pool and on one thread.
    pub credit_rate: f64,
    pub credit_one_thread: f64,
    /// Each trace's file read once, at the read floor measured over the batch's own files: the
    /// bytes that must come from memory. A 1k-token trace's matrix (2 MiB) is not counted: the
    /// steps that read it after the aggregation read it back from the caches, not from memory.
    pub floor: f64,
    /// Where one thread's time goes: each step's mean time a trace over the one-thread runs, so
    /// the batch's bound can be read step by step.
    pub one_thread_steps: StepTimes,
    /// A trace's file, in bytes (the mean over the batch).
    pub file_bytes: f64,
    /// The files' read floor on the one-thread pool, bytes/s: what the aggregation's read is
    /// set against.
    pub one_thread_floor: f64,
    /// The same traces exported as a run (`flowtracer --export`), every format and then
    /// without the PNG pictures: traces/s, against `rate`, what a CI user waits for beside the
    /// method.
    pub export: f64,
    pub export_without_png: f64,
}

/// A batch of `count` different traces of about `n` tokens (`[N,N]` F32), run as one
/// `run_batch` as the RL loop runs a step's rollouts, on the pool and on one thread, with the
/// files' read floor taken between the runs so all three see the same hour of the machine:
/// the median of `repeat` of each.
pub fn batch_throughput(n: usize, count: usize, dir: &Path, backend: &dyn Backend, repeat: usize) -> Result<BatchRate, String> {
    let mut paths = Vec::with_capacity(count);
    for i in 0..count {
        let spec = SynthSpec { seed: 1000 + i as u64, target_tokens: n, layers: 1, heads: 1, dtype: Dtype::F32, rank: 2, no_answer: false };
        spec.check()?;
        let path = dir.join(format!("batch_{n}_{i}.safetensors"));
        synth_trace(&spec).write(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        paths.push(path);
    }
    let file_bytes: u64 = paths.iter().map(|p| std::fs::metadata(p).map(|m| m.len()).map_err(|e| format!("{}: {e}", p.display()))).sum::<Result<u64, String>>()?;
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().map_err(|e| format!("a pool of one thread: {e}"))?;
    let params = Params::default();
    // The rate, and the steps' times summed over the batch's traces, making what `scope` asks.
    let run = |scope: Scope| -> Result<(f64, StepTimes), String> {
        let traces: Vec<Trace> = paths.iter().map(|p| Trace::open(p).map_err(|e| e.to_string())).collect::<Result<_, _>>()?;
        let refs: Vec<&Trace> = traces.iter().collect();
        let t = Instant::now();
        let results = backend.batch_in(scope, &refs, &params, &Cancel::default());
        let secs = t.elapsed().as_secs_f64();
        let mut steps = StepTimes::default();
        for r in results {
            steps.add(&r.map_err(|e| e.to_string())?.times);
        }
        Ok((count as f64 / secs.max(1e-9), steps))
    };
    let (mut rates, mut one_rates, mut floors, mut one_floors) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut credit_rates, mut credit_one_rates) = (Vec::new(), Vec::new());
    let mut one_steps = StepTimes::default();
    // The files were just written: see `WARM_UP_ROUNDS`.
    for _ in 0..WARM_UP_ROUNDS {
        run(Scope::Everything)?;
        files_read_floor(&paths, 1)?;
    }
    for _ in 0..repeat.max(1) {
        rates.push(run(Scope::Everything)?.0);
        let (rate, steps) = one.install(|| run(Scope::Everything))?;
        one_rates.push(rate);
        one_steps.add(&steps);
        credit_rates.push(run(Scope::Credit)?.0);
        credit_one_rates.push(one.install(|| run(Scope::Credit))?.0);
        floors.push(files_read_floor(&paths, 1)?);
        one_floors.push(one.install(|| files_read_floor(&paths, 1))?);
    }
    // Each export into a folder of its own (see `run_case`), removed after it.
    let export = |formats: crate::export::Formats, name: &str| -> Result<f64, String> {
        let rates = (0..repeat.max(1))
            .map(|i| {
                let out = dir.join(format!("batch_{name}_{n}_{i}"));
                let t = Instant::now();
                let summary = crate::export::export(&out, crate::export::plan(&paths, Some(&out), false), &params, formats, backend, &Cancel::default(), &|_| {});
                let secs = t.elapsed().as_secs_f64();
                let _ = std::fs::remove_dir_all(&out);
                match summary? {
                    s if s.exported == count => Ok(count as f64 / secs.max(1e-9)),
                    s => Err(format!("the batch's export: {} of {count} traces exported", s.exported)),
                }
            })
            .collect::<Result<Vec<f64>, String>>()?;
        Ok(median(rates))
    };
    let (all, without_png) = (export(crate::export::Formats::ALL, "export")?, export(crate::export::Formats { png: false, ..crate::export::Formats::ALL }, "export_without_png")?);
    for p in &paths {
        let _ = std::fs::remove_file(p);
    }
    Ok(BatchRate {
        count,
        n,
        backend: backend.name(),
        threads: rayon::current_num_threads(),
        rate: median(rates),
        one_thread: median(one_rates),
        credit_rate: median(credit_rates),
        credit_one_thread: median(credit_one_rates),
        floor: median(floors) * count as f64 / file_bytes as f64,
        one_thread_steps: one_steps.scaled(1.0 / (count * repeat.max(1)) as f64),
        file_bytes: file_bytes as f64 / count as f64,
        one_thread_floor: median(one_floors),
        export: all,
        export_without_png: without_png,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that cannot run is said before any case: a missing script by its path, a missing
    /// module in one line with what to install, any other failure with Python's whole message.
    #[cfg(unix)]
    #[test]
    fn a_peer_that_cannot_run_says_why() {
        use std::os::unix::process::ExitStatusExt;
        let script = Path::new("no/such/peer.py");
        assert_eq!(check_peer(script).unwrap_err(), "peer no/such/peer.py: no such file");
        let failed = |stderr: &str| std::process::Output { status: std::process::ExitStatus::from_raw(1 << 8), stdout: vec![], stderr: stderr.as_bytes().to_vec() };
        let missing = "Traceback (most recent call last):\n  File \"peer.py\", line 24, in <module>\n    from scipy.linalg import solve_triangular\nModuleNotFoundError: No module named 'scipy'\n";
        assert_eq!(
            peer_failure(Path::new("peer.py"), &failed(missing)),
            "peer peer.py: ModuleNotFoundError: No module named 'scipy': it needs NumPy and SciPy where `python3` runs (pip install numpy scipy)"
        );
        let other = "Traceback (most recent call last):\n  File \"peer.py\", line 90\nValueError: bad header\n";
        let said = peer_failure(Path::new("peer.py"), &failed(other));
        assert!(said.starts_with("peer peer.py failed (exit status: 1): Traceback") && said.ends_with("ValueError: bad header"), "{said}");
    }

    /// The batch runs on the pool and on one thread and reads its files at the floor, all
    /// measured (positive, finite), and leaves no file behind.
    #[test]
    fn a_batch_is_timed_on_the_pool_on_one_thread_and_against_its_files() {
        let dir = std::env::temp_dir().join(format!("ft-bench-batch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let r = batch_throughput(64, 4, &dir, &crate::flow::Cpu, 1).unwrap();
        for (what, v) in [("rate", r.rate), ("one thread", r.one_thread), ("floor", r.floor), ("one thread's floor", r.one_thread_floor), ("export", r.export), ("export without PNG", r.export_without_png)] {
            assert!(v.is_finite() && v > 0.0, "{what}: {v}");
        }
        // One thread's steps are the traces' own times: each step ran, and together they are
        // no longer than a trace takes on that thread.
        let steps = &r.one_thread_steps;
        assert!(steps.aggregate > Duration::ZERO && steps.reach > Duration::ZERO && steps.backbone > Duration::ZERO, "{steps:?}");
        assert!(steps.total().as_secs_f64() <= 1.0 / r.one_thread, "{steps:?} against {} traces/s", r.one_thread);
        assert!(r.file_bytes > (64 * 64 * 4) as f64, "a file holds its [N,N] F32 attention: {}", r.file_bytes);
        assert_eq!((r.count, r.n, r.backend), (4, 64, "cpu"));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "the batch's files are removed");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `--layouts` adds every element type in every layout once, after the default cases (the
    /// first, exported, still `[N,N]` F32); long traces keep their one `[N,N]` F16 case.
    #[test]
    fn layouts_are_every_type_in_every_layout_once() {
        let labels = |n, no_heads, layouts| cases(n, no_heads, layouts).iter().map(BenchCase::label).collect::<Vec<_>>();
        assert_eq!(labels(4096, false, false), ["[N,N] F32", "[4,8,N,N] F16"]);
        assert_eq!(labels(8192, true, false), ["[N,N] F32"]);
        let all = labels(4096, false, true);
        assert_eq!(all.len(), 9);
        assert_eq!(all[..2], ["[N,N] F32", "[4,8,N,N] F16"]);
        for dtype in ["F32", "F16", "BF16"] {
            for layout in ["[N,N]", "[4,N,N]", "[4,8,N,N]"] {
                assert_eq!(all.iter().filter(|l| **l == format!("{layout} {dtype}")).count(), 1, "{layout} {dtype} in {all:?}");
            }
        }
        assert!(labels(8192, false, true).contains(&"[2,N,N] BF16".to_string()));
        assert_eq!(labels(16384, false, true), ["[N,N] F16"]);
    }
}
