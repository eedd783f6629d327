//! An open run folder: its metrics, and a row per trace (tokens, step, reward, correctness, the
//! pipeline's status) that a background thread fills in as it gets through the run. Each trace
//! is opened and analysed there, through the backend the app uses and with the current
//! parameters, never on the UI thread; a new pass (other parameters) cancels the old one.

use crate::backend::Backend;
use crate::flow::Cancel;
use crate::params::Params;
use crate::trace::Trace;
use crate::trace::run::Run;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, channel};

/// One row of the run table; `None` fields are not known yet (or the file is broken).
#[derive(Clone, Debug, Default)]
pub struct RunRow {
    pub path: PathBuf,
    pub relative: String,
    pub n: Option<usize>,
    pub step: Option<u64>,
    pub reward: Option<f64>,
    pub correct: Option<bool>,
    /// The pipeline's status (`ok`, `no_answer`, `no_flow`), or why the trace failed.
    pub status: Option<Result<&'static str, String>>,
}

impl RunRow {
    /// Why the file could not be opened at all (a trace that opens but fails the pipeline can
    /// still be opened in the viewer, which shows its error).
    pub fn broken(&self) -> Option<&str> {
        match &self.status {
            Some(Err(e)) if self.n.is_none() => Some(e),
            _ => None,
        }
    }
}

pub struct RunModel {
    pub run: Run,
    pub rows: Vec<RunRow>,
    updates: Receiver<(usize, RunRow)>,
    cancel: Cancel,
}

impl RunModel {
    pub fn open(run: Run, backend: &'static dyn Backend, params: &Params) -> Self {
        let rows = run.traces.iter().map(|p| RunRow { path: p.clone(), relative: run.relative(p).display().to_string(), ..Default::default() }).collect();
        let (_, updates) = channel();
        let mut m = RunModel { run, rows, updates, cancel: Cancel::default() };
        m.analyse(backend, params);
        m
    }

    /// (Re)fills the rows' statuses with these parameters, cancelling a pass still running.
    pub fn analyse(&mut self, backend: &'static dyn Backend, params: &Params) {
        self.cancel.cancel();
        self.cancel = Cancel::default();
        for r in &mut self.rows {
            r.status = None;
        }
        let (tx, rx) = channel();
        self.updates = rx;
        let rows = self.rows.clone();
        let (params, cancel) = (params.clone(), self.cancel.clone());
        std::thread::spawn(move || {
            for (i, mut row) in rows.into_iter().enumerate() {
                if cancel.is_cancelled() {
                    return;
                }
                row.status = Some(match Trace::open(&row.path) {
                    Ok(t) => {
                        (row.n, row.step, row.reward, row.correct) = (Some(t.n()), t.meta.step, t.meta.reward, t.meta.correct);
                        match backend.run_batch(&[&t], &params, &cancel).pop().expect("one result per trace") {
                            Ok(r) => Ok(r.status.name()),
                            Err(e) => Err(e.message),
                        }
                    }
                    Err(e) => Err(e.message),
                });
                if tx.send((i, row)).is_err() {
                    return;
                }
            }
        });
    }

    /// Takes in the rows finished since the last frame; true while some are still missing.
    pub fn poll(&mut self) -> bool {
        while let Ok((i, row)) = self.updates.try_recv() {
            self.rows[i] = row;
        }
        self.rows.iter().any(|r| r.status.is_none())
    }
}

impl Drop for RunModel {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
