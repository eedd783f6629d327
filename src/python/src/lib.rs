//! `flowtracer._native`: the engine's entry points for Python. Each call plans and runs the
//! pipeline with the GIL released; attention arrays are read where they lie (`input`), and the
//! per-token results go back as NumPy arrays that take over the Rust vectors (`output`). Errors
//! are `flowtracer.TraceError`s (a `ValueError`) whose message names the file or the array and
//! the problem, as the command line's do, with the problem's name in `.problem`. The pure-Python
//! package (`python/flowtracer`) wraps all of this in typed objects.

mod input;
mod output;
mod pool;

use flowtracer::backend::{self, Backend, Choice};
use flowtracer::flow::{Cancel, Scope};
use flowtracer::params::CreditParams;
use flowtracer::trace::ArrayInput;
use output::ResultTokens;
use flowtracer::{Params, Span, Trace};
use numpy::{IntoPyArray, PyArrayDyn, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use rayon::prelude::*;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

create_exception!(_native, TraceError, PyValueError, "A trace, array or file the engine cannot use; `.problem` names the kind.");

pub(crate) fn value_error(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// The engine's error as a `TraceError` carrying the problem's name.
fn trace_error(py: Python<'_>, e: &flowtracer::TraceError) -> PyErr {
    let err = TraceError::new_err(e.to_string());
    let _ = err.value(py).setattr("problem", e.problem.name());
    err
}

/// Parameters from their JSON text (the Python layer serialises them), checked; defaults when none.
fn params_of(json: Option<&str>) -> PyResult<Params> {
    json.map_or_else(|| Ok(Params::default()), |text| Params::parse(text, true).map_err(|e| value_error(format!("params: {e}"))))
}

fn backend_of(name: &str) -> PyResult<Box<dyn Backend>> {
    let choice = match name {
        "auto" => Choice::Auto,
        "cpu" => Choice::Cpu,
        "wgpu" => Choice::Wgpu,
        "cuda" => Choice::Cuda,
        other => return Err(value_error(format!("backend {other:?}: expected \"auto\", \"cpu\", \"wgpu\" or \"cuda\""))),
    };
    backend::select(choice).map_err(|e| value_error(format!("backend {:?}: {} (\"auto\" takes what this machine has)", e.name, e.reason)))
}

type Opened = Vec<Result<Trace, flowtracer::TraceError>>;
type Ran = Vec<Result<flowtracer::FlowResult, flowtracer::TraceError>>;

/// Runs `work` on another thread while this one waits without the GIL, waking every 50 ms for
/// Python's signal handlers: Ctrl-C cancels the engine (it stops between steps; traces not yet
/// run are skipped) and raises KeyboardInterrupt here once the engine has let go of the inputs.
/// On each wake-up where `work` has counted more traces done, `progress(done, total)` is called
/// here, with the GIL, and once more at the end; an exception it raises cancels the engine and
/// is raised in its place.
fn interruptible<T: Send>(py: Python<'_>, progress: Option<&Bound<'_, PyAny>>, total: usize, work: impl FnOnce(&Cancel, &AtomicUsize) -> T + Send) -> PyResult<T> {
    let (cancel, done) = (Cancel::default(), AtomicUsize::new(0));
    let mut reported = None;
    let mut report = |finished: bool| -> PyResult<()> {
        let Some(callback) = progress else { return Ok(()) };
        let now = done.load(Ordering::Relaxed);
        if reported != Some(now) && (finished || now > 0) {
            reported = Some(now);
            callback.call1((now, total))?;
        }
        Ok(())
    };
    let pool = pool::pool()?;
    std::thread::scope(|scope| {
        let (sent, mut result) = std::sync::mpsc::channel();
        let (engine_cancel, engine_done) = (&cancel, &done);
        let worker = scope.spawn(move || {
            let _ = sent.send(pool.install(|| work(engine_cancel, engine_done)));
        });
        loop {
            // (the receiver goes into the GIL-free closure and comes back: it is Send, not Sync)
            let (waited, receiver) = py.detach(move || (result.recv_timeout(std::time::Duration::from_millis(50)), result));
            result = receiver;
            match waited {
                Ok(value) => {
                    report(true)?;
                    return Ok(value);
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(e) = py.check_signals().and_then(|()| report(false)) {
                        cancel.cancel();
                        let _ = py.detach(|| worker.join());
                        return Err(e);
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
                    Err(panic) => std::panic::resume_unwind(panic),
                    Ok(()) => unreachable!("the worker sends before it ends"),
                },
            }
        }
    })
}

/// Opens the inputs and runs every trace that opened, a window of traces at a time (the
/// backend's batch, at least 64) so that `done` counts them as they finish; stops between
/// windows once cancelled (the caller then discards what it has).
fn open_and_run_windows<T: Send>(inputs: Vec<T>, open: impl Fn(T) -> Result<Trace, flowtracer::TraceError> + Sync + Send, params: &Params, scope: Scope, backend: &dyn Backend, cancel: &Cancel, done: &AtomicUsize) -> (Opened, Ran) {
    let window = backend.batch_size().max(64);
    let (mut opened, mut ran) = (Vec::with_capacity(inputs.len()), Vec::with_capacity(inputs.len()));
    let mut inputs = inputs.into_iter();
    while !cancel.is_cancelled() {
        let part: Vec<T> = inputs.by_ref().take(window).collect();
        if part.is_empty() {
            break;
        }
        let these = open_all(part, &open);
        let ready: Vec<&Trace> = these.iter().filter_map(|t| t.as_ref().ok()).collect();
        ran.extend(backend.batch_in(scope, &ready, params, cancel));
        done.fetch_add(these.len(), Ordering::Relaxed);
        opened.extend(these);
    }
    (opened, ran)
}

/// Opens the inputs and runs every trace that opened, interruptibly, reporting to `progress`.
fn open_and_run<T: Send>(py: Python<'_>, inputs: Vec<T>, open: impl Fn(T) -> Result<Trace, flowtracer::TraceError> + Sync + Send, params: &Params, scope: Scope, backend: &dyn Backend, progress: Option<&Bound<'_, PyAny>>) -> PyResult<(Opened, Ran)> {
    let total = inputs.len();
    interruptible(py, progress, total, |cancel, done| open_and_run_windows(inputs, open, params, scope, backend, cancel, done))
}

/// Each item of the answer is a result dict or the error of its trace (one bad trace costs the
/// others nothing). `tokens` says, per trace, where its result's tokens come from: the caller's
/// own list when there is one (it must: the engine's copy of those is blank, `input::strings`),
/// else the trace's, made into strings only if they are read (`output::Unmade`).
fn results(py: Python<'_>, (opened, ran): (Opened, Ran), tokens: Vec<ResultTokens>) -> PyResult<Vec<Py<PyAny>>> {
    let mut ran = ran.into_iter();
    opened
        .into_iter()
        .zip(tokens)
        .map(|(t, tokens)| {
            let r = match t {
                Ok(trace) => ran.next().expect("one result per trace").map(|r| (trace, r)),
                Err(e) => Err(e),
            };
            match r {
                Ok((mut trace, r)) => Ok(output::result_dict(py, &mut trace, r, tokens)?.into_any().unbind()),
                Err(e) => Ok(trace_error(py, &e).into_value(py).into_any()),
            }
        })
        .collect()
}

/// One attention array with what the engine needs besides it.
#[derive(FromPyObject)]
struct ArrayItem<'py> {
    #[pyo3(item)]
    attention: Bound<'py, PyAny>,
    #[pyo3(item)]
    bf16: bool,
    #[pyo3(item)]
    tokens: Bound<'py, PyAny>,
    #[pyo3(item)]
    question: (usize, usize),
    #[pyo3(item)]
    answer: (usize, usize),
    #[pyo3(item)]
    response: Option<(usize, usize)>,
    #[pyo3(item)]
    name: String,
}

fn span((a, b): (usize, usize)) -> Span {
    Span::new(a, b)
}

/// Opens traces on every core without the GIL: the loader's checks read every attention value,
/// as much work as a solve, so done serially they would be most of a batch's time.
fn open_all<T: Send>(inputs: Vec<T>, open: impl Fn(T) -> Result<Trace, flowtracer::TraceError> + Sync + Send) -> Vec<Result<Trace, flowtracer::TraceError>> {
    inputs.into_par_iter().map(open).collect()
}

/// The arrays borrowed in place (this needs the GIL), ready to be opened without it, and where
/// each result's tokens will come from.
fn borrowed(items: Vec<ArrayItem<'_>>) -> PyResult<(Vec<Borrowed>, Vec<ResultTokens>)> {
    items
        .into_iter()
        .map(|item| {
            let array = input::borrow(&item.attention, item.bf16, &item.name)?;
            let n = array.shape.last().copied().unwrap_or(0);
            let (tokens, result_tokens) = input::strings(&item.tokens, n, &item.name)?;
            Ok(((array, ArrayItemRest { tokens, question: item.question, answer: item.answer, response: item.response, name: item.name }), result_tokens))
        })
        .collect()
}

/// An array, and the item's other fields.
type Borrowed = (ArrayInput, ArrayItemRest);

/// An item's fields besides its array.
struct ArrayItemRest {
    tokens: Vec<String>,
    question: (usize, usize),
    answer: (usize, usize),
    response: Option<(usize, usize)>,
    name: String,
}

fn open_array((array, rest): (ArrayInput, ArrayItemRest)) -> Result<Trace, flowtracer::TraceError> {
    Trace::from_array(array, rest.tokens, span(rest.question), span(rest.answer), rest.response.map(span), Path::new(&rest.name))
}

/// Analyses attention arrays (dicts: `attention`, `bf16`, `tokens`, `question`, `answer`,
/// `response`, `name`), read in place; a result dict or a `TraceError` per item, in order.
/// `progress(done, total)` is called as traces finish. `credit_only`: make only the credit and
/// what it is made from (`Scope::Credit`), as an RL step's shaping does.
#[pyfunction]
#[pyo3(signature = (items, params_json=None, backend="auto", progress=None, credit_only=false))]
fn analyze_arrays(py: Python<'_>, items: Vec<ArrayItem<'_>>, params_json: Option<&str>, backend: &str, progress: Option<Bound<'_, PyAny>>, credit_only: bool) -> PyResult<Vec<Py<PyAny>>> {
    let (params, backend) = (params_of(params_json)?, backend_of(backend)?);
    let (inputs, tokens) = borrowed(items)?;
    let scope = if credit_only { Scope::Credit } else { Scope::Everything };
    let ran = open_and_run(py, inputs, open_array, &params, scope, backend.as_ref(), progress.as_ref())?;
    results(py, ran, tokens)
}

/// Analyses trace files (format v1); a result dict or a `TraceError` per path, in order.
/// `progress(done, total)` is called as traces finish.
#[pyfunction]
#[pyo3(signature = (paths, params_json=None, backend="auto", progress=None))]
fn analyze_files(py: Python<'_>, paths: Vec<String>, params_json: Option<&str>, backend: &str, progress: Option<Bound<'_, PyAny>>) -> PyResult<Vec<Py<PyAny>>> {
    let (params, backend) = (params_of(params_json)?, backend_of(backend)?);
    let tokens = paths.iter().map(|_| ResultTokens::Trace).collect();
    let ran = open_and_run(py, paths, |p| Trace::open(Path::new(&p)), &params, Scope::Everything, backend.as_ref(), progress.as_ref())?;
    results(py, ran, tokens)
}

/// Trace files to the columns of `flowtracer.ray`'s rows (`output::file_columns`).
#[pyfunction]
#[pyo3(signature = (paths, params_json=None, backend="auto"))]
fn file_columns<'py>(py: Python<'py>, paths: Vec<String>, params_json: Option<&str>, backend: &str) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
    let (params, backend) = (params_of(params_json)?, backend_of(backend)?);
    let (opened, ran) = open_and_run(py, paths.clone(), |p| Trace::open(Path::new(&p)), &params, Scope::Everything, backend.as_ref(), None)?;
    output::file_columns(py, &paths, &opened, ran, &params)
}

/// For the binding's benchmark: the seconds the engine alone takes on what `analyze_arrays`
/// (with `items`) or `analyze_files` (with `paths`) would run, opening included and nothing
/// turned into Python objects. The difference to those calls' time is the binding's overhead.
#[pyfunction]
#[pyo3(signature = (items=None, paths=None, params_json=None, backend="auto"))]
fn engine_seconds(py: Python<'_>, items: Option<Vec<ArrayItem<'_>>>, paths: Option<Vec<String>>, params_json: Option<&str>, backend: &str) -> PyResult<f64> {
    let params = params_of(params_json)?;
    let backend = backend_of(backend)?;
    let inputs = items.map(borrowed).transpose()?.map(|(inputs, _)| inputs);
    pool::detached(py, || {
        let start = std::time::Instant::now();
        let (cancel, done) = (Cancel::default(), AtomicUsize::new(0));
        let (opened, ran) = match inputs {
            Some(inputs) => open_and_run_windows(inputs, open_array, &params, Scope::Everything, backend.as_ref(), &cancel, &done),
            None => open_and_run_windows(paths.unwrap_or_default(), |p| Trace::open(Path::new(&p)), &params, Scope::Everything, backend.as_ref(), &cancel, &done),
        };
        // Letting go of the results and the inputs (unmapping the files) is the engine's work too,
        // as it is in every call that hands results back.
        drop(std::hint::black_box(ran));
        drop(opened);
        start.elapsed().as_secs_f64()
    })
}

/// A trace file's tokens, spans, layout and metadata, without running the pipeline.
#[pyfunction]
fn load_trace<'py>(py: Python<'py>, path: &str) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
    let trace = pool::detached(py, || Trace::open(Path::new(path)))?.map_err(|e| trace_error(py, &e))?;
    output::trace_dict(py, &trace)
}

/// The trace files of a run folder, as the binary's export finds them (sorted).
#[pyfunction]
fn discover(py: Python<'_>, root: &str) -> PyResult<Vec<String>> {
    let run = pool::detached(py, || flowtracer::trace::run::discover(Path::new(root)))?.map_err(pyo3::exceptions::PyOSError::new_err)?;
    Ok(run.traces.iter().map(|p| p.display().to_string()).collect())
}

/// `paths` with each run folder among them replaced by its trace files (`discover`), as the
/// binary takes its inputs; a folder without any is a `TraceError` (problem `empty`), as there.
#[pyfunction]
fn trace_files(py: Python<'_>, paths: Vec<String>) -> PyResult<Vec<String>> {
    let mut files = Vec::with_capacity(paths.len());
    for p in paths {
        let root = Path::new(&p);
        if !root.is_dir() {
            files.push(p);
            continue;
        }
        let found = discover(py, &p)?;
        if found.is_empty() {
            let why = flowtracer::trace::run::why_no_traces(root);
            return Err(trace_error(py, &flowtracer::TraceError::new(root, flowtracer::trace::Problem::Empty, why)));
        }
        files.extend(found);
    }
    Ok(files)
}

/// A `credits.safetensors` read back and checked.
#[pyfunction]
fn read_credits<'py>(py: Python<'py>, path: &str) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
    let credits = pool::detached(py, || flowtracer::export::read_credits(Path::new(path)))?.map_err(|e| trace_error(py, &e))?;
    output::credits_dict(py, credits)
}

/// The engine's token advantage, A_t = γ_t·A (negative A unshaped unless `apply_to_negative`),
/// for γ of shape `(..., T)` and A of shape `(...)` (one per sequence) or `()`.
#[pyfunction]
fn token_advantages<'py>(
    py: Python<'py>,
    gamma: PyReadonlyArrayDyn<'py, f64>,
    advantages: PyReadonlyArrayDyn<'py, f64>,
    apply_to_negative: bool,
) -> PyResult<Bound<'py, PyArrayDyn<f64>>> {
    let (g_shape, a_shape) = (gamma.shape().to_vec(), advantages.shape().to_vec());
    let per_sequence = &g_shape[..g_shape.len().saturating_sub(1)];
    // One advantage per sequence (TRL), one per token (verl, OpenRLHF), or one for all.
    let stride = match () {
        _ if g_shape.is_empty() => None,
        _ if a_shape.is_empty() => Some(0),
        _ if a_shape == per_sequence => Some(g_shape[g_shape.len() - 1].max(1)),
        _ if a_shape == g_shape => Some(1),
        _ => None,
    };
    let Some(stride) = stride else {
        return Err(value_error(format!("advantages of shape {a_shape:?} do not match gamma of shape {g_shape:?}: expected {per_sequence:?}, {g_shape:?} or a scalar")));
    };
    // A NaN or infinity would reach the trainer's loss and spoil every step after it: named here.
    use numpy::ndarray::Dimension;
    for (name, values) in [("gamma", &gamma), ("advantages", &advantages)] {
        if let Some((i, v)) = values.as_array().indexed_iter().find(|(_, v)| !v.is_finite()) {
            // (a scalar has no index to name)
            let at = if i.slice().is_empty() { String::new() } else { format!("{:?}", i.slice()) };
            return Err(value_error(format!("{name}{at} is {v}: token advantages take finite numbers")));
        }
    }
    let p = CreditParams { apply_to_negative, ..CreditParams::default() };
    let g = gamma.as_array();
    let a: Vec<f64> = advantages.as_array().iter().copied().collect();
    let at = |i: usize| if stride == 0 { a[0] } else if stride == 1 { a[i] } else { a[i / stride] };
    let out: Vec<f64> = g.iter().enumerate().map(|(i, &g)| flowtracer::flow::credit::token_advantage(g, at(i), &p)).collect();
    numpy::ndarray::ArrayD::from_shape_vec(g_shape, out).map(|a| a.into_pyarray(py)).map_err(value_error)
}

/// The parameters' defaults, as JSON.
#[pyfunction]
fn params_default() -> String {
    serde_json::to_string(&Params::default()).expect("params serialise")
}

/// Parameters from TOML or JSON text (`json`), or from a file (`path`), checked; as JSON with
/// every default filled in.
#[pyfunction]
#[pyo3(signature = (text=None, json=true, path=None))]
fn params_parse(text: Option<&str>, json: bool, path: Option<&str>) -> PyResult<String> {
    let params = match (text, path) {
        (_, Some(path)) => Params::load(Path::new(path)),
        (Some(text), None) => Params::parse(text, json),
        (None, None) => Ok(Params::default()),
    }
    .map_err(|e| value_error(format!("params: {e}")))?;
    Ok(serde_json::to_string(&params).expect("params serialise"))
}

/// The layers `[start, end)` the engine aggregates for a model of `total` layers under `params`
/// (`capture` records the same ones).
#[pyfunction]
#[pyo3(signature = (total, params_json=None))]
fn default_layers(total: usize, params_json: Option<&str>) -> PyResult<(usize, usize)> {
    let p = params_of(params_json)?;
    Ok(match p.aggregate.layers {
        Some([lo, hi]) => (lo.min(total), hi.min(total)),
        None => flowtracer::flow::aggregate::default_layers(total, p.aggregate.deep_from),
    })
}

/// Writes trace format v1 (`flowtracer.dump`): float32 attention, tokens, spans, optional token
/// ids, per-token causal effects and metadata. Refuses to replace an existing file unless
/// `overwrite`, and attention any analysis would refuse; the write is atomic.
#[pyfunction]
#[pyo3(signature = (path, attention, tokens, question, answer, response=None, token_ids=None, meta=None, overwrite=false, causal_effect=None))]
#[allow(clippy::too_many_arguments, reason = "the Python signature: one keyword argument each")]
fn write_trace(
    py: Python<'_>,
    path: &str,
    attention: PyReadonlyArrayDyn<'_, f32>,
    tokens: Bound<'_, PyAny>,
    question: (usize, usize),
    answer: (usize, usize),
    response: Option<(usize, usize)>,
    token_ids: Option<Vec<i64>>,
    meta: Option<std::collections::BTreeMap<String, String>>,
    overwrite: bool,
    causal_effect: Option<Vec<f32>>,
) -> PyResult<()> {
    let target = Path::new(path);
    let exists = || value_error(format!("{path}: already exists (pass overwrite=True to replace it)"));
    if let Some(why) = flowtracer::atomic::in_the_way(target) {
        return Err(value_error(why));
    }
    if !overwrite && target.exists() {
        return Err(exists());
    }
    let tokens = input::token_texts(&tokens, "dump")?;
    let n = tokens.len();
    let shape = attention.shape().to_vec();
    let values: Vec<f32> = attention.as_array().iter().copied().collect();
    let response = response.map_or(Span::new(question.1, n), span);
    let mut builder = flowtracer::trace::TraceBuilder::new(tokens, span(question), response, span(answer), flowtracer::trace::AttentionInput { shape, values, dtype: flowtracer::trace::Dtype::F32 });
    if let Some(ids) = token_ids {
        builder = builder.token_ids(ids);
    }
    if let Some(effect) = causal_effect {
        builder = builder.causal_effect(effect);
    }
    for (k, v) in meta.unwrap_or_default() {
        if ["format", "tokens", "question", "answer", "response"].contains(&k.as_str()) {
            return Err(value_error(format!("meta: `{k}` is written from the arguments, not from meta")));
        }
        builder = builder.meta(&k, v);
    }
    // The checks a trace file meets when it is opened and when its every slab is analysed, before
    // it is written: a dump that would not load, or not analyse, is refused.
    let bytes = builder.to_bytes();
    let check = Trace::from_bytes(bytes.clone(), target).map_err(|e| trace_error(py, &e))?;
    pool::detached(py, || flowtracer::flow::aggregate::check_all(&check))?.map_err(|e| trace_error(py, &e.at(target)))?;
    drop(check);
    // Checked above before the work, and again as the file lands: a writer that got there in
    // between (another rank writing into the same folder) keeps its file.
    let write = if overwrite { flowtracer::atomic::write_atomic } else { flowtracer::atomic::write_new };
    pool::detached(py, || write(target, &bytes))?.map_err(|e| if e.kind() == std::io::ErrorKind::AlreadyExists { exists() } else { value_error(format!("{path}: {e}")) })
}

/// `flowtracer.fidelity`: every credit score set against the `causal_effect` of trace files, as
/// the binary's `flowtracer fidelity` does: its Markdown table and its rows.
#[pyfunction]
#[pyo3(signature = (paths, params_json=None, seed=0, keep_going=false, progress=None))]
fn fidelity<'py>(py: Python<'py>, paths: Vec<String>, params_json: Option<&str>, seed: u64, keep_going: bool, progress: Option<Bound<'py, PyAny>>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
    use flowtracer::fidelity::{self, Summary};
    let params = params_of(params_json)?;
    let opened = pool::detached(py, || paths.iter().map(|p| Trace::open(Path::new(p))).collect::<Vec<_>>())?;
    let (mut traces, mut failed) = (Vec::new(), Vec::new());
    for t in opened {
        match t {
            Ok(t) => traces.push(t),
            Err(e) if keep_going => failed.push(trace_error(py, &e).into_value(py)),
            Err(e) => return Err(trace_error(py, &e)),
        }
    }
    let measured = interruptible(py, progress.as_ref(), traces.len(), |cancel, done| {
        fidelity::measure(&traces, &params, seed, cancel, &|| {
            done.fetch_add(1, Ordering::Relaxed);
        })
    })?
    .map_err(value_error)?;
    let summary = |s: Option<Summary>| s.map(|s| (s.mean, s.std, s.lo, s.hi, s.problems));
    let rows = pyo3::types::PyList::empty(py);
    for r in fidelity::rows(&measured.sets, &measured.effects, measured.changed.as_deref(), seed) {
        let row = pyo3::types::PyDict::new(py);
        row.set_item("score", r.name)?;
        row.set_item("spearman", summary(r.spearman))?;
        row.set_item("auc", summary(r.auc))?;
        rows.append(row)?;
    }
    let d = pyo3::types::PyDict::new(py);
    d.set_item("table", fidelity::table(&measured, seed))?;
    d.set_item("rows", rows)?;
    d.set_item("traces", measured.effects.len())?;
    d.set_item("left_out", measured.left_out)?;
    d.set_item("failed", failed)?;
    Ok(d)
}

/// The CUDA device the engine runs on, if it has one: a CUDA array on that device is analysed
/// where it lies (the Python layer copies any other to the host).
#[pyfunction]
fn cuda_device() -> Option<usize> {
    #[cfg(feature = "cuda")]
    return flowtracer::cuda::shared().ok().map(|c| c.ordinal());
    #[cfg(not(feature = "cuda"))]
    None
}

/// What this machine's backends are, and which one `auto` takes.
#[pyfunction]
fn backends() -> String {
    backend::availability_report()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("TraceError", m.py().get_type::<TraceError>())?;
    m.add_class::<output::Unmade>()?;
    m.add_function(wrap_pyfunction!(analyze_arrays, m)?)?;
    m.add_function(wrap_pyfunction!(analyze_files, m)?)?;
    m.add_function(wrap_pyfunction!(load_trace, m)?)?;
    m.add_function(wrap_pyfunction!(read_credits, m)?)?;
    m.add_function(wrap_pyfunction!(discover, m)?)?;
    m.add_function(wrap_pyfunction!(trace_files, m)?)?;
    m.add_function(wrap_pyfunction!(file_columns, m)?)?;
    m.add_function(wrap_pyfunction!(token_advantages, m)?)?;
    m.add_function(wrap_pyfunction!(params_default, m)?)?;
    m.add_function(wrap_pyfunction!(params_parse, m)?)?;
    m.add_function(wrap_pyfunction!(default_layers, m)?)?;
    m.add_function(wrap_pyfunction!(write_trace, m)?)?;
    m.add_function(wrap_pyfunction!(fidelity, m)?)?;
    m.add_function(wrap_pyfunction!(backends, m)?)?;
    m.add_function(wrap_pyfunction!(cuda_device, m)?)?;
    m.add_function(wrap_pyfunction!(engine_seconds, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("ANSWER_CHANGED", flowtracer::trace::ANSWER_CHANGED)?;
    Ok(())
}
