//! The app's model: the open documents and their analyses, the parameters, the baseline, the
//! open run, the training, the recent files and the status line, and the scheduling of
//! re-scores. Views read it; only `FlowApp::apply` (commands) and `Model::tick` (finished
//! background work) change it.

use super::document::{Analysis, Document};
use super::recent::Recent;
use super::run_model::RunModel;
use super::training::{TrainForm, Training};
use super::worker::{self, Worker};
use crate::backend::Backend;
use crate::params::Params;
use crate::trace::{Trace, run};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Re-score this long after the last parameter change (a slider drag is many changes).
pub const DEBOUNCE: Duration = Duration::from_millis(150);

pub struct Model {
    pub docs: Vec<Document>,
    pub current: usize,
    pub params: Params,
    /// What full analyses run on (`auto`'s pick; tests set others).
    pub backend: &'static dyn Backend,
    /// An analysis pinned for the Compare view, and the document it belongs to.
    pub baseline: Option<(usize, Arc<Analysis>)>,
    pub run: Option<RunModel>,
    pub train_form: TrainForm,
    pub training: Option<Training>,
    pub recent: Recent,
    pub status: String,
    pub rescoring: Rescoring,
}

/// When and where re-scores run.
pub struct Rescoring {
    /// Run the pipeline on the UI thread (tests); the app itself re-scores in the background.
    pub synchronous: bool,
    worker: Worker,
    dirty_since: Option<Instant>,
}

/// What finished background work changed, for the UI state to follow.
#[derive(Default)]
pub struct Ticked {
    /// A new analysis of the current document was installed.
    pub analysed: bool,
    /// Ask for another frame after this long (debouncing, work in flight).
    pub repaint_after: Option<Duration>,
}

impl Model {
    pub fn new(docs: Vec<Document>, params: Params, recent: Recent, backend: &'static dyn crate::backend::Backend) -> Self {
        let dirty_since = (!docs.is_empty()).then(|| Instant::now() - DEBOUNCE);
        Model {
            docs,
            current: 0,
            params,
            backend,
            baseline: None,
            run: None,
            train_form: Default::default(),
            training: None,
            recent,
            status: String::new(),
            rescoring: Rescoring { synchronous: false, worker: Worker::default(), dirty_since },
        }
    }

    pub fn doc(&self) -> Option<&Document> {
        self.docs.get(self.current)
    }

    pub fn doc_mut(&mut self) -> Option<&mut Document> {
        self.docs.get_mut(self.current)
    }

    /// Opens a trace file (or shows it, if open already); the error names the file.
    pub fn open_trace(&mut self, path: &Path) -> Result<(), String> {
        if let Some(i) = self.docs.iter().position(|d| d.trace.path == path) {
            self.current = i;
            return Ok(());
        }
        let t = Trace::open(path).map_err(|e| e.to_string())?;
        self.add(Document::new(t));
        self.recent.remember(path);
        self.status = format!("opened {}", path.display());
        Ok(())
    }

    /// Opens a run folder and its first trace, or a scored run's Parquet and the first of its
    /// traces on this machine.
    pub fn open_run(&mut self, path: &Path) -> Result<(), String> {
        if crate::export::scored::is_scored_run(path) {
            let scored = RunModel::open_scored(path, self.backend, &self.params)?;
            let first = scored.rows.iter().find(|r| !r.elsewhere && r.broken().is_none()).map(|r| r.path.clone());
            self.run = Some(scored);
            self.recent.remember(path);
            return first.map_or(Ok(()), |f| self.open_trace(&f));
        }
        let r = run::discover(path)?;
        let first = r.traces.first().cloned();
        self.run = Some(RunModel::open(r, self.backend, &self.params));
        self.recent.remember(path);
        match first {
            Some(f) => self.open_trace(&f),
            None => Ok(()),
        }
    }

    /// Adds a document, makes it current and schedules its analysis.
    pub fn add(&mut self, d: Document) {
        self.docs.push(d);
        self.current = self.docs.len() - 1;
        self.request_rescore();
    }

    pub fn show(&mut self, doc: usize) {
        if doc < self.docs.len() {
            self.current = doc;
            if self.docs[doc].analysis.is_none() {
                self.request_rescore();
            }
        }
    }

    pub fn set_params(&mut self, params: Params) {
        if let Some(run) = &mut self.run {
            run.analyse(self.backend, &params);
        }
        self.params = params;
        self.request_rescore();
    }

    pub fn request_rescore(&mut self) {
        if self.rescoring.synchronous {
            self.rescore_now();
        } else {
            self.rescoring.dirty_since = Some(Instant::now());
        }
    }

    /// Re-scores the current document on this thread.
    pub fn rescore_now(&mut self) {
        let Some(d) = self.docs.get(self.current) else { return };
        let done = Worker::run_now(self.backend, self.current, &d.trace, d.spans, &self.params, d.analysis.as_deref());
        self.install(done);
    }

    pub fn busy(&self) -> bool {
        self.rescoring.worker.busy_since().is_some() || self.rescoring.dirty_since.is_some()
    }

    pub fn cancel_rescore(&mut self) {
        self.rescoring.worker.cancel();
        self.rescoring.dirty_since = None;
        self.status = "re-score cancelled; the view shows the previous analysis".into();
        if let Some(d) = self.doc_mut().filter(|d| d.analysis.is_none()) {
            d.error = Some("analysis cancelled: change a parameter to run it again".into());
        }
    }

    /// Wakes the UI when background work finishes.
    pub fn set_waker(&mut self, wake: impl Fn() + Send + Sync + 'static) {
        self.rescoring.worker.set_waker(wake);
    }

    /// Takes in finished background work and starts what is due.
    pub fn tick(&mut self) -> Ticked {
        let mut out = Ticked::default();
        if let Some(t) = &mut self.training {
            t.poll();
        }
        if let Some(done) = self.rescoring.worker.poll() {
            out.analysed = done.doc == self.current;
            self.install(done);
        }
        if let Some(since) = self.rescoring.dirty_since {
            if since.elapsed() >= DEBOUNCE {
                self.rescoring.dirty_since = None;
                if let Some(d) = self.docs.get(self.current) {
                    self.rescoring.worker.submit(self.backend, self.current, d.trace.clone(), d.spans, self.params.clone(), d.analysis.clone());
                }
            } else {
                out.repaint_after = Some(DEBOUNCE);
            }
        }
        if self.rescoring.worker.busy_since().is_some() {
            out.repaint_after = Some(Duration::from_millis(50));
        }
        let needs_analysis = self.doc().is_some_and(|d| d.analysis.is_none() && d.error.is_none());
        if needs_analysis && !self.busy() {
            self.request_rescore();
        }
        out
    }

    fn install(&mut self, done: worker::Done) {
        let Some(d) = self.docs.get_mut(done.doc) else { return };
        match done.outcome {
            Ok(a) => {
                // A document's first result is its analysis; every later one re-scores it.
                let how = if d.analysis.is_some() { "re-scored" } else { "analysed" };
                self.status = format!(
                    "{} · {} · {how} in {:.1} ms on {}",
                    d.title(),
                    a.result.status.name(),
                    a.elapsed.as_secs_f64() * 1e3,
                    a.result.provenance.summary()
                );
                d.set_analysis(a);
            }
            Err(e) => {
                self.status = e.clone();
                d.error = Some(e);
            }
        }
    }
}
