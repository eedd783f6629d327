//! The CUDA backend: a batch of traces (the rollouts of one RL step, a folder being exported)
//! goes to the device together. Step 1 folds each trace's slabs into one shared buffer of
//! matrices; the solves (3, 5), the throughput (6) and the credit's selection (9) then run for
//! every trace in the same launches. Each trace is then put together by the same assembly as
//! every backend (`flow::execute`), which takes the batch's answers as its device's: the backbone
//! (step 7), the roles (step 8: hubs are a selection like the credit's, checkpoints read a few
//! backbone rows) and γ from the selection run on the host, in parallel, on the matrix that comes
//! down for them anyway. The backbone is a chain of up to `max_paths` dependent widest-path
//! sweeps; on the device each was a full sweep and a host round trip (50.6 ms at N = 8200 on an
//! H200, 2026-12-04), where the CPU sweeps once and then updates only what each path changed
//! (9.8 ms at 8k beside that H200, 10 ms on two cores).
//!
//! A device failure anywhere in a batch sends that batch to the CPU, losing nothing and recorded
//! in each result's provenance; a bad file gets the CPU's error, which names the exact layer,
//! head and row.

use super::Backend;
use crate::cuda::{Aggregated, Cuda, Fold, Job, driver_err, guard};
use crate::flow::unit_flow::UnitFlow;
use crate::flow::{self, AggregateError, Cancel, Executor, FlowResult, Matrix, Offered, Offload, Plan, Selected, Solved, StepTimes, aggregate, roles};
use crate::params::AggregateParams;
use crate::span::Spans;
use crate::trace::{Attention, Trace, TraceError};
use cudarc::driver::CudaSlice;
use rayon::prelude::*;
use std::cell::RefCell;
use std::time::{Duration, Instant};

pub struct CudaBackend {
    pub cuda: &'static Cuda,
}

/// One planned trace of a batch.
struct Item<'t> {
    index: usize,
    trace: &'t Trace,
    plan: &'t Plan,
}

impl Backend for CudaBackend {
    fn executor(&self) -> Executor {
        Executor::Cuda
    }

    fn device(&self) -> String {
        self.cuda.name.clone()
    }

    fn memory_floor(&self, host: &[u8], repeat: usize) -> Option<Result<super::DeviceFloor, String>> {
        Some(self.cuda.memory_floor(host, repeat))
    }

    /// The rollouts of one RL step (G = 8 × 8 prompts).
    fn batch_size(&self) -> usize {
        64
    }

    /// The batch in groups that fit the device's free memory; a group the device fails runs on
    /// the CPU, each result recording why.
    fn execute(&self, batch: &[(&Trace, &Plan)], cancel: &Cancel) -> Vec<Result<(FlowResult, Matrix), TraceError>> {
        let items: Vec<Item> = batch.iter().enumerate().map(|(index, &(trace, plan))| Item { index, trace, plan }).collect();
        let mut out: Vec<Option<Result<(FlowResult, Matrix), TraceError>>> = batch.iter().map(|_| None).collect();
        // As many traces' matrices at once as fit in half the free device memory.
        let budget = self.cuda.free_memory().unwrap_or(1 << 30) / 2;
        for group in groups(&items, budget) {
            let answers = match self.batch(group, cancel) {
                Ok(answers) => answers,
                Err(why) => group.iter().map(|_| FromBatch::Failed(why.clone())).collect(),
            };
            let results: Vec<_> = group
                .par_iter()
                .zip(answers)
                .map(|(it, answer)| flow::execute(it.trace, it.plan, &Answered { cuda: self.cuda, answer: RefCell::new(answer) }, cancel))
                .collect();
            for (it, r) in group.iter().zip(results) {
                out[it.index] = Some(r);
            }
        }
        out.into_iter().map(|r| r.expect("every trace has a result")).collect()
    }
}

/// Consecutive runs of items with the same parameters whose packed matrices together stay
/// within `budget` bytes (a trace larger than the budget alone goes in a group of its own).
fn groups<'a, 't>(items: &'a [Item<'t>], budget: usize) -> Vec<&'a [Item<'t>]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, it) in items.iter().enumerate() {
        let b = Matrix::bytes_for(it.trace.n());
        // A launch's y index is the trace: at most 65535 of them.
        if i > start && (bytes + b > budget || i - start == 65535 || it.plan.params != items[start].plan.params) {
            out.push(&items[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += b;
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

impl CudaBackend {
    /// Steps 1, 3, 5, 6 and 9 on the device for the whole group, one answer per trace for the
    /// assembly to take.
    fn batch(&self, group: &[Item], cancel: &Cancel) -> Result<Vec<FromBatch>, String> {
        let cuda = self.cuda;
        // Every trace of a group shares the parameters of the export or step that made it.
        let Some(params) = group.first().map(|it| &it.plan.params) else { return Ok(Vec::new()) };
        // Packed matrices back to back, one float to spare so no trace's view is empty.
        let mut offsets = Vec::with_capacity(group.len());
        let mut total = 0;
        for it in group {
            offsets.push(total);
            total += Matrix::bytes_for(it.trace.n()) / 4;
        }
        let mut m = guard("CUDA", || cuda.stream.alloc_zeros::<f32>(total + 1).map_err(driver_err))?;
        if cancel.is_cancelled() {
            return Ok(group.iter().map(|_| FromBatch::Cancelled).collect());
        }

        // Step 1 for the whole batch; each trace is charged its share of the wall time.
        let folds: Vec<Fold> = group.iter().zip(&offsets).map(|(it, &offset)| Fold { att: &it.trace.attention, sel: &it.plan.selection, offset }).collect();
        let t = Instant::now();
        let aggregated = cuda.aggregate_batch(&mut m, &folds, &params.aggregate)?;
        let agg_share = t.elapsed() / group.len().max(1) as u32;

        // The later steps for every trace whose values passed, together.
        let mut jobs = Vec::new();
        let mut v = 0u32;
        for ((it, &off), (a, _)) in group.iter().zip(&offsets).zip(&aggregated) {
            if *a == Aggregated::Ok {
                jobs.push(job(it, off, v));
                v += it.trace.n() as u32;
            }
        }
        let mut done = if jobs.is_empty() { Vec::new() } else { self.on_device(&m, &jobs)? }.into_iter();
        if cancel.is_cancelled() {
            return Ok(group.iter().map(|_| FromBatch::Cancelled).collect());
        }
        Ok(aggregated
            .into_iter()
            .map(|(a, kernels)| match a {
                Aggregated::BadData => FromBatch::BadData,
                Aggregated::Ok => {
                    let mut d = done.next().expect("one result per job");
                    (d.times.aggregate, d.times.aggregate_on_device) = (agg_share, kernels);
                    FromBatch::Done(Box::new(d))
                }
            })
            .collect())
    }

    /// Steps 3, 5, 6 and 9 for `jobs` (the group's traces that aggregated), in their order, and
    /// each trace's matrix brought down.
    fn on_device(&self, m: &CudaSlice<f32>, jobs: &[Job]) -> Result<Vec<OnDevice>, String> {
        let cuda = self.cuda;
        let solved = cuda.solve_batch(m, jobs)?;
        let (credit, credit_time) = cuda.credit_batch(jobs, &solved)?;
        // The host keeps each matrix (the backbone and the roles read it, the app draws it).
        let mut matrices = Vec::with_capacity(jobs.len());
        let mut staging = cuda.staging();
        for j in jobs {
            // Every entry comes down, so a dropped matrix's storage will do (no page faults).
            let mut matrix = Matrix::for_overwrite(j.n as usize);
            let len = matrix.data.len();
            guard("CUDA", || staging.download(&cuda.stream, &m.slice(j.m as usize..j.m as usize + len), &mut matrix.data))?;
            matrices.push(matrix);
        }
        drop(staging);
        // The traces share the launches; each is charged its part of their time.
        let per_trace = jobs.len() as u32;
        let [reach, flow] = solved.times.map(|t| t / per_trace);
        let times = StepTimes { reach, flow, credit: credit_time / per_trace, ..Default::default() };
        Ok(matrices
            .into_iter()
            .zip(solved.host)
            .zip(credit)
            .map(|((matrix, (h, uf)), (tau, chosen))| OnDevice { matrix: Some(matrix), solved: Some((h, uf)), credit: Some((tau, chosen)), times: times.clone() })
            .collect())
    }
}

/// One trace's results from the device, each taken once by the assembly.
struct OnDevice {
    matrix: Option<Matrix>,
    solved: Option<(Vec<f64>, UnitFlow)>,
    credit: Option<(Vec<f64>, Vec<usize>)>,
    /// Its share of the batch's launches.
    times: StepTimes,
}

/// What the batch left for one trace.
enum FromBatch {
    Done(Box<OnDevice>),
    /// Its values broke a rule of the format: the CPU names the exact place.
    BadData,
    /// The device failed the batch: every step runs on the CPU, for this reason.
    Failed(String),
    Cancelled,
}

/// The batch's answer for one trace, offered to the assembly as its device's steps.
struct Answered<'c> {
    cuda: &'c Cuda,
    answer: RefCell<FromBatch>,
}

impl Answered<'_> {
    /// The part `take` picks of a finished trace's results; a failure's reason otherwise.
    fn part<T>(&self, take: impl FnOnce(&mut OnDevice) -> Option<T>) -> Offered<T> {
        match &mut *self.answer.borrow_mut() {
            FromBatch::Done(d) => take(d).map(Ok),
            FromBatch::Failed(why) => Some(Err(why.clone())),
            FromBatch::BadData | FromBatch::Cancelled => None,
        }
    }
}

impl Offload for Answered<'_> {
    fn executor(&self) -> Executor {
        Executor::Cuda
    }

    fn device(&self) -> String {
        self.cuda.name.clone()
    }

    fn aggregate(&self, _: &Attention, _: &aggregate::Selection, _: &AggregateParams) -> Option<Result<Matrix, AggregateError>> {
        match &mut *self.answer.borrow_mut() {
            FromBatch::Done(d) => d.matrix.take().map(Ok),
            FromBatch::BadData => Some(Err(AggregateError::BadData)),
            FromBatch::Failed(why) => Some(Err(AggregateError::Device(why.clone()))),
            // The CPU's aggregation sees the same flag and stops at once.
            FromBatch::Cancelled => None,
        }
    }

    fn aggregate_kernels(&self) -> Option<Duration> {
        match &*self.answer.borrow() {
            FromBatch::Done(d) => Some(d.times.aggregate_on_device),
            _ => None,
        }
    }

    fn solve(&self, _: &Matrix, _: Spans) -> Offered<Solved> {
        self.part(|d| d.solved.take().map(|(h, uf)| (h, uf, d.times.reach)))
    }

    fn credit(&self, _: usize, _: Spans, _: usize) -> Offered<Selected> {
        self.part(|d| d.credit.take())
    }

    fn charged(&self) -> Option<StepTimes> {
        match &*self.answer.borrow() {
            FromBatch::Done(d) => Some(d.times.clone()),
            _ => None,
        }
    }
}

/// The trace as the kernels see it: its matrix at `m`, its vectors at `v`.
fn job(it: &Item, m: usize, v: u32) -> Job {
    let s = it.plan.sink;
    // An empty answer: nothing to solve toward; empty spans make every kernel pass the job by.
    let (q, a) = if s.answer.is_empty() { (0..0, 0..0) } else { (s.question.range(), s.answer.range()) };
    let r = s.response.range();
    Job {
        m: m as u64,
        v,
        n: it.trace.n() as u32,
        q0: q.start as u32,
        q1: q.end as u32,
        a0: a.start as u32,
        a1: a.end as u32,
        r0: r.start as u32,
        r1: r.end as u32,
        top: roles::share_count(it.plan.params.credit.fraction, r.len()) as u32,
    }
}
