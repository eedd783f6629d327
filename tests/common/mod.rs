//! Helpers shared by the integration tests: hand-made graphs and throwaway files.
#![allow(dead_code)]

use flowtracer::flow::{self, FlowResult, Matrix};
use flowtracer::span::{Span, Spans};
use flowtracer::synth::Rng;
use flowtracer::trace::{AttentionInput, Dtype, TraceBuilder};
use flowtracer::Params;
use std::ffi::OsStr;
use std::ops::Deref;
use std::path::{Path, PathBuf};

/// A fresh folder under the system temp dir, unique per test.
pub fn temp_dir(name: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!("flowtracer-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

/// A test's scratch folder: removed when the test passes, kept when it panics so that the files
/// behind a failure can be looked at. Runs would otherwise leave ~150 MB in /tmp each time.
pub struct TempDir(PathBuf);

impl Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<OsStr> for TempDir {
    fn as_ref(&self) -> &OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn spans(q: (usize, usize), r: (usize, usize), a: (usize, usize)) -> Spans {
    Spans { question: Span::new(q.0, q.1), response: Span::new(r.0, r.1), answer: Span::new(a.0, a.1) }
}

/// M from (query k, key i, weight) triples.
pub fn matrix(n: usize, edges: &[(usize, usize, f32)]) -> Matrix {
    let mut m = Matrix::zeros(n);
    for &(k, i, w) in edges {
        m.set(k, i, w);
    }
    m
}

/// Every step on the CPU between the trace's own spans, keeping the aggregated matrix.
pub fn analyze_keeping(t: &flowtracer::Trace, p: &Params) -> (FlowResult, Matrix) {
    let plan = flow::Plan::for_trace(t, p).unwrap();
    flow::execute(t, &plan, &flow::Cpu, &Default::default()).unwrap()
}

pub fn solve(m: &Matrix, s: Spans, p: &Params) -> FlowResult {
    flow::solve_graph(m, s, p)
}

/// A trace whose flow runs along "hub" tokens `hop` apart (more than a block of rows), each
/// attending to the last two hubs and the question; every other response token attends only to
/// itself, so it reaches nothing. The backbone's widest paths then take long hops from sources
/// far before the row's block, and most of the response has throughput exactly 0: the credit's
/// selection is decided by its tie rule (earlier token first).
pub fn long_hop_trace(n: usize, hop: usize) -> TraceBuilder {
    let q = 4;
    let mut values = vec![0f32; n * n];
    let hubs: Vec<usize> = (q + hop..n - 1).step_by(hop).collect();
    for k in 0..n {
        let row = &mut values[k * n..(k + 1) * n];
        if k == n - 1 || hubs.contains(&k) {
            let before: Vec<usize> = hubs.iter().copied().filter(|&h| h < k).rev().take(2).collect();
            let (near, far) = (before.first().copied().unwrap_or(1), before.get(1).copied().unwrap_or(2));
            row[near] += 0.5;
            row[far] += 0.3;
            for x in &mut row[..q] {
                *x += 0.05;
            }
        } else {
            row[k] = 1.0;
        }
    }
    let tokens: Vec<String> = (0..n).map(|i| format!(" t{i}")).collect();
    TraceBuilder::new(tokens, Span::new(0, q), Span::new(q, n), Span::new(n - 1, n), AttentionInput { shape: vec![n, n], values, dtype: Dtype::F32 })
}

/// Random causal attention rows that sum to 1 (with a sink and a little sparsity), [N,N].
pub fn random_attention(n: usize, rng: &mut Rng) -> Vec<f32> {
    let mut v = vec![0f32; n * n];
    for k in 0..n {
        let row = &mut v[k * n..(k + 1) * n];
        let mut total = 0.0;
        for (i, slot) in row[..=k].iter_mut().enumerate() {
            let x = if rng.f64() < 0.3 { 0.0 } else { rng.f64().powi(3) };
            let x = if i == 0 { x + 0.5 } else { x };
            *slot = x as f32;
            total += x;
        }
        for x in row[..=k].iter_mut() {
            *x = (*x as f64 / total) as f32;
        }
    }
    v
}

/// A valid small trace with random attention and random spans.
pub fn random_trace(n: usize, seed: u64) -> TraceBuilder {
    let mut rng = Rng::new(seed);
    let q0 = rng.below(n / 4 + 1);
    let q1 = (q0 + 1 + rng.below(n / 4 + 1)).min(n - 1);
    let r0 = q1 + rng.below(2).min(n - 1 - q1);
    let a0 = r0 + rng.below(n - r0);
    let a1 = (a0 + 1 + rng.below(3)).min(n);
    let tokens: Vec<String> = (0..n).map(|i| format!(" t{i}")).collect();
    let values = random_attention(n, &mut rng);
    TraceBuilder::new(
        tokens,
        Span::new(q0, q1),
        Span::new(r0, n),
        Span::new(a0, a1),
        AttentionInput { shape: vec![n, n], values, dtype: Dtype::F32 },
    )
}

/// A tiny valid trace with a chain of attention: each token looks at its predecessor.
pub fn chain_builder(n: usize, dtype: Dtype, shape: Vec<usize>) -> TraceBuilder {
    let slabs: usize = shape[..shape.len() - 2].iter().product();
    let mut values = vec![0f32; slabs * n * n];
    for s in 0..slabs {
        for k in 0..n {
            let row = &mut values[s * n * n + k * n..s * n * n + (k + 1) * n];
            if k == 0 {
                row[0] = 1.0;
            } else {
                row[k - 1] = 0.75;
                row[0] += 0.25;
            }
        }
    }
    let tokens: Vec<String> = (0..n).map(|i| format!(" w{i}")).collect();
    TraceBuilder::new(
        tokens,
        Span::new(0, 2),
        Span::new(2, n),
        Span::new(n - 1, n),
        AttentionInput { shape, values, dtype },
    )
}

/// [`chain_builder`]'s [N,N] chain with these tokens (question the first two, answer the last).
pub fn chain_with_tokens(tokens: Vec<String>, dtype: Dtype) -> TraceBuilder {
    let n = tokens.len();
    let mut b = chain_builder(n, dtype, vec![n, n]);
    b.set_tokens(tokens);
    b
}

/// A device backend's result against the CPU reference, at the stated tolerance: relative 1e-4 on
/// reach, flow and throughput (f32 against f64), the same backbone paths, and credit on the same
/// tokens except where throughputs tie within the tolerance.
pub fn assert_matches_cpu(trace: &flowtracer::Trace, cpu: &FlowResult, dev: &FlowResult, backend: &str) {
    let name = format!("{} (N = {})", trace.path.display(), trace.n());
    let ran = dev.provenance.label();
    assert!(ran.starts_with(backend), "{name}: ran on {ran}");
    assert!(dev.provenance.fallbacks.is_empty(), "{name}: steps fell back to the CPU: {:?}", dev.provenance.fallbacks);
    assert_eq!(dev.status, cpu.status, "{name}");
    for (key, a, b) in [("reach", &cpu.reach, &dev.reach), ("flow", &cpu.flow, &dev.flow), ("throughput", &cpu.throughput, &dev.throughput)] {
        for (k, (x, y)) in a.iter().zip(b.iter()).enumerate() {
            assert!((x - y).abs() <= 1e-4 * x.abs().max(y.abs()) + 1e-12, "{name} {key}[{k}]: cpu {x} vs {backend} {y}");
        }
    }
    assert_eq!(dev.backbone.len(), cpu.backbone.len(), "{name}: backbone");
    for (a, b) in cpu.backbone.iter().zip(&dev.backbone) {
        assert_eq!(a.tokens, b.tokens, "{name}: backbone path");
        assert!((a.flow - b.flow).abs() <= 1e-3 * a.flow, "{name}: path flow {} vs {}", a.flow, b.flow);
    }
    for k in 0..trace.n() {
        if cpu.credit[k] != dev.credit[k] {
            let cut = cpu.throughput[k];
            let near = cpu.throughput.iter().filter(|&&t| (t - cut).abs() <= 1e-4 * cut.abs()).count();
            assert!(near > 1, "{name}: credit of token {k} differs without a tie");
        }
    }
}

/// A trace whose query row 2 attends to key 4, above the diagonal: every backend must refuse it
/// with the CPU's error naming that row.
pub fn noncausal_trace(n: usize) -> TraceBuilder {
    let mut values = random_attention(n, &mut Rng::new(3));
    values[2 * n + 4] = 0.5;
    let tokens: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    TraceBuilder::new(tokens, Span::new(0, 1), Span::new(1, n), Span::new(n - 1, n), AttentionInput { shape: vec![n, n], values, dtype: Dtype::F32 })
}

/// What a test needs from the machine (a wgpu adapter, a CUDA device, NVRTC): `Some` when it is
/// there; otherwise the test says it skipped and why, or fails when `var`=1 (CI, the device script).
pub fn required_or_skip<T>(found: Result<T, String>, var: &str, what: &str, hint: &str) -> Option<T> {
    match found {
        Ok(x) => Some(x),
        Err(why) => {
            assert!(std::env::var(var).map_or(true, |v| v != "1"), "{var}=1 but there is no {what}: {why}");
            // Straight to the process's stderr, past the test harness's capture: a passing test's
            // output is hidden, and a skip must be seen.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED {}: no {what} ({why}){hint}", std::thread::current().name().unwrap_or("a test"));
            None
        }
    }
}

/// Waits for a child started with its stderr piped, killing it past the deadline: a hang is a
/// failure, never a stuck CI job.
pub fn wait_with_deadline(child: &mut std::process::Child, secs: u64) -> std::process::Output {
    use std::io::Read;
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed().as_secs() > secs {
            let _ = child.kill();
            panic!("the command did not finish within {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (mut out, mut err) = (Vec::new(), Vec::new());
    if let Some(mut s) = child.stdout.take() {
        s.read_to_end(&mut out).unwrap();
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_end(&mut err).unwrap();
    }
    std::process::Output { status: child.wait().unwrap(), stdout: out, stderr: err }
}

/// Runs `bench --backend BACKEND` on one small case through `cmd` (the binary, with whatever
/// environment the backend needs) and checks the table of the device's own floor: one row, its
/// floors measured rates, each step's cell a rate and a share of the memory's, the pipeline a
/// multiple of its floor; the aggregation's kernels timed on the device where `kernels_timed`
/// (CUDA's events, an adapter's timestamps) and empty where not; on CUDA the upload from
/// pageable memory beside the link's rate (wgpu has one way up).
pub fn assert_device_floor_table(mut cmd: std::process::Command, backend: &str, kernels_timed: bool, dir: &std::path::Path) {
    let cuda = backend == "cuda";
    cmd.args(["bench", "--backend", backend, "--sizes", "96", "--repeat", "1", "--batch", "0", "--no-heads", "--dir"]).arg(dir.join("bench"));
    let o = cmd.output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.starts_with(&format!("backend {backend} on ")), "{stdout}");
    let table = stdout.split("Against the device's own floor").nth(1).unwrap_or_else(|| panic!("no device table:\n{stdout}"));
    let rows: Vec<Vec<&str>> = table.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| N ")).map(|l| l.trim_matches(|c| c == '|' || c == ' ').split(" | ").collect()).collect();
    assert_eq!(rows.len(), 1, "one case, one row:\n{table}");
    let row = &rows[0];
    assert_eq!(row.len(), 10, "{table}");
    let rate = |cell: &str| -> f64 { cell.parse().unwrap_or_else(|_| panic!("{cell:?} is not a rate:\n{table}")) };
    let (link, pageable) = row[3].split_once(" · ").unwrap_or_else(|| panic!("link · pageable:\n{table}"));
    assert!(rate(row[2]) > 0.0 && rate(link) > 0.0, "the floors are measured rates:\n{table}");
    if cuda {
        assert!(rate(pageable) > 0.0, "CUDA: the pageable upload beside the link's rate:\n{table}");
    } else {
        assert_eq!(pageable, "-", "wgpu has one way up:\n{table}");
    }
    let mut steps = vec![6, 7];
    if kernels_timed {
        steps.push(4);
    } else {
        assert_eq!(row[4], "-", "no timer, no kernel figure:\n{table}");
    }
    for column in steps {
        let parts: Vec<&str> = row[column].split(" · ").collect();
        assert_eq!(parts.len(), 3, "column {column}: MB · GB/s · % of memory:\n{table}");
        assert!(rate(parts[1]) > 0.0 && rate(parts[2].trim_end_matches('%')) > 0.0, "column {column}:\n{table}");
    }
    assert!(rate(row[8]) > 0.0, "the backbone's time on the host:\n{table}");
    assert!(rate(row[9].split(" · ").nth(1).unwrap().trim_end_matches('×')) > 0.0, "{table}");
}
