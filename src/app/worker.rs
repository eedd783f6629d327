//! Re-scoring off the UI thread. The newest request wins: a new job cancels the running one, and
//! results of stale jobs are dropped, so dragging a slider never queues up work.

use super::document::Analysis;
use crate::backend::Backend;
use crate::flow::{self, Cancel, Plan};
use crate::params::Params;
use crate::span::Spans;
use crate::trace::Trace;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Instant;

pub struct Done {
    pub doc: usize,
    pub generation: u64,
    pub outcome: Result<Analysis, String>,
}

pub struct Worker {
    tx: Sender<Done>,
    rx: Receiver<Done>,
    generation: u64,
    running: Option<(u64, Cancel, Instant)>,
    repaint: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl Default for Worker {
    fn default() -> Self {
        let (tx, rx) = channel();
        Worker { tx, rx, generation: 0, running: None, repaint: None }
    }
}

impl Worker {
    /// Wakes the UI when a job finishes (the app passes `ctx.request_repaint`).
    pub fn set_waker(&mut self, f: impl Fn() + Send + Sync + 'static) {
        self.repaint = Some(Arc::new(f));
    }

    pub fn busy_since(&self) -> Option<Instant> {
        self.running.as_ref().map(|r| r.2)
    }

    /// Stops the running job; its result, if it still arrives, is dropped.
    pub fn cancel(&mut self) {
        if let Some((_, c, _)) = self.running.take() {
            c.cancel();
        }
    }

    pub fn submit(&mut self, backend: &'static dyn Backend, doc: usize, trace: Arc<Trace>, spans: Spans, params: Params, previous: Option<Arc<Analysis>>) {
        if let Some((_, c, _)) = self.running.take() {
            c.cancel();
        }
        self.generation += 1;
        let generation = self.generation;
        let cancel = Cancel::default();
        self.running = Some((generation, cancel.clone(), Instant::now()));
        let tx = self.tx.clone();
        let waker = self.repaint.clone();
        std::thread::spawn(move || {
            let outcome = analyse(backend, &trace, spans, params, previous.as_deref(), &cancel);
            let _ = tx.send(Done { doc, generation, outcome });
            if let Some(w) = waker {
                w();
            }
        });
    }

    /// Runs a job on this thread (tests and the first frame use this: no waiting).
    pub fn run_now(backend: &dyn Backend, doc: usize, trace: &Trace, spans: Spans, params: &Params, previous: Option<&Analysis>) -> Done {
        let outcome = analyse(backend, trace, spans, params.clone(), previous, &Cancel::default());
        Done { doc, generation: 0, outcome }
    }

    /// The finished job of the newest generation, if any.
    pub fn poll(&mut self) -> Option<Done> {
        let mut newest = None;
        while let Ok(done) = self.rx.try_recv() {
            if self.running.as_ref().is_some_and(|r| r.0 == done.generation) {
                self.running = None;
                newest = Some(done);
            }
        }
        newest
    }
}

/// A full analysis on `backend`, or, when the aggregation parameters did not change, steps 3–9
/// on the CPU on a copy of the previous analysis's matrix (the aggregation is most of the cost of
/// a re-score). The result's provenance says which it was.
pub fn analyse(backend: &dyn Backend, trace: &Trace, spans: Spans, params: Params, previous: Option<&Analysis>, cancel: &Cancel) -> Result<Analysis, String> {
    let t = Instant::now();
    if let Some(prev) = previous
        && let Some(at) = prev.plan.resumes_at(spans, &params)
        && let Some(plan) = prev.plan.reusing(spans, &params) {
            let plan = plan.map_err(|e| e.at(&trace.path).to_string())?;
            return Ok(Analysis::resumed(prev, flow::resume(&prev.result, &prev.matrix, &plan, at), plan, t));
        }
    if let Some(prev) = previous
        && let Some(plan) = prev.plan.reusing(spans, &params) {
            let plan = plan.map_err(|e| e.at(&trace.path).to_string())?;
            let result = flow::rescore(&prev.matrix, &plan, &prev.result.provenance, cancel).map_err(|e| e.at(&trace.path).to_string())?;
            return Ok(Analysis::sharing(prev, result, plan, t));
        }
    let plan = Plan::new(trace, spans, &params).map_err(|e| e.to_string())?;
    let (result, matrix) = backend.execute(&[(trace, &plan)], cancel).pop().expect("one result per trace").map_err(|e| e.to_string())?;
    Ok(Analysis::new(result, matrix, plan, t))
}
