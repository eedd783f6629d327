//! Steps 3 and 5 on CUDA for a whole batch (`kernels/solve.cu`): every trace's rows are cut on
//! one grid of 64-row blocks, so each block is two launches for all traces together (the trace
//! is the launch's y index), not two per trace. Sums run in double over f32 M, as on the CPU.

use super::{Cuda, Job, ROWS, THREADS, cfg, driver_err, guard};
use crate::flow::unit_flow::UnitFlow;
use crate::grid::{blocks_down, blocks_up};
use cudarc::driver::{CudaSlice, PushKernelArg};
use std::time::{Duration, Instant};

/// The solves of a batch: on the host for the results (and the backbone), and left on the
/// device, where the throughput and the credit's selection read them.
pub(crate) struct Solved {
    /// Per job: its reach and unit flow.
    pub host: Vec<(Vec<f64>, UnitFlow)>,
    /// Wall time of the reach and the flow solves for the whole batch.
    pub times: [Duration; 2],
    pub h: CudaSlice<f64>,
    pub f: CudaSlice<f64>,
}

impl Cuda {
    /// Reach and unit flow of every job's matrix in `m` (`jobs` not empty: a launch needs a
    /// block). Jobs with an empty answer give zeros.
    pub(crate) fn solve_batch(&self, m: &CudaSlice<f32>, jobs: &[Job]) -> Result<Solved, String> {
        guard("CUDA solve", || {
            let t = Instant::now();
            let s = &self.stream;
            let total = jobs.iter().map(|j| j.n as usize).sum::<usize>().max(1);
            let count = jobs.len() as u32;
            let zeros = || s.alloc_zeros::<f64>(total).map_err(driver_err);
            let (mut h, mut acc, mut g, mut f) = (zeros()?, zeros()?, zeros()?, zeros()?);

            // Reach: from the longest answer's end down to token 0.
            let d_jobs = s.clone_htod(jobs).map_err(driver_err)?;
            let top = jobs.iter().map(|j| j.a1).max().unwrap_or(0) as usize;
            for rows in blocks_down(top) {
                let (k0, k1) = (rows.start as u32, rows.end as u32);
                // SAFETY (every launch here): the arguments match the kernel's signature; the
                // kernels index only the job's own rows of M and its own n tokens of each vector.
                unsafe { s.launch_builder(&self.f.reach_block).arg(&d_jobs).arg(m).arg(&mut h).arg(&mut acc).arg(&k0).arg(&k1).launch(cfg((1, count, 1), ROWS)) }.map_err(driver_err)?;
                if k0 > 0 {
                    unsafe { s.launch_builder(&self.f.reach_push).arg(&d_jobs).arg(m).arg(&h).arg(&mut acc).arg(&k0).arg(&k1).launch(cfg((k0.div_ceil(THREADS), count, 1), THREADS)) }.map_err(driver_err)?;
                }
            }
            let reach = self.read(&h)?;
            let (reach_time, t) = (t.elapsed(), Instant::now());

            // Sources: each job's question tokens that reach its answer share one unit.
            let mut share = vec![0.0f64; total];
            let mut sources = Vec::with_capacity(jobs.len());
            let mut flow_jobs = jobs.to_vec();
            for (j, fj) in jobs.iter().zip(&mut flow_jobs) {
                let v = j.v as usize;
                let q = v + j.q0 as usize..v + j.q1 as usize;
                let k = reach[q.clone()].iter().filter(|&&x| x > 0.0).count();
                for i in q.filter(|&i| reach[i] > 0.0) {
                    share[i] = 1.0 / k as f64;
                }
                if k == 0 {
                    // No flow: an empty row range makes every flow kernel pass this job by.
                    fj.a1 = 0;
                }
                sources.push(k);
            }
            let d_flow_jobs = s.clone_htod(&flow_jobs).map_err(driver_err)?;
            let d_share = s.clone_htod(&share).map_err(driver_err)?;
            let live = || flow_jobs.iter().filter(|j| j.a1 > 0);
            let first = live().map(|j| j.q0).min().unwrap_or(0) as usize;
            let end = live().map(|j| j.a1).max().unwrap_or(0) as usize;
            for rows in blocks_up(first..end) {
                let (k0, k1) = (rows.start as u32, rows.end as u32);
                unsafe { s.launch_builder(&self.f.flow_gather).arg(&d_flow_jobs).arg(m).arg(&g).arg(&mut acc).arg(&k0).arg(&k1).launch(cfg((k1 - k0, count, 1), THREADS)) }.map_err(driver_err)?;
                unsafe { s.launch_builder(&self.f.flow_block).arg(&d_flow_jobs).arg(m).arg(&h).arg(&acc).arg(&mut g).arg(&mut f).arg(&d_share).arg(&k0).arg(&k1).launch(cfg((1, count, 1), ROWS)) }.map_err(driver_err)?;
            }
            let flow = self.read(&f)?;
            let flow_time = t.elapsed();

            let host = jobs
                .iter()
                .zip(sources)
                .map(|(j, sources)| {
                    let v = j.v as usize..j.v as usize + j.n as usize;
                    (reach[v.clone()].to_vec(), UnitFlow { flow: flow[v].to_vec(), sources })
                })
                .collect();
            Ok(Solved { host, times: [reach_time, flow_time], h, f })
        })
    }
}
