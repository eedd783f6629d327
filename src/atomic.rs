//! Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of one.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to a temporary file beside `path`, flushes it, then renames it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    written(path, bytes)?.commit()
}

/// [`write_atomic`] for a file that must not replace one: where something is at `path` when
/// the write lands, it fails with [`std::io::ErrorKind::AlreadyExists`] and leaves that alone
/// (two writers racing to one name end with one file and one error; a check before the rename
/// would leave the moment between them to the other writer).
pub fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    written(path, bytes)?.commit_new()
}

/// `bytes` in a temporary beside `path` (its folder made where missing), to be put in place.
fn written(path: &Path, bytes: &[u8]) -> std::io::Result<AtomicFile> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    make_folder(dir)?;
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes)?;
    Ok(f)
}

/// What stands where a file is to be written at `path`, said before the work that makes it: a
/// folder at `path`, or a file where one of its folders would be. A file at `path` itself is the
/// caller's to weigh (replaced where the user asked to overwrite).
pub fn in_the_way(path: &Path) -> Option<String> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        return Some(format!("{}: is a folder, not the file to write", path.display()));
    }
    let parent = path.parent()?;
    file_in_the_way(parent).map(|file| format!("{}: cannot be written: {} is a file, not a folder", path.display(), file.display()))
}

/// `create_dir_all`, failing as what it is where a file stands where one of the folders would
/// be: named, where the system's "Not a directory" named none, and not the "File exists" that
/// callers would answer with "pass --overwrite".
pub fn make_folder(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| match file_in_the_way(dir) {
        Some(file) => std::io::Error::new(std::io::ErrorKind::NotADirectory, format!("{} is a file, not a folder", file.display())),
        None => e,
    })
}

/// Where a folder `dir` is to be made: the nearest of it and the folders above it that is there,
/// if that is a file (or a link to nothing), which no folder can be made under.
pub fn file_in_the_way(dir: &Path) -> Option<&Path> {
    let nearest = dir.ancestors().filter(|a| !a.as_os_str().is_empty()).find(|a| std::fs::symlink_metadata(a).is_ok())?;
    (!nearest.is_dir()).then_some(nearest)
}

/// [`write_atomic`] without waiting for the disk: for a marker that is replaced soon and whose
/// loss in a crash costs nothing (the export's summary while it runs).
pub fn write_unsynced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path(path);
    std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path)).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// A file written piece by piece and put in place whole: the pieces go to a temporary file beside
/// `path` (a crash leaves only that, which [`remove_stale_temporaries`] clears), and
/// [`AtomicFile::commit`] renames it over `path`. Dropped uncommitted, the temporary goes.
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl AtomicFile {
    pub fn create(path: &Path) -> std::io::Result<AtomicFile> {
        // A temporary of its own even where another thread writes the same name in the same
        // nanosecond: made only where no file is, its name drawn again where one is.
        let mut tries = 0;
        loop {
            let tmp = temp_path(path);
            match std::fs::File::create_new(&tmp) {
                Ok(file) => return Ok(AtomicFile { path: path.to_path_buf(), tmp, file: Some(std::io::BufWriter::new(file)) }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 16 => tries += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Where the pieces are until the commit (to read back what was written so far).
    pub fn temporary(&self) -> &Path {
        &self.tmp
    }

    /// Where the rename is refused (a folder in the file's place, a read-only folder), the
    /// temporary goes too: a failed write leaves the folder as it found it.
    pub fn commit(mut self) -> std::io::Result<()> {
        self.synced()?;
        std::fs::rename(&self.tmp, &self.path).inspect_err(|_| {
            let _ = std::fs::remove_file(&self.tmp);
        })
    }

    /// [`AtomicFile::commit`] where nothing may be at `path` (see [`write_new`]): the temporary
    /// is linked there, which the file system refuses where a file is, and then let go. On a
    /// file system without hard links (FAT, some network mounts) the check is made just before
    /// the rename.
    pub fn commit_new(mut self) -> std::io::Result<()> {
        let placed = self.synced().and_then(|()| match std::fs::hard_link(&self.tmp, &self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => match std::fs::symlink_metadata(&self.path) {
                Ok(_) => Err(std::io::Error::from(std::io::ErrorKind::AlreadyExists)),
                Err(_) => std::fs::rename(&self.tmp, &self.path),
            },
            linked => linked,
        });
        // Linked (or refused): the temporary goes. Renamed, it is gone already.
        let _ = std::fs::remove_file(&self.tmp);
        placed
    }

    /// The pieces on disk; from here the temporary is the caller's to place or remove.
    fn synced(&mut self) -> std::io::Result<()> {
        let file = self.file.take().expect("committed once").into_inner().map_err(|e| e.into_error());
        file.and_then(|f| f.sync_all()).inspect_err(|_| {
            let _ = std::fs::remove_file(&self.tmp);
        })
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.as_mut().expect("not committed").write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().expect("not committed").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // Committed: the temporary is the file now. Otherwise it goes, written or not.
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Removes the temporaries that writers killed mid-write left under `dir` (the export calls this
/// before it writes there): `.NAME.PID.NANOS.tmp` of a process that is gone. A live writer's
/// (another export into the same folder) are left alone. Returns how many went.
pub fn remove_stale_temporaries(dir: &Path) -> usize {
    let mut removed = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if t.is_file() && writer_is_gone(&e.file_name().to_string_lossy()) => {
                    removed += std::fs::remove_file(&path).is_ok() as usize;
                }
                _ => {}
            }
        }
    }
    removed
}

/// Whether `name` is one of [`temp_path`]'s names and the process that made it has ended.
fn writer_is_gone(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else { return false };
    let mut parts = rest.rsplitn(3, '.');
    let (Some(nanos), Some(pid), Some(_)) = (parts.next(), parts.next(), parts.next()) else { return false };
    let (Ok(_), Ok(pid)) = (nanos.parse::<u32>(), pid.parse::<u32>()) else { return false };
    // Only where processes can be looked up (Linux's /proc); elsewhere nothing is removed.
    pid != std::process::id() && Path::new("/proc/self").exists() && !Path::new(&format!("/proc/{pid}")).exists()
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // The clock's nanoseconds, moved on by each name drawn in this process: two threads, or
    // one clock too coarse to tell two calls apart, still draw different names.
    static DRAWN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let unique = nanos.wrapping_add(DRAWN.fetch_add(1, std::sync::atomic::Ordering::Relaxed).wrapping_mul(2_654_435_761));
    path.with_file_name(format!(".{name}.{}.{unique}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("ft-atomic-{}", std::process::id()));
        let p = dir.join("a/b.txt");
        super::write_atomic(&p, b"one").unwrap();
        super::write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A file that must be new is written where nothing is, and refused (the file there kept)
    /// where something is, also when writers race to one name: one of them wins, each other
    /// one is told, and no temporary is left.
    #[test]
    fn a_new_file_never_replaces_one() {
        let dir = std::env::temp_dir().join(format!("ft-atomic-new-{}", std::process::id()));
        let p = dir.join("sample_0000.safetensors");
        super::write_new(&p, b"first").unwrap();
        let again = super::write_new(&p, b"second").unwrap_err();
        assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&p).unwrap(), b"first");
        let raced = dir.join("raced");
        let results: Vec<(u8, std::io::Result<()>)> = std::thread::scope(|s| {
            let writers: Vec<_> = (0..8u8).map(|i| (i, s.spawn({ let raced = &raced; move || super::write_new(raced, &[i; 4096]) }))).collect();
            writers.into_iter().map(|(i, w)| (i, w.join().unwrap())).collect()
        });
        let won: Vec<u8> = results.iter().filter(|(_, r)| r.is_ok()).map(|(i, _)| *i).collect();
        assert_eq!(won.len(), 1, "{results:?}");
        assert!(results.iter().all(|(_, r)| r.as_ref().is_ok_and(|()| true) || r.as_ref().unwrap_err().kind() == std::io::ErrorKind::AlreadyExists));
        assert_eq!(std::fs::read(&raced).unwrap(), vec![won[0]; 4096]);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2, "no temporary left");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A file written in pieces is not there until committed, then is all of them; one dropped
    /// uncommitted leaves nothing, not even its temporary, and the old file stays.
    #[test]
    fn a_file_in_pieces_appears_whole_or_not_at_all() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("ft-atomic-pieces-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("run.csv");
        let mut f = super::AtomicFile::create(&p).unwrap();
        f.write_all(b"a,b\n").unwrap();
        f.write_all(b"1,2\n").unwrap();
        assert!(!p.exists());
        f.commit().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"a,b\n1,2\n");
        let mut g = super::AtomicFile::create(&p).unwrap();
        g.write_all(b"half").unwrap();
        drop(g);
        assert_eq!(std::fs::read(&p).unwrap(), b"a,b\n1,2\n");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A write whose rename is refused (here a folder stands in the file's place) fails, and
    /// leaves no temporary behind, pieces or whole.
    #[test]
    fn a_refused_rename_leaves_no_temporary() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("ft-atomic-refused-{}", std::process::id()));
        let p = dir.join("a.svg");
        std::fs::create_dir_all(p.join("inside")).unwrap();
        assert!(super::write_atomic(&p, b"<svg/>").is_err());
        let mut f = super::AtomicFile::create(&p).unwrap();
        f.write_all(b"<svg/>").unwrap();
        assert!(f.commit().is_err());
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["a.svg"], "only the folder that was there");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A file where the path's folder would be is named as what it is, with either writer: not
    /// taken for the file being there already.
    #[test]
    fn a_file_in_the_folders_place_is_named() {
        let dir = std::env::temp_dir().join(format!("ft-atomic-in-the-way-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("notes.txt"), b"theirs").unwrap();
        for folder in ["notes.txt", "notes.txt/deeper"] {
            let p = dir.join(folder).join("t.safetensors");
            for e in [super::write_atomic(&p, b"x").unwrap_err(), super::write_new(&p, b"x").unwrap_err()] {
                assert_eq!(e.kind(), std::io::ErrorKind::NotADirectory, "{e}");
                assert!(e.to_string().ends_with("notes.txt is a file, not a folder"), "{e}");
            }
        }
        assert_eq!(std::fs::read(dir.join("notes.txt")).unwrap(), b"theirs");
        // Said before the work too, naming the file in the way; a folder at the path itself is
        // named as that; a path whose folders are missing, or are folders, is free.
        let e = super::in_the_way(&dir.join("notes.txt/deeper/t.safetensors")).unwrap();
        assert!(e.ends_with(&format!("cannot be written: {} is a file, not a folder", dir.join("notes.txt").display())), "{e}");
        assert!(super::in_the_way(&dir).unwrap().ends_with("is a folder, not the file to write"));
        assert_eq!(super::in_the_way(&dir.join("new/deeper/t.safetensors")), None);
        assert_eq!(super::in_the_way(&dir.join("notes.txt")), None, "a file at the path is the caller's to weigh");
        assert_eq!(super::in_the_way(std::path::Path::new("t.safetensors")), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
