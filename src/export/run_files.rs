//! The run-wide files (`scores.csv`, `credits.safetensors`, `report.html`), written as the
//! traces are done: each trace's rows and report section go to disk when it is added and its
//! results are let go, so an export of a run of 10 000 traces holds a window of them, not all
//! (it had held every trace's tokens and results, then the whole CSV and page as strings, a few
//! hundred bytes a token). What stays is small per trace: a table row, and the credits file's
//! 12 bytes a token.

use super::outputs::Outputs;
use super::{Done, Formats, Summary, credits, html, table};
use crate::atomic::AtomicFile;
use crate::params::Params;
use rayon::prelude::*;
use std::io::Write;

pub struct RunFiles {
    csv: Option<Piecewise>,
    report: Option<Report>,
    credits: Option<credits::CreditsFile>,
    exported: usize,
    errors: Vec<String>,
}

/// A file being written in pieces, or why it was given up (a failed write: reported once, at the
/// end).
enum Piecewise {
    Writing(AtomicFile, String),
    Failed(String),
}

impl Piecewise {
    fn create(outputs: &Outputs, name: &str, errors: &mut Vec<String>) -> Option<Piecewise> {
        let path = outputs.dir.join(name);
        match outputs.create(&path) {
            Ok(file) => Some(Piecewise::Writing(file, path.display().to_string())),
            Err(e) => {
                errors.push(e);
                None
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        if let Piecewise::Writing(f, name) = self
            && let Err(e) = f.write_all(bytes)
        {
            *self = Piecewise::Failed(format!("{name}: {e}"));
        }
    }

    /// The file with everything written so far flushed to it, or why not.
    fn flushed(self) -> Result<AtomicFile, String> {
        match self {
            Piecewise::Writing(mut f, name) => f.flush().map(|_| f).map_err(|e| format!("{name}: {e}")),
            Piecewise::Failed(e) => Err(e),
        }
    }

    fn commit(self, errors: &mut Vec<String>) {
        let result = match self {
            Piecewise::Writing(f, name) => f.commit().map_err(|e| format!("{name}: {e}")),
            Piecewise::Failed(e) => Err(e),
        };
        if let Err(e) = result {
            errors.push(e);
        }
    }
}

/// One trace's part of the CSV and of the report (its table row and section).
struct Pieces {
    rows: String,
    report: Option<(String, String)>,
}

/// The report's sections go to a temporary file as traces are done; the page is made from the
/// rows, that file and the summary at the end.
struct Report {
    rows: String,
    sections: Piecewise,
}

impl RunFiles {
    /// A run-wide file that cannot be created is reported in `finish`'s errors and costs the
    /// others nothing.
    pub fn new(outputs: &Outputs, f: Formats) -> RunFiles {
        let mut errors = Vec::new();
        let csv = f.csv.then(|| Piecewise::create(outputs, "scores.csv", &mut errors)).flatten().map(|mut p| {
            p.write(table::HEADER.as_bytes());
            p
        });
        let report = f
            .html
            .then(|| Piecewise::create(outputs, "report.html.sections", &mut errors))
            .flatten()
            .map(|sections| Report { rows: String::new(), sections });
        let credits = f.credits.then(credits::CreditsFile::default);
        RunFiles { csv, report, credits, exported: 0, errors }
    }

    /// The next exported traces, in the order of the run. Their rows and report sections are
    /// made across the cores a few traces at a time (made one after another they held up each
    /// window of a run: a 1k-token trace's take a millisecond or two), then written in order.
    pub fn add(&mut self, done: &[&Done]) {
        let (csv, html) = (self.csv.is_some(), self.report.is_some());
        for chunk in done.chunks(4 * rayon::current_num_threads()) {
            let base = self.exported;
            let pieces: Vec<Pieces> = chunk
                .par_iter()
                .enumerate()
                .map(|(j, d)| Pieces {
                    rows: if csv { table::rows(d) } else { String::new() },
                    report: html.then(|| {
                        let mut section = String::new();
                        html::section(&mut section, base + j, d);
                        (html::row(base + j, d), section)
                    }),
                })
                .collect();
            for (d, p) in chunk.iter().zip(pieces) {
                if let Some(csv) = &mut self.csv {
                    csv.write(p.rows.as_bytes());
                }
                if let (Some(r), Some((row, section))) = (&mut self.report, p.report) {
                    r.rows.push_str(&row);
                    r.sections.write(section.as_bytes());
                }
                if let Some(c) = &mut self.credits {
                    c.add(d);
                }
                self.exported += 1;
            }
        }
    }

    /// Puts every file in place; the errors of those that could not be written.
    pub fn finish(mut self, outputs: &Outputs, summary: &Summary, params: &Params) -> Vec<String> {
        let errors = &mut self.errors;
        if let Some(csv) = self.csv {
            csv.commit(errors);
        }
        if let Some(c) = self.credits
            && let Err(e) = outputs.write(&outputs.dir.join("credits.safetensors"), &c.bytes(params))
        {
            errors.push(e);
        }
        if let Some(r) = self.report
            && let Err(e) = page(outputs, summary, r)
        {
            errors.push(e);
        }
        self.errors
    }
}

/// `report.html`: the page's start, the sections as written, its end.
fn page(outputs: &Outputs, summary: &Summary, r: Report) -> Result<(), String> {
    // Dropped at the end, uncommitted: the sections' temporary goes.
    let sections = r.sections.flushed()?;
    let path = outputs.dir.join("report.html");
    let mut page = outputs.create(&path)?;
    let io = |e: std::io::Error| format!("{}: {e}", path.display());
    page.write_all(html::page_start(summary, &r.rows).as_bytes()).map_err(io)?;
    let mut from = std::fs::File::open(sections.temporary()).map_err(|e| format!("{}: {e}", sections.temporary().display()))?;
    std::io::copy(&mut from, &mut page).map_err(io)?;
    page.write_all(html::page_end(summary).as_bytes()).map_err(io)?;
    page.commit().map_err(io)
}
