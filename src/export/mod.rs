//! Headless export (`flowtracer --export`): every input trace through the pipeline, files per
//! trace, then the run-wide files. One broken trace is reported in the summary and costs nothing
//! else; every file is written atomically.

mod credits;
mod html;
pub mod record;
pub mod table;

use crate::atomic::write_atomic;
use crate::backend::Backend;
use crate::flow::{Cancel, FlowResult};
use crate::params::Params;
use crate::render;
use crate::trace::{Problem, Trace, TraceError, run};
use rayon::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Formats {
    pub json: bool,
    pub csv: bool,
    pub png: bool,
    pub svg: bool,
    pub html: bool,
    pub credits: bool,
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
    /// Every one of the above.
    All,
}

impl Formats {
    pub const ALL: Formats = Formats { json: true, csv: true, png: true, svg: true, html: true, credits: true };
    pub const NONE: Formats = Formats { json: false, csv: false, png: false, svg: false, html: false, credits: false };

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
                Format::All => f = Formats::ALL,
            }
            f
        })
    }
}

/// One trace to export and where its files go (relative to the output folder, no extension).
#[derive(Clone, Debug)]
pub struct Job {
    pub source: PathBuf,
    pub stem: PathBuf,
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
    pub runs: Vec<RunInfo>,
    pub traces: Vec<Outcome>,
}

/// A trace that went through, kept (without its attention) for the run-wide files.
pub struct Done {
    pub stem: PathBuf,
    pub label: String,
    pub source: String,
    pub tokens: Vec<String>,
    pub token_ids: Option<Vec<i64>>,
    pub sample_id: Option<String>,
    pub spans: crate::span::Spans,
    pub result: FlowResult,
}

/// Expands inputs (trace files and run folders) into jobs. Inputs that do not exist become
/// failed outcomes rather than stopping the others.
pub fn plan(inputs: &[PathBuf]) -> (Vec<Job>, Vec<RunInfo>, Vec<Outcome>) {
    let mut jobs = Vec::new();
    let mut runs = Vec::new();
    let mut failed = Vec::new();
    for input in inputs {
        if input.is_dir() {
            match run::discover(input) {
                Ok(r) => {
                    for t in &r.traces {
                        jobs.push(Job { source: t.clone(), stem: r.relative(t).with_extension("") });
                    }
                    runs.push(RunInfo {
                        root: input.display().to_string(),
                        name: r.name(),
                        traces: r.traces.len(),
                        metrics: r.metrics.len(),
                        warnings: r.warnings,
                    });
                }
                Err(e) => failed.push(failure(input, Problem::Io, e)),
            }
        } else if std::fs::metadata(input).is_ok() {
            // A FIFO or a device too: opening it reports what it is, as that input's failure.
            let stem = input.file_stem().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("trace"));
            jobs.push(Job { source: input.clone(), stem });
        } else {
            failed.push(failure(input, Problem::Io, format!("{}: no such file or folder", input.display())));
        }
    }
    dedupe_stems(&mut jobs);
    (jobs, runs, failed)
}

/// Two inputs named alike (`a/x.safetensors`, `b/x.safetensors`) must not overwrite each other.
fn dedupe_stems(jobs: &mut [Job]) {
    let mut seen = std::collections::HashSet::new();
    for job in jobs.iter_mut() {
        let base = job.stem.clone();
        let mut i = 2;
        while !seen.insert(job.stem.clone()) {
            job.stem = PathBuf::from(format!("{}-{i}", base.display()));
            i += 1;
        }
    }
}

fn failure(source: &Path, problem: Problem, message: String) -> Outcome {
    Outcome::Failed { source: source.display().to_string(), problem, error: message, elapsed_ms: 0.0 }
}

/// Runs the export. `tick` is called once per finished trace (progress bars, the app).
pub fn export(
    out: &Path,
    inputs: &[PathBuf],
    params: &Params,
    formats: Formats,
    backend: &dyn Backend,
    cancel: &Cancel,
    tick: &(dyn Fn(&Outcome) + Sync),
) -> Result<Summary, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: cannot create output folder: {e}", out.display()))?;
    let (jobs, runs, mut outcomes) = plan(inputs);
    // Traces go to the backend in batches of the size it runs best (one for the CPU, whose
    // parallelism is across traces here; many for CUDA, which solves a batch in one set of launches).
    let results: Vec<(Outcome, Option<Done>)> = jobs
        .par_chunks(backend.batch_size().max(1))
        .with_max_len(1)
        .flat_map_iter(|chunk| {
            let pairs = export_batch(out, chunk, params, formats, backend, cancel);
            for (outcome, _) in &pairs {
                tick(outcome);
            }
            pairs
        })
        .collect();
    let mut done = Vec::new();
    for (o, d) in results {
        outcomes.push(o);
        done.extend(d);
    }
    let failed = outcomes.iter().filter(|o| o.is_failed()).count();
    let summary = Summary {
        format: "flowtracer.summary/1",
        backend: backend.name().into(),
        params: params.clone(),
        exported: done.len(),
        failed,
        runs,
        traces: outcomes,
    };
    let write = |name: &str, bytes: &[u8]| {
        write_atomic(&out.join(name), bytes).map_err(|e| format!("{}: {e}", out.join(name).display()))
    };
    if formats.csv {
        write("scores.csv", table::scores_csv(&done).as_bytes())?;
    }
    if formats.credits {
        write("credits.safetensors", &credits::credits_safetensors(&done, params)?)?;
    }
    if formats.html {
        write("report.html", html::report(&done, &summary).as_bytes())?;
    }
    write("summary.json", &serde_json::to_vec_pretty(&summary).expect("summary serialises"))?;
    Ok(summary)
}

/// A trace opened and run through the pipeline, or why not.
type Ran = Result<(Trace, FlowResult), TraceError>;

/// One batch: open every trace (a broken file stays with its job), run the backend on the rest
/// together, write each trace's files. Each outcome's time is its own opening and writing plus
/// its share of the batch's pipeline run.
fn export_batch(out: &Path, chunk: &[Job], params: &Params, formats: Formats, backend: &dyn Backend, cancel: &Cancel) -> Vec<(Outcome, Option<Done>)> {
    let opened: Vec<(Result<Trace, TraceError>, f64)> = chunk
        .iter()
        .map(|job| {
            let t = Instant::now();
            let trace = if cancel.is_cancelled() {
                Err(TraceError::new(&job.source, Problem::Cancelled, "cancelled before it started"))
            } else {
                Trace::open(&job.source)
            };
            (trace, t.elapsed().as_secs_f64() * 1e3)
        })
        .collect();
    let ready: Vec<&Trace> = opened.iter().filter_map(|(t, _)| t.as_ref().ok()).collect();
    let t = Instant::now();
    let mut results = backend.run_batch(&ready, params, cancel).into_iter();
    let share_ms = t.elapsed().as_secs_f64() * 1e3 / ready.len().max(1) as f64;
    // Each opened trace with its result, in the chunk's order; the files are written in parallel.
    let paired: Vec<(Ran, f64)> = opened
        .into_iter()
        .map(|(trace, ms)| (trace.and_then(|t| results.next().expect("a backend answers once per trace").map(|r| (t, r))), ms))
        .collect();
    chunk
        .par_iter()
        .zip(paired)
        .map(|(job, (ran, open_ms))| {
            let t = Instant::now();
            let res = ran.and_then(|(trace, result)| write_one(out, job, &trace, result, params, formats));
            let elapsed_ms = open_ms + share_ms + t.elapsed().as_secs_f64() * 1e3;
            match res {
                Ok(done) => (
                    Outcome::Exported {
                        source: job.source.display().to_string(),
                        output: job.stem.with_extension("json").display().to_string(),
                        status: done.result.status,
                        n: done.tokens.len(),
                        fallbacks: done.result.provenance.fallbacks.clone(),
                        elapsed_ms,
                    },
                    Some(done),
                ),
                Err(e) => (failure(&job.source, e.problem, e.to_string()).with_elapsed(elapsed_ms), None),
            }
        })
        .collect()
}

fn write_one(out: &Path, job: &Job, trace: &Trace, result: FlowResult, params: &Params, f: Formats) -> Result<Done, TraceError> {
    let io = |path: PathBuf, bytes: &[u8]| {
        write_atomic(&path, bytes).map_err(|e| TraceError::new(&job.source, Problem::Io, format!("{}: {e}", path.display())))
    };
    let base = out.join(&job.stem);
    let file = |ext: &str| PathBuf::from(format!("{}.{ext}", base.display()));
    if f.json {
        let rec = record::record(trace, &result, params);
        io(file("json"), &serde_json::to_vec(&rec).expect("record serialises"))?;
    }
    let title = format!("{} · {} · {} tokens", trace.label(), result.status.name(), trace.n());
    if f.png {
        let svg = render::text::credit_svg(&title, &trace.tokens, trace.spans, &result, &Default::default());
        let png = render::svg_to_png(&svg).map_err(|e| TraceError::new(&job.source, Problem::Io, e))?;
        io(file("credit.png"), &png)?;
    }
    if f.svg || f.png {
        let svg = render::backbone::backbone_svg(&title, &trace.tokens, trace.spans, &result);
        if f.svg {
            io(file("backbone.svg"), svg.as_bytes())?;
        }
        if f.png {
            let png = render::svg_to_png(&svg).map_err(|e| TraceError::new(&job.source, Problem::Io, e))?;
            io(file("backbone.png"), &png)?;
        }
    }
    Ok(Done {
        stem: job.stem.clone(),
        label: trace.label(),
        source: job.source.display().to_string(),
        tokens: trace.tokens.clone(),
        token_ids: trace.token_ids.clone(),
        sample_id: trace.meta.sample_id.clone(),
        spans: trace.spans,
        result,
    })
}
