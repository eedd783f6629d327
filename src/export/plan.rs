//! From the command line's inputs to the traces to export and where each one's files go. A
//! missing input, an unreadable folder or an empty run is a failure of its own that costs the
//! other inputs nothing; names are resolved so no two traces, and no trace and a run-wide file,
//! write to the same place.

use super::{Outcome, failure};
use crate::trace::{Problem, run};
use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// One trace to export and where its files go (relative to the output folder, no extension).
#[derive(Clone, Debug)]
pub struct Job {
    pub source: PathBuf,
    pub stem: PathBuf,
}

/// The traces to export, the run folders they came from, and the inputs that failed already.
#[derive(Default)]
pub struct Planned {
    pub jobs: Vec<Job>,
    pub runs: Vec<super::RunInfo>,
    pub failed: Vec<Outcome>,
}

/// Trace stems whose files would take a run-wide file's name (`summary` → `summary.json`).
const RESERVED_STEMS: [&str; 1] = ["summary"];

/// Expands inputs (trace files and run folders) into jobs. `out`, the export's own folder, is
/// never read as input; an empty run folder is a failure unless `allow_empty`.
pub fn plan(inputs: &[PathBuf], out: Option<&Path>, allow_empty: bool) -> Planned {
    let mut p = Planned::default();
    for input in inputs {
        if input.is_dir() {
            match run::discover_except(input, out) {
                Ok(r) => {
                    for (dir, why) in &r.unreadable {
                        p.failed.push(failure(dir, Problem::Io, why.clone()));
                    }
                    if r.traces.is_empty() && !allow_empty {
                        let why = format!("{}: no trace files (*.safetensors) in this folder (pass --allow-empty if that is expected)", input.display());
                        p.failed.push(failure(input, Problem::Empty, why));
                    }
                    for t in &r.traces {
                        p.jobs.push(Job { source: t.clone(), stem: r.relative(t).with_extension("") });
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
                    p.jobs.push(Job { source: input.clone(), stem });
                }
                Err(e) => p.failed.push(failure(input, Problem::Io, missing(input, e))),
            }
        }
    }
    dedupe_stems(&mut p.jobs);
    p
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
