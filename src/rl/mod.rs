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
