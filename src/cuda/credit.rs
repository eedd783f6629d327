//! Steps 6 and 9 on CUDA (`kernels/credit.cu`) for a whole batch, on the solves' h and f where
//! the solves left them: every token's throughput, then the credit's selection among each
//! trace's response tokens; one launch each for all traces.

use super::{Cuda, Job, Solved, THREADS, cfg, driver_err, guard};
use cudarc::driver::PushKernelArg;
use std::time::{Duration, Instant};

/// One trace's throughput τ, and the response tokens among its `top` highest τ in token order.
pub(crate) type Credited = (Vec<f64>, Vec<usize>);

impl Cuda {
    /// Per job, what it credits; with the wall time of both steps for the batch.
    pub(crate) fn credit_batch(&self, jobs: &[Job], solved: &Solved) -> Result<(Vec<Credited>, Duration), String> {
        guard("CUDA credit", || {
            let t = Instant::now();
            let s = &self.stream;
            let total = solved.h.len();
            let mut tau = s.alloc_zeros::<f64>(total).map_err(driver_err)?;
            let mut chosen = s.alloc_zeros::<u32>(total).map_err(driver_err)?;
            let d_jobs = s.clone_htod(jobs).map_err(driver_err)?;
            let count = jobs.len() as u32;
            let longest = jobs.iter().map(|j| j.n).max().unwrap_or(0);
            // SAFETY (both launches): the arguments match the kernels' signatures; each thread
            // indexes only its job's own n tokens of each vector.
            unsafe { s.launch_builder(&self.f.throughput).arg(&d_jobs).arg(&solved.h).arg(&solved.f).arg(&mut tau).launch(cfg((longest.div_ceil(THREADS).max(1), count, 1), THREADS)) }
                .map_err(driver_err)?;
            let widest = jobs.iter().filter(|j| j.top > 0).map(|j| j.r1 - j.r0).max().unwrap_or(0);
            if widest > 0 {
                unsafe { s.launch_builder(&self.f.credit_select).arg(&d_jobs).arg(&tau).arg(&mut chosen).launch(cfg((widest.div_ceil(THREADS), count, 1), THREADS)) }
                    .map_err(driver_err)?;
            }
            let tau = self.read(&tau)?;
            let chosen = self.read(&chosen)?;
            let out = jobs
                .iter()
                .map(|j| {
                    let v = j.v as usize;
                    let picked = (j.r0 as usize..j.r1 as usize).filter(|&k| chosen[v + k] == 1).collect();
                    (tau[v..v + j.n as usize].to_vec(), picked)
                })
                .collect();
            Ok((out, t.elapsed()))
        })
    }
}
