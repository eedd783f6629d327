//! The export's file handling, signals and limits (issue "Nothing lost, nothing hangs"): each
//! test is a reproduction of a failure found by a hostile-input pass, through the real binary.

mod common;
use common::{chain_with_tokens, temp_dir};
use flowtracer::trace::Dtype;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn flowtracer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flowtracer"))
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn run(args: &[&str]) -> Output {
    flowtracer().args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const SAMPLE: &str = "sample_traces/addition.safetensors";

#[test]
fn the_export_never_overwrites_its_inputs_and_reserves_its_own_names() {
    let d = temp_dir("robust-reserved");
    std::fs::create_dir_all(&d).unwrap();
    let original = std::fs::read(SAMPLE).unwrap();
    std::fs::write(d.join("credits.safetensors"), &original).unwrap();
    std::fs::write(d.join("summary.safetensors"), &original).unwrap();
    let o = run(&["--export", s(&d), s(&d)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("credits.safetensors: not written: it is one of the export's inputs"), "{}", stderr(&o));
    assert_eq!(std::fs::read(d.join("credits.safetensors")).unwrap(), original, "an input was replaced");
    // The trace named `summary` keeps its record apart from the run-wide summary.
    let summary = json(&d.join("summary.json"));
    assert_eq!(summary["format"], "flowtracer.summary/1");
    assert_eq!(summary["exported"], 2);
    assert_eq!(json(&d.join("summary-2.json"))["format"], "flowtracer.credit/1");
    assert!(summary["errors"][0].as_str().unwrap().contains("credits.safetensors"));
    // Again into the same folder: the export's own files are not read back as traces.
    let o = run(&["--export", s(&d), s(&d)]);
    assert_eq!(json(&d.join("summary.json"))["exported"], 2, "{}", stderr(&o));
}

/// `--export` given a file (an input named by mistake) says so and leaves the file as it was.
#[test]
fn an_output_path_that_is_a_file_is_refused_and_left_alone() {
    let d = temp_dir("robust-out-file");
    let trace = d.join("trace.safetensors");
    std::fs::copy(SAMPLE, &trace).unwrap();
    let o = run(&["--export", s(&trace), SAMPLE]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("{}: is a file, not a folder", trace.display())), "{}", stderr(&o));
    // A file where a folder above it would be is named (it had been "Not a directory (os error 20)").
    let below = trace.join("out/run");
    let o = run(&["--export", s(&below), SAMPLE]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("cannot create output folder: {} is a file, not a folder", trace.display())), "{}", stderr(&o));
    assert_eq!(std::fs::read(&trace).unwrap(), std::fs::read(SAMPLE).unwrap());
}

#[test]
fn an_output_folder_inside_the_input_is_not_read_back() {
    let d = temp_dir("robust-inside");
    let runf = d.join("run");
    std::fs::create_dir_all(runf.join("step_1")).unwrap();
    std::fs::copy(SAMPLE, runf.join("step_1/a.safetensors")).unwrap();
    let out = runf.join("out");
    for _ in 0..2 {
        let o = run(&["--export", s(&out), s(&runf)]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(json(&out.join("summary.json"))["exported"], 1);
    }
    // An export folder elsewhere in the run (an earlier `--export run/old run`) is passed over too.
    std::fs::rename(&out, runf.join("old")).unwrap();
    let o = run(&["--export", s(&d.join("o2")), s(&runf)]);
    assert_eq!(json(&d.join("o2/summary.json"))["exported"], 1, "{}", stderr(&o));
}

#[test]
fn a_run_wide_name_taken_by_a_folder_costs_only_that_file() {
    let d = temp_dir("robust-folder-names");
    std::fs::create_dir_all(d.join("credits.safetensors")).unwrap();
    std::fs::copy(SAMPLE, d.join("credits.safetensors/a.safetensors")).unwrap();
    let o = run(&["--export", s(&d), s(&d)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let summary = json(&d.join("summary.json"));
    assert_eq!(summary["exported"], 1);
    assert!(summary["errors"][0].as_str().unwrap().contains("credits.safetensors"), "{summary}");
    assert!(d.join("credits.safetensors/a.json").is_file());
    assert!(d.join("scores.csv").is_file() && d.join("report.html").is_file());
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_after_the_traces_in_flight_writes_the_summary_and_leaves_no_temporaries() {
    let d = temp_dir("robust-sigint");
    let runf = d.join("run");
    std::fs::create_dir_all(&runf).unwrap();
    for i in 0..150 {
        std::fs::copy(SAMPLE, runf.join(format!("t{i:03}.safetensors"))).unwrap();
    }
    let out = d.join("out");
    std::fs::create_dir_all(&out).unwrap();
    // A killed writer's temporary (a process that cannot exist) goes; a live one's stays.
    let stale = out.join(".t000.json.4294967.1.tmp");
    let live = out.join(format!(".x.json.{}.1.tmp", std::process::id()));
    std::fs::write(&stale, b"half").unwrap();
    std::fs::write(&live, b"busy").unwrap();
    let child = flowtracer().args(["--export", s(&out), s(&runf)]).stderr(Stdio::piped()).spawn().unwrap();
    // Interrupt once the first trace is out.
    let o = interrupted_once(child, "no trace was exported", || out.join("t000.json").exists() || out.join("t001.json").exists());
    assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
    let summary = json(&out.join("summary.json"));
    assert_eq!(summary["interrupted"], true);
    let traces = summary["traces"].as_array().unwrap();
    let not_done = traces.iter().filter(|t| t["problem"] == "cancelled").count();
    let exported = summary["exported"].as_u64().unwrap() as usize;
    assert_eq!(traces.len(), 150);
    assert_eq!(exported + not_done, 150, "{summary}");
    assert!(not_done > 0, "the export finished before the signal: make it longer");
    assert!(!stale.exists(), "a dead writer's temporary was left");
    assert!(live.exists(), "a live writer's temporary was taken");
    std::fs::remove_file(&live).unwrap();
    assert_eq!(temporaries(&out), Vec::<PathBuf>::new());
}

/// Ctrl-C to `child` once `ready` holds (within a minute, or `never` is the failure), and its
/// output once it has ended as an interrupted run ends, with 130.
#[cfg(unix)]
fn interrupted_once(mut child: std::process::Child, never: &str, ready: impl Fn() -> bool) -> Output {
    let start = std::time::Instant::now();
    while !ready() {
        assert!(start.elapsed().as_secs() < 60, "{never}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = common::wait_with_deadline(&mut child, 120);
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    o
}

fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(temporaries(&p));
        } else if p.to_string_lossy().ends_with(".tmp") {
            out.push(p);
        }
    }
    out
}

#[test]
fn missing_inputs_and_empty_runs_fail_with_the_reason_on_stderr() {
    let d = temp_dir("robust-missing");
    std::fs::create_dir_all(d.join("empty")).unwrap();
    let o = run(&["--export", s(&d.join("o1")), "/nonexistent/x.safetensors"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent/x.safetensors: no such file or folder"), "{}", stderr(&o));
    let o = run(&["--export", s(&d.join("o2")), "/dev/zero"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/dev/zero: not a regular file (a device)"), "{}", stderr(&o));
    // An empty run folder: a CI job pointed at the wrong place must not pass.
    let o = run(&["--export", s(&d.join("o3")), s(&d.join("empty"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no trace files") && stderr(&o).contains("--allow-empty"), "{}", stderr(&o));
    assert_eq!(json(&d.join("o3/summary.json"))["traces"][0]["problem"], "empty");
    let o = run(&["--export", s(&d.join("o4")), "--allow-empty", s(&d.join("empty"))]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // --print agrees.
    let o = run(&["--print", "/nonexistent/x.safetensors"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no such file or folder"));
}

#[cfg(unix)]
#[test]
fn an_unreadable_subfolder_fails_the_export_and_run_warnings_reach_stderr() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let d = temp_dir("robust-unreadable");
    let runf = d.join("run");
    std::fs::create_dir_all(runf.join("locked")).unwrap();
    std::fs::copy(SAMPLE, runf.join("a.safetensors")).unwrap();
    std::fs::copy(SAMPLE, runf.join("locked/b.safetensors")).unwrap();
    std::fs::write(runf.join("metrics.jsonl"), b"{\"step\":1}\n\xff\xfe not text\n{\"step\":2}\n").unwrap();
    let out = d.join("out");
    std::fs::create_dir_all(&out).unwrap();
    for p in [&*d, &*runf, &*out] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    std::fs::set_permissions(runf.join("locked"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let mut cmd = flowtracer();
    cmd.args(["--export", s(&out), s(&runf)]);
    // Root reads any folder: the export then runs as `nobody`, for whom `locked` is locked.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        cmd.uid(65534).gid(65534);
    }
    let o = cmd.output().unwrap();
    std::fs::set_permissions(runf.join("locked"), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("locked: cannot read folder"), "{}", stderr(&o));
    // One bad line of metrics.jsonl costs that line only, and is said.
    assert!(stderr(&o).contains("metrics.jsonl:2: not UTF-8 text"), "{}", stderr(&o));
    assert_eq!(json(&out.join("summary.json"))["runs"][0]["metrics"], 2);
}

#[test]
fn a_trace_whose_files_cannot_all_be_written_leaves_none() {
    let d = temp_dir("robust-partial");
    let out = d.join("out");
    // The last of the trace's files cannot be written: a folder has its name.
    std::fs::create_dir_all(out.join("addition.backbone.svg")).unwrap();
    let o = run(&["--export", s(&out), SAMPLE]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    for f in ["addition.json", "addition.credit.png", "addition.backbone.png"] {
        assert!(!out.join(f).exists(), "{f} was left behind by a failed trace");
    }
}

/// A trace whose files fail to be written (after its pipeline, at the disk) is left out of the
/// run-wide files: they hold the next trace alone, numbered first, as an export of it alone does.
#[test]
fn a_trace_whose_files_cannot_be_written_is_not_in_the_run_wide_files() {
    let d = temp_dir("robust-run-wide");
    let runf = d.join("run");
    std::fs::create_dir_all(&runf).unwrap();
    for name in ["a_first", "b_second"] {
        std::fs::copy(SAMPLE, runf.join(format!("{name}.safetensors"))).unwrap();
    }
    let out = d.join("out");
    std::fs::create_dir_all(out.join("a_first.backbone.svg")).unwrap();
    let o = run(&["--export", s(&out), s(&runf)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("a_first.backbone.svg"), "{}", stderr(&o));
    // None of the failed trace's files is left, nor the temporary the refused one was written to.
    let names: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.starts_with("a_first") || n == "a_first.backbone.svg") && !names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    let csv = std::fs::read_to_string(out.join("scores.csv")).unwrap();
    assert!(!csv.contains("a_first") && csv.contains("b_second"), "{csv}");
    let report = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(report.contains("<a href=\"#t0\">b_second</a>") && report.matches("<h2 id=").count() == 1, "{report}");
    // The same as the second trace's export alone, but for the folder it is named from.
    let alone = d.join("alone");
    std::fs::create_dir_all(alone.join("run")).unwrap();
    std::fs::copy(SAMPLE, alone.join("run/b_second.safetensors")).unwrap();
    let out_alone = d.join("out_alone");
    let o = run(&["--export", s(&out_alone), s(&alone.join("run"))]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(csv, std::fs::read_to_string(out_alone.join("scores.csv")).unwrap());
}

#[test]
fn tokens_that_xml_cannot_hold_and_formulas_are_written_safely() {
    let d = temp_dir("robust-tokens");
    std::fs::create_dir_all(&d).unwrap();
    let mut tokens: Vec<String> = ["q", "?", "=1+2", "+x", "-y", "@z", "a\u{FFFE}b", "\u{FFFF}", "c", "d"].iter().map(|t| t.to_string()).collect();
    tokens.extend((0..6).map(|i| format!("w{i}")));
    let path = d.join("odd.safetensors");
    chain_with_tokens(tokens, Dtype::F32).write(&path).unwrap();
    let out = d.join("out");
    let o = run(&["--export", s(&out), s(&path)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let svg = std::fs::read_to_string(out.join("odd.backbone.svg")).unwrap();
    assert!(!svg.contains('\u{FFFE}') && !svg.contains('\u{FFFF}'));
    let csv = std::fs::read_to_string(out.join("scores.csv")).unwrap();
    for cell in ["'=1+2", "'+x", "'-y", "'@z"] {
        assert!(csv.contains(&format!(",{cell},")), "{cell} not escaped in scores.csv");
    }
}

#[cfg(unix)]
#[test]
fn names_that_print_alike_keep_their_own_outputs() {
    use std::os::unix::ffi::OsStrExt;
    let d = temp_dir("robust-names");
    let runf = d.join("run");
    std::fs::create_dir_all(&runf).unwrap();
    for byte in [0xffu8, 0xfe] {
        let mut name = vec![b'a', byte];
        name.extend_from_slice(b".safetensors");
        std::fs::copy(SAMPLE, runf.join(std::ffi::OsStr::from_bytes(&name))).unwrap();
    }
    let out = d.join("out");
    let o = run(&["--export", s(&out), s(&runf)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let jsons: Vec<_> = std::fs::read_dir(&out).unwrap().flatten().filter(|e| e.path().extension().is_some_and(|x| x == "json") && e.file_name() != "summary.json").collect();
    assert_eq!(jsons.len(), 2, "two traces, two records: {jsons:?}");
}

#[test]
fn a_huge_gamma_with_mean_normalisation_keeps_credit_finite() {
    let mut p = flowtracer::Params::default();
    p.credit.gamma = 1e308;
    p.credit.normalize_mean = true;
    let r = flowtracer::analyze(&flowtracer::sample_trace(), &p, &Default::default()).unwrap();
    let resp = flowtracer::sample_trace().spans.response.range();
    assert!(r.credit.iter().all(|g| g.is_finite() && *g >= 0.0), "{:?}", r.credit);
    let mean: f64 = r.credit[resp.clone()].iter().sum::<f64>() / resp.len() as f64;
    assert!((mean - 1.0).abs() < 1e-9, "mean γ over the response {mean}");
    assert!(r.credit[resp].iter().any(|&g| g > 1.0), "the selected tokens still stand out");
}

/// Flags whose value cannot be meant (a count of zero, a share outside (0, 1], a synthetic trace
/// larger than memory) are usage errors naming the flag or the size, never a panic, an abort
/// on an allocation, or a table of nothing: each of these had done one of the three.
#[test]
fn flag_values_that_cannot_be_meant_are_usage_errors() {
    let dir = temp_dir("flag-values");
    let out = dir.join("never");
    let o = s(&out);
    for (args, says) in [
        (vec!["train", "--steps", "2", "--eval-every", "0", "--out", o], "--eval-every"),
        (vec!["train", "--steps", "2", "--eval-size", "0", "--out", o], "--eval-size"),
        (vec!["train", "--compare", "flow", "--seeds", "0", "--out", o], "--seeds"),
        (vec!["probe", "--fraction", "1.5"], "1.5 must lie in (0, 1]"),
        (vec!["probe", "--problems", "0"], "--problems"),
        (vec!["warmstart", "--target", "2", "--out", o], "--target"),
        (vec!["bench", "--repeat", "0"], "--repeat"),
        (vec!["bench", "--sizes", "1024,0"], "--sizes"),
        (vec!["synth", "--out", o, "--layers", "0"], "--layers"),
        (vec!["synth", "--out", o, "--tokens", "100000000", "--rank", "2"], "MiB to make, over the budget"),
        (vec!["synth", "--out", o, "--layers", "100000", "--heads", "100000"], "MiB to make, over the budget"),
        (vec!["bench", "--ui", "--sizes", "100000000"], "MiB to make, over the budget"),
    ] {
        let r = run(&args);
        let err = stderr(&r);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says) && !err.contains("panicked"), "{args:?}: {err}");
    }
    assert!(!out.exists(), "nothing is written");
    // An output folder that is a file is said to be one (it had been "File exists (os error 17)",
    // and the probe said it after its work); the file is left as it was.
    let file = dir.join("a_file");
    std::fs::write(&file, b"mine").unwrap();
    let below = file.join("run");
    for (args, says) in [
        (vec!["train", "--steps", "1", "--tiny", "--out", s(&file)], "a_file: is a file, not a run folder"),
        (vec!["probe", "--per-token", "--problems", "2", "--out", s(&file)], "a_file: is a file, not the folder"),
        (vec!["train", "--steps", "1", "--tiny", "--out", s(&below)], "a_file is a file, not a folder"),
    ] {
        // Said as one line, also where the user's shell sets RUST_BACKTRACE (candle had put a
        // backtrace of twenty-odd frames into the message).
        let r = flowtracer().args(&args).env("RUST_BACKTRACE", "1").output().unwrap();
        assert_eq!(r.status.code(), Some(1), "{args:?}");
        assert!(stderr(&r).contains(says) && stderr(&r).lines().count() == 1, "{args:?}: {}", stderr(&r));
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"mine");
    // A synthetic trace is not written over a file there (as Python's `dump`), unless asked.
    let r = run(&["synth", "--out", s(&file), "--tokens", "40"]);
    assert_eq!(r.status.code(), Some(1));
    assert!(stderr(&r).contains("a_file: already exists (pass --overwrite to replace it)"), "{}", stderr(&r));
    assert_eq!(std::fs::read(&file).unwrap(), b"mine");
    let r = run(&["warmstart", "--max-steps", "1", "--out", s(&file)]);
    assert_eq!(r.status.code(), Some(1));
    assert!(stderr(&r).contains("a_file: already exists (pass --overwrite to replace it)"), "{}", stderr(&r));
    assert_eq!(std::fs::read(&file).unwrap(), b"mine");
    // A file where the output's folder would be is named, also with --overwrite (it had been
    // "already exists (pass --overwrite to replace it)" either way).
    let inside = file.join("t.safetensors");
    for overwrite in [false, true] {
        let r = run(&[&["synth", "--out", s(&inside), "--tokens", "40"][..], if overwrite { &["--overwrite"] } else { &[] }].concat());
        assert_eq!(r.status.code(), Some(1));
        assert!(stderr(&r).contains("t.safetensors: cannot be written: ") && stderr(&r).contains("a_file is a file, not a folder"), "{}", stderr(&r));
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"mine");
    let replaced = dir.join("replaced.safetensors");
    std::fs::write(&replaced, b"old").unwrap();
    assert_eq!(run(&["synth", "--out", s(&replaced), "--tokens", "40", "--overwrite"]).status.code(), Some(0));
    assert!(flowtracer::Trace::open(&replaced).is_ok());
    // A folder of the user's that is no run: a new run is not started over their files (it had
    // truncated a metrics.jsonl found there and written run.json over theirs).
    let theirs = dir.join("their_folder");
    std::fs::create_dir_all(&theirs).unwrap();
    std::fs::write(theirs.join("metrics.jsonl"), b"{\"loss\": 1}\n").unwrap();
    let r = run(&["train", "--steps", "1", "--tiny", "--out", s(&theirs)]);
    assert_eq!(r.status.code(), Some(1));
    assert!(stderr(&r).contains("their_folder: holds metrics.jsonl but no run to resume"), "{}", stderr(&r));
    assert_eq!(std::fs::read(theirs.join("metrics.jsonl")).unwrap(), b"{\"loss\": 1}\n");
    assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 1, "nothing is added to it");
    // Nor does the probe write its traces among other files (an earlier probe's, with more
    // problems, had stayed beside them as if one set): said before it runs.
    let r = run(&["probe", "--per-token", "--problems", "2", "--out", s(&theirs)]);
    assert_eq!(r.status.code(), Some(1));
    assert!(stderr(&r).contains("their_folder: holds metrics.jsonl: the probe's traces go into a new or empty folder"), "{}", stderr(&r));
    assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 1, "nothing is added to it");
}

/// `bench --dir` makes a folder of its own inside the one it is given and removes only that:
/// it had removed the given folder whole, with whatever the user kept there. Ctrl-C stops it
/// after the case in flight, with the tables so far and its folder gone.
#[cfg(unix)]
#[test]
fn the_bench_keeps_its_folder_to_itself_and_ctrl_c_leaves_nothing_behind() {
    let d = temp_dir("robust-bench-dir");
    let theirs = d.join("notes.txt");
    std::fs::write(&theirs, b"the user's").unwrap();
    let sizes = vec!["512"; 40].join(",");
    let child = flowtracer()
        .args(["bench", "--sizes", &sizes, "--repeat", "1", "--no-heads", "--batch", "0", "--dir", s(&d)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let bench_files = || -> usize {
        std::fs::read_dir(&d).unwrap().flatten().filter(|e| e.path().is_dir()).map(|e| std::fs::read_dir(e.path()).map_or(0, |f| f.count())).sum()
    };
    let o = interrupted_once(child, "the bench wrote no trace", || bench_files() > 0);
    assert!(stderr(&o).contains("bench interrupted"), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    let rows = table.lines().filter(|l| l.starts_with("| 5")).count();
    assert!((2..80).contains(&rows), "the cases measured before the signal, in both tables:\n{table}");
    let left: Vec<_> = std::fs::read_dir(&d).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("notes.txt")], "only the user's file is left");
    assert_eq!(std::fs::read(&theirs).unwrap(), b"the user's");
}
