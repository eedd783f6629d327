//! Where the export's files go, and the rules for writing them: every file atomically, an
//! output never replaces an input, a trace's files all or none, and a run-wide file that cannot be
//! written costs only itself.

use crate::atomic::{AtomicFile, write_atomic};
use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The output folder and the inputs no output may replace.
pub struct Outputs {
    pub dir: PathBuf,
    inputs: HashSet<PathBuf>,
}

impl Outputs {
    pub fn new(dir: &Path, sources: impl IntoIterator<Item = PathBuf>) -> Self {
        Outputs { dir: dir.to_path_buf(), inputs: sources.into_iter().filter_map(|p| p.canonicalize().ok()).collect() }
    }

    /// `STEM.ext` inside the output folder, built from the stem's own bytes (two non-UTF-8 names
    /// that print alike stay two files).
    pub fn file(&self, stem: &Path, ext: &str) -> PathBuf {
        let mut name = OsString::from(self.dir.join(stem).as_os_str());
        name.push(".");
        name.push(ext);
        PathBuf::from(name)
    }

    /// Writes one file atomically, unless it is one of the inputs.
    pub fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), String> {
        self.not_an_input(path)?;
        write_atomic(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// A file to be written in pieces and put in place whole, unless it is one of the inputs.
    pub fn create(&self, path: &Path) -> Result<AtomicFile, String> {
        self.not_an_input(path)?;
        AtomicFile::create(path).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Refuses to start where a file the export would write (`to_write`) exists already and the
    /// folder is no export's (it holds no `summary.json` of ours): such a file is the user's, not
    /// an earlier export's to replace (`--export .` over a `report.html` or `scores.csv` of
    /// theirs, or a run folder keeping `sample.json` beside `sample.safetensors`). An input is left
    /// alone in any case.
    pub fn refuse_others_files(&self, to_write: impl Iterator<Item = PathBuf>) -> Result<(), String> {
        let empty = std::fs::read_dir(&self.dir).is_ok_and(|mut entries| entries.next().is_none());
        if empty || crate::trace::run::is_export_output(&self.dir) {
            return Ok(());
        }
        // A folder in a file's place is not written over (that file alone fails, and says so).
        let theirs: Vec<PathBuf> = to_write.filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| !m.is_dir()) && self.not_an_input(p).is_ok()).collect();
        let Some(first) = theirs.first() else { return Ok(()) };
        let more = match theirs.len() {
            1 => String::new(),
            n => format!(" and {} more", n - 1),
        };
        Err(format!(
            "{}: holds {}{more}, which this export would write, and no summary.json of an earlier export: nothing of yours is written over; export into a new or empty folder (or one an export wrote), or move those files",
            self.dir.display(),
            first.strip_prefix(&self.dir).unwrap_or(first).display()
        ))
    }

    fn not_an_input(&self, path: &Path) -> Result<(), String> {
        if path.canonicalize().is_ok_and(|p| self.inputs.contains(&p)) {
            return Err(format!("{}: not written: it is one of the export's inputs", path.display()));
        }
        Ok(())
    }

    /// Writes a trace's files all or none, each on a thread of its own: most of a write is
    /// waiting for the disk to have it (its fsync), and the waits overlap, where the pool's
    /// threads (one a core) had taken them a core's worth at a time. After a failure the ones
    /// written go again. None is written when one of them is an input.
    pub fn write_all(&self, files: &[(PathBuf, Vec<u8>)]) -> Result<(), String> {
        files.iter().try_for_each(|(path, _)| self.not_an_input(path))?;
        let written: Vec<Result<(), String>> = at_once(files.iter().map(|(path, bytes)| move || self.write(path, bytes)));
        let Some(failed) = written.iter().find_map(|w| w.as_ref().err()) else { return Ok(()) };
        for ((path, _), w) in files.iter().zip(&written) {
            if w.is_ok() {
                let _ = std::fs::remove_file(path);
            }
        }
        Err(failed.clone())
    }
}

/// Runs each job on a thread of its own (the first on the caller's) and returns their results
/// in order: for work that is mostly waiting on the disk, which a thread per core would queue.
pub fn at_once<T: Send, F: FnOnce() -> T + Send>(jobs: impl IntoIterator<Item = F>) -> Vec<T> {
    let mut jobs = jobs.into_iter();
    let Some(first) = jobs.next() else { return Vec::new() };
    std::thread::scope(|s| {
        let others: Vec<_> = jobs.map(|job| s.spawn(job)).collect();
        let mut done = vec![first()];
        done.extend(others.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))));
        done
    })
}

#[cfg(test)]
mod tests {
    /// Each job runs on a thread of its own, and the results come back in the jobs' order.
    #[test]
    fn jobs_run_at_once_and_answer_in_order() {
        let got = super::at_once((0..5).map(|i| move || (i, std::thread::current().id())));
        assert_eq!(got.iter().map(|&(i, _)| i).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        let threads: std::collections::HashSet<_> = got.iter().map(|&(_, t)| t).collect();
        assert_eq!(threads.len(), 5, "one thread a job");
        assert!(super::at_once(Vec::<fn() -> u8>::new()).is_empty());
    }
}
