//! Errors about one trace file. Every message names the file and the problem, because a run holds
//! hundreds of files and "invalid shape" alone sends the user hunting.

use std::fmt;
use std::path::{Path, PathBuf};

/// What was wrong, as a stable category (tests and the export summary key on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    Io,
    /// Not a safetensors file, a truncated one, or a header that contradicts the data.
    Container,
    /// `__metadata__` missing, wrong `format`, unparsable field.
    Metadata,
    Dtype,
    Shape,
    /// N disagrees between tensors and tokens.
    TokenCount,
    Span,
    TooLarge,
    NonFinite,
    Negative,
    NonCausal,
    /// A query row holds more than one unit of attention: not softmax probabilities.
    RowSum,
    /// The parameters ask for something this trace does not have (a head axis, a layer).
    Params,
    Cancelled,
    /// A run folder without a single trace (a wrong path in a CI job, say).
    Empty,
}

impl Problem {
    pub fn name(self) -> &'static str {
        match self {
            Problem::Io => "io",
            Problem::Container => "container",
            Problem::Metadata => "metadata",
            Problem::Dtype => "dtype",
            Problem::Shape => "shape",
            Problem::TokenCount => "token_count",
            Problem::Span => "span",
            Problem::TooLarge => "too_large",
            Problem::NonFinite => "non_finite",
            Problem::Negative => "negative",
            Problem::NonCausal => "non_causal",
            Problem::RowSum => "row_sum",
            Problem::Params => "params",
            Problem::Cancelled => "cancelled",
            Problem::Empty => "empty",
        }
    }

    /// The category a [`Problem::name`] names (a summary or a scored row read back).
    pub fn named(name: &str) -> Option<Problem> {
        use Problem::*;
        [Io, Container, Metadata, Dtype, Shape, TokenCount, Span, TooLarge, NonFinite, Negative, NonCausal, RowSum, Params, Cancelled, Empty].into_iter().find(|p| p.name() == name)
    }
}

#[derive(Clone, Debug)]
pub struct TraceError {
    pub path: PathBuf,
    pub problem: Problem,
    pub message: String,
}

impl TraceError {
    pub fn new(path: &Path, problem: Problem, message: impl Into<String>) -> Self {
        TraceError { path: path.to_path_buf(), problem, message: message.into() }
    }
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for TraceError {}

/// A problem found before the file's path is known to the code that found it.
#[derive(Clone, Debug, PartialEq)]
pub struct DataError {
    pub problem: Problem,
    pub message: String,
}

impl DataError {
    pub fn new(problem: Problem, message: impl Into<String>) -> Self {
        DataError { problem, message: message.into() }
    }

    pub fn at(self, path: &Path) -> TraceError {
        TraceError::new(path, self.problem, self.message)
    }
}
