//! `flowtracer fidelity`: the per-token check read back from trace files that carry their
//! measured `causal_effect`. An effect made equal to a score must rank that score first (ρ = 1,
//! AUC = 1), whatever the traces; the binary finds the traces in a folder, counts the ones
//! without effects and names a broken file.

mod common;
use common::temp_dir;
use flowtracer::fidelity::{self, ANSWER_CHANGED};
use flowtracer::synth::{SynthSpec, synth_trace};
use flowtracer::trace::Dtype;
use flowtracer::{Cancel, Params, Trace};
use std::path::Path;

/// A synthetic `[L,H,N,N]` trace whose measured effect is its own flow throughput under the
/// default parameters (scaled, so the nats are not the score's own numbers), and whose answer
/// "changed" where that throughput is above the response's median.
fn measured_trace(seed: u64, dir: &Path) -> std::path::PathBuf {
    let spec = SynthSpec { seed, target_tokens: 120, layers: 4, heads: 2, dtype: Dtype::F16, rank: 4, no_answer: false };
    let plain = Trace::from_bytes(synth_trace(&spec).to_bytes(), Path::new("plain")).unwrap();
    let tau = flowtracer::analyze(&plain, &Params::default(), &Cancel::default()).unwrap().throughput;
    let probed: Vec<usize> = (plain.spans.response.start..plain.spans.answer.start).collect();
    let mut sorted: Vec<f64> = probed.iter().map(|&t| tau[t]).collect();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let changed: Vec<usize> = probed.iter().copied().filter(|&t| tau[t] > median).collect();
    let path = dir.join(format!("measured_{seed}.safetensors"));
    synth_trace(&spec)
        .causal_effect(tau.iter().map(|&v| (3.0 * v) as f32).collect())
        .meta(ANSWER_CHANGED, serde_json::to_string(&changed).unwrap())
        .write(&path)
        .unwrap();
    path
}

fn row<'a>(table: &'a str, score: &str) -> Vec<&'a str> {
    let line = table.lines().find(|l| l.starts_with(&format!("| {score} |"))).unwrap_or_else(|| panic!("no row {score} in\n{table}"));
    line.trim_matches('|').split('|').map(str::trim).collect()
}

#[test]
fn a_score_equal_to_the_effect_ranks_first() {
    let dir = temp_dir("fidelity-score");
    let traces: Vec<Trace> = (1..=4).map(|seed| Trace::open(&measured_trace(seed, &dir)).unwrap()).collect();
    // Two traces without effects among them: counted, left out.
    let without = || Trace::open(Path::new("sample_traces/addition.safetensors")).unwrap();
    let given: Vec<Trace> = [without()].into_iter().chain(traces.iter().map(|t| Trace::open(&t.path).unwrap())).chain([without()]).collect();
    let ticks = std::sync::atomic::AtomicUsize::new(0);
    let measured = fidelity::measure(&given, &Params::default(), 0, &Cancel::default(), &|| {
        ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(ticks.into_inner(), 6, "told after each trace");
    let probed: usize = traces.iter().map(|t| t.spans.answer.start - t.spans.response.start).sum();
    assert_eq!(measured.effects.iter().map(Vec::len).sum::<usize>(), probed);
    let table = fidelity::table(&measured, 0);
    assert!(table.starts_with(&format!("4 traces with causal_effect, {probed} tokens probed")), "{table}");
    assert!(table.contains("2 traces without causal_effect left out"), "{table}");
    // | score | AUC | CI | traces | ρ | CI | traces |
    let throughput = row(&table, "flow throughput");
    assert_eq!((throughput[1], throughput[3], throughput[4], throughput[6]), ("1.000 ± 0.000", "4", "1.000 ± 0.000", "4"), "{table}");
    let random = row(&table, "random");
    let rho: f64 = random[4].split(' ').next().unwrap().parse().unwrap();
    assert!(rho.abs() < 0.3, "random does not rank the effect: {table}");
    // The synthetic traces have 4 layers: throughput under each choice of them.
    for choice in fidelity::layer_choices(4) {
        row(&table, &format!("throughput, layers [{}, {}) ({})", choice.1[0], choice.1[1], choice.0));
    }
    // Without the answer's changes, the Spearman columns alone.
    let untold: Vec<Trace> = traces
        .iter()
        .map(|t| {
            let mut t = Trace::open(&t.path).unwrap();
            t.meta.extra.remove(ANSWER_CHANGED);
            t
        })
        .collect();
    let spearman_only = fidelity::table(&fidelity::measure(&untold, &Params::default(), 0, &Cancel::default(), &|| {}).unwrap(), 0);
    assert_eq!(row(&spearman_only, "flow throughput")[1..], ["1.000 ± 0.000", "[1.000, 1.000]", "4"], "{spearman_only}");
}

#[test]
fn the_binary_reads_a_folder_and_names_what_it_cannot() {
    let dir = temp_dir("fidelity-cli");
    measured_trace(7, &dir);
    measured_trace(8, &dir);
    std::fs::copy("sample_traces/addition.safetensors", dir.join("no_effect.safetensors")).unwrap();
    std::fs::write(dir.join("broken.safetensors"), b"not a trace").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flowtracer")).args(["fidelity", dir.to_str().unwrap()]).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "a broken input fails the run\n{stdout}\n{stderr}");
    assert!(stderr.contains("broken.safetensors"), "{stderr}");
    assert!(stdout.starts_with("2 traces with causal_effect") && stdout.contains("1 traces without causal_effect left out"), "{stdout}");
    assert_eq!(row(&stdout, "flow throughput")[1], "1.000 ± 0.000");
    assert!(fidelity::measure(&[Trace::open(Path::new("sample_traces/addition.safetensors")).unwrap()], &Params::default(), 0, &Cancel::default(), &|| {}).is_err_and(|e| e.contains("(1 without it)")));
    let none = std::process::Command::new(env!("CARGO_BIN_EXE_flowtracer")).args(["fidelity", "sample_traces/addition.safetensors"]).output().unwrap();
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no trace among the inputs carries causal_effect"));
}
