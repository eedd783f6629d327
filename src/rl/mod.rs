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
