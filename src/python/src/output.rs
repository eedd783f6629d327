//! Results for Python: dicts of NumPy arrays that take over the engine's vectors, and plain
//! values. The pure-Python layer turns each dict into a typed object.

use flowtracer::export::Credits;
use flowtracer::{FlowResult, Span, Trace};
use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::value_error;

fn span(s: Span) -> (usize, usize) {
    (s.start, s.end)
}

/// `given`: a list of the same tokens made from the caller's, handed back as it is.
pub fn result_dict<'py>(py: Python<'py>, trace: &Trace, r: FlowResult, given: Option<&Bound<'py, PyList>>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("source", trace.path.display().to_string())?;
    d.set_item("sample_id", trace.meta.sample_id.clone())?;
    d.set_item("step", trace.meta.step)?;
    d.set_item("status", r.status.name())?;
    match given {
        Some(list) => d.set_item("tokens", list)?,
        None => d.set_item("tokens", PyList::new(py, &trace.tokens)?)?,
    }
    d.set_item("question", span(trace.spans.question))?;
    d.set_item("response", span(trace.spans.response))?;
    d.set_item("answer", span(trace.spans.answer))?;
    d.set_item("sink", span(r.spans.answer))?;
    d.set_item("answer_inflow", r.answer_inflow())?;
    d.set_item("backbone_flow", r.backbone_flow())?;
    d.set_item("question_sources", r.question_sources)?;
    d.set_item("layers", r.layers.clone())?;
    d.set_item("heads", r.heads.clone())?;
    let paths = PyList::empty(py);
    for p in &r.backbone {
        paths.append((p.tokens.clone(), p.flow))?;
    }
    d.set_item("backbone", paths)?;
    d.set_item("hubs", r.hubs.into_pyarray(py))?;
    d.set_item("checkpoints", r.checkpoints.into_pyarray(py))?;
    d.set_item("provenance", serde_json::to_string(&r.provenance).map_err(value_error)?)?;
    d.set_item("attention_address", trace.attention.bytes().as_ptr() as usize)?;
    d.set_item("reach", r.reach.into_pyarray(py))?;
    d.set_item("flow", r.flow.into_pyarray(py))?;
    d.set_item("throughput", r.throughput.into_pyarray(py))?;
    d.set_item("credit", r.credit.into_pyarray(py))?;
    d.set_item("far_sources", r.far_sources.into_pyarray(py))?;
    Ok(d)
}

/// Lists of one kind for many rows, flattened as Arrow holds them: every row's values end to end,
/// and where each row ends (`offsets[0] = 0`).
struct Flat<T> {
    values: Vec<T>,
    offsets: Vec<i32>,
}

impl<T: numpy::Element> Flat<T> {
    fn new() -> Self {
        Flat { values: Vec::new(), offsets: vec![0] }
    }

    fn push(&mut self, row: impl IntoIterator<Item = T>) {
        self.values.extend(row);
        self.offsets.push(self.values.len() as i32);
    }

    fn put(self, py: Python<'_>, d: &Bound<'_, PyDict>, name: &str) -> PyResult<()> {
        d.set_item(format!("{name}.values"), self.values.into_pyarray(py))?;
        d.set_item(format!("{name}.offsets"), self.offsets.into_pyarray(py))
    }
}

/// Trace files' results as the columns of `flowtracer.ray`'s rows: per row its source, metadata,
/// status, size and error, and each per-token list flattened into one array with offsets, so a
/// batch becomes an Arrow table without a Python loop over its rows. A failed trace has empty
/// lists, `ok` false and its error.
pub fn file_columns<'py>(py: Python<'py>, paths: &[String], opened: &[Result<Trace, flowtracer::TraceError>], ran: Vec<Result<FlowResult, flowtracer::TraceError>>) -> PyResult<Bound<'py, PyDict>> {
    let (mut credit, mut throughput, mut flow) = (Flat::<f64>::new(), Flat::<f64>::new(), Flat::<f64>::new());
    let (mut hubs, mut checkpoints, mut path_tokens, mut paths_of_row) = (Flat::<i64>::new(), Flat::<i64>::new(), Flat::<i64>::new(), Flat::<i64>::new());
    let (mut ok, mut status, mut error) = (Vec::new(), Vec::new(), Vec::<Option<String>>::new());
    let (mut sample_id, mut step, mut n) = (Vec::<Option<String>>::new(), Vec::<Option<u64>>::new(), Vec::<Option<usize>>::new());
    let mut ran = ran.into_iter();
    for t in opened {
        let r = match t {
            Ok(trace) => ran.next().expect("one result per trace").map(|r| (trace, r)),
            Err(e) => Err(e.clone()),
        };
        match r {
            Ok((trace, r)) => {
                ok.push(true);
                status.push(r.status.name().to_string());
                error.push(None);
                sample_id.push(trace.meta.sample_id.clone());
                step.push(trace.meta.step);
                n.push(Some(trace.n()));
                credit.push(r.credit.iter().copied());
                throughput.push(r.throughput.iter().copied());
                hubs.push(r.hubs.iter().map(|&k| k as i64));
                checkpoints.push(r.checkpoints.iter().map(|&k| k as i64));
                flow.push(r.backbone.iter().map(|p| p.flow));
                for p in &r.backbone {
                    path_tokens.push(p.tokens.iter().map(|&k| k as i64));
                }
                paths_of_row.offsets.push(path_tokens.offsets.len() as i32 - 1);
            }
            Err(e) => {
                ok.push(false);
                status.push("failed".to_string());
                error.push(Some(e.to_string()));
                sample_id.push(None);
                step.push(None);
                n.push(None);
                for list in [&mut credit, &mut throughput, &mut flow] {
                    list.push([]);
                }
                for list in [&mut hubs, &mut checkpoints] {
                    list.push([]);
                }
                paths_of_row.offsets.push(path_tokens.offsets.len() as i32 - 1);
            }
        }
    }
    let d = PyDict::new(py);
    d.set_item("source", paths)?;
    d.set_item("ok", ok.into_pyarray(py))?;
    d.set_item("status", status)?;
    d.set_item("error", error)?;
    d.set_item("sample_id", sample_id)?;
    d.set_item("step", step)?;
    d.set_item("n", n)?;
    credit.put(py, &d, "credit")?;
    throughput.put(py, &d, "throughput")?;
    hubs.put(py, &d, "hubs")?;
    checkpoints.put(py, &d, "checkpoints")?;
    flow.put(py, &d, "backbone_flow")?;
    path_tokens.put(py, &d, "backbone_tokens.inner")?;
    d.set_item("backbone_tokens.offsets", paths_of_row.offsets.into_pyarray(py))?;
    Ok(d)
}

pub fn trace_dict<'py>(py: Python<'py>, t: &Trace) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let a = &t.attention;
    let mut shape = Vec::new();
    if a.has_layer_axis {
        shape.push(a.layers);
    }
    if a.has_head_axis {
        shape.push(a.heads);
    }
    shape.extend([a.n, a.n]);
    d.set_item("path", t.path.display().to_string())?;
    d.set_item("tokens", PyList::new(py, &t.tokens)?)?;
    d.set_item("text", PyList::new(py, t.text())?)?;
    d.set_item("tokenizer", t.tokenizer().name())?;
    d.set_item("question", span(t.spans.question))?;
    d.set_item("response", span(t.spans.response))?;
    d.set_item("answer", span(t.spans.answer))?;
    d.set_item("shape", shape)?;
    d.set_item("dtype", format!("{:?}", a.dtype).to_lowercase())?;
    d.set_item("token_ids", t.token_ids.clone().map(|v| v.into_pyarray(py)))?;
    d.set_item("meta", serde_json::to_string(&t.meta).map_err(value_error)?)?;
    Ok(d)
}

pub fn credits_dict(py: Python<'_>, c: Credits) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("params", serde_json::to_string(&c.params).map_err(value_error)?)?;
    let rows = PyList::empty(py);
    for r in c.rows {
        let row = PyDict::new(py);
        row.set_item("source", r.source)?;
        row.set_item("sample_id", r.sample_id)?;
        row.set_item("status", r.status)?;
        row.set_item("question", span(r.question))?;
        row.set_item("response", span(r.response))?;
        row.set_item("answer", span(r.answer))?;
        row.set_item("credit", r.credit.into_pyarray(py))?;
        row.set_item("token_ids", r.token_ids.into_pyarray(py))?;
        rows.append(row)?;
    }
    d.set_item("rows", rows)?;
    Ok(d)
}
