//! Results for Python: dicts of NumPy arrays that take over the engine's vectors, and plain
//! values. The pure-Python layer turns each dict into a typed object.

use flowtracer::Params;
use flowtracer::export::Credits;
use flowtracer::export::scored::Details;
use flowtracer::flow::{FlowPath, Provenance};
use flowtracer::{FlowResult, Span, Trace};
use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::value_error;

fn span(s: Span) -> (usize, usize) {
    (s.start, s.end)
}

/// Where a result's tokens come from.
pub enum ResultTokens {
    /// The caller's own list of str, handed back as it is.
    Given(Py<PyList>),
    /// None given with an array: `<0>`, `<1>`, ... when first read.
    Numbered,
    /// The trace's own (a file's, or made from a sequence that was not a list of str).
    Trace,
}

enum UnmadeTokens {
    Own(Vec<String>),
    Numbered(usize),
}

/// The parts of a result most callers never read, kept in Rust until one is: a file's tokens
/// (1024 Python strings a trace were most of what the binding added to the engine's time on a
/// batch of 64 files of 1024 tokens, 8% of it), the backbone's paths (a list, tuples and an int
/// object per token on them), the provenance, the layers and heads. A training loop that takes
/// the credit never makes them; `FlowResult.__getattr__` asks for each on its first read and
/// keeps what it gets.
#[pyclass(frozen, name = "Unmade", module = "flowtracer._native")]
pub struct Unmade {
    tokens: Option<UnmadeTokens>,
    backbone: Vec<FlowPath>,
    provenance: Provenance,
    layers: Vec<usize>,
    heads: Vec<usize>,
}

#[pymethods]
impl Unmade {
    /// The names `make` answers, in the result's field order.
    fn names(&self) -> Vec<&'static str> {
        let rest = ["layers", "heads", "backbone", "provenance"];
        self.tokens.as_ref().map(|_| "tokens").into_iter().chain(rest).collect()
    }

    /// The field `name` as the result holds it: tokens as a list of str (each distinct token's
    /// string made once: a trace's tokens repeat, 73 distinct words in a synthetic trace of
    /// 1024), the backbone as `[(token indices, flow), ...]`, the provenance as `json.loads`
    /// would make it.
    fn make<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        Ok(match name {
            "tokens" => match &self.tokens {
                Some(UnmadeTokens::Own(tokens)) => {
                    let mut made: rustc_hash::FxHashMap<&str, Bound<'py, PyString>> = Default::default();
                    PyList::new(py, tokens.iter().map(|t| made.entry(t.as_str()).or_insert_with(|| PyString::new(py, t)).clone())).map(untracked)?.into_any()
                }
                Some(UnmadeTokens::Numbered(n)) => PyList::new(py, (0..*n).map(|i| format!("<{i}>")))?.into_any(),
                None => return Err(pyo3::exceptions::PyAttributeError::new_err("tokens")),
            },
            "backbone" => PyList::new(py, self.backbone.iter().map(|p| (&p.tokens, p.flow)))?.into_any(),
            "provenance" => json_value(py, &serde_json::to_value(&self.provenance).map_err(value_error)?)?,
            "layers" => PyList::new(py, &self.layers)?.into_any(),
            "heads" => PyList::new(py, &self.heads)?.into_any(),
            other => return Err(pyo3::exceptions::PyAttributeError::new_err(other.to_string())),
        })
    }
}

/// `list`, which holds only strings, taken out of the cyclic garbage collector's sight, as
/// CPython does itself for tuples and dicts of atomic values: strings refer to nothing, so such
/// a list cannot be part of a cycle, and each collection while a batch's 64 token lists of 1024
/// strings were young walked all 65 536 entries (most of what the binding then still added to a
/// batch). Reference counting frees it as before.
pub fn untracked(list: Bound<'_, PyList>) -> Bound<'_, PyList> {
    // SAFETY: the list is alive (we hold it) and GC-tracked, as every new list is.
    unsafe { pyo3::ffi::PyObject_GC_UnTrack(list.as_ptr().cast()) };
    list
}

/// The caller's list of tokens goes back as it is; others go into the result's `Unmade` with the
/// other parts made on demand. The keys are interned (made once per process): on 64 traces of
/// 1024 tokens the binding's whole cost is a millisecond or two.
pub fn result_dict<'py>(py: Python<'py>, trace: &mut Trace, r: FlowResult, tokens: ResultTokens) -> PyResult<Bound<'py, PyDict>> {
    use pyo3::intern;
    let d = PyDict::new(py);
    d.set_item(intern!(py, "source"), trace.path.display().to_string())?;
    d.set_item(intern!(py, "sample_id"), trace.meta.sample_id.as_deref())?;
    d.set_item(intern!(py, "step"), trace.meta.step)?;
    d.set_item(intern!(py, "status"), r.status.name())?;
    let tokens = match tokens {
        ResultTokens::Given(list) => {
            d.set_item(intern!(py, "tokens"), list)?;
            None
        }
        ResultTokens::Numbered => Some(UnmadeTokens::Numbered(trace.n())),
        ResultTokens::Trace => Some(UnmadeTokens::Own(std::mem::take(&mut trace.tokens))),
    };
    d.set_item(intern!(py, "question"), span(trace.spans.question))?;
    d.set_item(intern!(py, "response"), span(trace.spans.response))?;
    d.set_item(intern!(py, "answer"), span(trace.spans.answer))?;
    d.set_item(intern!(py, "sink"), span(r.spans.answer))?;
    d.set_item(intern!(py, "answer_inflow"), r.answer_inflow())?;
    d.set_item(intern!(py, "backbone_flow"), r.backbone_flow())?;
    d.set_item(intern!(py, "question_sources"), r.question_sources)?;
    d.set_item(intern!(py, "attention_address"), trace.attention.address())?;
    d.set_item(intern!(py, "hubs"), r.hubs.into_pyarray(py))?;
    d.set_item(intern!(py, "checkpoints"), r.checkpoints.into_pyarray(py))?;
    d.set_item(intern!(py, "reach"), r.reach.into_pyarray(py))?;
    d.set_item(intern!(py, "flow"), r.flow.into_pyarray(py))?;
    d.set_item(intern!(py, "throughput"), r.throughput.into_pyarray(py))?;
    d.set_item(intern!(py, "credit"), r.credit.into_pyarray(py))?;
    d.set_item(intern!(py, "far_sources"), r.far_sources.into_pyarray(py))?;
    d.set_item(intern!(py, "_unmade"), Unmade { tokens, backbone: r.backbone, provenance: r.provenance, layers: r.layers, heads: r.heads })?;
    Ok(d)
}

/// A JSON value as the Python objects `json.loads` would make of it.
fn json_value<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    use serde_json::Value;
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_pyobject(py)?.into_any(),
            (None, Some(u)) => u.into_pyobject(py)?.into_any(),
            _ => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => PyList::new(py, items.iter().map(|i| json_value(py, i)).collect::<PyResult<Vec<_>>>()?)?.into_any(),
        Value::Object(map) => {
            let d = PyDict::new(py);
            for (k, v) in map {
                d.set_item(k, json_value(py, v)?)?;
            }
            d.into_any()
        }
    })
}

/// Lists of one kind for many rows, flattened as Arrow holds them: every row's values end to end,
/// and where each row ends (`offsets[0] = 0`).
struct Flat<T> {
    values: Vec<T>,
    offsets: Vec<i32>,
}

impl<T> Default for Flat<T> {
    fn default() -> Self {
        Flat { values: Vec::new(), offsets: vec![0] }
    }
}

impl<T: numpy::Element> Flat<T> {
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
/// status, size and error, each per-token list flattened into one array with offsets, and the
/// rest as the `details` JSON the binary reads back (`flowtracer::export::scored`), so a batch
/// becomes an Arrow table without a Python loop over its rows or tokens. A failed trace has
/// empty lists, `ok` false and its error.
pub fn file_columns<'py>(py: Python<'py>, paths: &[String], opened: &[Result<Trace, flowtracer::TraceError>], ran: Vec<Result<FlowResult, flowtracer::TraceError>>, params: &Params) -> PyResult<Bound<'py, PyDict>> {
    let mut c = Columns::default();
    let mut ran = ran.into_iter();
    for t in opened {
        let r = match t {
            Ok(trace) => ran.next().expect("one result per trace").map(|r| (trace, r)),
            Err(e) => Err(e.clone()),
        };
        match r {
            Ok((trace, r)) => c.push(trace, &r, serde_json::to_string(&Details::of(trace, &r, params)).map_err(value_error)?),
            Err(e) => c.push_failed(&e),
        }
    }
    c.into_dict(py, paths)
}

/// The columns of `file_columns`, a row at a time.
#[derive(Default)]
struct Columns {
    ok: Vec<bool>,
    status: Vec<String>,
    error: Vec<Option<String>>,
    problem: Vec<Option<&'static str>>,
    sample_id: Vec<Option<String>>,
    step: Vec<Option<u64>>,
    n: Vec<Option<usize>>,
    reward: Vec<Option<f64>>,
    correct: Vec<Option<bool>>,
    details: Vec<Option<String>>,
    /// credit, throughput, reach, flow, far_sources, backbone_flow.
    floats: [Flat<f64>; 6],
    hubs: Flat<i64>,
    checkpoints: Flat<i64>,
    token_ids: Flat<i64>,
    has_ids: Vec<bool>,
    causal_effect: Flat<f32>,
    has_effect: Vec<bool>,
    /// Every backbone path's tokens, and where each row's paths end.
    path_tokens: Flat<i64>,
    paths_of_row: Flat<i64>,
    /// Tokens as Arrow strings: every token's bytes end to end, where each ends, and where each
    /// row's tokens end.
    token_bytes: Flat<u8>,
    tokens_of_row: Flat<i64>,
}

const FLOAT_COLUMNS: [&str; 6] = ["credit", "throughput", "reach", "flow", "far_sources", "backbone_flow"];

impl Columns {
    fn push(&mut self, trace: &Trace, r: &FlowResult, details: String) {
        let m = &trace.meta;
        self.ok.push(true);
        self.status.push(r.status.name().to_string());
        self.error.push(None);
        self.problem.push(None);
        self.sample_id.push(m.sample_id.clone());
        self.step.push(m.step);
        self.n.push(Some(trace.n()));
        self.reward.push(m.reward);
        self.correct.push(m.correct);
        self.details.push(Some(details));
        let path_flow: Vec<f64> = r.backbone.iter().map(|p| p.flow).collect();
        for (list, values) in self.floats.iter_mut().zip([&r.credit, &r.throughput, &r.reach, &r.flow, &r.far_sources, &path_flow]) {
            list.push(values.iter().copied());
        }
        self.hubs.push(r.hubs.iter().map(|&k| k as i64));
        self.checkpoints.push(r.checkpoints.iter().map(|&k| k as i64));
        for p in &r.backbone {
            self.path_tokens.push(p.tokens.iter().map(|&k| k as i64));
        }
        for tok in &trace.tokens {
            self.token_bytes.push(tok.bytes());
        }
        self.end_row();
        self.token_ids.push(trace.token_ids.iter().flatten().copied());
        self.causal_effect.push(trace.causal_effect.iter().flatten().copied());
        self.has_ids.push(trace.token_ids.is_some());
        self.has_effect.push(trace.causal_effect.is_some());
    }

    fn push_failed(&mut self, e: &flowtracer::TraceError) {
        self.ok.push(false);
        self.status.push("failed".to_string());
        self.error.push(Some(e.to_string()));
        self.problem.push(Some(e.problem.name()));
        for column in [&mut self.sample_id, &mut self.details] {
            column.push(None);
        }
        self.step.push(None);
        self.n.push(None);
        self.reward.push(None);
        self.correct.push(None);
        for list in &mut self.floats {
            list.push([]);
        }
        for list in [&mut self.hubs, &mut self.checkpoints, &mut self.token_ids] {
            list.push([]);
        }
        self.causal_effect.push([]);
        self.has_ids.push(false);
        self.has_effect.push(false);
        self.end_row();
    }

    /// Closes the row's lists of lists (its backbone paths, its tokens).
    fn end_row(&mut self) {
        self.paths_of_row.offsets.push(self.path_tokens.offsets.len() as i32 - 1);
        self.tokens_of_row.offsets.push(self.token_bytes.offsets.len() as i32 - 1);
    }

    fn into_dict<'py>(self, py: Python<'py>, paths: &[String]) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("source", paths)?;
        d.set_item("ok", self.ok.into_pyarray(py))?;
        d.set_item("status", self.status)?;
        d.set_item("error", self.error)?;
        d.set_item("problem", self.problem)?;
        d.set_item("sample_id", self.sample_id)?;
        d.set_item("step", self.step)?;
        d.set_item("n", self.n)?;
        d.set_item("reward", self.reward)?;
        d.set_item("correct", self.correct)?;
        d.set_item("details", self.details)?;
        for (list, name) in self.floats.into_iter().zip(FLOAT_COLUMNS) {
            list.put(py, &d, name)?;
        }
        self.hubs.put(py, &d, "hubs")?;
        self.checkpoints.put(py, &d, "checkpoints")?;
        self.token_ids.put(py, &d, "token_ids")?;
        self.causal_effect.put(py, &d, "causal_effect")?;
        d.set_item("token_ids.valid", self.has_ids.into_pyarray(py))?;
        d.set_item("causal_effect.valid", self.has_effect.into_pyarray(py))?;
        self.path_tokens.put(py, &d, "backbone_tokens.inner")?;
        d.set_item("backbone_tokens.offsets", self.paths_of_row.offsets.into_pyarray(py))?;
        self.token_bytes.put(py, &d, "tokens.inner")?;
        d.set_item("tokens.offsets", self.tokens_of_row.offsets.into_pyarray(py))?;
        Ok(d)
    }
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
    d.set_item("causal_effect", t.causal_effect.clone().map(|v| v.into_pyarray(py)))?;
    let changed = t.answer_changed().map_err(|e| value_error(format!("{}: {e}", t.path.display())))?.map(|list| {
        let mut flags = vec![false; t.n()];
        list.into_iter().for_each(|k| flags[k] = true);
        flags.into_pyarray(py)
    });
    d.set_item("answer_changed", changed)?;
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
