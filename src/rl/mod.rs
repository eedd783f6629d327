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
