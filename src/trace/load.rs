//! Reading and checking trace format v1 (see FLOWTRACER.md §2). Everything in the file is
//! untrusted: each check here exists because a real dumper can get it wrong.

use super::{ArrayInput, Attention, DataError, Dtype, Problem, Storage, Trace, TraceError, TraceMeta};
use crate::span::{Span, Spans};
use crate::subword::Tokenizer;
use safetensors::SafeTensors;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

pub const FORMAT: &str = "flowtracer.trace/1";
/// Overrides the memory budget for the one N×N matrix a trace needs (bytes).
pub const MAX_MATRIX_BYTES_ENV: &str = "FLOWTRACER_MAX_MATRIX_BYTES";

pub(super) fn open(path: &Path) -> Result<Trace, TraceError> {
    // Opening a FIFO blocks until someone writes to it, and a device can be endless: only regular
    // files (or links to them) are read.
    let meta = std::fs::metadata(path).map_err(|e| TraceError::new(path, Problem::Io, format!("cannot stat: {e}")))?;
    if !meta.is_file() {
        return Err(TraceError::new(path, Problem::Io, format!("not a regular file ({}): traces are read from files", kind(&meta.file_type()))));
    }
    let file = std::fs::File::open(path)
        .map_err(|e| TraceError::new(path, Problem::Io, format!("cannot open: {e}")))?;
    let len = file
        .metadata()
        .map_err(|e| TraceError::new(path, Problem::Io, format!("cannot stat: {e}")))?
        .len();
    if len < 8 {
        return Err(TraceError::new(
            path,
            Problem::Container,
            format!("file is {len} bytes: too short to be safetensors (truncated?)"),
        ));
    }
    // SAFETY: the map is read-only; a file truncated under us by another process can still
    // fault, which is the documented risk of every memory-mapped reader.
    let map = unsafe { memmap2::Mmap::map(&file) }
        .map_err(|e| TraceError::new(path, Problem::Io, format!("cannot map: {e}")))?;
    parse(Arc::new(Storage::Mapped(map)), path)
}

/// What a path that is not a regular file is, in words.
fn kind(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() { "a folder" } else { "not a file" }
}

pub(super) fn parse(storage: Arc<Storage>, path: &Path) -> Result<Trace, TraceError> {
    parse_inner(storage, path).map_err(|e| e.at(path))
}

fn parse_inner(storage: Arc<Storage>, path: &Path) -> Result<Trace, DataError> {
    let bytes = storage.bytes();
    let (header_len, header) = SafeTensors::read_metadata(bytes).map_err(|e| super::container::not_safetensors(bytes, &e))?;
    let data_start = 8 + header_len;
    let meta = super::container::metadata(&header);
    check_format(meta, FORMAT)?;
    let tokens = read_tokens(meta)?;
    let n = tokens.len();
    let attention = read_attention(&storage, &header, data_start, n)?;
    let token_ids = match header.info("token_ids") {
        None => None,
        Some(t) => Some(read_ids(bytes, data_start, t, n)?),
    };
    let entropy = read_optional_f32(bytes, data_start, header.info("token_entropy"), "token_entropy", n)?;
    let logprob = read_optional_f32(bytes, data_start, header.info("token_logprob"), "token_logprob", n)?;
    let causal_effect = read_optional_f32(bytes, data_start, header.info("causal_effect"), "causal_effect", n)?;
    let spans = read_spans(meta, n)?;
    let meta = parse_meta(meta, attention.layers, attention.has_layer_axis)?;
    Ok(Trace { path: path.to_path_buf(), tokens, spans, token_ids, entropy, logprob, causal_effect, meta, attention })
}

/// The file's metadata names the format it is read as (a trace, an export's credits).
pub(crate) fn check_format(meta: &HashMap<String, String>, expected: &str) -> Result<(), DataError> {
    match meta.get("format").map(String::as_str) {
        Some(f) if f == expected => Ok(()),
        Some(other) => Err(DataError::new(Problem::Metadata, format!("metadata `format` is `{other}`, expected `{expected}`"))),
        None => Err(DataError::new(Problem::Metadata, format!("metadata has no `format` key (expected `{expected}`)"))),
    }
}

fn read_tokens(meta: &HashMap<String, String>) -> Result<Vec<String>, DataError> {
    let text = meta.get("tokens").ok_or_else(|| DataError::new(Problem::Metadata, "metadata has no `tokens` key"))?;
    let tokens: Vec<String> = serde_json::from_str(text)
        .map_err(|e| DataError::new(Problem::Metadata, format!("metadata `tokens` is not a JSON list of strings: {e}")))?;
    if tokens.is_empty() {
        return Err(DataError::new(Problem::TokenCount, "the trace has no tokens"));
    }
    Ok(tokens)
}

/// The `attention` tensor's dtype, layout and N, checked against the tokens and the matrix
/// budget; its bytes stay where they are.
fn read_attention(storage: &Arc<Storage>, header: &safetensors::tensor::Metadata, data_start: usize, n: usize) -> Result<Attention, DataError> {
    let info = header.info("attention").ok_or_else(|| DataError::new(Problem::Shape, "no `attention` tensor"))?;
    let dtype = match info.dtype {
        safetensors::Dtype::F32 => Dtype::F32,
        safetensors::Dtype::F16 => Dtype::F16,
        safetensors::Dtype::BF16 => Dtype::BF16,
        other => return Err(DataError::new(Problem::Dtype, format!("`attention` has dtype {other:?}; supported: F32, F16, BF16"))),
    };
    attention_over(storage, data_start + info.data_offsets.0, dtype, &info.shape, n, &|n| format!("metadata `tokens` lists {n}"))
}

/// The layout checks every attention tensor passes, wherever its bytes live. `tokens_from` says
/// where the N tokens came from, for the error when the tensor covers another count (a file's
/// metadata, or the tokens a caller passed with an array).
fn attention_over(storage: &Arc<Storage>, offset: usize, dtype: Dtype, shape: &[usize], n: usize, tokens_from: &dyn Fn(usize) -> String) -> Result<Attention, DataError> {
    let (layers, heads, has_layer_axis, has_head_axis) = match shape.len() {
        4 => (shape[0], shape[1], true, true),
        3 => (shape[0], 1, true, false),
        2 => (1, 1, false, false),
        d => return Err(DataError::new(Problem::Shape, format!("`attention` has {d} axes {shape:?}; expected [L,H,N,N], [L,N,N] or [N,N]"))),
    };
    let (nq, nk) = (shape[shape.len() - 2], shape[shape.len() - 1]);
    if nq != nk {
        return Err(DataError::new(Problem::Shape, format!("`attention` is {nq}×{nk} in its last two axes; it must be square (query, key)")));
    }
    if layers == 0 || heads == 0 {
        return Err(DataError::new(Problem::Shape, format!("`attention` shape {shape:?} has an empty axis")));
    }
    if nq != n {
        return Err(DataError::new(Problem::TokenCount, format!("`attention` covers {nq} tokens but {}", tokens_from(n))));
    }
    check_budget(n)?;
    Ok(Attention { storage: storage.clone(), offset, dtype, layers, heads, has_layer_axis, has_head_axis, n, causal_checked: Default::default() })
}

pub(super) fn from_array(array: ArrayInput, tokens: Vec<String>, question: Span, answer: Span, response: Option<Span>, name: &Path) -> Result<Trace, DataError> {
    let n = tokens.len();
    if n == 0 {
        return Err(DataError::new(Problem::TokenCount, "the trace has no tokens"));
    }
    let ArrayInput { bytes, dtype, shape } = array;
    let elements = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let expected = elements.and_then(|e| e.checked_mul(dtype.size()));
    if expected != Some(bytes.len()) {
        return Err(DataError::new(
            Problem::Shape,
            format!("`attention` shape {shape:?} in {dtype:?} needs {} bytes, the array holds {}", expected.map_or("more than usize".into(), |e| e.to_string()), bytes.len()),
        ));
    }
    let storage = Arc::new(bytes);
    let attention = attention_over(&storage, 0, dtype, &shape, n, &|n| format!("{n} tokens were passed with it"))?;
    let spans = Spans { question, response: response.unwrap_or(Span::new(question.end, n)), answer };
    spans.validate(n).map_err(|e| DataError::new(Problem::Span, e))?;
    Ok(Trace { path: name.to_path_buf(), tokens, spans, token_ids: None, entropy: None, logprob: None, causal_effect: None, meta: TraceMeta::default(), attention })
}

/// A matrix of at most this many bytes (N ≤ 2 896) is not weighed against the memory left
/// unless `FLOWTRACER_MAX_MATRIX_BYTES` asks: whatever runs us has that much, and reading what the
/// machine and its control group have left (`/proc/meminfo` and, on a cgroup v1 machine, a
/// `memory.stat` for each group above us) took 73 µs an open, a tenth of a 1k-token trace's
/// pipeline, on every trace of a run.
const UNWEIGHED_MATRIX_BYTES: u128 = 16 << 20;

/// The pipeline's one matrix (the strict lower triangle in f32) must fit the budget.
fn check_budget(n: usize) -> Result<(), DataError> {
    let need = (n as u128) * (n as u128).saturating_sub(1) / 2 * 4;
    if need <= UNWEIGHED_MATRIX_BYTES && std::env::var_os(MAX_MATRIX_BYTES_ENV).is_none() {
        return Ok(());
    }
    let budget = matrix_budget();
    if need > budget as u128 {
        return Err(DataError::new(
            Problem::TooLarge,
            format!("N = {n} needs a {} MiB attention matrix, over the budget of {} MiB (set {MAX_MATRIX_BYTES_ENV} to change it)", need >> 20, budget >> 20),
        ));
    }
    Ok(())
}

fn read_spans(meta: &HashMap<String, String>, n: usize) -> Result<Spans, DataError> {
    let span = |key: &str, default: Option<Span>| -> Result<Span, DataError> {
        match meta.get(key) {
            Some(text) => Span::parse(text, n).map_err(|e| DataError::new(Problem::Span, format!("metadata `{key}`: {e}"))),
            None => default.ok_or_else(|| DataError::new(Problem::Metadata, format!("metadata has no `{key}` span"))),
        }
    };
    let question = span("question", None)?;
    let answer = span("answer", None)?;
    let response = span("response", Some(Span::new(question.end, n)))?;
    let spans = Spans { question, response, answer };
    spans.validate(n).map_err(|e| DataError::new(Problem::Span, e))?;
    Ok(spans)
}

fn read_ids(bytes: &[u8], start: usize, info: &safetensors::tensor::TensorInfo, n: usize) -> Result<Vec<i64>, DataError> {
    check_vector(info, "token_ids", n)?;
    let data = &bytes[start + info.data_offsets.0..start + info.data_offsets.1];
    match info.dtype {
        safetensors::Dtype::I64 => Ok(data.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect()),
        safetensors::Dtype::I32 => {
            Ok(data.chunks_exact(4).map(|b| i32::from_le_bytes(b.try_into().unwrap()) as i64).collect())
        }
        other => Err(DataError::new(Problem::Dtype, format!("`token_ids` has dtype {other:?}; supported: I64, I32"))),
    }
}

fn read_optional_f32(
    bytes: &[u8],
    start: usize,
    info: Option<&safetensors::tensor::TensorInfo>,
    name: &str,
    n: usize,
) -> Result<Option<Vec<f32>>, DataError> {
    let Some(info) = info else { return Ok(None) };
    check_vector(info, name, n)?;
    if info.dtype != safetensors::Dtype::F32 {
        return Err(DataError::new(Problem::Dtype, format!("`{name}` has dtype {:?}; expected F32", info.dtype)));
    }
    let data = &bytes[start + info.data_offsets.0..start + info.data_offsets.1];
    let mut out = vec![0f32; n];
    Dtype::F32.decode(data, &mut out);
    if let Some(i) = out.iter().position(|x| !x.is_finite()) {
        return Err(DataError::new(Problem::NonFinite, format!("`{name}`[{i}] is {}", out[i])));
    }
    Ok(Some(out))
}

fn check_vector(info: &safetensors::tensor::TensorInfo, name: &str, n: usize) -> Result<(), DataError> {
    if info.shape.len() != 1 {
        return Err(DataError::new(Problem::Shape, format!("`{name}` has shape {:?}; expected [N]", info.shape)));
    }
    if info.shape[0] != n {
        return Err(DataError::new(
            Problem::TokenCount,
            format!("`{name}` has {} entries but the trace has {n} tokens", info.shape[0]),
        ));
    }
    Ok(())
}

fn parse_meta(meta: &HashMap<String, String>, file_layers: usize, has_layer_axis: bool) -> Result<TraceMeta, DataError> {
    fn parse<T: std::str::FromStr>(meta: &HashMap<String, String>, key: &str, what: &str) -> Result<Option<T>, DataError> {
        meta.get(key)
            .map(|v| {
                v.trim().parse::<T>().map_err(|_| {
                    DataError::new(Problem::Metadata, format!("metadata `{key}` = `{v}` is not {what}"))
                })
            })
            .transpose()
    }
    let layers: Option<Vec<usize>> = meta
        .get("layers")
        .map(|v| {
            serde_json::from_str(v).map_err(|_| {
                DataError::new(Problem::Metadata, format!("metadata `layers` = `{v}` is not a JSON list of layer indices"))
            })
        })
        .transpose()?;
    let num_layers: Option<usize> = parse(meta, "num_layers", "a layer count")?;
    if let Some(kept) = &layers {
        // On `[N,N]` the list names the layers averaged into it: provenance, not a layout.
        if has_layer_axis && kept.len() != file_layers {
            return Err(DataError::new(
                Problem::Shape,
                format!("metadata `layers` lists {} layers but `attention` holds {file_layers}", kept.len()),
            ));
        }
        if kept.windows(2).any(|w| w[0] >= w[1]) {
            return Err(DataError::new(Problem::Metadata, "metadata `layers` must be strictly increasing"));
        }
        if let (Some(total), Some(&last)) = (num_layers, kept.last())
            && last >= total {
                return Err(DataError::new(
                    Problem::Metadata,
                    format!("metadata `layers` names layer {last} but `num_layers` is {total}"),
                ));
            }
    } else if let Some(total) = num_layers
        && has_layer_axis && total != file_layers {
            return Err(DataError::new(
                Problem::Metadata,
                format!("metadata `num_layers` is {total} but `attention` holds {file_layers} layers and no `layers` list says which"),
            ));
        }
    let correct = match meta.get("correct").map(|s| s.trim()) {
        None => None,
        Some("true" | "1" | "True") => Some(true),
        Some("false" | "0" | "False") => Some(false),
        Some(v) => {
            return Err(DataError::new(Problem::Metadata, format!("metadata `correct` = `{v}` is not true/false")));
        }
    };
    let tokenizer = match meta.get("tokenizer").map(|s| s.trim()) {
        None => None,
        Some(v) => Some(Tokenizer::parse(v).ok_or_else(|| {
            DataError::new(Problem::Metadata, format!("metadata `tokenizer` = `{v}` is not bytelevel, sentencepiece, wordpiece or raw"))
        })?),
    };
    const KNOWN: &[&str] = &[
        "format", "tokens", "question", "answer", "response", "layers", "num_layers", "model", "task",
        "sample_id", "group_id", "step", "reward", "advantage", "correct", "synthetic", "tokenizer",
    ];
    let extra: BTreeMap<String, String> =
        meta.iter().filter(|(k, _)| !KNOWN.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
    let finite = |key: &str| -> Result<Option<f64>, DataError> {
        let v: Option<f64> = parse(meta, key, "a number")?;
        match v {
            Some(x) if !x.is_finite() => {
                Err(DataError::new(Problem::Metadata, format!("metadata `{key}` is {x}, not a finite number")))
            }
            v => Ok(v),
        }
    };
    Ok(TraceMeta {
        layers,
        num_layers,
        model: meta.get("model").cloned(),
        task: meta.get("task").cloned(),
        sample_id: meta.get("sample_id").cloned(),
        group_id: meta.get("group_id").cloned(),
        step: parse(meta, "step", "a non-negative integer")?,
        reward: finite("reward")?,
        advantage: finite("advantage")?,
        correct,
        synthetic: meta.get("synthetic").is_some_and(|v| v == "true"),
        tokenizer,
        extra,
    })
}

/// Bytes the one (lower-triangular f32) matrix of a trace may take: `FLOWTRACER_MAX_MATRIX_BYTES`, else half of
/// the memory available now (the machine's, or its container's or job's where that is less), so
/// a 100k-token dump is refused with a reason instead of swapping or being killed.
pub fn matrix_budget() -> u64 {
    if let Some(v) = std::env::var(MAX_MATRIX_BYTES_ENV).ok().and_then(|v| v.trim().parse().ok()) {
        return v;
    }
    super::memory::available().map(|bytes| bytes / 2).unwrap_or(8 << 30)
}
