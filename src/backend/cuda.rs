//! The CUDA backend: a batch of traces (the rollouts of one RL step, a folder being exported)
//! goes to the device together. Step 1 folds each trace's slabs into one shared buffer of
//! matrices; steps 3 and 5 solve every trace in the same launches; steps 6–9 (throughput, the
//! backbone, the roles, the credit) then run per trace on the CPU, in parallel, through the same
//! `flow::finish` as every other backend: they take milliseconds where the solves take the time.
//!
//! A device failure anywhere in a batch sends that batch to the CPU with a warning, losing
//! nothing; a bad file gets the CPU's error, which names the exact layer, head and row.

use super::Backend;
use crate::cuda::{Aggregated, Cuda, Fold, Job, driver_err, guard};
use crate::flow::{self, Cancel, FlowResult, Matrix, StepTimes, aggregate};
use crate::params::Params;
use crate::span::Spans;
use crate::trace::{DataError, Problem, Trace, TraceError};
use rayon::prelude::*;
use std::time::Instant;

pub struct CudaBackend {
    pub cuda: &'static Cuda,
}

/// One trace of a batch that passed its parameter checks, with the spans to trace between.
struct Item<'t> {
    index: usize,
    trace: &'t Trace,
    spans: Spans,
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
                Ok(sel) => items.push(Item { index, trace, spans, sel }),
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
    /// Steps 1, 3 and 5 on the device for the whole group, then 6–9 per trace on the CPU.
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
        let aggregated: Vec<_> = aggregated.into_iter().map(|(a, kernels)| (a, (agg_share, kernels))).collect();

        // Steps 3 and 5 for every trace whose values passed, together.
        let mut jobs = Vec::new();
        let mut v = 0u32;
        for ((it, &off), (a, _)) in group.iter().zip(&offsets).zip(&aggregated) {
            let n = it.trace.n() as u32;
            let s = it.spans;
            let (q, ans) = if s.answer.is_empty() { (0..0, 0..0) } else { (s.question.range(), s.answer.range()) };
            if *a == Aggregated::Ok {
                jobs.push(Job { m: off as u64, v, n, q0: q.start as u32, q1: q.end as u32, a0: ans.start as u32, a1: ans.end as u32 });
                v += n;
            }
        }
        let (solved, [reach_time, flow_time]) = cuda.solve_batch(&m, &jobs)?;
        let mut solved = solved.into_iter();
        // The traces share the solves' launches; each is charged its part of their time.
        let per_trace = jobs.len().max(1) as u32;

        // The host keeps each matrix for the backbone and the roles, which read it by rows.
        let mut work = Vec::with_capacity(group.len());
        for ((it, &off), (a, agg_time)) in group.iter().zip(&offsets).zip(aggregated) {
            if a == Aggregated::BadData {
                work.push((it, None));
                continue;
            }
            let mut matrix = Matrix::zeros(it.trace.n());
            let len = matrix.data.len();
            if len > 0 {
                guard("CUDA", || cuda.stream.memcpy_dtoh(&m.slice(off..off + len), &mut matrix.data).map_err(driver_err))?;
            }
            work.push((it, Some((matrix, agg_time, solved.next().expect("one solve per job")))));
        }
        guard("CUDA", || cuda.stream.synchronize().map_err(driver_err))?;
        if cancel.is_cancelled() {
            return Ok(group.iter().map(cancelled).collect());
        }
        Ok(work
            .into_par_iter()
            .map(|(it, done)| match done {
                // The CPU reads the file again for the exact place of the bad value.
                None => flow::analyze_spans(it.trace, it.spans, params, cancel),
                Some((mut matrix, (agg_time, agg_kernels), (h, uf))) => {
                    let mut times = StepTimes { aggregate: agg_time, aggregate_on_device: agg_kernels, reach: reach_time / per_trace, flow: flow_time / per_trace, ..Default::default() };
                    let mut r = flow::finish(&mut matrix, it.spans, params, &mut times, h, uf);
                    r.backend = format!("cuda: {}", cuda.name);
                    r.layers = it.sel.layers.clone();
                    r.heads = it.sel.heads.clone();
                    r.times = times;
                    Ok((r, matrix))
                }
            })
            .collect())
    }
}
