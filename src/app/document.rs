//! The app's data model, kept apart from its views (as rerun does): an open trace, the spans the
//! user traces between, and the analyses of it. Views read this; only the app's update code
//! writes it.

use crate::flow::{FlowResult, Matrix, Plan};
use crate::span::Spans;
use crate::subword::Tokenizer;
use crate::trace::Trace;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One finished run of the pipeline over a document.
pub struct Analysis {
    pub result: FlowResult,
    /// Shared with the analyses re-scored from it (any change but the aggregation's): the steps
    /// after the aggregation only read it.
    pub matrix: Arc<Matrix>,
    /// What was run: the spans and parameters (and the selection, which a re-score reuses).
    pub plan: Plan,
    pub elapsed: Duration,
    /// Each token's knock-out loss on its own (`flow::knockout::loss_per_token`), computed with
    /// the analysis, off the UI thread.
    pub knockout: Vec<f64>,
    /// Unique for the process's lifetime: what the views key their caches by.
    pub generation: u64,
}

impl Analysis {
    /// The analysis with its knock-out losses; `started` is when the work began.
    pub fn new(result: FlowResult, matrix: Matrix, plan: Plan, started: Instant) -> Self {
        let knockout = crate::flow::knockout::loss_per_token(&matrix, &result.reach, result.spans);
        Analysis { result, matrix: Arc::new(matrix), plan, elapsed: started.elapsed(), knockout, generation: next_generation() }
    }

    /// `prev` taken up from a later step (`flow::resume`): its matrix and knock-out losses are
    /// shared, since neither depends on the backbone, role or credit parameters.
    pub fn resumed(prev: &Analysis, result: FlowResult, plan: Plan, started: Instant) -> Self {
        Analysis { result, matrix: prev.matrix.clone(), plan, elapsed: started.elapsed(), knockout: prev.knockout.clone(), generation: next_generation() }
    }

    /// A new solution on `prev`'s matrix (`flow::rescore`: other spans or sink): the matrix is
    /// shared, the knock-out losses (which read the reach) made again.
    pub fn sharing(prev: &Analysis, result: FlowResult, plan: Plan, started: Instant) -> Self {
        let knockout = crate::flow::knockout::loss_per_token(&prev.matrix, &result.reach, result.spans);
        Analysis { result, matrix: prev.matrix.clone(), plan, elapsed: started.elapsed(), knockout, generation: next_generation() }
    }
}

/// Unique for the process's lifetime (views key their caches by it).
fn next_generation() -> u64 {
    static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

pub struct Document {
    pub trace: Arc<Trace>,
    /// The spans traced between: the file's, until the user picks others.
    pub spans: Spans,
    pub analysis: Option<Arc<Analysis>>,
    /// The analysis before the latest re-score, for the diff mode.
    pub previous: Option<Arc<Analysis>>,
    pub error: Option<String>,
    /// The last knock-out of a selection (no model needed); it refers to the current analysis.
    pub knock_out: Option<Result<crate::flow::knockout::KnockOut, String>>,
    /// The last selection hidden from the policy that wrote the trace, the answer regenerated.
    pub what_if: Option<Result<crate::rl::causal::WhatIf, String>>,
    /// The checkpoint of the policy that wrote the trace, or why none is known (looked up once).
    pub checkpoint: Result<std::path::PathBuf, String>,
    /// How the tokens are decoded for display: the file's or the detected one, until the user
    /// picks another.
    pub tokenizer: Tokenizer,
    /// Each token's text under `tokenizer` (what the views show; the raw token is in the trace).
    pub text: Vec<String>,
}

impl Document {
    pub fn new(trace: Trace) -> Self {
        let spans = trace.spans;
        let checkpoint = crate::rl::causal::checkpoint_for(&trace).map_err(|e| crate::rl::said(&e));
        let tokenizer = trace.tokenizer();
        let text = crate::subword::decode(&trace.tokens, tokenizer);
        Document { trace: Arc::new(trace), spans, analysis: None, previous: None, error: None, knock_out: None, what_if: None, checkpoint, tokenizer, text }
    }

    pub fn set_tokenizer(&mut self, tokenizer: Tokenizer) {
        self.tokenizer = tokenizer;
        self.text = crate::subword::decode(&self.trace.tokens, tokenizer);
    }

    pub fn title(&self) -> String {
        self.trace.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| self.trace.label())
    }

    pub fn n(&self) -> usize {
        self.trace.n()
    }

    /// Installs a new analysis, keeping the old one for the diff.
    pub fn set_analysis(&mut self, a: Analysis) {
        self.previous = self.analysis.take();
        self.analysis = Some(Arc::new(a));
        self.error = None;
        self.knock_out = None;
    }

    /// Tokens whose credit differs between the current and the previous analysis.
    pub fn credit_changes(&self) -> Vec<usize> {
        match (&self.analysis, &self.previous) {
            (Some(a), Some(b)) => credit_changed(&a.result, &b.result),
            _ => vec![],
        }
    }
}

/// Tokens whose credit differs between two results of one trace (none if they are of different
/// lengths): the diff marks and the Compare view both count these.
pub fn credit_changed(a: &crate::flow::FlowResult, b: &crate::flow::FlowResult) -> Vec<usize> {
    if a.credit.len() != b.credit.len() {
        return vec![];
    }
    (0..a.credit.len()).filter(|&k| (a.credit[k] - b.credit[k]).abs() > 1e-12).collect()
}

/// What a view colours tokens by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Score {
    Credit,
    Throughput,
    Flow,
    Reach,
    Entropy,
    /// The per-token probe's measurement, when the file has it.
    CausalEffect,
    /// The graph's own prediction of it: the share of path mass lost without the token.
    KnockOut,
}

impl Score {
    pub const ALL: [Score; 7] = [Score::Credit, Score::Throughput, Score::Flow, Score::Reach, Score::Entropy, Score::CausalEffect, Score::KnockOut];

    pub fn name(self) -> &'static str {
        match self {
            Score::Credit => "credit",
            Score::Throughput => "throughput",
            Score::Flow => "flow",
            Score::Reach => "reach",
            Score::Entropy => "entropy",
            Score::CausalEffect => "causal effect",
            Score::KnockOut => "knock-out loss",
        }
    }

    /// Whether the trace has this score (entropy and the causal effect are optional in the
    /// format): asked every frame, so it looks without making the values.
    pub fn available(self, trace: &Trace) -> bool {
        match self {
            Score::Entropy => trace.entropy.is_some(),
            Score::CausalEffect => trace.causal_effect.is_some(),
            _ => true,
        }
    }

    /// Per-token values, or None when the trace lacks them (`available`).
    pub fn values(self, trace: &Trace, a: &Analysis) -> Option<Vec<f64>> {
        let r = &a.result;
        Some(match self {
            Score::Credit => r.credit.clone(),
            Score::Throughput => r.throughput.clone(),
            Score::Flow => r.flow.clone(),
            // Reach spans orders of magnitude: show it on a log scale.
            Score::Reach => r.reach.iter().map(|&h| if h > 0.0 { (1.0 + h * 1e6).ln() } else { 0.0 }).collect(),
            Score::Entropy => trace.entropy.as_ref()?.iter().map(|&e| e as f64).collect(),
            // A hidden token can also make the answer likelier; the colour shows harm only.
            Score::CausalEffect => trace.causal_effect.as_ref()?.iter().map(|&e| (e as f64).max(0.0)).collect(),
            Score::KnockOut => a.knockout.clone(),
        })
    }
}

/// Values scaled to [0, 1] for colouring, against the largest over question and response.
pub fn normalised(values: &[f64], spans: Spans, score: Score) -> Vec<f64> {
    let range = spans.question.start..spans.response.end;
    let (lo, hi) = match score {
        Score::Credit => {
            let hi = values.iter().cloned().fold(1.0, f64::max);
            (1.0f64.min(values.iter().cloned().fold(1.0, f64::min)), hi)
        }
        _ => (0.0, values[range].iter().cloned().fold(0.0, f64::max)),
    };
    values
        .iter()
        .map(|&v| {
            let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.0 };
            if score == Score::Credit { t } else { t.max(0.0).sqrt() }
        })
        .collect()
}
