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
