//! Warm-start checkpoints that ship inside the binary, so a fine-tune starts at once instead of
//! after minutes of supervised training. Each was made by `flowtracer warmstart` (the README has
//! the commands and the accuracy each reached); a task without one warms up by itself.

use super::task::Task;

/// `flowtracer warmstart --task addition --target 0.3`: 1100 supervised steps, 43.4% greedy
/// accuracy on the 256 held-out 4-digit problems (the default policy, `Config::small`).
const ADDITION: &[u8] = include_bytes!("../../assets/policy/addition.safetensors");

/// `flowtracer warmstart --task chain --target 0.3`: 100 supervised steps, 35.5% on the held-out
/// 3-hop chains.
const CHAIN: &[u8] = include_bytes!("../../assets/policy/chain.safetensors");

pub fn checkpoint(task: Task) -> Option<&'static [u8]> {
    match task {
        Task::Addition => Some(ADDITION),
        Task::Chain => Some(CHAIN),
        Task::Parity => None,
    }
}
