//! Sampling from the policy and scoring sequences under it.

use super::model::{Cache, Policy};
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

    /// A per-response-token vector (`logprob`, `entropy`) laid over every position of the
    /// sequence, 0 before the response: the layout of the trace format's per-token tensors.
    pub fn over_sequence(&self, values: &[f32]) -> Vec<f32> {
        let mut v = vec![0f32; self.ids.len()];
        v[1 + self.prompt_len..].copy_from_slice(values);
        v
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
    let mut groups = sample_groups(policy, &[prompt.to_string()], g, temperature, max_new, rng)?;
    Ok(groups.pop().unwrap_or_default())
}

/// `g` responses to each prompt, in the prompts' order. Prompts of one length are sampled as one
/// batch through the key/value cache.
pub fn sample_groups(policy: &Policy, prompts: &[String], g: usize, temperature: f64, max_new: usize, rng: &mut Rng) -> Result<Vec<Vec<Rollout>>> {
    let encoded: Vec<Vec<u32>> = prompts.iter().map(|p| task::encode(p)).collect();
    let mut lengths: Vec<usize> = encoded.iter().map(|p| p.len()).collect();
    lengths.sort_unstable();
    lengths.dedup();
    let mut out: Vec<Vec<Rollout>> = vec![Vec::new(); prompts.len()];
    for len in lengths {
        let members: Vec<usize> = (0..prompts.len()).filter(|&i| encoded[i].len() == len).collect();
        let prefixes: Vec<Vec<u32>> = members
            .iter()
            .flat_map(|&i| std::iter::repeat_n(std::iter::once(BOS).chain(encoded[i].iter().copied()).collect::<Vec<u32>>(), g))
            .collect();
        let rollouts = generate(policy, &prefixes, len, temperature, max_new, None, rng)?;
        for (&i, chunk) in members.iter().zip(rollouts.chunks(g.max(1))) {
            out[i] = chunk.to_vec();
        }
    }
    Ok(out)
}

/// Continues each prefix (`[bos] prompt …`, all of one length, the prompt being the first
/// `prompt_len` tokens after `bos`) until it states an answer or reaches `max_new` new tokens.
/// `blocked[row][pos]` hides that key position from every later query of the row.
pub fn generate(
    policy: &Policy,
    prefixes: &[Vec<u32>],
    prompt_len: usize,
    temperature: f64,
    max_new: usize,
    blocked: Option<&[Vec<bool>]>,
    rng: &mut Rng,
) -> Result<Vec<Rollout>> {
    let b = prefixes.len();
    let Some(t0) = prefixes.first().map(|p| p.len()) else { return Ok(vec![]) };
    if prefixes.iter().any(|p| p.len() != t0) {
        candle_core::bail!("generate: prefixes of different lengths");
    }
    let context = policy.cfg.context;
    let bias = blocked.map(|rows| hiding_bias(rows, context)).transpose()?;
    let mut seqs: Vec<Rollout> = prefixes.iter().map(|p| Rollout { ids: p.clone(), prompt_len, logprob: vec![], entropy: vec![] }).collect();
    let mut done: Vec<bool> = seqs.iter().map(|s| finished(s.response())).collect();
    let mut cache = Cache::default();
    let mut input = Tensor::from_vec(prefixes.concat(), (b, t0), &Device::Cpu)?;
    let dot = task::encode(".")[0] as usize;
    for _ in 0..max_new.min(context.saturating_sub(t0)) {
        if done.iter().all(|&d| d) {
            break;
        }
        let logits = policy.step(&input, &mut cache, bias.as_ref())?;
        let t = logits.dim(1)?;
        let last = logits.narrow(1, t - 1, 1)?.squeeze(1)?;
        let logp = candle_nn::ops::log_softmax(&last, D::Minus1)?.to_vec2::<f32>()?;
        let mut next_ids = vec![PAD; b];
        for (i, lp) in logp.iter().enumerate() {
            if done[i] {
                continue;
            }
            let next = pick(lp, temperature, rng);
            // Never emit the specials inside a response.
            let next = if next < 3 { dot } else { next };
            let entropy: f32 = -lp.iter().map(|&l| l.exp() * l).sum::<f32>();
            seqs[i].ids.push(next as u32);
            seqs[i].logprob.push(lp[next]);
            seqs[i].entropy.push(entropy);
            next_ids[i] = next as u32;
            done[i] = finished(seqs[i].response());
        }
        input = Tensor::from_vec(next_ids, (b, 1), &Device::Cpu)?;
    }
    Ok(seqs)
}

/// The key bias `[B,1,1,context]` that hides, in row b, every position `rows[b][pos]` marks:
/// −1e9 on its attention score for every query, so softmax gives it nothing.
pub fn hiding_bias(rows: &[Vec<bool>], context: usize) -> Result<Tensor> {
    let v: Vec<f32> = rows.iter().flat_map(|r| (0..context).map(|k| if r.get(k).copied().unwrap_or(false) { -1e9 } else { 0.0 })).collect();
    Tensor::from_vec(v, (rows.len(), 1, 1, context), &Device::Cpu)
}

/// The most likely token at temperature 0, else a draw from the tempered distribution.
fn pick(logp: &[f32], temperature: f64, rng: &mut Rng) -> usize {
    if temperature <= 0.0 {
        return (0..logp.len()).max_by(|&a, &b| logp[a].total_cmp(&logp[b])).unwrap_or(0);
    }
    let w: Vec<f64> = logp.iter().map(|&l| (l as f64 / temperature).exp()).collect();
    let mut u = rng.f64() * w.iter().sum::<f64>();
    for (j, x) in w.iter().enumerate() {
        if u < *x {
            return j;
        }
        u -= x;
    }
    w.len() - 1
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
    logprobs_of(&policy.forward(ids, false)?.0, ids)
}

/// The same from logits `[B,T,V]` a forward pass already produced.
pub fn logprobs_of(logits: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let (b, t) = ids.dims2()?;
    let logp = candle_nn::ops::log_softmax(&logits.narrow(1, 0, t - 1)?, D::Minus1)?;
    let next = ids.narrow(1, 1, t - 1)?.contiguous()?.reshape((b, t - 1, 1))?;
    logp.gather(&next, D::Minus1)?.squeeze(D::Minus1)
}
