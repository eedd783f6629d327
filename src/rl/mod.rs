//! Shaped-reward RL: a small policy the project trains itself (no model can be downloaded here),
//! on verifiable synthetic reasoning tasks, with GRPO whose token advantages are shaped by the
//! flow credit of the policy's own attention.

pub mod grpo;
pub mod model;
pub mod rollout;
pub mod task;
pub mod train;
