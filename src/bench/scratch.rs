//! The bench's own folder for its synthetic traces and exports: made new inside the folder it is
//! given (`--dir`, the system's temporary folder by default) and removed with everything in it
//! when the bench ends, by an error or Ctrl-C too. The bench had written into the given folder
//! itself and removed that folder whole at the end, so `bench --dir ~/data` deleted `~/data`.

use std::path::{Path, PathBuf};

pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// A folder of the bench's own inside `parent` (made if missing; it is left in place).
    pub fn new(parent: &Path) -> Result<Scratch, String> {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        for attempt in 0..1000 {
            let path = parent.join(format!("flowtracer-bench-{}-{attempt}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(Scratch { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        }
        Err(format!("{}: no free name for the bench's folder", parent.display()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bench works in a new folder inside the one it is given, never on what was there: the
    /// folder and a file of the user's in it outlive the bench, and the bench's folder does not.
    #[test]
    fn the_given_folder_keeps_what_was_in_it() {
        let given = std::env::temp_dir().join(format!("ft-bench-given-{}", std::process::id()));
        std::fs::create_dir_all(&given).unwrap();
        let theirs = given.join("bench_1024_1x1_f32.safetensors");
        std::fs::write(&theirs, b"the user's").unwrap();
        let (one, two) = (Scratch::new(&given).unwrap(), Scratch::new(&given).unwrap());
        assert!(one.path() != two.path() && one.path().starts_with(&given) && one.path().is_dir());
        std::fs::write(one.path().join("bench_1024_1x1_f32.safetensors"), b"the bench's").unwrap();
        let made = one.path().to_path_buf();
        drop((one, two));
        assert!(!made.exists(), "the bench's folder goes");
        assert_eq!(std::fs::read(&theirs).unwrap(), b"the user's");
        let _ = std::fs::remove_dir_all(&given);
    }
}
