//! The engine's threads: a pool for the process it runs in, made again in a forked child.
//!
//! Rayon's global pool does not survive `fork`: the child inherits a pool whose threads were not
//! copied, and its first parallel step waits for them forever. Python forks all the time (a
//! `multiprocessing` pool, `datasets.map(num_proc=…)`, a DataLoader's workers on Linux): after the
//! parent had analysed one trace, a forked child's `analyze` hung. So the binding never uses the
//! global pool; each call runs in the pool of the process it finds itself in.

use flowtracer::per_process::PerProcess;
use rayon::ThreadPool;
use std::sync::Arc;

/// This process's pool ([`PerProcess`]: made again in a forked child).
static POOL: PerProcess<Option<Arc<ThreadPool>>> = PerProcess::new();

/// Runs `work` in this process's pool (its parallel steps on the pool's threads), without the GIL.
pub fn detached<T: Send>(py: pyo3::Python<'_>, work: impl FnOnce() -> T + Send) -> pyo3::PyResult<T> {
    let pool = pool()?;
    Ok(py.detach(|| pool.install(work)))
}

/// This process's pool, made on first use and again after a fork.
pub fn pool() -> pyo3::PyResult<Arc<ThreadPool>> {
    POOL.with(|held| {
        if let Some(pool) = held {
            return Ok(pool.clone());
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("flowtracer-{i}"))
            .build()
            .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(format!("the engine's threads could not start: {e}")))?;
        Ok(held.insert(Arc::new(pool)).clone())
    })
}
