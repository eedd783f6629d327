//! Shaped-reward RL: a small policy the project trains itself (no model can be downloaded here),
//! on verifiable synthetic reasoning tasks, with GRPO whose token advantages are shaped by the
//! flow credit of the policy's own attention.

pub mod causal;
pub mod compare;
pub mod fidelity;
pub mod grpo;
pub mod model;
pub mod optim;
pub mod probe;
pub mod resume;
pub mod rollout;
pub mod shipped;
pub mod task;
pub mod train;

/// The RL code's errors are candle's: its own failures, and ours as messages (`Error::msg`,
/// [`at`]). The binary and the app turn them into text once, at the top.
pub use candle_core::{Error, Result};

/// An error as the user reads it. candle puts a backtrace into each error made where
/// `RUST_BACKTRACE` is set, and prints it in the message: twenty-odd frames under "Not a
/// directory" for a `train --out` whose folder is a file. The message is ours; the frames are a
/// debugger's (`{:?}` keeps them).
pub fn said(e: &Error) -> String {
    match e {
        Error::WithBacktrace { inner, .. } => said(inner),
        Error::Context { inner, context } => format!("{context}\n{}", said(inner)),
        e => e.to_string(),
    }
}

/// `FILE: problem` as an error, for a `map_err`.
pub(crate) fn at<E: std::fmt::Display>(path: &std::path::Path) -> impl Fn(E) -> Error + '_ {
    move |e| Error::msg(format!("{}: {e}", path.display()))
}

/// What a folder the RL code is to fill from scratch already holds (`"a, b, c and 4 more"`), or
/// None where it is new or empty. A new run and the probe's traces go only into such a folder:
/// nothing of the user's is written over, and no earlier output stands beside ours as if it
/// were part of it.
pub(crate) fn held(dir: &std::path::Path) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).ok()?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    if names.is_empty() {
        return None;
    }
    names.sort();
    let more = if names.len() > 3 { format!(" and {} more", names.len() - 3) } else { String::new() };
    Some(format!("{}{more}", names[..names.len().min(3)].join(", ")))
}

#[cfg(test)]
mod tests {
    use super::Error;

    /// The message without the backtrace candle wraps around it, the context kept.
    #[test]
    fn an_error_is_said_without_its_backtrace() {
        let traced = || Error::WithBacktrace { inner: Box::new(Error::Msg("run: Not a directory".into())), backtrace: Box::new(std::backtrace::Backtrace::force_capture()) };
        assert!(traced().to_string().lines().count() > 1, "candle prints the frames");
        assert_eq!(super::said(&traced()), "run: Not a directory");
        assert_eq!(super::said(&traced().context("saving the checkpoint")), "saving the checkpoint\nrun: Not a directory");
        assert_eq!(super::said(&Error::Msg("plain".into())), "plain");
    }
}
