//! Step 9, credit: the top `fraction` of response tokens by throughput get γ, everything else 1
//! (the paper's best mapping, a hard top-k). In RL the token advantage is γ_t·A_seq.

use super::roles::{share_count, top_by_score};
use crate::params::CreditParams;
use crate::span::Spans;

pub fn credit(tau: &[f64], spans: Spans, p: &CreditParams) -> Vec<f64> {
    let r = spans.response;
    credit_from(tau.len(), top_by_score(tau, r.range(), share_count(p.fraction, r.len())), spans, p)
}

/// γ from the chosen tokens, whoever chose them (`top_by_score` here, a shader or a kernel on a device).
pub fn credit_from(n: usize, chosen: impl IntoIterator<Item = usize>, spans: Spans, p: &CreditParams) -> Vec<f64> {
    let mut gamma = vec![1.0; n];
    for k in chosen {
        gamma[k] = p.gamma;
    }
    if p.normalize_mean {
        normalize_mean(&mut gamma, spans);
    }
    gamma
}

/// Rescales the response's γ to mean 1 (prompt tokens stay 1). The mean is summed in parts of
/// 1/len, so a γ near f64's largest value does not overflow it (and zero every credit).
pub fn normalize_mean(gamma: &mut [f64], spans: Spans) {
    let r = spans.response.range();
    let len = r.len().max(1) as f64;
    let mean = gamma[r.clone()].iter().map(|g| g / len).sum::<f64>();
    if mean > 0.0 {
        gamma[r].iter_mut().for_each(|g| *g /= mean);
    }
}

/// The token advantage: A_t = γ_t·A_seq, with γ left out for negative advantages unless
/// `apply_to_negative` (γ is a constant here: it is never differentiated).
pub fn token_advantage(gamma: f64, seq_advantage: f64, p: &CreditParams) -> f64 {
    if seq_advantage < 0.0 && !p.apply_to_negative { seq_advantage } else { gamma * seq_advantage }
}
