//! A run scored elsewhere (`flowtracer.ray` on a cluster), read back from its Parquet. Each row is
//! one trace's result without its attention, so `--export` writes the same files from it as from
//! the traces themselves, and the app's Run view browses it like a folder of traces.
//!
//! The per-token arrays are typed Parquet lists (what pandas and polars users analyse); what a
//! row holds besides them (spans, provenance, parameters, metadata) is one JSON column, `details`,
//! whose one definition here both the writer (the Python binding) and this reader use.

use crate::flow::{FlowPath, FlowResult, Provenance, Status};
use crate::params::Params;
use crate::span::{Span, Spans};
use crate::trace::{Problem, Trace, TraceMeta};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, Row};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The `details` column's format, checked on reading.
pub const DETAILS_FORMAT: &str = "flowtracer.row/1";

/// What a row holds besides its per-token columns.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Details {
    pub format: String,
    /// Where the aggregation ran (as `--export`'s JSON has it).
    pub backend: String,
    pub provenance: Provenance,
    pub spans: Spans,
    /// The positions the flow was conditioned on.
    pub sink: Span,
    pub params: Params,
    pub layers: Vec<usize>,
    pub heads: Vec<usize>,
    pub meta: TraceMeta,
    pub question_sources: usize,
}

impl Details {
    pub fn of(trace: &Trace, r: &FlowResult, params: &Params) -> Self {
        Details {
            format: DETAILS_FORMAT.into(),
            backend: r.provenance.label(),
            provenance: r.provenance.clone(),
            spans: trace.spans,
            sink: r.spans.answer,
            params: params.clone(),
            layers: r.layers.clone(),
            heads: r.heads.clone(),
            meta: trace.meta.clone(),
            question_sources: r.question_sources,
        }
    }
}

/// One trace's result as a row held it.
#[derive(Clone, Debug)]
pub struct Scored {
    pub source: String,
    pub tokens: Vec<String>,
    pub token_ids: Option<Vec<i64>>,
    pub causal_effect: Option<Vec<f32>>,
    pub meta: TraceMeta,
    pub spans: Spans,
    pub params: Params,
    pub result: FlowResult,
}

/// A row: a trace's result, or why it failed where it was scored.
#[derive(Clone, Debug)]
pub enum ScoredRow {
    Scored(Box<Scored>),
    Failed { source: String, problem: Problem, error: String },
}

impl ScoredRow {
    pub fn source(&self) -> &str {
        match self {
            ScoredRow::Scored(s) => &s.source,
            ScoredRow::Failed { source, .. } => source,
        }
    }
}

/// The columns the Run view shows, read without the per-token lists.
#[derive(Clone, Debug)]
pub struct RowSummary {
    pub source: String,
    pub sample_id: Option<String>,
    pub step: Option<u64>,
    pub n: Option<usize>,
    pub reward: Option<f64>,
    pub correct: Option<bool>,
    /// The status (`ok`, `no_answer`, `no_flow`), or the error it failed with.
    pub status: Result<String, String>,
}

/// Whether a path is a scored run: a `.parquet` file, or a folder of them with no traces beside
/// (what Ray's `write_parquet` makes).
pub fn is_scored_run(path: &Path) -> bool {
    if path.is_dir() {
        let trace_or_parquet = |want: &str| {
            std::fs::read_dir(path).map(|d| d.flatten().any(|e| e.path().extension().is_some_and(|x| x == want))).unwrap_or(false)
        };
        trace_or_parquet("parquet") && !trace_or_parquet("safetensors")
    } else {
        path.extension().is_some_and(|e| e == "parquet")
    }
}

/// The Parquet files of a scored run, in name order (Ray names them by block, so the rows come
/// back in the order they were written).
pub fn parquet_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| format!("{}: cannot read folder: {e}", path.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet") && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("{}: no Parquet files (*.parquet) in this folder", path.display()));
    }
    Ok(files)
}

/// The deepest folder that holds every path: a scored run's traces are named relative to it, as
/// `--export` names a run folder's traces relative to the folder.
pub fn common_folder<'a>(mut paths: impl Iterator<Item = &'a Path>) -> PathBuf {
    let Some(first) = paths.next() else { return PathBuf::new() };
    let mut common = first.parent().map(Path::to_path_buf).unwrap_or_default();
    for p in paths {
        while !p.starts_with(&common) && common.pop() {}
    }
    common
}

/// Every row of a scored run, sorted by source (as `--export` of the run folder orders its
/// traces). A file that cannot be read is an error naming it; a row that does not hold together
/// (a list shorter than its tokens, a span past the end) becomes a failed row naming its file.
pub fn read(path: &Path) -> Result<Vec<ScoredRow>, String> {
    let mut rows = Vec::new();
    for file in parquet_files(path)? {
        each_row(&file, None, |i, row| {
            let source = text(&row, "source")?.unwrap_or_default();
            let broken = |e| ScoredRow::Failed { problem: Problem::Container, error: format!("{}: row {i} ({source}): {e}", file.display()), source: source.clone() };
            rows.push(scored(&row).unwrap_or_else(broken));
            Ok(())
        })?;
    }
    rows.sort_by(|a, b| a.source().cmp(b.source()));
    Ok(rows)
}

/// The Run view's columns of every row, sorted by source; the per-token lists are not read.
pub fn read_summaries(path: &Path) -> Result<Vec<RowSummary>, String> {
    const COLUMNS: [&str; 8] = ["source", "sample_id", "step", "n", "status", "error", "reward", "correct"];
    let mut rows = Vec::new();
    for file in parquet_files(path)? {
        each_row(&file, Some(&COLUMNS), |_, row| {
            let status = match (text(&row, "status")?, text(&row, "error")?) {
                (_, Some(e)) => Err(e),
                (Some(s), None) => Ok(s),
                (None, None) => Err("no status".into()),
            };
            rows.push(RowSummary {
                source: text(&row, "source")?.unwrap_or_default(),
                sample_id: text(&row, "sample_id")?,
                step: int(&row, "step")?.map(|s| s as u64),
                n: int(&row, "n")?.map(|n| n as usize),
                reward: float(&row, "reward")?,
                correct: match field(&row, "correct") {
                    Some(Field::Bool(b)) => Some(*b),
                    _ => None,
                },
                status,
            });
            Ok(())
        })?;
    }
    rows.sort_by(|a, b| a.source.cmp(&b.source));
    Ok(rows)
}

/// Calls `each` on every row of one file (only `columns`, where given); errors name the file.
fn each_row(file: &Path, columns: Option<&[&str]>, mut each: impl FnMut(usize, Row) -> Result<(), String>) -> Result<(), String> {
    let at = |e: &dyn std::fmt::Display| format!("{}: {e}", file.display());
    let f = std::fs::File::open(file).map_err(|e| at(&e))?;
    let reader = SerializedFileReader::new(f).map_err(|e| at(&format!("not a readable Parquet file: {e}")))?;
    let schema = reader.metadata().file_metadata().schema();
    let names: Vec<&str> = schema.get_fields().iter().map(|f| f.name()).collect();
    for required in ["source", "status", "error"] {
        if !names.contains(&required) {
            return Err(at(&format!("no `{required}` column: not rows `flowtracer.ray` wrote")));
        }
    }
    let projection = columns.map(|want| {
        let fields = schema.get_fields().iter().filter(|f| want.contains(&f.name())).cloned().collect();
        parquet::schema::types::Type::group_type_builder(schema.name()).with_fields(fields).build().expect("a subset of a valid schema")
    });
    let iter = reader.get_row_iter(projection).map_err(|e| at(&e))?;
    for (i, row) in iter.enumerate() {
        each(i, row.map_err(|e| at(&format!("row {i}: {e}")))?).map_err(|e| at(&format!("row {i}: {e}")))?;
    }
    Ok(())
}

fn scored(row: &Row) -> Result<ScoredRow, String> {
    let source = text(row, "source")?.unwrap_or_default();
    if let Some(error) = text(row, "error")? {
        let problem = text(row, "problem")?.and_then(|p| Problem::named(&p)).unwrap_or(Problem::Io);
        return Ok(ScoredRow::Failed { source, problem, error });
    }
    let details = text(row, "details")?.ok_or("no `details`")?;
    let d: Details = serde_json::from_str(&details).map_err(|e| format!("`details` is not a {DETAILS_FORMAT} object: {e}"))?;
    if d.format != DETAILS_FORMAT {
        return Err(format!("`details` is {:?}, not {DETAILS_FORMAT}", d.format));
    }
    let tokens = list(row, "tokens", |f| match f {
        Field::Str(s) => Some(s.clone()),
        _ => None,
    })?
    .ok_or("no `tokens`")?;
    let n = tokens.len();
    let status_name = text(row, "status")?.ok_or("no `status`")?;
    let status = Status::named(&status_name).ok_or_else(|| format!("unknown status {status_name:?}"))?;
    d.spans.validate(n)?;
    if d.sink.end > n {
        return Err(format!("sink {}..{} past the {n} tokens", d.sink.start, d.sink.end));
    }
    let per_token = |name: &str| -> Result<Vec<f64>, String> {
        let v = list(row, name, as_f64)?.ok_or_else(|| format!("no `{name}`"))?;
        if v.len() != n {
            return Err(format!("`{name}` has {} values for {n} tokens", v.len()));
        }
        Ok(v)
    };
    let positions = |name: &str| -> Result<Vec<usize>, String> {
        let v = list(row, name, as_index)?.ok_or_else(|| format!("no `{name}`"))?;
        match v.iter().find(|&&k| k >= n) {
            Some(k) => Err(format!("`{name}` names token {k} of {n}")),
            None => Ok(v),
        }
    };
    let path_tokens = list(row, "backbone_tokens", |f| match f {
        Field::ListInternal(l) => l.elements().iter().map(as_index).collect::<Option<Vec<usize>>>(),
        _ => None,
    })?
    .ok_or("no `backbone_tokens`")?;
    let path_flow = list(row, "backbone_flow", as_f64)?.ok_or("no `backbone_flow`")?;
    if path_tokens.len() != path_flow.len() || path_tokens.iter().flatten().any(|&k| k >= n) {
        return Err("`backbone_tokens` and `backbone_flow` do not describe the same paths within the tokens".into());
    }
    let token_ids = list(row, "token_ids", |f| match f {
        Field::Long(v) => Some(*v),
        _ => None,
    })?;
    let causal_effect = list(row, "causal_effect", |f| match f {
        Field::Float(v) => Some(*v),
        _ => None,
    })?;
    if token_ids.as_ref().is_some_and(|v| v.len() != n) || causal_effect.as_ref().is_some_and(|v| v.len() != n) {
        return Err(format!("`token_ids` or `causal_effect` is not {n} long"));
    }
    let mut spans = d.spans;
    spans.answer = d.sink;
    let result = FlowResult {
        status,
        spans,
        provenance: d.provenance,
        layers: d.layers,
        heads: d.heads,
        reach: per_token("reach")?,
        flow: per_token("flow")?,
        throughput: per_token("throughput")?,
        credit: per_token("credit")?,
        far_sources: per_token("far_sources")?,
        backbone: path_tokens.into_iter().zip(path_flow).map(|(tokens, flow)| FlowPath { tokens, flow }).collect(),
        hubs: positions("hubs")?,
        checkpoints: positions("checkpoints")?,
        question_sources: d.question_sources,
        times: Default::default(),
    };
    Ok(ScoredRow::Scored(Box::new(Scored { source, tokens, token_ids, causal_effect, meta: d.meta, spans: d.spans, params: d.params, result })))
}

fn field<'a>(row: &'a Row, name: &str) -> Option<&'a Field> {
    row.get_column_iter().find(|(n, _)| n.as_str() == name).map(|(_, f)| f)
}

fn text(row: &Row, name: &str) -> Result<Option<String>, String> {
    match field(row, name) {
        None | Some(Field::Null) => Ok(None),
        Some(Field::Str(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("`{name}` is {other}, not text")),
    }
}

fn int(row: &Row, name: &str) -> Result<Option<i64>, String> {
    match field(row, name) {
        None | Some(Field::Null) => Ok(None),
        Some(Field::Long(v)) => Ok(Some(*v)),
        Some(Field::Int(v)) => Ok(Some(*v as i64)),
        Some(other) => Err(format!("`{name}` is {other}, not an integer")),
    }
}

fn float(row: &Row, name: &str) -> Result<Option<f64>, String> {
    match field(row, name) {
        None | Some(Field::Null) => Ok(None),
        Some(f) => as_f64(f).map(Some).ok_or_else(|| format!("`{name}` is {f}, not a number")),
    }
}

fn as_f64(f: &Field) -> Option<f64> {
    match f {
        Field::Double(v) => Some(*v),
        Field::Float(v) => Some(*v as f64),
        _ => None,
    }
}

fn as_index(f: &Field) -> Option<usize> {
    match f {
        Field::Long(v) => usize::try_from(*v).ok(),
        Field::Int(v) => usize::try_from(*v).ok(),
        _ => None,
    }
}

/// A list column (`None` where the row has none), each element through `item`.
fn list<T>(row: &Row, name: &str, item: impl Fn(&Field) -> Option<T>) -> Result<Option<Vec<T>>, String> {
    match field(row, name) {
        None | Some(Field::Null) => Ok(None),
        Some(Field::ListInternal(l)) => l.elements().iter().enumerate().map(|(i, f)| item(f).ok_or_else(|| format!("`{name}`[{i}] is {f}, not what the column holds"))).collect::<Result<Vec<T>, String>>().map(Some),
        Some(other) => Err(format!("`{name}` is {other}, not a list")),
    }
}
