//! The values a flag takes, checked where clap reads them, so a count of zero or a share outside
//! (0, 1] is a usage error naming the flag, not a panic or a table of nothing later on.

/// A count that must be at least one (problems, seeds, held-out problems, runs per case, ...).
pub fn count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

/// A share or an accuracy: a number in (0, 1].
pub fn share(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(x) if x > 0.0 && x <= 1.0 => Ok(x),
        Ok(x) => Err(format!("{x} must lie in (0, 1]")),
        Err(_) => Err(format!("`{text}` is not a number")),
    }
}

/// A file a command is to write (`--out`): refused where something is there already, a file of
/// the user's perhaps, unless `overwrite`, or where a folder or file stands in its way; said
/// before the work, not after its minutes.
pub fn new_file(out: &std::path::Path, overwrite: bool) -> Result<(), String> {
    if let Some(why) = flowtracer::atomic::in_the_way(out) {
        return Err(why);
    }
    match std::fs::symlink_metadata(out) {
        Ok(_) if !overwrite => Err(already_exists(out)),
        _ => Ok(()),
    }
}

/// Writes a command's `--out` file atomically: over what is there where `overwrite`, else only
/// where nothing is when the write lands ([`flowtracer::atomic::write_new`]): a file that
/// appeared there while the work ran (another run writing the same name) is kept, and named.
pub fn write_out(out: &std::path::Path, bytes: &[u8], overwrite: bool) -> Result<(), String> {
    let write = if overwrite { flowtracer::atomic::write_atomic } else { flowtracer::atomic::write_new };
    write(out, bytes).map_err(|e| if e.kind() == std::io::ErrorKind::AlreadyExists { already_exists(out) } else { format!("{}: {e}", out.display()) })
}

/// What a command says of a file it will not write over.
pub fn already_exists(out: &std::path::Path) -> String {
    format!("{}: already exists (pass --overwrite to replace it)", out.display())
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_and_shares_refuse_what_cannot_be_meant() {
        assert_eq!(super::count("3"), Ok(3));
        assert!(super::count("0").unwrap_err().contains("at least 1"));
        assert!(super::count("-2").unwrap_err().contains("whole number"));
        assert_eq!(super::share("1"), Ok(1.0));
        assert_eq!(super::share("0.25"), Ok(0.25));
        for bad in ["0", "1.5", "-0.1", "NaN", "inf"] {
            assert!(super::share(bad).is_err(), "{bad}");
        }
    }

    /// What `synth` and `warmstart` write last, after minutes of work: a file that appeared at
    /// `--out` since their check at the start is kept and named, unless `--overwrite`.
    #[test]
    fn an_out_file_that_appeared_meanwhile_is_kept() {
        let dir = std::env::temp_dir().join(format!("ft-write-out-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("policy.safetensors");
        assert_eq!(super::write_out(&out, b"ours", false), Ok(()));
        assert_eq!(std::fs::read(&out).unwrap(), b"ours");
        std::fs::write(&out, b"theirs").unwrap();
        assert_eq!(super::write_out(&out, b"ours", false), Err(super::already_exists(&out)));
        assert_eq!(std::fs::read(&out).unwrap(), b"theirs");
        assert_eq!(super::write_out(&out, b"ours", true), Ok(()));
        assert_eq!(std::fs::read(&out).unwrap(), b"ours");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temporary is left");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
