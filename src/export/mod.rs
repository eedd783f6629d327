//! Headless export (`flowtracer --export`): every input trace through the pipeline, files per
//! trace, then the run-wide files. One broken trace is reported in the summary and costs nothing
//! else; every file is written atomically.

pub(crate) mod credits;
mod html;
mod outputs;
pub mod phases;
mod run_files;
mod writers;
pub mod plan;
pub mod record;
pub mod scored;
pub mod table;

pub use credits::{CreditRow, Credits, read_credits};
pub use plan::{Job, Planned, plan};

use crate::backend::Backend;
use crate::flow::{Cancel, FlowResult, Matrix};
use crate::params::Params;
use crate::render;
use crate::trace::{Problem, Trace, TraceError};
use rayon::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;
use writers::{Slots, Writers, Written, write};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Formats {
    pub json: bool,
    pub csv: bool,
    pub png: bool,
    pub svg: bool,
    pub html: bool,
    pub credits: bool,
    /// The step graph and the token backbone as Graphviz DOT / GraphML.
    pub dot: bool,
    pub graphml: bool,
}

/// One kind of output file (`--format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One `flowtracer.credit/1` document per trace.
    Json,
    /// `scores.csv`: a row per token of every trace.
    Csv,
    /// The credit heat map and the backbone, rasterised.
    Png,
    /// The backbone as SVG.
    Svg,
    /// `report.html`: every trace on one page.
    Html,
    /// `credits.safetensors`: per-token credit for the RL trainer.
    Credits,
    /// `STEM.steps.dot` and `STEM.backbone.dot`: the step graph and the token backbone for
    /// Graphviz (each trace's matrix is aggregated once more for the step graph).
    Dot,
    /// The same two graphs as GraphML (`.graphml`), for Gephi, yEd, networkx, igraph.
    Graphml,
    /// json, csv, png, svg, html and credits (the graphs are asked for by name).
    All,
}

impl Formats {
    pub const ALL: Formats = Formats { json: true, csv: true, png: true, svg: true, html: true, credits: true, dot: false, graphml: false };
    pub const NONE: Formats = Formats { json: false, csv: false, png: false, svg: false, html: false, credits: false, dot: false, graphml: false };

    /// What each trace's files are called after its stem (`STEM.credit.png`): the names
    /// `files_of` gives them, which a folder is checked for before an export writes there.
    pub fn trace_files(self) -> Vec<&'static str> {
        let sets: [(bool, &[&'static str]); 5] = [
            (self.json, &["json"]),
            (self.png, &["credit.png", "backbone.png"]),
            (self.svg, &["backbone.svg"]),
            (self.dot, &["steps.dot", "backbone.dot"]),
            (self.graphml, &["steps.graphml", "backbone.graphml"]),
        ];
        sets.into_iter().filter(|(on, _)| *on).flat_map(|(_, names)| names.iter().copied()).collect()
    }

    /// The run-wide files, `summary.json` always.
    pub fn run_files(self) -> Vec<&'static str> {
        let names = [(true, "summary.json"), (self.csv, "scores.csv"), (self.html, "report.html"), (self.credits, credits::CREDITS_FILE)];
        names.into_iter().filter(|(on, _)| *on).map(|(_, name)| name).collect()
    }

    /// The set a list of formats names.
    pub fn of(list: &[Format]) -> Formats {
        list.iter().fold(Formats::NONE, |mut f, item| {
            match item {
                Format::Json => f.json = true,
                Format::Csv => f.csv = true,
                Format::Png => f.png = true,
                Format::Svg => f.svg = true,
                Format::Html => f.html = true,
                Format::Credits => f.credits = true,
                Format::Dot => f.dot = true,
                Format::Graphml => f.graphml = true,
                Format::All => f = Formats { dot: f.dot, graphml: f.graphml, ..Formats::ALL },
            }
            f
        })
    }
}

/// What became of one input.
#[derive(Clone, Debug)]
pub enum Outcome {
    Exported {
        source: String,
        /// The per-trace JSON, relative to the output folder.
        output: String,
        status: crate::flow::Status,
        n: usize,
        /// Steps the backend was asked to run that ran on the CPU instead, and why.
        fallbacks: Vec<crate::flow::Fallback>,
        elapsed_ms: f64,
    },
    Failed {
        source: String,
        problem: Problem,
        error: String,
        elapsed_ms: f64,
    },
}

impl Outcome {
    pub fn source(&self) -> &str {
        match self {
            Outcome::Exported { source, .. } | Outcome::Failed { source, .. } => source,
        }
    }

    pub fn is_failed(&self) -> bool {
        matches!(self, Outcome::Failed { .. })
    }

    /// Why it failed (a message that names the file).
    pub fn error(&self) -> Option<&str> {
        match self {
            Outcome::Failed { error, .. } => Some(error),
            Outcome::Exported { .. } => None,
        }
    }

    fn with_elapsed(mut self, ms: f64) -> Self {
        match &mut self {
            Outcome::Exported { elapsed_ms, .. } | Outcome::Failed { elapsed_ms, .. } => *elapsed_ms = ms,
        }
        self
    }
}

/// `summary.json`'s shape of an outcome, one flat object as it has always been.
#[derive(Serialize)]
struct OutcomeJson<'a> {
    source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<&'a str>,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<usize>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    fallbacks: &'a [crate::flow::Fallback],
    elapsed_ms: f64,
}

impl Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Outcome::Exported { source, output, status, n, fallbacks, elapsed_ms } => OutcomeJson {
                source,
                output: Some(output),
                status: status.name(),
                problem: None,
                error: None,
                n: Some(*n),
                fallbacks,
                elapsed_ms: *elapsed_ms,
            },
            Outcome::Failed { source, problem, error, elapsed_ms } => OutcomeJson {
                source,
                output: None,
                status: "failed",
                problem: Some(problem.name()),
                error: Some(error),
                n: None,
                fallbacks: &[],
                elapsed_ms: *elapsed_ms,
            },
        }
        .serialize(s)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RunInfo {
    pub root: String,
    pub name: String,
    pub traces: usize,
    pub metrics: usize,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub format: &'static str,
    pub backend: String,
    pub params: Params,
    pub exported: usize,
    pub failed: usize,
    /// Stopped by the user (Ctrl-C): the traces not done are among `traces`, problem `cancelled`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    /// Run-wide files that could not be written, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    pub runs: Vec<RunInfo>,
    pub traces: Vec<Outcome>,
}

/// A trace that went through, kept (without its attention) for the run-wide files.
pub struct Done {
    pub stem: PathBuf,
    pub label: String,
    pub source: String,
    pub tokens: Vec<String>,
    /// What each token shows in the report (`Trace::text`).
    pub text: Vec<String>,
    pub token_ids: Option<Vec<i64>>,
    pub sample_id: Option<String>,
    pub spans: crate::span::Spans,
    pub meta: crate::trace::TraceMeta,
    pub causal_effect: Option<Vec<f32>>,
    pub result: FlowResult,
}

impl Done {
    fn of_trace(stem: PathBuf, trace: &Trace, result: FlowResult) -> Done {
        Done {
            stem,
            label: trace.label(),
            source: trace.path.display().to_string(),
            tokens: trace.tokens.clone(),
            text: trace.text(),
            token_ids: trace.token_ids.clone(),
            sample_id: trace.meta.sample_id.clone(),
            spans: trace.spans,
            meta: trace.meta.clone(),
            causal_effect: trace.causal_effect.clone(),
            result,
        }
    }

    /// A row of a scored run, as if its trace had been run here.
    fn of_scored(stem: PathBuf, s: scored::Scored) -> Done {
        let label = crate::trace::label_of(s.meta.sample_id.as_deref(), Path::new(&s.source));
        let text = crate::trace::text_of(&s.tokens, s.meta.tokenizer);
        Done {
            stem,
            label,
            source: s.source,
            text,
            tokens: s.tokens,
            token_ids: s.token_ids,
            sample_id: s.meta.sample_id.clone(),
            spans: s.spans,
            meta: s.meta,
            causal_effect: s.causal_effect,
            result: s.result,
        }
    }
}

/// The step graph (from `m`, the matrix the pipeline aggregated, where it was kept; otherwise
/// aggregated again from the trace) and the token backbone.
fn graphs(trace: &Trace, m: Option<&Matrix>, result: &FlowResult, params: &Params, text: &[String]) -> Result<(crate::flow::steps::StepGraph, petgraph::graph::DiGraph<usize, f64>), TraceError> {
    use crate::flow::{aggregate, plan::Plan, steps};
    let aggregated;
    let m = match m {
        Some(m) => m,
        None => {
            let plan = Plan::for_trace(trace, params)?;
            aggregated = aggregate::aggregate(&trace.attention, &plan.selection, &params.aggregate, &std::sync::atomic::AtomicBool::new(false)).map_err(|e| e.at(&trace.path))?;
            &aggregated
        }
    };
    let given = steps::given_segments(trace).map_err(|e| e.at(&trace.path))?;
    let segments = steps::segments(text, result.spans, &params.steps, given.as_deref());
    Ok((steps::step_graph(m, result, &segments, params.steps.max_steps, &params.backbone), steps::backbone_graph(&result.backbone)))
}

fn failure(source: &Path, problem: Problem, message: String) -> Outcome {
    Outcome::Failed { source: source.display().to_string(), problem, error: message, elapsed_ms: 0.0 }
}

/// Runs the export of planned inputs (`plan(inputs, Some(out), ..)`: a caller learns how many
/// traces there are before they run, and a scored run is read once). `stop` stops it after the
/// traces in flight (Ctrl-C): the rest are marked not done and `summary.json` is still written.
/// `tick` is called once per input that is finished or failed (progress bars, the app).
pub fn export(
    out: &Path,
    planned: plan::Planned,
    params: &Params,
    formats: Formats,
    backend: &dyn Backend,
    stop: &Cancel,
    tick: &(dyn Fn(&Outcome) + Sync),
) -> Result<Summary, String> {
    export_in_windows(out, planned, Asked { params, formats, backend, stop, tick }, WINDOW).map(|(summary, _)| summary)
}

/// [`export`] with when each of its phases last finished (`flowtracer bench`: where an
/// export's time goes).
pub(crate) fn export_phased(out: &Path, planned: plan::Planned, params: &Params, formats: Formats, backend: &dyn Backend) -> Result<(Summary, phases::Phases), String> {
    export_in_windows(out, planned, Asked { params, formats, backend, stop: &Cancel::default(), tick: &|_| {} }, WINDOW)
}

/// What an export is asked for, beside where it writes and what it reads.
#[derive(Clone, Copy)]
struct Asked<'a> {
    params: &'a Params,
    formats: Formats,
    backend: &'a dyn Backend,
    stop: &'a Cancel,
    tick: &'a (dyn Fn(&Outcome) + Sync),
}

/// Traces an export holds the results of at once (at least; a device backend's window is
/// `WINDOW_BATCHES` of its batches). A window's last trace keeps the cores it leaves waiting,
/// so it is far more than the cores; 64 traces of 8k tokens hold ~150 MB.
const WINDOW: usize = 64;
const WINDOW_BATCHES: usize = 4;

fn export_in_windows(out: &Path, planned: plan::Planned, asked: Asked, window: usize) -> Result<(Summary, phases::Phases), String> {
    let Asked { params, formats, backend, stop, tick } = asked;
    let clock = phases::Clock::start();
    if out.exists() && !out.is_dir() {
        return Err(format!("{}: is a file, not a folder: --export takes the folder to write into", out.display()));
    }
    crate::atomic::make_folder(out).map_err(|e| format!("{}: cannot create output folder: {e}", out.display()))?;
    crate::atomic::remove_stale_temporaries(out);
    let plan::Planned { inputs, jobs, runs, failed: mut outcomes } = planned;
    let outputs = outputs::Outputs::new(out, jobs.iter().map(|j| j.source.clone()).chain(inputs));
    let trace_files = formats.trace_files();
    let to_write = formats.run_files().into_iter().map(|name| out.join(name));
    outputs.refuse_others_files(to_write.chain(jobs.iter().flat_map(|j| trace_files.iter().map(|ext| outputs.file(&j.stem, ext)))))?;
    outcomes.iter().for_each(tick);
    let (from_rows, jobs): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|j| j.scored.is_some());
    // A run of scored rows alone is summarised with the parameters and backend it was scored
    // with; each row's JSON says its own in any case.
    let scored_with = if jobs.is_empty() { scored_alike(&from_rows) } else { None };
    let (params, backend_name) = match &scored_with {
        Some((p, b)) => (p, b.clone()),
        None => (params, backend.name().to_string()),
    };
    // Traces go to the backend in batches of the size it runs best (one for the CPU, whose
    // parallelism is across traces here; many for CUDA, which solves a batch in one set of launches).
    // The traces go in windows, each done in parallel and then handed to the run-wide files in
    // the run's order and let go: memory holds a window's results, not the run's.
    let scored_window = window.max(1);
    let window = (WINDOW_BATCHES * backend.batch_size().max(1)).max(window).max(1);
    // Until the summary is written at the end, one that says the export has not finished marks
    // the folder as an export's: a killed one's files are replaced by the next (its own would
    // refuse them otherwise, as files it did not write). Best-effort: a folder in its place is
    // reported at the end.
    let started = Summary { format: "flowtracer.summary/1", backend: backend_name.clone(), params: params.clone(), exported: 0, failed: outcomes.len(), interrupted: true, errors: Vec::new(), runs: runs.clone(), traces: outcomes.clone() };
    let _ = crate::atomic::write_unsynced(&out.join("summary.json"), &serde_json::to_vec_pretty(&started).expect("summary serialises"));
    let mut run_files = run_files::RunFiles::new(&outputs, formats);
    let mut exported = 0;
    let mut take = |results: Vec<(Outcome, Option<Done>)>, outcomes: &mut Vec<Outcome>| {
        let done: Vec<&Done> = results.iter().filter_map(|(_, d)| d.as_ref()).collect();
        run_files.add(&done);
        clock.reached(phases::Phase::Rows);
        exported += done.len();
        outcomes.extend(results.into_iter().map(|(o, _)| o));
    };
    let run = Run { outputs: &outputs, params, formats, backend, stop, tick, clock: &clock };
    let slots = Slots::new(2 * rayon::current_num_threads());
    for window in jobs.chunks(window) {
        // The window's files are written on threads of their own (see `Written`), all of them
        // on disk before its results are handed over.
        let results = std::thread::scope(|scope| {
            let writers = Writers { scope, slots: &slots };
            let written: Vec<Written> = window.par_chunks(backend.batch_size().max(1)).with_max_len(1).flat_map_iter(|chunk| export_batch(&run, writers, chunk)).collect();
            written.into_iter().map(Written::settled).collect()
        });
        take(results, &mut outcomes);
    }
    let mut from_rows = from_rows.into_iter().peekable();
    while from_rows.peek().is_some() {
        let window: Vec<Job> = from_rows.by_ref().take(scored_window).collect();
        let results = window
            .into_par_iter()
            .map(|job| {
                let pair = export_scored(&outputs, job, formats, stop);
                tick(&pair.0);
                pair
            })
            .collect();
        take(results, &mut outcomes);
    }
    let mut summary = Summary {
        format: "flowtracer.summary/1",
        backend: backend_name,
        params: params.clone(),
        exported,
        failed: outcomes.iter().filter(|o| o.is_failed()).count(),
        interrupted: stop.is_cancelled(),
        errors: Vec::new(),
        runs,
        traces: outcomes,
    };
    // Run-wide files: one that cannot be written is reported, and costs the others nothing.
    let errors = run_files.finish(&outputs, &summary, params);
    clock.reached(phases::Phase::RunFiles);
    summary.errors = errors;
    let json = serde_json::to_vec_pretty(&summary).expect("summary serialises");
    outputs.write(&out.join("summary.json"), &json)?;
    clock.reached(phases::Phase::Summary);
    Ok((summary, clock.phases()))
}

/// What every trace of an export is exported with.
struct Run<'env> {
    outputs: &'env outputs::Outputs,
    params: &'env Params,
    formats: Formats,
    backend: &'env dyn Backend,
    stop: &'env Cancel,
    tick: &'env (dyn Fn(&Outcome) + Sync),
    clock: &'env phases::Clock,
}

/// A trace opened and run through the pipeline (with its matrix where the step graphs are to be
/// made from it), or why not.
type Ran = Result<(Trace, FlowResult, Option<Matrix>), TraceError>;

/// One batch: open every trace (a broken file stays with its job), run the backend on the rest
/// together, make each trace's files and hand them to a thread of `writers` once one of its slots
/// is free. Each outcome's time is its own opening and writing plus its share of the batch's
/// pipeline run; `tick` is called as each is settled. A trace not yet opened when `stop` is set
/// is not done; the ones opened finish (the pipeline gets no cancel).
fn export_batch<'scope, 'env>(run: &Run<'env>, writers: Writers<'scope, 'env>, chunk: &[Job]) -> Vec<Written<'scope>> {
    let &Run { outputs, params, formats, backend, stop, tick, clock } = run;
    let opened: Vec<(Result<Trace, TraceError>, f64)> = chunk
        .iter()
        .map(|job| {
            let t = Instant::now();
            let trace = if stop.is_cancelled() {
                Err(TraceError::new(&job.source, Problem::Cancelled, "not exported: the export was interrupted"))
            } else {
                Trace::open(&job.source)
            };
            (trace, t.elapsed().as_secs_f64() * 1e3)
        })
        .collect();
    let ready: Vec<&Trace> = opened.iter().filter_map(|(t, _)| t.as_ref().ok()).collect();
    let t = Instant::now();
    // The step graphs read the matrix the pipeline aggregated: kept where the backend runs a
    // trace at a time (each writer then holds one, as it would have aggregated one again); a
    // batch's writers aggregate their own, so a device's batch of matrices is not held at once.
    let results: Vec<Result<(FlowResult, Option<Matrix>), TraceError>> = if (formats.dot || formats.graphml) && backend.batch_size() == 1 {
        backend.run_batch_with_matrices(&ready, params, &Cancel::default()).into_iter().map(|r| r.map(|(r, m)| (r, Some(m)))).collect()
    } else {
        backend.run_batch(&ready, params, &Cancel::default()).into_iter().map(|r| r.map(|r| (r, None))).collect()
    };
    let mut results = results.into_iter();
    let share_ms = t.elapsed().as_secs_f64() * 1e3 / ready.len().max(1) as f64;
    clock.reached(phases::Phase::Pipeline);
    // Each opened trace with its result, in the chunk's order; the files are written in parallel.
    let paired: Vec<(Ran, f64)> = opened
        .into_iter()
        .map(|(trace, ms)| (trace.and_then(|t| results.next().expect("a backend answers once per trace").map(|(r, m)| (t, r, m))), ms))
        .collect();
    chunk
        .par_iter()
        .zip(paired)
        .map(|(job, (ran, open_ms))| {
            let t = Instant::now();
            let made = ran.and_then(|(trace, result, m)| {
                let done = Done::of_trace(job.stem.clone(), &trace, result);
                let files = files_of(outputs, &done, params, formats, Some((&trace, m.as_ref())))?;
                Ok((done, files, trace))
            });
            let made_ms = open_ms + share_ms + t.elapsed().as_secs_f64() * 1e3;
            clock.reached(phases::Phase::Files);
            let (done, files, trace) = match made {
                Ok(made) => made,
                Err(e) => {
                    let outcome = failure(&job.source, e.problem, e.to_string()).with_elapsed(made_ms);
                    tick(&outcome);
                    return Written::Failed(outcome);
                }
            };
            let source = job.source.clone();
            let slot = writers.slots.take();
            Written::Writing(writers.scope.spawn(move || {
                let _slot = slot;
                let t = Instant::now();
                let res = write(outputs, &done, &files, Some(trace));
                clock.reached(phases::Phase::Written);
                let elapsed_ms = made_ms + t.elapsed().as_secs_f64() * 1e3;
                let settled = match res {
                    Ok(()) => (exported(&done, elapsed_ms), Some(done)),
                    Err(e) => (failure(&source, e.problem, e.to_string()).with_elapsed(elapsed_ms), None),
                };
                tick(&settled.0);
                settled
            }))
        })
        .collect()
}

/// The parameters and backend every scored row shares, if they do.
fn scored_alike(rows: &[Job]) -> Option<(Params, String)> {
    let mut scored = rows.iter().filter_map(|j| j.scored.as_deref());
    let first = scored.next()?;
    let backend = first.result.provenance.label();
    scored.all(|s| s.params == first.params && s.result.provenance.label() == backend).then(|| (first.params.clone(), backend))
}

/// A scored run's row: its files written as a trace's would be, from the result it holds.
fn export_scored(outputs: &outputs::Outputs, job: Job, formats: Formats, stop: &Cancel) -> (Outcome, Option<Done>) {
    let t = Instant::now();
    if stop.is_cancelled() {
        return (failure(&job.source, Problem::Cancelled, "not exported: the export was interrupted".into()), None);
    }
    let s = *job.scored.expect("a scored job");
    let params = s.params.clone();
    let done = Done::of_scored(job.stem, s);
    let res = files_of(outputs, &done, &params, formats, None).and_then(|files| write(outputs, &done, &files, None));
    let elapsed_ms = t.elapsed().as_secs_f64() * 1e3;
    match res {
        Ok(()) => (exported(&done, elapsed_ms), Some(done)),
        Err(e) => (failure(&job.source, e.problem, e.to_string()).with_elapsed(elapsed_ms), None),
    }
}

fn exported(done: &Done, elapsed_ms: f64) -> Outcome {
    Outcome::Exported {
        source: done.source.clone(),
        output: done.stem.with_extension("json").display().to_string(),
        status: done.result.status,
        n: done.tokens.len(),
        fallbacks: done.result.provenance.fallbacks.clone(),
        elapsed_ms,
    }
}

/// The files of one result, made in memory. `trace` is the attention the step graphs need
/// (`dot`, `graphml`), with the pipeline's matrix where it was kept; a scored row has none.
fn files_of(outputs: &outputs::Outputs, d: &Done, params: &Params, f: Formats, trace: Option<(&Trace, Option<&Matrix>)>) -> Result<Vec<(PathBuf, Vec<u8>)>, TraceError> {
    let source = Path::new(&d.source);
    let fail = |e: String| TraceError::new(source, Problem::Io, e);
    let file = |ext: &str| outputs.file(&d.stem, ext);
    let result = &d.result;
    let title = format!("{} · {} · {} tokens", d.label, result.status.name(), d.tokens.len());
    type Files = Result<Vec<(PathBuf, Vec<u8>)>, TraceError>;
    // The credit picture (most of a trace's export: laying out, rasterising and compressing the
    // whole text) is made beside everything else; each file's bytes are what they were made one
    // after another.
    let credit_png = || -> Files {
        if !f.png {
            return Ok(Vec::new());
        }
        Ok(vec![(file("credit.png"), render::text::credit_picture(&title, &d.tokens, &d.text, d.spans, result, &render::text::TextStyle::raster()).png().map_err(|e| fail(format!("{}: {e}", file("credit.png").display())))?)])
    };
    let the_rest = || -> Files {
        let mut files = Vec::new();
        if f.json {
            let rec = record::record(d, params);
            files.push((file("json"), serde_json::to_vec(&rec).expect("record serialises")));
        }
        if f.png {
            let backbone = render::backbone::backbone(&title, &d.tokens, &d.text, d.spans, result);
            files.push((file("backbone.png"), backbone.png().map_err(|e| fail(format!("{}: {e}", file("backbone.png").display())))?));
            if f.svg {
                files.push((file("backbone.svg"), backbone.svg.into_bytes()));
            }
        } else if f.svg {
            files.push((file("backbone.svg"), render::backbone::backbone_svg(&title, &d.tokens, &d.text, d.spans, result).into_bytes()));
        }
        if f.dot || f.graphml {
            let Some((trace, m)) = trace else {
                return Err(TraceError::new(source, Problem::Params, format!("{}: the step graphs (dot, graphml) need the attention, which a scored row does not hold: export the trace files for them", d.source)));
            };
            let (steps, backbone) = graphs(trace, m, result, params, &d.text)?;
            if f.dot {
                files.push((file("steps.dot"), render::graph::steps_dot(&steps, &d.text).into_bytes()));
                files.push((file("backbone.dot"), render::graph::backbone_dot(&backbone, &d.text).into_bytes()));
            }
            if f.graphml {
                files.push((file("steps.graphml"), render::graph::steps_graphml(&steps, &d.text).into_bytes()));
                files.push((file("backbone.graphml"), render::graph::backbone_graphml(&backbone, &d.text).into_bytes()));
            }
        }
        Ok(files)
    };
    let (credit, rest) = rayon::join(credit_png, the_rest);
    let mut files = credit?;
    files.extend(rest?);
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// One trace goes through the phases in turn: each finishes after the one before, within the
    /// export's own time, and their times add up to it.
    #[test]
    fn one_trace_goes_through_the_phases_in_turn() {
        let out = std::env::temp_dir().join(format!("ft-export-phases-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let input = PathBuf::from("sample_traces/addition.safetensors");
        let t = Instant::now();
        let (s, p) = export_phased(&out, plan(std::slice::from_ref(&input), Some(&out), false), &Params::default(), Formats::ALL, &crate::flow::Cpu).unwrap();
        let wall = t.elapsed();
        assert_eq!(s.exported, 1);
        assert!(p.0.windows(2).all(|w| w[0] < w[1]) && p.0[0] > Duration::ZERO, "in turn: {p:?}");
        assert!(p.end() <= wall, "{p:?} within {wall:?}");
        assert_eq!(p.spans().iter().map(|s| s.1).sum::<Duration>(), p.end());
        let _ = std::fs::remove_dir_all(&out);
    }

    /// The run-wide files are the same bytes whether the traces go through in one window or in
    /// many (each window's results handed over and let go before the next): the bundled
    /// samples, 17 traces, in windows of four against one window.
    #[test]
    fn windows_write_the_same_run_wide_files() {
        let dir = std::env::temp_dir().join(format!("ft-export-windows-{}", std::process::id()));
        let run = |name: &str, window: usize| {
            let out = dir.join(name);
            let inputs = [PathBuf::from("sample_traces")];
            let f = Formats { png: false, ..Formats::ALL };
            let asked = Asked { params: &Params::default(), formats: f, backend: &crate::flow::Cpu, stop: &Cancel::default(), tick: &|_| {} };
            let (s, _) = export_in_windows(&out, plan(&inputs, Some(&out), false), asked, window).unwrap();
            assert_eq!(s.exported, 17);
            out
        };
        let (one, many) = (run("one", 1000), run("many", 1));
        for name in ["scores.csv", "credits.safetensors", "report.html"] {
            let (a, b) = (std::fs::read(one.join(name)).unwrap(), std::fs::read(many.join(name)).unwrap());
            assert!(a == b && a.len() > 1000, "{name} differs");
        }
        let names = |d: &Path| {
            let mut v: Vec<_> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).collect();
            v.sort();
            v
        };
        assert_eq!(names(&one), names(&many), "the same files");
        assert!(!names(&many).iter().any(|n| n.to_string_lossy().starts_with('.')), "no temporaries left");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The step graphs made from the matrix the pipeline kept are the ones made from the trace's
    /// attention aggregated again (no step after the aggregation changes M), and the CPU keeps it.
    #[test]
    fn the_step_graphs_from_the_kept_matrix_are_those_aggregated_again() {
        use crate::synth::{SynthSpec, synth_trace};
        let spec = SynthSpec { target_tokens: 700, layers: 4, heads: 2, dtype: crate::trace::Dtype::F16, rank: 4, ..Default::default() };
        let trace = Trace::from_bytes(synth_trace(&spec).to_bytes(), Path::new("kept.safetensors")).unwrap();
        let params = Params::default();
        let (result, m) = crate::flow::Cpu.run_batch_with_matrices(&[&trace], &params, &Cancel::default()).pop().unwrap().unwrap();
        assert_eq!(crate::flow::Cpu.batch_size(), 1, "the CPU's export keeps its matrices");
        let text = trace.text();
        let dots = |m: Option<&Matrix>| {
            let (steps, backbone) = graphs(&trace, m, &result, &params, &text).unwrap();
            (render::graph::steps_dot(&steps, &text), render::graph::steps_graphml(&steps, &text), render::graph::backbone_dot(&backbone, &text))
        };
        let (kept, again) = (dots(Some(&m)), dots(None));
        assert!(kept.0.matches(" -> ").count() >= 3, "{}", kept.0);
        assert_eq!(kept, again);
    }

    /// The names the export checks a folder for before it writes there are the ones it writes,
    /// with every format on.
    #[test]
    fn the_files_checked_for_are_the_files_written() {
        let out = std::env::temp_dir().join(format!("ft-export-names-{}", std::process::id()));
        let f = Formats { dot: true, graphml: true, ..Formats::ALL };
        let inputs = [PathBuf::from("sample_traces/addition.safetensors")];
        export(&out, plan(&inputs, Some(&out), false), &Params::default(), f, &crate::flow::Cpu, &Cancel::default(), &|_| {}).unwrap();
        let mut written: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        let mut named: Vec<String> = f.run_files().iter().map(|n| n.to_string()).chain(f.trace_files().iter().map(|ext| format!("addition.{ext}"))).collect();
        written.sort();
        named.sort();
        assert_eq!(written, named);
        let _ = std::fs::remove_dir_all(out);
    }
}
