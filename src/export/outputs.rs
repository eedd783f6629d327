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

    fn not_an_input(&self, path: &Path) -> Result<(), String> {
        if path.canonicalize().is_ok_and(|p| self.inputs.contains(&p)) {
            return Err(format!("{}: not written: it is one of the export's inputs", path.display()));
        }
        Ok(())
    }

    /// Writes a trace's files all or none: after a failure the ones already written go again.
    pub fn write_all(&self, files: &[(PathBuf, Vec<u8>)]) -> Result<(), String> {
        for (i, (path, bytes)) in files.iter().enumerate() {
            if let Err(e) = self.write(path, bytes) {
                for (p, _) in &files[..i] {
                    let _ = std::fs::remove_file(p);
                }
                return Err(e);
            }
        }
        Ok(())
    }
}
