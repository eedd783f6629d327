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
use std::ops::Range;

pub struct RunFiles {
    csv: Option<Piecewise>,
    report: Option<Report>,
    /// The trace's own file a report row without a section links to, by its extension.
    row_file: Option<&'static str>,
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

    fn commit(self) -> Result<(), String> {
        match self {
            Piecewise::Writing(f, name) => f.commit().map_err(|e| format!("{name}: {e}")),
            Piecewise::Failed(e) => Err(e),
        }
    }
}

/// Tokens in a piece of a trace's rows or report section: a long trace's are made across the
/// cores (at 4k tokens its CSV rows and section, made on one core, were a tenth of a whole
/// export without pictures), a short one's in one piece each.
const PIECE_TOKENS: usize = 1024;

/// A piece of one trace's share of the run-wide files, made on any core and written in order.
enum Piece {
    /// Its rows of the CSV for these tokens.
    Rows(Range<usize>),
    /// Its row of the report's table, and whether it links to a section.
    Row(bool),
    /// Its report section for these tokens.
    Section(Range<usize>),
}

/// The token ranges a trace of `n` tokens is made in (one, empty, for a trace without tokens,
/// so that its section still has its heading and its end).
fn ranges(n: usize) -> impl Iterator<Item = Range<usize>> {
    (0..n.div_ceil(PIECE_TOKENS).max(1)).map(move |p| p * PIECE_TOKENS..((p + 1) * PIECE_TOKENS).min(n))
}

/// The report's sections go to a temporary file as traces are done; the page is made from the
/// rows, that file and the summary at the end.
struct Report {
    rows: String,
    sections: Piecewise,
    sectioned: Sectioned,
}

/// The traces given a section so far (the first ones of the run), their tokens, and whether the
/// budget has been met (then no later trace has one: the page's sections are a prefix).
#[derive(Default)]
struct Sectioned {
    traces: usize,
    tokens: usize,
    full: bool,
}

impl Sectioned {
    /// Whether the next exported trace, of `n` tokens, gets a section: the run's first ones,
    /// while their tokens stay within `budget` (the first always has one).
    fn takes(&mut self, n: usize, budget: usize) -> bool {
        self.full = self.full || (self.traces > 0 && self.tokens + n > budget);
        if !self.full {
            self.traces += 1;
            self.tokens += n;
        }
        !self.full
    }
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
            .map(|sections| Report { rows: String::new(), sections, sectioned: Sectioned::default() });
        let credits = f.credits.then(credits::CreditsFile::default);
        let row_file = [(f.png, "credit.png"), (f.json, "json"), (f.svg, "backbone.svg")].into_iter().find_map(|(on, ext)| on.then_some(ext));
        RunFiles { csv, report, row_file, credits, exported: 0, errors }
    }

    /// The next exported traces, in the order of the run. Their rows and report sections are
    /// made across the cores a few traces at a time, a long trace's in pieces (made one after
    /// another they held up each window of a run: a 1k-token trace's take a millisecond or two),
    /// then written in order.
    pub fn add(&mut self, done: &[&Done]) {
        let (csv, row_file) = (self.csv.is_some(), self.row_file);
        for chunk in done.chunks(4 * rayon::current_num_threads()) {
            let base = self.exported;
            // Per trace: None without a report, else whether it has a section.
            let sectioned: Vec<Option<bool>> = chunk.iter().map(|d| self.report.as_mut().map(|r| r.sectioned.takes(d.tokens.len(), html::SECTION_TOKENS))).collect();
            let pieces: Vec<(usize, Piece)> = chunk
                .iter()
                .enumerate()
                .flat_map(|(j, d)| {
                    let rows = ranges(d.tokens.len()).filter(move |_| csv).map(Piece::Rows);
                    let section = sectioned[j] == Some(true);
                    let report = sectioned[j].map(Piece::Row).into_iter().chain(ranges(d.tokens.len()).filter(move |_| section).map(Piece::Section));
                    rows.chain(report).map(move |p| (j, p))
                })
                .collect();
            let made: Vec<String> = pieces
                .par_iter()
                .map(|(j, piece)| {
                    let d = chunk[*j];
                    match piece {
                        Piece::Rows(tokens) => table::rows(d, tokens.clone()),
                        Piece::Row(with_section) => html::row(base + j, d, *with_section, row_file),
                        Piece::Section(tokens) => {
                            let mut section = String::new();
                            html::section(&mut section, base + j, d, tokens.clone());
                            section
                        }
                    }
                })
                .collect();
            for ((_, piece), text) in pieces.iter().zip(made) {
                match (piece, &mut self.csv, &mut self.report) {
                    (Piece::Rows(_), Some(csv), _) => csv.write(text.as_bytes()),
                    (Piece::Row(_), _, Some(r)) => r.rows.push_str(&text),
                    (Piece::Section(_), _, Some(r)) => r.sections.write(text.as_bytes()),
                    _ => unreachable!("a piece is made only for a file being written"),
                }
            }
            for d in chunk {
                if let Some(c) = &mut self.credits {
                    c.add(d);
                }
            }
            self.exported += chunk.len();
        }
    }

    /// Puts every file in place, each on a thread of its own (most of it is waiting for the
    /// disk); the errors of those that could not be written.
    pub fn finish(self, outputs: &Outputs, summary: &Summary, params: &Params) -> Vec<String> {
        let RunFiles { csv, report, credits, mut errors, .. } = self;
        type Put<'a> = Box<dyn FnOnce() -> Result<(), String> + Send + 'a>;
        let mut puts: Vec<Put> = Vec::new();
        if let Some(csv) = csv {
            puts.push(Box::new(|| csv.commit()));
        }
        if let Some(c) = credits {
            puts.push(Box::new(move || outputs.write(&outputs.dir.join(super::credits::CREDITS_FILE), &c.bytes(params))));
        }
        if let Some(r) = report {
            puts.push(Box::new(move || page(outputs, summary, r)));
        }
        errors.extend(super::outputs::at_once(puts).into_iter().filter_map(Result::err));
        errors
    }
}

/// `report.html`: the page's start, the sections as written, its end.
fn page(outputs: &Outputs, summary: &Summary, r: Report) -> Result<(), String> {
    // Dropped at the end, uncommitted: the sections' temporary goes.
    let sections = r.sections.flushed()?;
    let path = outputs.dir.join("report.html");
    let mut page = outputs.create(&path)?;
    let io = |e: std::io::Error| format!("{}: {e}", path.display());
    page.write_all(html::page_start(summary, &r.rows, r.sectioned.traces).as_bytes()).map_err(io)?;
    let mut from = std::fs::File::open(sections.temporary()).map_err(|e| format!("{}: {e}", sections.temporary().display()))?;
    std::io::copy(&mut from, &mut page).map_err(io)?;
    page.write_all(html::page_end(summary).as_bytes()).map_err(io)?;
    page.commit().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Cancel, analyze};
    use crate::synth::{SynthSpec, synth_trace};
    use crate::trace::{Dtype, Trace};

    /// The report's sections are the run's first traces while their tokens fit the budget, the
    /// first one whatever its length; once one is left out, so is every later one (the page
    /// says "the first K").
    #[test]
    fn sections_go_to_the_first_traces_within_the_budget() {
        let mut s = Sectioned::default();
        let taken: Vec<bool> = [900, 50, 60, 10, 1].iter().map(|&n| s.takes(n, 1000)).collect();
        assert_eq!(taken, [true, true, false, false, false]);
        assert_eq!((s.traces, s.tokens), (2, 950));
        let mut one = Sectioned::default();
        assert!(one.takes(5000, 1000), "the first trace has its section whatever its length");
        assert!(!one.takes(1, 1000));
    }

    /// A long trace's CSV rows and report section, made in pieces across the cores, are the
    /// ones made whole: with hubs, checkpoints and backbone tokens in every piece and at the
    /// pieces' edges.
    #[test]
    fn a_long_traces_pieces_join_into_its_rows_and_section() {
        let spec = SynthSpec { target_tokens: 2 * PIECE_TOKENS + 300, layers: 1, heads: 1, dtype: Dtype::F32, rank: 2, ..Default::default() };
        let trace = Trace::from_bytes(synth_trace(&spec).to_bytes(), std::path::Path::new("long.safetensors")).unwrap();
        let mut r = analyze(&trace, &Params::default(), &Cancel::default()).unwrap();
        let n = trace.n();
        let edges = [PIECE_TOKENS - 1, PIECE_TOKENS, 2 * PIECE_TOKENS - 1, 2 * PIECE_TOKENS, n - 1];
        r.hubs = (0..n).step_by(97).chain(edges).collect();
        r.hubs.sort_unstable();
        r.hubs.dedup();
        r.checkpoints = (5..n).step_by(89).collect();
        r.credit.iter_mut().step_by(3).for_each(|g| *g = 1.5);
        let d = Done::of_trace("long".into(), &trace, r);
        let pieces: Vec<_> = ranges(n).collect();
        assert_eq!(pieces.len(), 3, "{pieces:?}");
        assert!(d.result.backbone.iter().flat_map(|p| &p.tokens).any(|&k| k >= 2 * PIECE_TOKENS), "the backbone reaches the last piece");
        let joined: String = pieces.iter().map(|t| table::rows(&d, t.clone())).collect();
        assert_eq!(joined, table::rows(&d, 0..n));
        assert_eq!(joined.lines().count(), n);
        let mut whole = String::new();
        html::section(&mut whole, 3, &d, 0..n);
        let mut joined = String::new();
        pieces.iter().for_each(|t| html::section(&mut joined, 3, &d, t.clone()));
        assert_eq!(joined, whole);
        assert_eq!(whole.matches("<span class=\"t").count(), n);
        assert!(whole.starts_with("<h2 id=\"t3\">") && whole.ends_with("</div>"));
        let none: Vec<_> = ranges(0).collect();
        assert!(none.len() == 1 && none[0].is_empty(), "a trace without tokens still has its section's heading and end: {none:?}");
    }
}
