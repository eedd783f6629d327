//! The CPU backend against the NumPy/SciPy float64 peer (`tests/peer/flowtracer_numpy.py`) on
//! every sample trace and on random ones. Needs python3 with numpy and scipy: without them the
//! test says so and passes, unless FLOWTRACER_REQUIRE_PEER=1 (set by CI), where it fails.

mod common;
use flowtracer::{Cancel, Params, Trace};
use std::path::{Path, PathBuf};
use std::process::Command;

fn peer_available() -> Result<(), String> {
    let out = Command::new("python3").args(["-c", "import numpy, scipy"]).output().map_err(|e| format!("python3: {e}"))?;
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).trim().to_string()) }
}

fn run_peer(path: &Path) -> serde_json::Value {
    let out = Command::new("python3").arg("tests/peer/flowtracer_numpy.py").arg(path).output().unwrap();
    assert!(out.status.success(), "peer failed on {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn compare(path: &Path) {
    let trace = Trace::open(path).unwrap();
    let r = flowtracer::analyze(&trace, &Params::default(), &Cancel::default()).unwrap();
    let p = run_peer(path);
    assert_eq!(p["status"], r.status.name(), "{}", path.display());
    let close = |key: &str, ours: &[f64]| {
        let theirs: Vec<f64> = p[key].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(theirs.len(), ours.len());
        for (k, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert!((a - b).abs() <= 1e-6 * a.abs().max(b.abs()) + 1e-12, "{} {key}[{k}]: {a} vs peer {b}", path.display());
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
}
