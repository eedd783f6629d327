//! From the command line's inputs to the traces to export and where each one's files go. A
//! missing input, an unreadable folder or an empty run is a failure of its own that costs the
//! other inputs nothing; names are resolved so no two traces, and no trace and a run-wide file,
//! write to the same place.

use super::{Outcome, failure, scored};
use crate::trace::{Problem, run};
use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// One trace to export and where its files go (relative to the output folder, no extension).
#[derive(Clone, Debug)]
pub struct Job {
    pub source: PathBuf,
    pub stem: PathBuf,
    /// The result, when the input was a scored run's row rather than a trace file.
    pub scored: Option<Box<scored::Scored>>,
}

/// The traces to export, the run folders they came from, and the inputs that failed already.
#[derive(Default)]
pub struct Planned {
    /// The inputs as given: no output may replace one.
    pub inputs: Vec<PathBuf>,
    pub jobs: Vec<Job>,
    pub runs: Vec<super::RunInfo>,
    pub failed: Vec<Outcome>,
}

/// Trace stems whose files would take a run-wide file's name (`summary` → `summary.json`).
const RESERVED_STEMS: [&str; 1] = ["summary"];

/// Expands inputs (trace files and run folders) into jobs. `out`, the export's own folder, is
/// never read as input; an empty run folder is a failure unless `allow_empty`.
pub fn plan(inputs: &[PathBuf], out: Option<&Path>, allow_empty: bool) -> Planned {
    let mut p = Planned { inputs: inputs.to_vec(), ..Default::default() };
    for input in inputs {
        if scored::is_scored_run(input) {
            plan_scored(&mut p, input);
        } else if input.is_dir() {
            match run::discover_except(input, out) {
                Ok(r) => {
                    for (dir, why) in &r.unreadable {
                        p.failed.push(failure(dir, Problem::Io, why.clone()));
                    }
                    if r.traces.is_empty() && !allow_empty {
                        let flag = if run::is_export_output(input) { "" } else { " (pass --allow-empty if that is expected)" };
                        p.failed.push(failure(input, Problem::Empty, format!("{}: {}{flag}", input.display(), run::why_no_traces(input))));
                    }
                    for t in &r.traces {
                        p.jobs.push(Job { source: t.clone(), stem: r.relative(t).with_extension(""), scored: None });
                    }
                    p.runs.push(super::RunInfo {
                        root: input.display().to_string(),
                        name: r.name(),
                        traces: r.traces.len(),
                        metrics: r.metrics.len(),
                        warnings: r.warnings,
                    });
                }
                Err(e) => p.failed.push(failure(input, Problem::Io, e)),
            }
        } else {
            match std::fs::metadata(input) {
                // A FIFO or a device too: opening it reports what it is, as that input's failure.
                Ok(_) => {
                    let stem = input.file_stem().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("trace"));
                    p.jobs.push(Job { source: input.clone(), stem, scored: None });
                }
                Err(e) => p.failed.push(failure(input, Problem::Io, missing(input, e))),
            }
        }
    }
    dedupe_stems(&mut p.jobs);
    p
}

/// A scored run's rows: each result a job of its own, named as `--export` of the run folder it was
/// scored from names it (relative to the folder its sources share); each failed row a failure.
fn plan_scored(p: &mut Planned, input: &Path) {
    let rows = match scored::read(input) {
        Ok(rows) => rows,
        Err(e) => return p.failed.push(failure(input, Problem::Container, e)),
    };
    let root = scored::common_folder(rows.iter().map(|r| Path::new(r.source())));
    p.runs.push(super::RunInfo {
        root: input.display().to_string(),
        name: input.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        traces: rows.len(),
        metrics: 0,
        warnings: Vec::new(),
    });
    for row in rows {
        match row {
            scored::ScoredRow::Scored(s) => {
                let source = PathBuf::from(&s.source);
                // Only the names: a source outside the shared folder (absolute, or up with `..`)
                // still writes inside the output folder.
                let relative = source.strip_prefix(&root).unwrap_or(&source);
                let stem: PathBuf = relative.components().filter(|c| matches!(c, std::path::Component::Normal(_))).collect();
                let stem = stem.with_extension("");
                p.jobs.push(Job { source, stem, scored: Some(s) });
            }
            scored::ScoredRow::Failed { source, problem, error } => p.failed.push(failure(Path::new(&source), problem, error)),
        }
    }
}

fn missing(input: &Path, e: std::io::Error) -> String {
    if std::fs::symlink_metadata(input).is_ok() {
        format!("{}: a symbolic link to nothing", input.display())
    } else if e.kind() == std::io::ErrorKind::NotFound {
        format!("{}: no such file or folder", input.display())
    } else {
        format!("{}: {e}", input.display())
    }
}

/// Two inputs named alike (`a/x.safetensors`, `b/x.safetensors`) must not overwrite each other,
/// nor a trace a run-wide file. Names are compared as the file system has them (two non-UTF-8
/// names that print alike stay apart).
fn dedupe_stems(jobs: &mut [Job]) {
    let mut seen: HashSet<PathBuf> = RESERVED_STEMS.iter().map(PathBuf::from).collect();
    for job in jobs.iter_mut() {
        let base = job.stem.clone();
        let mut i = 2;
        while !seen.insert(job.stem.clone()) {
            let mut name = OsString::from(base.as_os_str());
            name.push(format!("-{i}"));
            job.stem = PathBuf::from(name);
            i += 1;
        }
    }
}
