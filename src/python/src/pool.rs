//! The engine's threads: a pool for the process it runs in, made again in a forked child.
//!
//! Rayon's global pool does not survive `fork`: the child inherits a pool whose threads were not
//! copied, and its first parallel step waits for them forever. Python forks all the time (a
//! `multiprocessing` pool, `datasets.map(num_proc=…)`, a DataLoader's workers on Linux): after the
//! parent had analysed one trace, a forked child's `analyze` hung. So the binding never uses the
//! global pool; each call runs in the pool of the process it finds itself in.

use rayon::ThreadPool;
use std::sync::{Arc, Mutex};

/// The process that made the pool, and the pool.
static POOL: Mutex<Option<(u32, Arc<ThreadPool>)>> = Mutex::new(None);

/// Runs `work` in this process's pool (its parallel steps on the pool's threads), without the GIL.
pub fn detached<T: Send>(py: pyo3::Python<'_>, work: impl FnOnce() -> T + Send) -> pyo3::PyResult<T> {
    let pool = pool()?;
    Ok(py.detach(|| pool.install(work)))
}

/// This process's pool, made on first use and again after a fork.
pub fn pool() -> pyo3::PyResult<Arc<ThreadPool>> {
    let pid = std::process::id();
    let mut held = POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((owner, pool)) = held.as_ref()
        && *owner == pid
    {
        return Ok(pool.clone());
    }
    // A parent's pool, copied by the fork without its threads: let go of it without dropping it,
    // whose drop would signal threads that are not in this process.
    if let Some(parents) = held.take() {
        std::mem::forget(parents);
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("flowtracer-{i}"))
        .build()
        .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(format!("the engine's threads could not start: {e}")))?;
    let pool = Arc::new(pool);
    *held = Some((pid, pool.clone()));
    Ok(pool)
}
