//! GRPO pieces, each small enough to check by hand: group-normalised advantages, the clipped
//! objective, and the credit modes that turn a score per token into γ with the same
//! top-fraction selection as the flow credit.

use crate::backend::Backend;
use crate::flow::{self, Cancel, FlowResult};
use crate::params::{CreditParams, Params};
use crate::span::Spans;
use crate::synth::Rng;
use crate::trace::{AttentionInput, Dtype, Trace, TraceBuilder, TraceError};
use serde::{Deserialize, Serialize};

/// A_i = (r_i − mean r) / (std r + 1e-6), std with Bessel's correction; a group whose rewards
/// are all equal (or of one) carries no signal: 0.
pub fn group_advantages(rewards: &[f64]) -> Vec<f64> {
    let n = rewards.len();
    if n < 2 {
        return vec![0.0; n];
    }
    let mean = rewards.iter().sum::<f64>() / n as f64;
    let var = rewards.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    if var == 0.0 {
        return vec![0.0; n];
    }
    rewards.iter().map(|r| (r - mean) / (var.sqrt() + 1e-6)).collect()
}

/// The PPO-clipped per-token objective (to maximise) and whether clipping was active.
pub fn clipped_objective(ratio: f64, advantage: f64, eps: f64) -> (f64, bool) {
    let unclipped = ratio * advantage;
    let clipped = ratio.clamp(1.0 - eps, 1.0 + eps) * advantage;
    (unclipped.min(clipped), clipped < unclipped)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CreditMode {
    /// Plain GRPO: γ = 1 everywhere.
    Uniform,
    /// FlowTracer: throughput of the policy's own attention flow.
    Flow,
    /// The same number of tokens, chosen at random.
    Random,
    /// Predictive entropy: the high-entropy "forking" tokens.
    Entropy,
    /// Attention received: mean attention a token gets from later tokens (one hop).
    Attention,
}

impl CreditMode {
    pub fn name(self) -> &'static str {
        match self {
            CreditMode::Uniform => "uniform",
            CreditMode::Flow => "flow",
            CreditMode::Random => "random",
            CreditMode::Entropy => "entropy",
            CreditMode::Attention => "attention",
        }
    }
}

/// One sampled sequence with what the credit modes read.
pub struct Scored<'a> {
    pub tokens: &'a [String],
    pub spans: Spans,
    /// `[L,H,N,N]` attention of the policy on this sequence, row-major.
    pub attention: &'a [f32],
    pub layers: usize,
    pub heads: usize,
    pub entropy: &'a [f32],
}

/// γ per token (1 outside the response) for one sequence.
pub fn credit(mode: CreditMode, s: &Scored, p: &CreditParams, rng: &mut Rng) -> Vec<f64> {
    match mode {
        CreditMode::Uniform => vec![1.0; s.tokens.len()],
        CreditMode::Flow => {
            let params = Params { credit: p.clone(), ..Params::default() };
            flow_credits(&crate::backend::Cpu, std::slice::from_ref(s), &params).pop().unwrap_or_else(|| vec![1.0; s.tokens.len()])
        }
        _ => flow::credit::credit(&baseline_score(mode, s, rng), s.spans, p),
    }
}

/// The per-token score a baseline mode ranks by (uniform and flow have none of their own here:
/// uniform ranks nothing, flow's score is the pipeline's throughput).
pub fn baseline_score(mode: CreditMode, s: &Scored, rng: &mut Rng) -> Vec<f64> {
    let n = s.tokens.len();
    match mode {
        CreditMode::Uniform | CreditMode::Flow => vec![0.0; n],
        CreditMode::Random => (0..n).map(|_| rng.f64()).collect(),
        CreditMode::Entropy => s.entropy.iter().map(|&e| e as f64).collect(),
        CreditMode::Attention => attention_received(s),
    }
}

/// The mean attention a token gets from later tokens, over every layer and head (one hop).
pub fn attention_received(s: &Scored) -> Vec<f64> {
    let n = s.tokens.len();
    let slabs = s.layers * s.heads;
    (0..n)
        .map(|i| {
            let later = n - i - 1;
            if later == 0 {
                return 0.0;
            }
            let mut sum = 0.0;
            for slab in 0..slabs {
                for k in i + 1..n {
                    sum += s.attention[(slab * n + k) * n + i] as f64;
                }
            }
            sum / (slabs * later) as f64
        })
        .collect()
}

/// Flow credit for many sequences at once: the engine runs them as one batch through the backend
/// seam (the GPU when there is one), making only the credit ([`crate::flow::Scope::Credit`]). A
/// sequence the engine refuses (say, no answer stated) gets γ = 1: it is still trained on, just
/// not shaped.
pub fn flow_credits(backend: &dyn Backend, seqs: &[Scored], params: &Params) -> Vec<Vec<f64>> {
    batch(seqs, |present| backend.credit_batch(present, params, &Cancel::default()))
        .into_iter()
        .zip(seqs)
        .map(|(r, s)| r.map_or_else(|| vec![1.0; s.tokens.len()], |r| r.credit))
        .collect()
}

/// The whole flow analysis of each sequence, one batch through the backend; `None` where the
/// engine refused the sequence.
pub fn flow_results(backend: &dyn Backend, seqs: &[Scored], params: &Params) -> Vec<Option<FlowResult>> {
    batch(seqs, |present| backend.run_batch(present, params, &Cancel::default()))
}

/// `run` over the sequences as traces, its results back in the sequences' places.
fn batch(seqs: &[Scored], run: impl FnOnce(&[&Trace]) -> Vec<Result<FlowResult, TraceError>>) -> Vec<Option<FlowResult>> {
    let traces: Vec<Option<Trace>> = seqs.iter().map(rollout_trace).collect();
    let present: Vec<&Trace> = traces.iter().flatten().collect();
    let mut results = run(&present).into_iter();
    traces.iter().map(|t| t.as_ref().and_then(|_| results.next()).and_then(Result::ok)).collect()
}

/// A sequence as a v1 trace (F32 attention), as the export and the app would read it.
pub fn rollout_trace(s: &Scored) -> Option<Trace> {
    let n = s.tokens.len();
    let b = TraceBuilder::new(
        s.tokens.to_vec(),
        s.spans.question,
        s.spans.response,
        s.spans.answer,
        AttentionInput { shape: vec![s.layers, s.heads, n, n], values: s.attention.to_vec(), dtype: Dtype::F32 },
    );
    Trace::from_bytes(b.to_bytes(), std::path::Path::new("rollout")).ok()
}
