//! Sampling from the policy and scoring sequences under it.

use super::model::Policy;
use super::task::{self, BOS, PAD};
use crate::synth::Rng;
use candle_core::{D, Device, Result, Tensor};

/// One sampled response to a prompt.
#[derive(Clone, Debug)]
pub struct Rollout {
    /// `[bos] prompt response` token ids.
    pub ids: Vec<u32>,
    pub prompt_len: usize,
    /// Log-probability and entropy of each response token when it was sampled.
    pub logprob: Vec<f32>,
    pub entropy: Vec<f32>,
}

impl Rollout {
    pub fn response(&self) -> &[u32] {
        &self.ids[1 + self.prompt_len..]
    }

    pub fn response_text(&self) -> String {
        self.response().iter().map(|&t| task::token_text(t)).collect()
    }
}

/// Whether a response is finished: it stated an answer (`>` … `.`).
fn finished(response: &[u32]) -> bool {
    let gt = task::encode(">")[0];
    let dot = task::encode(".")[0];
    response.iter().rposition(|&t| t == gt).is_some_and(|p| response[p + 1..].contains(&dot))
}

/// `g` responses to one prompt, sampled together; temperature 0 means greedy.
pub fn sample(policy: &Policy, prompt: &str, g: usize, temperature: f64, max_new: usize, rng: &mut Rng) -> Result<Vec<Rollout>> {
    let p = task::encode(prompt);
    let mut seqs: Vec<Rollout> = (0..g)
        .map(|_| {
            let mut ids = vec![BOS];
            ids.extend(&p);
            Rollout { ids, prompt_len: p.len(), logprob: vec![], entropy: vec![] }
        })
        .collect();
    let limit = max_new.min(policy.cfg.context.saturating_sub(1 + p.len()));
    for _ in 0..limit {
        let live: Vec<usize> = (0..g).filter(|&i| !finished(seqs[i].response())).collect();
        if live.is_empty() {
            break;
        }
        let t = seqs[live[0]].ids.len();
        let flat: Vec<u32> = live.iter().flat_map(|&i| seqs[i].ids.clone()).collect();
        let ids = Tensor::from_vec(flat, (live.len(), t), &Device::Cpu)?;
        let (logits, _) = policy.forward(&ids, false)?;
        let last = logits.narrow(1, t - 1, 1)?.squeeze(1)?;
        let logp = candle_nn::ops::log_softmax(&last, D::Minus1)?.to_vec2::<f32>()?;
        for (row, &i) in live.iter().enumerate() {
            let lp = &logp[row];
            let entropy: f32 = -lp.iter().map(|&l| l.exp() * l).sum::<f32>();
            let next = if temperature <= 0.0 {
                (0..lp.len()).max_by(|&a, &b| lp[a].total_cmp(&lp[b])).unwrap_or(0)
            } else {
                let w: Vec<f64> = lp.iter().map(|&l| (l as f64 / temperature).exp()).collect();
                let total: f64 = w.iter().sum();
                let mut u = rng.f64() * total;
                let mut pick = w.len() - 1;
                for (j, x) in w.iter().enumerate() {
                    if u < *x {
                        pick = j;
                        break;
                    }
                    u -= x;
                }
                pick
            };
            // Never emit the specials inside a response.
            let next = if (next as u32) < 3 { task::encode(".")[0] as usize } else { next };
            seqs[i].ids.push(next as u32);
            seqs[i].logprob.push(lp[next]);
            seqs[i].entropy.push(entropy);
        }
    }
    Ok(seqs)
}

/// Pads sequences to one length; returns ids `[B,T]` and the response mask `[B,T-1]` aligned with
/// next-token predictions (1 where position t+1 is a response token).
pub fn batch(seqs: &[&[u32]], prompt_lens: &[usize]) -> Result<(Tensor, Vec<f32>, usize)> {
    let t = seqs.iter().map(|s| s.len()).max().unwrap_or(1);
    let mut ids = Vec::with_capacity(seqs.len() * t);
    let mut mask = Vec::with_capacity(seqs.len() * (t - 1));
    for (s, &pl) in seqs.iter().zip(prompt_lens) {
        ids.extend_from_slice(s);
        ids.extend(std::iter::repeat_n(PAD, t - s.len()));
        for pos in 1..t {
            mask.push(if pos > pl && pos < s.len() { 1.0 } else { 0.0 });
        }
    }
    Ok((Tensor::from_vec(ids, (seqs.len(), t), &Device::Cpu)?, mask, t))
}

/// Log-probabilities `[B,T-1]` of each next token under the policy (differentiable).
pub fn token_logprobs(policy: &Policy, ids: &Tensor) -> Result<Tensor> {
    let (b, t) = ids.dims2()?;
    let (logits, _) = policy.forward(ids, false)?;
    let logp = candle_nn::ops::log_softmax(&logits.narrow(1, 0, t - 1)?, D::Minus1)?;
    let next = ids.narrow(1, 1, t - 1)?.contiguous()?.reshape((b, t - 1, 1))?;
    logp.gather(&next, D::Minus1)?.squeeze(D::Minus1)
}
