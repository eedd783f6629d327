//! `flowtracer._native`: the engine's entry points for Python. Each call plans, runs the pipeline
//! with the GIL released, and hands the per-token results back as NumPy arrays that take over the
//! Rust vectors (no copy). Errors are `ValueError`s whose message names the file (or the array)
//! and the problem, as the command line's do. The pure-Python package (`python/flowtracer`)
//! wraps these in typed results.

use flowtracer::flow::{self, Cancel, FlowResult, Plan};
use flowtracer::trace::{AttentionInput, Dtype, TraceBuilder};
use flowtracer::{Params, Span, Trace};
use numpy::{IntoPyArray, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::path::Path;

fn value_error(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// Parameters from their JSON text (the Python layer serialises a dict), checked; defaults when none.
fn params_of(json: Option<&str>) -> PyResult<Params> {
    json.map_or_else(|| Ok(Params::default()), |text| Params::parse(text, true).map_err(|e| value_error(format!("params: {e}"))))
}

/// The pipeline on the CPU between the trace's own spans, the GIL released.
fn run(py: Python<'_>, trace: &Trace, params: &Params) -> PyResult<FlowResult> {
    py.detach(|| {
        let plan = Plan::for_trace(trace, params)?;
        flow::execute(trace, &plan, &flow::Cpu, &Cancel::default()).map(|(r, _)| r)
    })
    .map_err(value_error)
}

/// Analyses a trace file (format v1).
#[pyfunction]
#[pyo3(signature = (path, params_json=None))]
fn analyze_file<'py>(py: Python<'py>, path: &str, params_json: Option<&str>) -> PyResult<Bound<'py, PyDict>> {
    let params = params_of(params_json)?;
    let trace = py.detach(|| Trace::open(Path::new(path))).map_err(value_error)?;
    let r = run(py, &trace, &params)?;
    result_dict(py, &trace, r)
}

/// Analyses attention given as an array: `[N,N]`, `[L,N,N]` or `[L,H,N,N]` float32 rows of
/// softmax probabilities (query, key), with the tokens and the spans `(start, end)`.
#[pyfunction]
#[pyo3(signature = (attention, tokens, question, response, answer, params_json=None, name="attention"))]
#[allow(clippy::too_many_arguments, reason = "the Python signature: one keyword argument each")]
fn analyze_attention<'py>(
    py: Python<'py>,
    attention: PyReadonlyArrayDyn<'py, f32>,
    tokens: Vec<String>,
    question: (usize, usize),
    response: (usize, usize),
    answer: (usize, usize),
    params_json: Option<&str>,
    name: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let params = params_of(params_json)?;
    let shape = attention.shape().to_vec();
    if !(2..=4).contains(&shape.len()) {
        return Err(value_error(format!("{name}: {} axes {shape:?}; expected [N,N], [L,N,N] or [L,H,N,N]", shape.len())));
    }
    let values = match attention.as_slice() {
        Ok(s) => s.to_vec(),
        Err(_) => attention.as_array().iter().copied().collect(),
    };
    let span = |(a, b): (usize, usize)| Span::new(a, b.max(a));
    let builder = TraceBuilder::new(tokens, span(question), span(response), span(answer), AttentionInput { shape, values, dtype: Dtype::F32 });
    let label = format!("{name}.safetensors");
    let trace = py.detach(|| Trace::from_bytes(builder.to_bytes(), Path::new(&label))).map_err(value_error)?;
    let r = run(py, &trace, &params)?;
    result_dict(py, &trace, r)
}

/// What this machine's backends are, and which one `auto` takes.
#[pyfunction]
fn backends() -> String {
    flowtracer::backend::availability_report()
}

/// The result as a dict of NumPy arrays and plain values (`flowtracer.FlowResult` wraps it).
fn result_dict<'py>(py: Python<'py>, trace: &Trace, r: FlowResult) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let span = |s: Span| (s.start, s.end);
    d.set_item("source", trace.path.display().to_string())?;
    d.set_item("status", r.status.name())?;
    d.set_item("tokens", PyList::new(py, &trace.tokens)?)?;
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
    d.set_item("reach", r.reach.into_pyarray(py))?;
    d.set_item("flow", r.flow.into_pyarray(py))?;
    d.set_item("throughput", r.throughput.into_pyarray(py))?;
    d.set_item("credit", r.credit.into_pyarray(py))?;
    d.set_item("far_sources", r.far_sources.into_pyarray(py))?;
    Ok(d)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(analyze_file, m)?)?;
    m.add_function(wrap_pyfunction!(analyze_attention, m)?)?;
    m.add_function(wrap_pyfunction!(backends, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
