//! The CPU backend against the NumPy/SciPy float64 peer (`tests/peer/flowtracer_numpy.py`) on
//! every sample trace, on random ones, and on synthetic ones in each layout and element type (one
//! long enough for the solves to run on two cores). Needs python3 with numpy and scipy: without
//! them the test says so and passes, unless FLOWTRACER_REQUIRE_PEER=1 (set by CI), where it fails.
//!
//! The engine keeps M in f32. Where a mean over layers and heads is not exact in f32 (the
//! policy's samples: 3–6e-8 of a value), its figures differ from the float64 peer's by that
//! rounding, so each trace is held to two peers: the plain one within [`ROUNDED`], and the one
//! that rounds M to f32 as the engine does (`--f32-matrix`) within [`SAME_M`], which leaves only
//! the order of float64 operations between them.

mod common;
use flowtracer::{Cancel, FlowResult, Params, Trace};
use std::path::{Path, PathBuf};
use std::process::Command;

/// On the same M: the solves' float64 arithmetic in another order (up to 6e-13 seen, on the
/// 3 200-token trace).
const SAME_M: f64 = 1e-10;
/// Against the float64 mean: M's rounding to f32 (a relative error up to 6e-8 in each weight).
const ROUNDED: f64 = 1e-6;

fn peer_available() -> Result<(), String> {
    let out = Command::new("python3").args(["-c", "import numpy, scipy"]).output().map_err(|e| format!("python3: {e}"))?;
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).trim().to_string()) }
}

fn run_peer(path: &Path, f32_matrix: bool) -> serde_json::Value {
    let mut peer = Command::new("python3");
    peer.arg("tests/peer/flowtracer_numpy.py").arg(path);
    if f32_matrix {
        peer.arg("--f32-matrix");
    }
    let out = peer.output().unwrap();
    assert!(out.status.success(), "peer failed on {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn compare(path: &Path) {
    let trace = Trace::open(path).unwrap();
    let r = flowtracer::analyze(&trace, &Params::default(), &Cancel::default()).unwrap();
    agree(path, &r, &run_peer(path, true), SAME_M);
    agree(path, &r, &run_peer(path, false), ROUNDED);
}

/// The CPU's result `r` is the peer's `p`: its figures within a relative error of `rel` (and
/// 1e-15 absolute, next to zero), its paths, hubs and checkpoints the same tokens.
fn agree(path: &Path, r: &FlowResult, p: &serde_json::Value, rel: f64) {
    assert_eq!(p["status"], r.status.name(), "{}", path.display());
    let close = |key: &str, ours: &[f64]| {
        let theirs: Vec<f64> = p[key].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(theirs.len(), ours.len());
        for (k, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert!((a - b).abs() <= rel * a.abs().max(b.abs()) + 1e-15, "{} {key}[{k}]: {a} vs peer {b} (within {rel:e})", path.display());
        }
    };
    close("reach", &r.reach);
    close("flow", &r.flow);
    close("throughput", &r.throughput);
    close("credit", &r.credit);
    close("far_sources", &r.far_sources);
    let paths: Vec<Vec<usize>> = r.backbone.iter().map(|b| b.tokens.clone()).collect();
    let peer_paths: Vec<Vec<usize>> = serde_json::from_value(p["backbone"].as_array().unwrap().iter().map(|b| b["tokens"].clone()).collect()).unwrap();
    assert_eq!(paths, peer_paths, "{} backbone", path.display());
    assert_eq!(serde_json::to_value(&r.hubs).unwrap(), p["hubs"], "{} hubs", path.display());
    assert_eq!(serde_json::to_value(&r.checkpoints).unwrap(), p["checkpoints"], "{} checkpoints", path.display());
}

#[test]
fn cpu_backend_matches_the_numpy_peer() {
    if common::required_or_skip(peer_available(), "FLOWTRACER_REQUIRE_PEER", "NumPy peer", "; python3 with numpy and scipy runs it").is_none() {
        return;
    }
    let run = flowtracer::trace::run::discover(Path::new("sample_traces")).unwrap();
    for p in &run.traces {
        compare(p);
    }
    let dir = common::temp_dir("peer");
    for (n, seed) in [(7usize, 1u64), (64, 2), (65, 3), (150, 4)] {
        let path: PathBuf = dir.join(format!("random_{n}.safetensors"));
        common::random_trace(n, seed).write(&path).unwrap();
        compare(&path);
    }
    // Each layout and element type the loader reads, a trace cut before its answer, one long
    // enough that the solves and reach's pushes run on two cores, and a mean over 24 slabs (the
    // three middle layers of four, eight heads each), taken eight at a time by the aggregation.
    use flowtracer::synth::{SynthSpec, synth_trace};
    use flowtracer::trace::Dtype;
    let paired = flowtracer::flow::sweep::PAIRED_FROM;
    let cases = [
        (paired + 128, 4, Dtype::BF16, 2, 1, false),
        (700, 3, Dtype::F16, 5, 1, false),
        (500, 2, Dtype::F32, 1, 1, true),
        (600, 4, Dtype::F16, 4, 8, false),
    ];
    for (i, (target_tokens, rank, dtype, layers, heads, no_answer)) in cases.into_iter().enumerate() {
        let path = dir.join(format!("synth_{i}.safetensors"));
        synth_trace(&SynthSpec { seed: 40 + i as u64, target_tokens, layers, heads, dtype, rank, no_answer }).write(&path).unwrap();
        let n = Trace::open(&path).unwrap().tokens.len();
        assert!(i > 0 || n >= paired, "{n} tokens: too few for the solves to pair");
        compare(&path);
    }
}
