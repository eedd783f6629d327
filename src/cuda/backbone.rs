//! Step 7 on CUDA (`kernels/backbone.cu`) for a whole batch, in rounds: each round, every trace
//! that wants another path gets its widths from one blocked (max, min) sweep, two launches per
//! block of 64 rows for all those traces together; the host takes each trace's widest path with
//! the CPU's own bookkeeping (`flow::backbone::Decomposition`), so every backend takes paths by
//! one rule; one more launch writes every path's residuals into M and what its source has left.
//! At most `max_paths` rounds, whatever the batch's size.

use super::{Cuda, Job, ROWS, Solved, THREADS, cfg, driver_err, guard};
use crate::flow::Matrix;
use crate::flow::backbone::{Decomposition, FlowPath, NONE, Residuals, SOURCE};
use crate::flow::matrix::row_offset;
use crate::grid::blocks_up;
use cudarc::driver::PushKernelArg;
use std::time::{Duration, Instant};

/// `pred` codes of kernels/backbone.cu.
const NO_PRED: u32 = u32::MAX;
const SOURCE_PRED: u32 = u32::MAX - 1;

/// One trace's decomposition in progress.
pub(crate) struct Decomposing<'a> {
    pub job: Job,
    pub d: Decomposition<'a>,
    /// The host's copy of the trace's M, as aggregated: the residuals are kept beside it.
    pub m: &'a Matrix,
}

impl Cuda {
    /// The backbone of each trace of `work`, whose matrices are in `m` (the path edges' entries
    /// are overwritten with residuals), with the wall time for the batch.
    pub(crate) fn backbone_batch(&self, m: &mut cudarc::driver::CudaSlice<f32>, solved: &Solved, mut work: Vec<Decomposing>) -> Result<(Vec<Vec<FlowPath>>, Duration), String> {
        guard("CUDA backbone", || {
            let t = Instant::now();
            let s = &self.stream;
            let total = solved.h.len();
            let mut left = vec![0.0f64; total];
            for w in &work {
                let v = w.job.v as usize;
                left[v..v + w.job.n as usize].copy_from_slice(&w.d.source_left);
            }
            let mut left = s.clone_htod(&left).map_err(driver_err)?;
            let mut width = s.alloc_zeros::<f64>(total).map_err(driver_err)?;
            let mut pred = s.alloc_zeros::<u32>(total).map_err(driver_err)?;
            let mut acc_w = s.alloc_zeros::<f64>(total).map_err(driver_err)?;
            let mut acc_i = s.alloc_zeros::<u32>(total).map_err(driver_err)?;
            // What a round sends, allocated once for the most it can be: a job and a path per
            // trace, a path's edges fewer than its trace's tokens.
            let mut d_jobs = s.clone_htod(&vec![Job::default(); work.len()]).map_err(driver_err)?;
            let mut d_edge_at = s.alloc_zeros::<u64>(total + 1).map_err(driver_err)?;
            let mut d_edge_left = s.alloc_zeros::<f32>(total + 1).map_err(driver_err)?;
            let mut d_source_at = s.alloc_zeros::<u32>(work.len() + 1).map_err(driver_err)?;
            let mut d_source_value = s.alloc_zeros::<f64>(work.len() + 1).map_err(driver_err)?;
            let mut residuals: Vec<Residuals> = work.iter().map(|_| Residuals::default()).collect();
            let mut live: Vec<usize> = (0..work.len()).filter(|&w| work[w].d.wants_more()).collect();
            while !live.is_empty() {
                let jobs: Vec<Job> = live.iter().map(|&w| work[w].job).collect();
                send(s, &jobs, &mut d_jobs)?;
                let count = jobs.len() as u32;
                let first = jobs.iter().map(|j| j.q0).min().unwrap_or(0) as usize;
                let end = jobs.iter().map(|j| j.a1).max().unwrap_or(0) as usize;
                for rows in blocks_up(first..end) {
                    let (k0, k1) = (rows.start as u32, rows.end as u32);
                    // SAFETY (every launch here): the arguments match the kernels' signatures;
                    // they index only their job's own rows of M and own tokens of each vector.
                    unsafe {
                        s.launch_builder(&self.f.widest_gather)
                            .arg(&d_jobs)
                            .arg(&*m)
                            .arg(&solved.h)
                            .arg(&solved.g)
                            .arg(&width)
                            .arg(&mut acc_w)
                            .arg(&mut acc_i)
                            .arg(&k0)
                            .arg(&k1)
                            .launch(cfg((k1 - k0, count, 1), THREADS))
                    }
                    .map_err(driver_err)?;
                    unsafe {
                        s.launch_builder(&self.f.widest_block)
                            .arg(&d_jobs)
                            .arg(&*m)
                            .arg(&solved.h)
                            .arg(&solved.g)
                            .arg(&left)
                            .arg(&acc_w)
                            .arg(&acc_i)
                            .arg(&mut width)
                            .arg(&mut pred)
                            .arg(&k0)
                            .arg(&k1)
                            .launch(cfg((1, count, 1), ROWS))
                    }
                    .map_err(driver_err)?;
                }
                let widths = self.read(&width)?;
                let preds = self.read(&pred)?;

                // Each trace takes its widest path; the residuals and shares go back together.
                let (mut edge_at, mut edge_left, mut source_at, mut source_value) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                let mut still = Vec::with_capacity(live.len());
                for &w in &live {
                    let Decomposing { job, d, m: host } = &mut work[w];
                    let v = job.v as usize..job.v as usize + job.n as usize;
                    let pred: Vec<usize> = preds[v.clone()]
                        .iter()
                        .map(|&p| match p {
                            NO_PRED => NONE,
                            SOURCE_PRED => SOURCE,
                            p => p as usize,
                        })
                        .collect();
                    let kept = &mut residuals[w];
                    let taken = d.take(&widths[v.clone()], &pred, |k, i, residual| {
                        edge_at.push(job.m + (row_offset(k) + i) as u64);
                        edge_left.push(kept.cut(host, k, i, residual));
                    });
                    if taken {
                        let source = d.paths.last().expect("just taken").tokens[0];
                        source_at.push((v.start + source) as u32);
                        source_value.push(d.source_left[source]);
                        if d.wants_more() {
                            still.push(w);
                        }
                    }
                }
                live = still;
                if live.is_empty() {
                    break;
                }
                let (edges, sources) = (edge_at.len() as u32, source_at.len() as u32);
                send(s, &edge_at, &mut d_edge_at)?;
                send(s, &edge_left, &mut d_edge_left)?;
                send(s, &source_at, &mut d_source_at)?;
                send(s, &source_value, &mut d_source_value)?;
                unsafe {
                    s.launch_builder(&self.f.take_paths)
                        .arg(&mut *m)
                        .arg(&d_edge_at)
                        .arg(&d_edge_left)
                        .arg(&edges)
                        .arg(&mut left)
                        .arg(&d_source_at)
                        .arg(&d_source_value)
                        .arg(&sources)
                        .launch(cfg((edges.max(sources).div_ceil(THREADS).max(1), 1, 1), THREADS))
                }
                .map_err(driver_err)?;
            }
            Ok((work.into_iter().map(|w| w.d.paths).collect(), t.elapsed()))
        })
    }
}

/// `host` into the start of `device`, in the stream's order (the kernels before it have read
/// what it overwrites); the caller sized `device` for the most a round sends.
fn send<T: cudarc::driver::DeviceRepr>(s: &std::sync::Arc<cudarc::driver::CudaStream>, host: &[T], device: &mut cudarc::driver::CudaSlice<T>) -> Result<(), String> {
    if host.len() > device.len() {
        return Err(format!("CUDA backbone: {} values for a buffer of {}", host.len(), device.len()));
    }
    if host.is_empty() {
        return Ok(());
    }
    s.memcpy_htod(host, &mut device.slice_mut(0..host.len())).map_err(driver_err)
}
