//! An open run folder: its metrics, and a row per trace (tokens, step, reward, correctness, the
//! pipeline's status) that a background thread fills in as it gets through the run. Each trace
//! is opened and analysed there, through the backend the app uses and with the current
//! parameters, never on the UI thread; a new pass (other parameters) cancels the old one.

use crate::backend::Backend;
use crate::flow::Cancel;
use crate::params::Params;
use crate::trace::Trace;
use crate::trace::run::Run;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

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
    /// A scored run's row whose trace file is not on this machine: listed, not openable.
    pub elsewhere: bool,
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
    /// Rows analysed off the UI thread come back here, tagged with the pass that made them.
    updates: Receiver<(u64, usize, RunRow)>,
    send: Sender<(u64, usize, RunRow)>,
    pass: u64,
    cancel: Cancel,
    backend: &'static dyn Backend,
    params: Params,
    watch: Option<Watch>,
    /// The Parquet a scored run was read from: its statuses are the ones it was scored with, and
    /// other parameters re-score only the traces opened here.
    pub scored: Option<PathBuf>,
}

/// The run folder watched for new traces and metrics (notify: inotify, FSEvents, ...; polling
/// where the platform's watcher cannot start).
struct Watch {
    _watcher: Box<dyn notify::Watcher + Send>,
    changed: Receiver<()>,
    /// When to list the folder again (a burst of events lists it once).
    rescan_at: Option<Instant>,
    /// New trace files not taken in yet: their size when last seen, and since when.
    settling: HashMap<PathBuf, (u64, Instant)>,
}

/// A file must keep its size this long before it is read: a writer still writing it (one that
/// does not write to a temporary and rename) would otherwise be read half-written.
const SETTLE: Duration = Duration::from_millis(500);
const RESCAN_AFTER: Duration = Duration::from_millis(200);

impl Watch {
    fn start(root: &Path) -> Option<Watch> {
        use notify::RecursiveMode;
        let (tx, changed) = channel();
        let handler = move |e: notify::Result<notify::Event>| {
            if e.is_ok() {
                let _ = tx.send(());
            }
        };
        let mut w: Box<dyn notify::Watcher + Send> = match notify::recommended_watcher(handler.clone()) {
            Ok(w) => Box::new(w),
            Err(_) => Box::new(notify::PollWatcher::new(handler, notify::Config::default().with_poll_interval(Duration::from_secs(1))).ok()?),
        };
        w.watch(root, RecursiveMode::Recursive).ok()?;
        Some(Watch { _watcher: w, changed, rescan_at: None, settling: HashMap::new() })
    }
}

impl RunModel {
    pub fn open(run: Run, backend: &'static dyn Backend, params: &Params) -> Self {
        let rows = run.traces.iter().map(|p| RunRow { path: p.clone(), relative: run.relative(p).display().to_string(), ..Default::default() }).collect();
        let (send, updates) = channel();
        let watch = Watch::start(&run.root);
        let mut m = RunModel { run, rows, updates, send, pass: 0, cancel: Cancel::default(), backend, params: params.clone(), watch, scored: None };
        m.analyse(backend, params);
        m
    }

    /// A run scored elsewhere (`flowtracer.ray`'s Parquet, a file or a folder of them): its rows
    /// as they were scored, each openable where its trace file is on this machine.
    pub fn open_scored(path: &Path, backend: &'static dyn Backend, params: &Params) -> Result<Self, String> {
        let summaries = crate::export::scored::read_summaries(path)?;
        let root = crate::export::scored::common_folder(summaries.iter().map(|r| Path::new(&r.source)));
        let name = path.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let run = Run { root, traces: summaries.iter().map(|r| PathBuf::from(&r.source)).collect(), info: Some(serde_json::json!({ "name": name })), ..Default::default() };
        let rows = summaries
            .into_iter()
            .map(|r| {
                let path = PathBuf::from(&r.source);
                let status = r.status.and_then(|s| crate::flow::Status::named(&s).map(|s| s.name()).ok_or(format!("unknown status {s:?}")));
                RunRow { relative: run.relative(&path).display().to_string(), elsewhere: !path.is_file(), n: r.n, step: r.step, reward: r.reward, correct: r.correct, status: Some(status), path }
            })
            .collect();
        let (send, updates) = channel();
        Ok(RunModel { run, rows, updates, send, pass: 0, cancel: Cancel::default(), backend, params: params.clone(), watch: None, scored: Some(path.to_path_buf()) })
    }

    /// Whether new traces and metrics are picked up as they appear.
    pub fn watching(&self) -> bool {
        self.watch.is_some()
    }

    /// (Re)fills the rows' statuses with these parameters, cancelling a pass still running.
    pub fn analyse(&mut self, backend: &'static dyn Backend, params: &Params) {
        if self.scored.is_some() {
            return;
        }
        self.cancel.cancel();
        self.cancel = Cancel::default();
        self.pass += 1;
        (self.backend, self.params) = (backend, params.clone());
        for r in &mut self.rows {
            r.status = None;
        }
        self.fill(0..self.rows.len());
    }

    /// Analyses these rows on a background thread, in this pass.
    fn fill(&self, rows: std::ops::Range<usize>) {
        let todo: Vec<(usize, RunRow)> = rows.map(|i| (i, self.rows[i].clone())).collect();
        let (tx, backend, params, cancel, pass) = (self.send.clone(), self.backend, self.params.clone(), self.cancel.clone(), self.pass);
        std::thread::spawn(move || {
            for (i, mut row) in todo {
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
                if tx.send((pass, i, row)).is_err() {
                    return;
                }
            }
        });
    }

    /// Takes in the rows finished since the last frame, and traces and metrics that appeared in
    /// the folder; true while work is still going on (a repaint is due).
    pub fn poll(&mut self) -> bool {
        while let Ok((pass, i, row)) = self.updates.try_recv() {
            if pass == self.pass {
                self.rows[i] = row;
            }
        }
        let watching = self.follow();
        watching || self.rows.iter().any(|r| r.status.is_none())
    }

    /// Lists the folder again after a change: new trace files join the table (once their size
    /// has settled) and are analysed; `metrics.jsonl` is read again. True while a rescan or a
    /// settling file is pending.
    fn follow(&mut self) -> bool {
        let Some(w) = &mut self.watch else { return false };
        if w.changed.try_iter().count() > 0 {
            w.rescan_at.get_or_insert(Instant::now() + RESCAN_AFTER);
        }
        match w.rescan_at {
            Some(at) if at <= Instant::now() => w.rescan_at = None,
            Some(_) => return true,
            None => return false,
        }
        let Ok(fresh) = crate::trace::run::discover(&self.run.root) else { return false };
        let known: std::collections::HashSet<&PathBuf> = self.rows.iter().map(|r| &r.path).collect();
        let mut ready = Vec::new();
        for p in fresh.traces.iter().filter(|p| !known.contains(p)) {
            let size = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            match w.settling.get(p) {
                Some(&(seen, since)) if seen == size && since.elapsed() >= SETTLE => ready.push(p.clone()),
                Some(&(seen, _)) if seen == size => {}
                _ => {
                    w.settling.insert(p.clone(), (size, Instant::now()));
                }
            }
        }
        for p in &ready {
            w.settling.remove(p);
        }
        if !w.settling.is_empty() {
            w.rescan_at = Some(Instant::now() + SETTLE);
        }
        let pending = w.rescan_at.is_some();
        self.run.metrics = fresh.metrics;
        self.run.warnings = fresh.warnings;
        if !ready.is_empty() {
            let first = self.rows.len();
            for p in ready {
                let relative = self.run.relative(&p).display().to_string();
                self.rows.push(RunRow { path: p.clone(), relative, ..Default::default() });
                self.run.traces.push(p);
            }
            self.fill(first..self.rows.len());
        }
        pending
    }
}

impl Drop for RunModel {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
