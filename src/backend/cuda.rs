//! The CUDA backend: a batch of traces (the rollouts of one RL step, a folder being exported)
//! goes to the device together. Step 1 folds each trace's slabs into one shared buffer of
//! matrices; the solves (3, 5), the throughput (6), the credit's selection (9) and the backbone's
//! widest paths (7) then run for every trace in the same launches. Per trace on the CPU, in
//! parallel, through the same `flow::finish_with` as every backend: the roles (step 8: hubs are a
//! selection like the credit's, checkpoints read a few backbone rows) and γ from the selection.
//!
//! A device failure anywhere in a batch sends that batch to the CPU with a warning, losing
//! nothing; a bad file gets the CPU's error, which names the exact layer, head and row.

use super::Backend;
use crate::cuda::{Aggregated, Cuda, Decomposing, Fold, Job, driver_err, guard};
use crate::flow::backbone::Decomposition;
use crate::flow::unit_flow::UnitFlow;
use crate::flow::{self, Cancel, Computed, FlowResult, Matrix, StepTimes, aggregate, roles};
use crate::params::{CreditParams, Params};
use crate::span::Spans;
use crate::trace::{DataError, Problem, Trace, TraceError};
use rayon::prelude::*;
use cudarc::driver::CudaSlice;
use std::time::{Duration, Instant};

pub struct CudaBackend {
    pub cuda: &'static Cuda,
}

/// One trace of a batch that passed its parameter checks, with the spans to trace between.
struct Item<'t> {
    index: usize,
    trace: &'t Trace,
    spans: Spans,
    /// `spans` with the answer replaced by the sink: what the device steps run between.
    sink: Spans,
    sel: aggregate::Selection,
}

impl Backend for CudaBackend {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn device(&self) -> String {
        self.cuda.name.clone()
    }

    /// The rollouts of one RL step (G = 8 × 8 prompts).
    fn batch_size(&self) -> usize {
        64
    }

    fn run_batch(&self, traces: &[&Trace], params: &Params, cancel: &Cancel) -> Vec<Result<FlowResult, TraceError>> {
        let with_spans: Vec<(&Trace, Spans)> = traces.iter().map(|&t| (t, t.spans)).collect();
        self.run_with_matrices(&with_spans, params, cancel).into_iter().map(|r| r.map(|(r, _)| r)).collect()
    }

    fn analyze_spans(&self, trace: &Trace, spans: Spans, params: &Params, cancel: &Cancel) -> Result<(FlowResult, Matrix), TraceError> {
        self.run_with_matrices(&[(trace, spans)], params, cancel).pop().expect("one result per trace")
    }
}

impl CudaBackend {
    /// The batch, each trace between the given spans, with its aggregated matrix (the app keeps
    /// it for its views).
    pub fn run_with_matrices(&self, traces: &[(&Trace, Spans)], params: &Params, cancel: &Cancel) -> Vec<Result<(FlowResult, Matrix), TraceError>> {
        let mut out: Vec<Option<Result<(FlowResult, Matrix), TraceError>>> = traces.iter().map(|_| None).collect();
        let mut items = Vec::new();
        for (index, &(trace, spans)) in traces.iter().enumerate() {
            let checked = params
                .validate()
                .map_err(|e| DataError::new(Problem::Params, e))
                .and_then(|()| spans.validate(trace.n()).map_err(|e| DataError::new(Problem::Span, e)))
                .and_then(|()| aggregate::select(trace, &params.aggregate));
            match checked {
                Ok(sel) => items.push(Item { index, trace, spans, sink: flow::reach::conditioned(spans, &params.answer), sel }),
                Err(e) => out[index] = Some(Err(e.at(&trace.path))),
            }
        }
        // As many traces' matrices at once as fit in half the free device memory.
        let budget = self.cuda.free_memory().unwrap_or(1 << 30) / 2;
        for group in groups(&items, budget) {
            let results = match self.batch(group, params, cancel) {
                Ok(results) => results,
                Err(e) => {
                    eprintln!("flowtracer: warning: CUDA failed ({e}); a batch of {} trace(s) runs on the CPU", group.len());
                    group
                        .par_iter()
                        .map(|it| {
                            flow::analyze_spans(it.trace, it.spans, params, cancel).map(|(mut r, m)| {
                                r.backend = "cpu (cuda failed)".into();
                                (r, m)
                            })
                        })
                        .collect()
                }
            };
            for (it, r) in group.iter().zip(results) {
                out[it.index] = Some(r);
            }
        }
        out.into_iter().map(|r| r.expect("every trace has a result")).collect()
    }
}

/// Consecutive runs of items whose packed matrices together stay within `budget` bytes (a
/// trace larger than the budget alone goes in a group of its own).
fn groups<'a, 't>(items: &'a [Item<'t>], budget: usize) -> Vec<&'a [Item<'t>]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, it) in items.iter().enumerate() {
        let b = Matrix::bytes_for(it.trace.n());
        // A launch's y index is the trace: at most 65535 of them.
        if i > start && (bytes + b > budget || i - start == 65535) {
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
    /// Steps 1, 3, 5, 6, 7 and 9 on the device for the whole group; the roles (step 8) and the
    /// credit's γ from the selection per trace on the CPU.
    fn batch(&self, group: &[Item], params: &Params, cancel: &Cancel) -> Result<Vec<Result<(FlowResult, Matrix), TraceError>>, String> {
        let cuda = self.cuda;
        let cancelled = |it: &Item| Err(DataError::new(Problem::Cancelled, "cancelled").at(&it.trace.path));
        // Packed matrices back to back, one float to spare so no trace's view is empty.
        let mut offsets = Vec::with_capacity(group.len());
        let mut total = 0;
        for it in group {
            offsets.push(total);
            total += Matrix::bytes_for(it.trace.n()) / 4;
        }
        let mut m = guard("CUDA", || cuda.stream.alloc_zeros::<f32>(total + 1).map_err(driver_err))?;

        // Step 1 for the whole batch; each trace is charged its share of the wall time.
        if cancel.is_cancelled() {
            return Ok(group.iter().map(cancelled).collect());
        }
        let folds: Vec<Fold> = group.iter().zip(&offsets).map(|(it, &offset)| Fold { att: &it.trace.attention, sel: &it.sel, offset }).collect();
        let t = Instant::now();
        let aggregated = cuda.aggregate_batch(&mut m, &folds, &params.aggregate)?;
        let agg_share = t.elapsed() / group.len().max(1) as u32;

        // The later steps for every trace whose values passed, together.
        let (mut jobs, mut spans) = (Vec::new(), Vec::new());
        let mut v = 0u32;
        for ((it, &off), (a, _)) in group.iter().zip(&offsets).zip(&aggregated) {
            if *a == Aggregated::Ok {
                jobs.push(job(it, off, v, &params.credit));
                spans.push(it.sink);
                v += it.trace.n() as u32;
            }
        }
        let mut done = if jobs.is_empty() { Vec::new() } else { self.on_device(&mut m, &jobs, &spans, params)? }.into_iter();
        if cancel.is_cancelled() {
            return Ok(group.iter().map(cancelled).collect());
        }
        let work: Vec<_> = group.iter().zip(aggregated).map(|(it, (a, kernels))| (it, (a == Aggregated::Ok).then(|| (done.next().expect("one result per job"), kernels)))).collect();
        Ok(work
            .into_par_iter()
            .map(|(it, done)| match done {
                // The CPU reads the file again for the exact place of the bad value.
                None => flow::analyze_spans(it.trace, it.spans, params, cancel),
                Some((d, kernels)) => {
                    let OnDevice { mut matrix, h, uf, computed, times: [reach, flow, credit, backbone] } = d;
                    let mut times = StepTimes { aggregate: agg_share, aggregate_on_device: kernels, reach, flow, credit, backbone, ..Default::default() };
                    let mut r = flow::finish_with(&mut matrix, it.sink, params, &mut times, h, uf, computed);
                    r.backend = format!("cuda: {}", cuda.name);
                    r.layers = it.sel.layers.clone();
                    r.heads = it.sel.heads.clone();
                    r.times = times;
                    Ok((r, matrix))
                }
            })
            .collect())
    }

    /// Steps 3, 5, 6, 9 and 7 for `jobs` (the group's traces that aggregated, between `spans`),
    /// in their order.
    fn on_device(&self, m: &mut CudaSlice<f32>, jobs: &[Job], spans: &[Spans], params: &Params) -> Result<Vec<OnDevice>, String> {
        let cuda = self.cuda;
        let solved = cuda.solve_batch(m, jobs)?;
        let (credit, credit_time) = cuda.credit_batch(jobs, &solved)?;
        // The host keeps each matrix as aggregated (the roles read it, the app draws it), copied
        // before the backbone writes residuals into the device's.
        let mut matrices = Vec::with_capacity(jobs.len());
        for j in jobs {
            let mut matrix = Matrix::zeros(j.n as usize);
            let len = matrix.data.len();
            if len > 0 {
                guard("CUDA", || cuda.stream.memcpy_dtoh(&m.slice(j.m as usize..j.m as usize + len), &mut matrix.data).map_err(driver_err))?;
            }
            matrices.push(matrix);
        }
        let mut decomposing = Vec::new();
        let mut wants = Vec::with_capacity(jobs.len());
        for (((j, &s), (h, uf)), matrix) in jobs.iter().zip(spans).zip(&solved.host).zip(&matrices) {
            let d = Decomposition::new(h, &uf.flow, s, uf.sources, &params.backbone);
            wants.push(d.is_some());
            decomposing.extend(d.map(|d| Decomposing { job: *j, d, m: matrix }));
        }
        let (paths, backbone_time) = if decomposing.is_empty() { (Vec::new(), Duration::ZERO) } else { cuda.backbone_batch(m, &solved, decomposing)? };
        let mut paths = paths.into_iter();
        // The traces share the launches; each is charged its part of their time.
        let per_trace = jobs.len() as u32;
        let [reach, flow] = solved.times.map(|t| t / per_trace);
        let times = [reach, flow, credit_time / per_trace, backbone_time / per_trace];
        Ok(matrices
            .into_iter()
            .zip(solved.host)
            .zip(credit)
            .zip(wants)
            .map(|(((matrix, (h, uf)), (tau, chosen)), wanted)| {
                let backbone = if wanted { paths.next().expect("one backbone per decomposition") } else { Vec::new() };
                OnDevice { matrix, h, uf, computed: Computed { throughput: Some(tau), backbone: Some(backbone), chosen: Some(chosen) }, times }
            })
            .collect())
    }
}

/// One trace's results from the device, for the host to finish.
struct OnDevice {
    matrix: Matrix,
    h: Vec<f64>,
    uf: UnitFlow,
    computed: Computed,
    /// Its share of the reach, flow, credit (throughput and selection) and backbone launches.
    times: [Duration; 4],
}

/// The trace as the kernels see it: its matrix at `m`, its vectors at `v`.
fn job(it: &Item, m: usize, v: u32, credit: &CreditParams) -> Job {
    let s = it.sink;
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
        top: roles::share_count(credit.fraction, r.len()) as u32,
    }
}
