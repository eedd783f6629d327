//! The headless export end to end, through the real binary, as CI would run it.

mod common;
use common::temp_dir;
use std::path::Path;
use std::process::Command;

fn flowtracer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flowtracer"))
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn exports_a_run_with_one_broken_trace_and_keeps_the_rest() {
    let dir = temp_dir("export-run");
    let run = dir.join("run");
    let step = run.join("step_000001");
    std::fs::create_dir_all(&step).unwrap();
    for entry in std::fs::read_dir("sample_traces/synthetic/demo_run/step_000000").unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, step.join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(step.join("broken.safetensors"), b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":").unwrap();
    std::fs::write(run.join("metrics.jsonl"), "{\"step\":1}\n{\"step\":2\n").unwrap();
    let out = dir.join("out");
    let status = flowtracer()
        .args(["--export", out.to_str().unwrap(), run.to_str().unwrap(), "sample_traces/addition.safetensors"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1), "some traces failed → exit 1");

    let summary = json(&out.join("summary.json"));
    assert_eq!(summary["exported"], 3);
    assert_eq!(summary["failed"], 1);
    let failed: Vec<&serde_json::Value> = summary["traces"].as_array().unwrap().iter().filter(|t| t["status"] == "failed").collect();
    assert_eq!(failed.len(), 1);
    assert!(failed[0]["error"].as_str().unwrap().contains("broken.safetensors"));
    assert!(summary["runs"][0]["warnings"][0].as_str().unwrap().contains("metrics.jsonl:2"), "{}", summary["runs"]);

    // Per-trace files, mirroring the run layout.
    for stem in ["step_000001/sample_0000", "step_000001/sample_0001", "addition"] {
        for ext in ["json", "credit.png", "backbone.svg", "backbone.png"] {
            let p = out.join(format!("{stem}.{ext}"));
            assert!(p.metadata().map(|m| m.len() > 100).unwrap_or(false), "{} missing or empty", p.display());
        }
    }
    let rec = json(&out.join("addition.json"));
    assert_eq!(rec["format"], "flowtracer.credit/1");
    assert_eq!(rec["status"], "ok");
    let n = rec["tokens"].as_array().unwrap().len();
    for key in ["reach", "flow", "throughput", "credit"] {
        assert_eq!(rec[key].as_array().unwrap().len(), n, "{key}");
    }
    assert!((rec["answer_inflow"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    assert!(rec["backbone"][0]["tokens"].as_array().unwrap().len() >= 2);
    assert!(rec["backbone"][0]["flow"].as_f64().unwrap() > 0.0);
    assert_eq!(rec["params"]["credit"]["gamma"], 1.5);
    assert!(rec["spans"]["question"].as_array().unwrap().len() == 2);
    assert!(!rec["hubs"].as_array().unwrap().is_empty());

    // scores.csv: a header and one row per token of every exported trace.
    let csv = std::fs::read_to_string(out.join("scores.csv")).unwrap();
    let total: usize = ["addition", "step_000001/sample_0000", "step_000001/sample_0001"]
        .iter()
        .map(|s| json(&out.join(format!("{s}.json")))["n"].as_u64().unwrap() as usize)
        .sum();
    assert_eq!(csv.lines().count(), total + 1);
    assert!(csv.starts_with("trace,index,token,segment,reach,flow,throughput,credit"));

    // report.html: self-contained, every trace in it, the failure too.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(!html.contains("http://") || html.matches("http://").all(|_| html.contains("xmlns=\"http://www.w3.org/2000/svg\"")));
    assert!(!html.contains("https://") && !html.contains("<script src"), "no network in the report");
    assert!(html.contains("broken.safetensors") && html.contains("sample_0001"));

    // credits.safetensors: γ per token with offsets per trace.
    let bytes = std::fs::read(out.join("credits.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let credit = st.tensor("credit").unwrap();
    assert_eq!(credit.shape(), &[total]);
    let offsets = st.tensor("offsets").unwrap();
    assert_eq!(offsets.shape(), &[4]);
    let last = i64::from_le_bytes(offsets.data()[24..32].try_into().unwrap());
    assert_eq!(last as usize, total);
    let gammas: Vec<f32> = credit.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert!(gammas.contains(&1.5) && gammas.iter().all(|&g| g == 1.0 || g == 1.5));
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()["format"], "flowtracer.credits/1");
}

#[test]
fn usage_errors_exit_2_and_formats_select_files() {
    let dir = temp_dir("export-usage");
    let out = dir.join("out");
    let s = flowtracer().args(["--export", out.to_str().unwrap()]).status().unwrap();
    assert_eq!(s.code(), Some(2), "no inputs");
    let s = flowtracer().args(["--export", out.to_str().unwrap(), "--format", "jpeg", "sample_traces"]).status().unwrap();
    assert_eq!(s.code(), Some(2), "unknown format");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[credit]\nfraction = 2.0\n").unwrap();
    let o = flowtracer().args(["--export", out.to_str().unwrap(), "--params", bad.to_str().unwrap(), "sample_traces"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad.toml") && String::from_utf8_lossy(&o.stderr).contains("credit.fraction"));

    let params = dir.join("p.json");
    std::fs::write(&params, r#"{"credit": {"gamma": 2.0, "fraction": 0.2}}"#).unwrap();
    let s = flowtracer()
        .args(["--export", out.to_str().unwrap(), "--format", "json", "--params", params.to_str().unwrap(), "sample_traces/addition.safetensors"])
        .status()
        .unwrap();
    assert_eq!(s.code(), Some(0));
    assert!(out.join("addition.json").exists() && !out.join("addition.credit.png").exists() && !out.join("scores.csv").exists());
    let rec = json(&out.join("addition.json"));
    assert_eq!(rec["params"]["credit"]["gamma"], 2.0);
    assert!(rec["credit"].as_array().unwrap().iter().any(|g| g == 2.0));
}

#[test]
fn print_describes_the_bundled_sample() {
    let o = flowtracer().arg("--print").output().unwrap();
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("status ok") && text.contains("path 1"), "{text}");
}

/// `--print` runs on the backend asked for, as the export does: the CPU's result says so, and a
/// backend this machine lacks is an error, not the CPU in its place (it had run on the CPU
/// whatever was asked).
#[test]
fn print_runs_on_the_backend_asked_for() {
    let o = flowtracer().args(["--print", "--backend", "cpu"]).output().unwrap();
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("status ok, on cpu"));
    let o = flowtracer().args(["--print", "--backend", "cuda"]).output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    match flowtracer::backend::select(flowtracer::backend::Choice::Cuda) {
        Ok(_) => assert!(o.status.success() && out.contains("cuda"), "{out}{err}"),
        Err(_) => assert!(o.status.code() == Some(2) && err.contains("--backend cuda:") && out.is_empty(), "{out}{err}"),
    }
}

/// A fresh folder with a run folder `run` in it that holds the bundled sample as `trace`.
fn run_holding_the_sample(name: &str, trace: &str) -> (common::TempDir, std::path::PathBuf) {
    let dir = temp_dir(name);
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::copy("sample_traces/addition.safetensors", run.join(trace)).unwrap();
    (dir, run)
}

/// A file the export would write that is already there, in a folder no export wrote, is the
/// user's: the export stops before any work and says which, and leaves everything as it was
/// (it had written over a `report.html` or a `sample.json` kept beside `sample.safetensors`). A
/// folder an export wrote, finished or killed, is written again.
#[test]
fn an_export_never_writes_over_files_it_did_not_write() {
    let (dir, run) = run_holding_the_sample("export-others-files", "sample.safetensors");
    std::fs::write(run.join("sample.json"), b"{\"mine\": true}").unwrap();
    std::fs::write(run.join("report.html"), b"<p>my notes</p>").unwrap();
    let before = listing(&run);
    let r = flowtracer().args(["--export", run.to_str().unwrap(), run.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(err.contains("run: holds report.html and 1 more, which this export would write, and no summary.json of an earlier export"), "{err}");
    assert_eq!(listing(&run), before, "nothing written, nothing replaced");
    // Without their names in the way (JSON and pictures only), it exports beside them.
    std::fs::remove_file(run.join("report.html")).unwrap();
    let r = flowtracer().args(["--export", run.to_str().unwrap(), "--format", "png,svg", run.to_str().unwrap()]).output().unwrap();
    assert_eq!(r.status.code(), Some(0), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(std::fs::read(run.join("sample.json")).unwrap(), b"{\"mine\": true}");
    // Now an export's folder: the next export into it replaces what the last one wrote.
    let out = dir.join("out");
    for _ in 0..2 {
        let r = flowtracer().args(["--export", out.to_str().unwrap(), "sample_traces/addition.safetensors"]).output().unwrap();
        assert_eq!(r.status.code(), Some(0), "{}", String::from_utf8_lossy(&r.stderr));
    }
}

/// A run folder exported into itself holds the export's `credits.safetensors` beside its
/// traces; exporting that folder again, into itself or elsewhere, reads the traces and not the
/// credits file (read as a trace, it had failed every later export of the folder).
#[test]
fn a_folder_exported_into_itself_exports_again() {
    let (dir, run) = run_holding_the_sample("export-into-itself", "a.safetensors");
    for out in [&run, &dir.join("elsewhere"), &run] {
        let r = flowtracer().args(["--export", out.to_str().unwrap(), run.to_str().unwrap()]).output().unwrap();
        assert_eq!(r.status.code(), Some(0), "{}", String::from_utf8_lossy(&r.stderr));
        let summary = json(&out.join("summary.json"));
        assert_eq!((summary["exported"].as_u64(), summary["failed"].as_u64()), (Some(1), Some(0)), "{summary}");
    }
    assert!(run.join("credits.safetensors").is_file());
    // An export's own folder given as input is said to be one, not "a folder without traces".
    let r = flowtracer().args(["--export", dir.join("again").to_str().unwrap(), dir.join("elsewhere").to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(err.contains("elsewhere: an export's output (its summary.json), which holds no traces"), "{err}");
}

/// While an export runs, its folder's `summary.json` says it has not finished (`interrupted`),
/// so the files of an export killed midway are the next export's to replace.
#[test]
fn a_running_exports_summary_says_it_is_not_finished() {
    use flowtracer::export::{Formats, export, plan};
    let dir = temp_dir("export-running-summary");
    let out = dir.join("out");
    let seen = std::sync::Mutex::new(Vec::new());
    let inputs = ["sample_traces/addition.safetensors".into(), "sample_traces/policy_run".into()];
    let s = export(&out, plan(&inputs, Some(&out), false), &Default::default(), Formats::ALL, &flowtracer::backend::Cpu, &Default::default(), &|_| {
        seen.lock().unwrap().push(json(&out.join("summary.json")));
    })
    .unwrap();
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.len(), s.traces.len());
    assert!(seen.iter().all(|v| v["format"] == "flowtracer.summary/1" && v["interrupted"] == true && v["exported"] == 0), "{:?}", seen[0]);
    let done = json(&out.join("summary.json"));
    assert!(done.get("interrupted").is_none() && done["exported"] == s.exported, "{done}");
}

#[test]
fn export_is_deterministic() {
    let dir = temp_dir("export-determinism");
    let (a, b) = (dir.join("a"), dir.join("b"));
    for out in [&a, &b] {
        let s = flowtracer().args(["--export", out.to_str().unwrap(), "sample_traces"]).status().unwrap();
        assert_eq!(s.code(), Some(0));
    }
    for f in ["addition.json", "scores.csv", "credits.safetensors", "report.html", "addition.backbone.svg", "addition.credit.png"] {
        assert!(std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(), "{f} differs between runs");
    }
}

#[test]
fn without_a_display_the_app_points_to_the_export() {
    let o = flowtracer().env_remove("DISPLAY").env_remove("WAYLAND_DISPLAY").output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no display") && err.contains("--export"), "{err}");
}

/// Runs the binary with a deadline: a hang is a failure, never a stuck CI job.
#[cfg(unix)]
fn run_with_deadline(cmd: &mut Command, secs: u64) -> std::process::Output {
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    common::wait_with_deadline(&mut child, secs)
}

#[cfg(unix)]
#[test]
fn a_fifo_is_refused_by_name_and_never_hangs_the_export() {
    let dir = temp_dir("export-fifo");
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::copy("sample_traces/addition.safetensors", run.join("a.safetensors")).unwrap();
    let fifo = run.join("p.safetensors");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let out = dir.join("out");
    let o = run_with_deadline(flowtracer().args(["--export", out.to_str().unwrap(), run.to_str().unwrap()]), 60);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let summary = json(&out.join("summary.json"));
    assert_eq!((summary["exported"].as_u64(), summary["failed"].as_u64()), (Some(1), Some(1)));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("p.safetensors") && stderr.contains("not a regular file (a FIFO)"), "{stderr}");
    // Given directly, and to --print: the same reason, not "no such file".
    let o = run_with_deadline(flowtracer().args(["--export", out.to_str().unwrap(), fifo.to_str().unwrap()]), 60);
    assert!(String::from_utf8_lossy(&o.stderr).contains("a FIFO"), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run_with_deadline(flowtracer().args(["--print", run.to_str().unwrap()]), 60);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a regular file (a FIFO)"), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `credits.safetensors` reads back (`export::read_credits`, what `flowtracer.read_credits` and an
/// RL trainer use) to the numbers the pipeline computed; a damaged one is refused by name.
#[test]
fn the_credits_file_reads_back_to_the_pipelines_numbers() {
    let dir = temp_dir("export-credits");
    let out = dir.join("out");
    let status = flowtracer().args(["--export", out.to_str().unwrap(), "--format", "credits", "sample_traces/addition.safetensors"]).status().unwrap();
    assert!(status.success());
    let credits = flowtracer::export::read_credits(&out.join("credits.safetensors")).unwrap();
    let trace = flowtracer::sample_trace();
    let r = flowtracer::analyze(&trace, &flowtracer::Params::default(), &Default::default()).unwrap();
    assert_eq!(credits.params, flowtracer::Params::default());
    let [row] = credits.rows.as_slice() else { panic!("one trace, {} rows", credits.rows.len()) };
    assert_eq!(row.credit, r.credit.iter().map(|&g| g as f32).collect::<Vec<_>>());
    assert_eq!((row.question, row.response, row.answer), (trace.spans.question, trace.spans.response, trace.spans.answer));
    assert_eq!(row.token_ids.len(), trace.n());

    let bytes = std::fs::read(out.join("credits.safetensors")).unwrap();
    let cut = dir.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 9]).unwrap();
    let e = flowtracer::export::read_credits(&cut).unwrap_err();
    assert!(e.to_string().contains("cut.safetensors") && e.to_string().contains("truncated"), "{e}");
    let e = flowtracer::export::read_credits(Path::new("sample_traces/addition.safetensors")).unwrap_err();
    assert!(e.to_string().contains("metadata `format` is `flowtracer.trace/1`, expected `flowtracer.credits/1`"), "{e}");
}

/// FNV-1a, 64 bits: enough to notice any changed byte, and no dependency for it.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// Every file under an export folder with its hash, one `HASH  NAME` line each in name order
/// (`summary.json` with its times zeroed; a PNG by its size and pixels, so the compressor may
/// change but not a pixel of the picture).
fn listing(out: &Path) -> String {
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    let mut stack = vec![out.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() { stack.push(p) } else { files.push(p) }
        }
    }
    files.sort();
    let mut listed = String::new();
    for p in &files {
        let name = p.strip_prefix(out).unwrap().to_string_lossy().replace('\\', "/");
        let mut bytes = std::fs::read(p).unwrap();
        if name == "summary.json" {
            let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            for t in v["traces"].as_array_mut().unwrap() {
                t["elapsed_ms"] = 0.into();
            }
            bytes = serde_json::to_vec_pretty(&v).unwrap();
        } else if name.ends_with(".png") {
            let picture = resvg::tiny_skia::Pixmap::decode_png(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            bytes = [&picture.width().to_le_bytes()[..], &picture.height().to_le_bytes(), picture.data()].concat();
        }
        listed.push_str(&format!("{:016x}  {name}\n", fnv1a(&bytes)));
    }
    listed
}

/// Every file the export writes for the bundled traces, byte for byte as listed in
/// `tests/golden/sample_export.txt` (a hash per file; in `summary.json` the times are zeroed, a
/// PNG's pixels are hashed rather than its compressed bytes).
/// A speed-up must not change a byte of what users get; a change that means to change the output
/// regenerates the list with UPDATE_GOLDEN=1, and its commit says why.
#[test]
fn the_sample_export_is_byte_identical_to_the_golden_list() {
    let dir = temp_dir("export-golden");
    let out = dir.join("out");
    let status = flowtracer().args(["--export", out.to_str().unwrap(), "--backend", "cpu", "sample_traces"]).status().unwrap();
    assert!(status.success());
    let listed = listing(&out);
    let golden = Path::new("tests/golden/sample_export.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(golden, &listed).unwrap();
    }
    let want = std::fs::read_to_string(golden).unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", golden.display()));
    let changed: Vec<String> = want.lines().zip(listed.lines()).filter(|(a, b)| a != b).map(|(a, b)| format!("want {a}\n got {b}")).collect();
    assert!(changed.is_empty() && want.lines().count() == listed.lines().count(), "the export of sample_traces changed:\n{}\n(all files now:\n{listed})", changed.join("\n"));
    let _ = std::fs::remove_dir_all(dir);
}

/// A run scored on Ray (`tests/scored/samples.parquet`: `flowtracer.ray`'s rows of
/// `sample_traces/`) exports to the same bytes as the traces themselves, every format; only the
/// summary's run entry (the Parquet, not the folder) and times differ.
#[test]
fn a_run_scored_on_ray_exports_the_same_files_as_its_traces() {
    let dir = temp_dir("export-scored");
    let (from_traces, from_rows) = (dir.join("traces"), dir.join("rows"));
    for (out, input) in [(&from_traces, "sample_traces"), (&from_rows, "tests/scored/samples.parquet")] {
        let status = flowtracer().args(["--export", out.to_str().unwrap(), "--backend", "cpu", "--format", "all", input]).status().unwrap();
        assert!(status.success(), "{input}");
    }
    let files = |out: &Path| listing(out).lines().filter(|l| !l.ends_with("  summary.json")).map(str::to_owned).collect::<Vec<_>>();
    let (want, got) = (files(&from_traces), files(&from_rows));
    assert!(want.len() > 17 * 4);
    assert_eq!(want, got, "the export of the scored rows differs from the traces' (after a change to the method or the row format, `python tests/scored/make.py` writes the fixture again)");
    let traces = |out: &Path| {
        let mut s = json(&out.join("summary.json"));
        for t in s["traces"].as_array_mut().unwrap() {
            t["elapsed_ms"] = 0.into();
        }
        (s["traces"].clone(), s["params"].clone(), s["backend"].clone())
    };
    assert_eq!(traces(&from_traces), traces(&from_rows));
    assert_eq!(json(&from_rows.join("summary.json"))["runs"][0]["traces"], 17);
    let _ = std::fs::remove_dir_all(dir);
}

/// Rows that do not hold together (a list shorter than the tokens, a hub past the end, `details`
/// that is not JSON, backbone lists of different lengths) are failures naming the file and the
/// row; a trace that failed where it was scored keeps its problem and error; the rest export.
#[test]
fn a_scored_runs_broken_rows_are_failures_that_name_file_and_row() {
    let dir = temp_dir("export-scored-broken");
    let out = dir.join("out");
    let status = flowtracer().args(["--export", out.to_str().unwrap(), "--format", "json,html", "tests/scored/broken_rows.parquet"]).status().unwrap();
    assert_eq!(status.code(), Some(1));
    let summary = json(&out.join("summary.json"));
    assert_eq!((summary["exported"].as_u64(), summary["failed"].as_u64()), (Some(12), Some(5)), "{summary}");
    let failed: Vec<&serde_json::Value> = summary["traces"].as_array().unwrap().iter().filter(|t| t["status"] == "failed").collect();
    for t in &failed {
        let e = t["error"].as_str().unwrap();
        if t["problem"] == "row_sum" {
            assert!(e.contains("sums to 1.3"), "{e}");
        } else {
            assert!(e.contains("broken_rows.parquet: row ") && e.contains(t["source"].as_str().unwrap()), "{e}");
        }
    }
    let errors: String = failed.iter().map(|t| t["error"].as_str().unwrap()).collect::<Vec<_>>().join("\n");
    for why in ["`credit` has", "`hubs` names token 999", "`details` is not", "`backbone_tokens` and `backbone_flow`"] {
        assert!(errors.contains(why), "no failure says {why:?}:\n{errors}");
    }
    // The row scored on another machine exports from its row alone, inside the output folder
    // though its source is an absolute path.
    assert!(out.join("cluster/run/step_000099/sample_0000.json").is_file());
    assert!(out.join("sample_traces/policy_run/step_000030/sample_0000.json").is_file());
    assert!(std::fs::read_to_string(out.join("report.html")).unwrap().contains("sums to 1.3"));
    let _ = std::fs::remove_dir_all(dir);
}

/// A file named `.parquet` that is not one, a folder of none, `--params` with a scored run, and
/// step graphs (which need the attention) asked of rows: each a clear error, never a panic.
#[test]
fn a_scored_run_that_cannot_be_read_is_an_error_naming_it() {
    let dir = temp_dir("export-scored-bad");
    let bad = dir.join("rows.parquet");
    std::fs::write(&bad, b"PAR1 not really").unwrap();
    let out = dir.join("out");
    let status = flowtracer().args(["--export", out.to_str().unwrap(), bad.to_str().unwrap()]).status().unwrap();
    assert_eq!(status.code(), Some(1));
    let summary = json(&out.join("summary.json"));
    let e = summary["traces"][0]["error"].as_str().unwrap();
    assert!(e.contains("rows.parquet") && e.contains("not a readable Parquet file"), "{e}");

    let params = dir.join("params.toml");
    std::fs::write(&params, "").unwrap();
    let o = flowtracer().args(["--export", out.to_str().unwrap(), "--params", params.to_str().unwrap(), "tests/scored/samples.parquet"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--params does not apply to a scored run"));

    let graphs = dir.join("graphs");
    let status = flowtracer().args(["--export", graphs.to_str().unwrap(), "--format", "dot", "tests/scored/samples.parquet"]).status().unwrap();
    assert_eq!(status.code(), Some(1));
    let e = json(&graphs.join("summary.json"))["traces"][0]["error"].as_str().unwrap().to_owned();
    assert!(e.contains("need the attention"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_long_traces_backbone_picture_draws_each_path_apart_and_says_what_it_shortened() {
    // Question 0..30, answer 2 990..3 000: each answer token attends to its own question token,
    // so each path is two tokens 2 960 apart, and a linear axis would draw them on one pixel.
    let (n, q, a) = (3000, 30, 2990);
    let edges: Vec<(usize, usize, f32)> = (0..8).map(|i| (a + i, 3 * i + 2, 1.0)).collect();
    let s = common::spans((0, q), (q, n), (a, a + 8));
    let r = common::solve(&common::matrix(n, &edges), s, &flowtracer::Params::default());
    assert!(r.backbone.len() >= 4, "{:?}", r.backbone);
    let tokens: Vec<String> = (0..n).map(|k| format!("t{k}")).collect();
    let svg = flowtracer::render::backbone::backbone_svg("long", &tokens, &tokens, s, &r);
    let starts: Vec<f64> = svg.split("<path d=\"M").skip(1).filter(|p| p.split('"').next().unwrap().contains(" A")).map(|p| p.split(',').next().unwrap().parse().unwrap()).collect();
    let mut apart = starts.clone();
    apart.sort_by(f64::total_cmp);
    apart.dedup();
    assert_eq!(apart.len(), r.backbone.len(), "every path starts at its own question token: {starts:?}");
    assert!(apart.windows(2).all(|w| w[1] - w[0] >= 5.0), "{apart:?}");
    assert!(svg.contains(">2960 tokens</text>"), "the shortened stretch says how many tokens it holds");
    // The picture still rasterises.
    flowtracer::render::svg_to_png(&svg).unwrap();
}
