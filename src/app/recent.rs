//! The recent-files list, kept in the user's config folder between sessions.

use std::path::{Path, PathBuf};

const KEEP: usize = 10;

#[derive(Default)]
pub struct Recent {
    pub paths: Vec<PathBuf>,
    /// Write the list back on every change (off in tests, which must not touch the user's files).
    persist: bool,
}

impl Recent {
    /// The list as the last session left it.
    pub fn load() -> Self {
        let paths = store().and_then(|p| std::fs::read(p).ok()).and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        Recent { paths, persist: true }
    }

    /// An empty list that is never written (tests).
    pub fn in_memory() -> Self {
        Recent::default()
    }

    pub fn remember(&mut self, path: &Path) {
        let p = path.to_path_buf();
        self.paths.retain(|r| r != &p);
        self.paths.insert(0, p);
        self.paths.truncate(KEEP);
        if self.persist
            && let Some(file) = store() {
                // A list that cannot be saved costs the user nothing but the list.
                let _ = crate::atomic::write_atomic(&file, &serde_json::to_vec(&self.paths).unwrap_or_default());
            }
    }
}

fn store() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("flowtracer").join("recent.json"))
}
