//! One reasoning trace: tokens, spans and the attention the policy paid while reading it.
//!
//! The attention stays in the file (memory-mapped); only what the pipeline selects is read,
//! once, by the aggregation step.

mod dtype;
mod error;
mod container;
mod load;
mod memory;
pub(crate) use container::{metadata, not_safetensors};
pub(crate) use load::check_format;
pub mod st_write;
pub mod run;
mod write;

pub use crate::subword::Tokenizer;
pub use dtype::{Dtype, f16_to_f32, f32_to_bf16, f32_to_f16};
pub use error::{DataError, Problem, TraceError};
pub use load::{FORMAT, MAX_MATRIX_BYTES_ENV, matrix_budget};
pub use write::{AttentionInput, TraceBuilder};

use crate::span::{Span, Spans};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bytes that back a trace: a mapped file, a buffer built in memory (RL rollouts, tests),
/// memory a caller owns (a NumPy array or a torch tensor handed over from Python, read in place),
/// or the caller's memory on the CUDA device (a tensor on the GPU, which the CUDA backend reads
/// where it lies).
pub enum Storage {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
    Borrowed(Box<dyn AsRef<[u8]> + Send + Sync>),
    #[cfg(feature = "cuda")]
    Device(crate::cuda::DeviceBytes),
}

impl Storage {
    /// The bytes in host memory. Device memory is copied to the host on first use: whoever may
    /// read a device trace on the host calls [`Attention::ensure_host`] first, which turns a
    /// failed copy into the trace's error, so that this never meets one.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
            Storage::Borrowed(b) => (**b).as_ref(),
            #[cfg(feature = "cuda")]
            Storage::Device(d) => d.host().unwrap_or_else(|e| panic!("attention on the device was read on the host without `ensure_host`, and its copy failed: {e}")),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            #[cfg(feature = "cuda")]
            Storage::Device(d) => d.len(),
            _ => self.bytes().len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Attention held outside a trace file: `bytes` are the tensor's elements in `dtype`, row-major in
/// `shape` (`[N,N]`, `[L,N,N]` or `[L,H,N,N]`), little-endian, with nothing before or after them.
pub struct ArrayInput {
    pub bytes: Storage,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
}

/// The attention tensor as a stack of `slabs()` N×N matrices (query rows, key columns).
#[derive(Clone)]
pub struct Attention {
    storage: Arc<Storage>,
    offset: usize,
    pub dtype: Dtype,
    /// Layers in the file (1 for a fully aggregated `[N,N]`).
    pub layers: usize,
    /// Heads per layer (1 when heads were averaged before writing).
    pub heads: usize,
    pub has_layer_axis: bool,
    pub has_head_axis: bool,
    pub n: usize,
    /// Slabs whose upper triangle was already read and found causal: a re-aggregation of the
    /// same slabs reads only the half it uses.
    causal_checked: Arc<std::sync::Mutex<std::collections::HashSet<(usize, usize)>>>,
}

impl Attention {
    pub fn slabs(&self) -> usize {
        self.layers * self.heads
    }

    /// Raw bytes of query row `k` of layer `l`, head `h`.
    pub fn row_bytes(&self, l: usize, h: usize, k: usize) -> &[u8] {
        let n = self.n;
        let es = self.dtype.size();
        let slab = l * self.heads + h;
        let start = self.offset + ((slab * n + k) * n) * es;
        &self.storage.bytes()[start..start + n * es]
    }

    /// Raw bytes of query rows `k0..k1` of one layer and head (contiguous in the file).
    pub fn rows_bytes(&self, l: usize, h: usize, k0: usize, k1: usize) -> &[u8] {
        let n = self.n;
        let es = self.dtype.size();
        let slab = l * self.heads + h;
        let start = self.offset + ((slab * n + k0) * n) * es;
        &self.storage.bytes()[start..start + (k1 - k0) * n * es]
    }

    /// Query row `k` of one layer and head, decoded.
    pub fn row(&self, l: usize, h: usize, k: usize, out: &mut [f32]) {
        self.dtype.decode(self.row_bytes(l, h, k), out);
    }

    pub fn causal_checked(&self, l: usize, h: usize) -> bool {
        self.causal_checked.lock().map(|s| s.contains(&(l, h))).unwrap_or(false)
    }

    pub fn mark_causal_checked(&self, slabs: &[(usize, usize)]) {
        if let Ok(mut s) = self.causal_checked.lock() {
            s.extend(slabs.iter().copied());
        }
    }

    /// The whole tensor's bytes in host memory.
    pub fn bytes(&self) -> &[u8] {
        &self.storage.bytes()[self.offset..self.offset + self.byte_len()]
    }

    /// Where the tensor's first byte lies, in host or device memory (a caller checks that an
    /// array was not copied).
    pub fn address(&self) -> usize {
        match &*self.storage {
            #[cfg(feature = "cuda")]
            Storage::Device(d) => d.address() as usize + self.offset,
            _ => self.bytes().as_ptr() as usize,
        }
    }

    /// Device address of the slab of layer `l`, head `h`, when the tensor lies on the device.
    pub fn device_slab(&self, l: usize, h: usize) -> Option<u64> {
        match &*self.storage {
            #[cfg(feature = "cuda")]
            Storage::Device(d) => Some(d.address() + (self.offset + (l * self.heads + h) * self.n * self.n * self.dtype.size()) as u64),
            _ => {
                let _ = (l, h);
                None
            }
        }
    }

    /// Makes the tensor readable on the host: a device tensor is copied back (once), for the
    /// CPU's checks, a fallback or another backend. The error names what failed.
    pub fn ensure_host(&self) -> Result<(), DataError> {
        match &*self.storage {
            #[cfg(feature = "cuda")]
            Storage::Device(d) => d.host().map(|_| ()).map_err(|e| DataError::new(Problem::Io, format!("the attention on the CUDA device could not be copied to the host: {e}"))),
            _ => Ok(()),
        }
    }

    pub fn byte_len(&self) -> usize {
        self.slabs() * self.n * self.n * self.dtype.size()
    }
}

/// The optional metadata of the trace format, typed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TraceMeta {
    /// Original indices of the layers the file kept.
    pub layers: Option<Vec<usize>>,
    pub num_layers: Option<usize>,
    pub model: Option<String>,
    pub task: Option<String>,
    pub sample_id: Option<String>,
    pub group_id: Option<String>,
    pub step: Option<u64>,
    pub reward: Option<f64>,
    pub advantage: Option<f64>,
    pub correct: Option<bool>,
    pub synthetic: bool,
    /// How the tokens encode their text, when the file says (else it is detected).
    pub tokenizer: Option<Tokenizer>,
    /// Every other metadata key, kept verbatim.
    pub extra: BTreeMap<String, String>,
}

/// [`Trace::text`] of tokens and the tokenizer a file names (detected when it names none), for
/// results that come without their trace (a scored run).
pub fn text_of(tokens: &[String], tokenizer: Option<Tokenizer>) -> Vec<String> {
    crate::subword::decode(tokens, tokenizer.unwrap_or_else(|| Tokenizer::detect(tokens)))
}

/// [`Trace::label`] of a sample id and the file's path.
pub fn label_of(sample_id: Option<&str>, path: &Path) -> String {
    sample_id.map(str::to_owned).unwrap_or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default())
}

/// The metadata key listing the tokens whose hiding changed the answer.
pub const ANSWER_CHANGED: &str = "causal_answer_changed";

pub struct Trace {
    pub path: PathBuf,
    pub tokens: Vec<String>,
    pub spans: Spans,
    pub token_ids: Option<Vec<i64>>,
    pub entropy: Option<Vec<f32>>,
    pub logprob: Option<Vec<f32>>,
    /// Per-token effect of hiding that token on the answer, as the per-token probe measured it.
    pub causal_effect: Option<Vec<f32>>,
    pub meta: TraceMeta,
    pub attention: Attention,
}

impl Trace {
    /// Opens and checks a trace file. The attention values themselves are checked when the
    /// pipeline reads them, so a multi-gigabyte dump is read once, not twice.
    pub fn open(path: &Path) -> Result<Trace, TraceError> {
        load::open(path)
    }

    /// Parses a trace held in memory; `path` only names it in errors.
    pub fn from_bytes(bytes: Vec<u8>, path: &Path) -> Result<Trace, TraceError> {
        load::parse(Arc::new(Storage::Owned(bytes)), path)
    }

    /// A trace over attention that is already in memory, read where it lies (no copy): the
    /// checks of a trace file's tensor and spans, with `name` standing for the file in errors.
    /// `response` defaults to everything after the question, as in the file format.
    pub fn from_array(array: ArrayInput, tokens: Vec<String>, question: Span, answer: Span, response: Option<Span>, name: &Path) -> Result<Trace, TraceError> {
        load::from_array(array, tokens, question, answer, response, name).map_err(|e| e.at(name))
    }

    pub fn n(&self) -> usize {
        self.tokens.len()
    }

    /// The tokens whose hiding changed the answer (sorted), where the metadata lists them as
    /// [`ANSWER_CHANGED`] (`probe --per-token --out`, Python's `dump(answer_changed=...)`); an
    /// error where the list is not one of this trace's token indices.
    pub fn answer_changed(&self) -> Result<Option<Vec<usize>>, String> {
        let Some(listed) = self.meta.extra.get(ANSWER_CHANGED) else { return Ok(None) };
        let mut list: Vec<usize> = serde_json::from_str(listed).map_err(|e| format!("{ANSWER_CHANGED}: not a list of token indices ({e})"))?;
        if let Some(&past) = list.iter().find(|&&k| k >= self.n()) {
            return Err(format!("{ANSWER_CHANGED}: token {past} is past the trace's {} tokens", self.n()));
        }
        list.sort_unstable();
        Ok(Some(list))
    }

    /// How the tokens encode their text: the file's `tokenizer`, else detected from the tokens.
    pub fn tokenizer(&self) -> Tokenizer {
        self.meta.tokenizer.unwrap_or_else(|| Tokenizer::detect(&self.tokens))
    }

    /// Each token's text as a reader expects it (subword markers decoded); what the pictures
    /// and the app show. The raw tokens stay in `tokens`.
    pub fn text(&self) -> Vec<String> {
        text_of(&self.tokens, self.meta.tokenizer)
    }

    /// A short name for tables: the sample id when the file has one, else the file stem.
    pub fn label(&self) -> String {
        label_of(self.meta.sample_id.as_deref(), &self.path)
    }

    /// Original layer indices of the slabs in the file.
    pub fn original_layers(&self) -> Vec<usize> {
        self.meta.layers.clone().unwrap_or_else(|| (0..self.attention.layers).collect())
    }
}
