//! Per-token causal importance on the project's policy: for each reasoning token t of a greedy
//! response, hide t alone from every later query (as `probe` hides a share: −∞ on that key
//! position, the token itself stays), regenerate the answer greedily from the `>` marker, and
//! score the original answer teacher-forced under the same hiding. What a token is worth to the
//! answer is then measured, not inferred, and every credit score can be checked against it.
//!
//! The same `hide_and_regenerate` serves the app's "what if": any selection, any trace whose
//! policy checkpoint is known.

use super::{Error, Result};
use super::model::{Config, Policy};
use super::rollout::{self, Rollout};
use super::task::{self, Phase, Problem, Task};
use super::train::{MAX_NEW, attention_of};
use crate::flow::Cancel;
use crate::span::{Span, Spans};
use crate::synth::Rng;
use crate::trace::{AttentionInput, Dtype, Trace, TraceBuilder};
use candle_core::{D, Device, Tensor};
use std::path::{Path, PathBuf};

/// The longest answer a regeneration may write (every task's answer is a few characters).
const ANSWER_TOKENS: usize = 16;

/// One regeneration with a selection of tokens hidden.
#[derive(Clone, Debug)]
pub struct Regenerated {
    /// The tokens hidden (sorted).
    pub hidden: Vec<usize>,
    /// The prefix up to and including the `>` marker, then what the policy wrote with them hidden.
    pub rollout: Rollout,
    /// The answer it states, if it states one.
    pub answer: Option<String>,
    /// Log-probability of the original answer (its characters and the closing `.`), teacher-forced,
    /// with the same tokens hidden.
    pub answer_logprob: f64,
}

/// One key mask per selection: `masks[s][pos]` hides position `pos` from every query.
pub fn masks(selections: &[Vec<usize>], context: usize) -> Vec<Vec<bool>> {
    selections
        .iter()
        .map(|sel| {
            let mut m = vec![false; context];
            sel.iter().filter(|&&k| k < context).for_each(|&k| m[k] = true);
            m
        })
        .collect()
}

/// For each selection, hides its tokens from the policy, regenerates the answer of `r` from the
/// `>` marker (greedy) and scores `r`'s own answer teacher-forced. `answer` is `r`'s answer span
/// (non-empty, after the marker). All selections run as one batch.
pub fn hide_and_regenerate(policy: &Policy, r: &Rollout, answer: Span, selections: &[Vec<usize>]) -> candle_core::Result<Vec<Regenerated>> {
    if selections.is_empty() {
        return Ok(vec![]);
    }
    if answer.is_empty() || answer.start <= 1 + r.prompt_len || answer.end > r.ids.len() {
        candle_core::bail!("the response states no answer after its marker (answer span {answer})");
    }
    let context = policy.cfg.context;
    let blocked = masks(selections, context);
    let prefix = r.ids[..answer.start].to_vec();
    let mut rng = Rng::new(0); // greedy: never drawn from
    let again = rollout::generate(policy, &vec![prefix; selections.len()], r.prompt_len, 0.0, ANSWER_TOKENS, Some(&blocked), &mut rng)?;
    let logprobs = answer_logprobs(policy, r, answer, &blocked)?;
    Ok(selections
        .iter()
        .zip(again)
        .zip(logprobs)
        .map(|((sel, rollout), answer_logprob)| {
            let mut hidden = sel.clone();
            hidden.sort_unstable();
            hidden.dedup();
            let answer = Task::stated_answer(&rollout.response_text()).map(str::to_string);
            Regenerated { hidden, rollout, answer, answer_logprob }
        })
        .collect())
}

/// Σ log p(original answer token | everything before it) per mask row, in one batched pass.
fn answer_logprobs(policy: &Policy, r: &Rollout, answer: Span, blocked: &[Vec<bool>]) -> candle_core::Result<Vec<f64>> {
    // The answer's characters and the `.` that closes it, when the response has one.
    let end = (answer.end + 1).min(r.ids.len());
    let ids = &r.ids[..end];
    let b = blocked.len();
    let input = Tensor::from_vec(ids.repeat(b), (b, end), &Device::Cpu)?;
    let bias = rollout::hiding_bias(blocked, policy.cfg.context)?;
    let (logits, _) = policy.forward_biased(&input, Some(&bias), false)?;
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?.to_vec3::<f32>()?;
    Ok(logp.iter().map(|row| (answer.start..end).map(|p| row[p - 1][ids[p] as usize] as f64).sum()).collect())
}

/// What hiding one token did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenEffect {
    pub token: usize,
    /// The regenerated answer differs from the original (or states none).
    pub changed: bool,
    /// Right became wrong or wrong became right.
    pub flipped: bool,
    /// log p(original answer) unhidden minus hidden: how much the answer depended on the token.
    pub logprob_drop: f64,
}

/// One probed greedy response: what the credit scores read, and the measured effects.
pub struct TokenProbe {
    pub problem: Problem,
    pub rollout: Rollout,
    pub spans: Spans,
    /// `[L,H,N,N]` attention of the policy on the (unhidden) response.
    pub attention: Vec<f32>,
    pub right: bool,
    /// log p(original answer), nothing hidden.
    pub answer_logprob: f64,
    /// The regeneration with nothing hidden states the original answer (greedy is deterministic,
    /// so anything else is a bug in the hiding).
    pub reproduces: bool,
    /// One per reasoning token: the response before the answer, the `>` marker included.
    pub effects: Vec<TokenEffect>,
}

impl TokenProbe {
    /// The tokens probed: every response token before the answer.
    pub fn probed(&self) -> std::ops::Range<usize> {
        self.spans.response.start..self.spans.answer.start
    }

    /// `causal_effect` of trace format v1: the log-prob drop of each probed token, 0 elsewhere.
    pub fn causal_effect(&self) -> Vec<f32> {
        let mut v = vec![0f32; self.rollout.ids.len()];
        for e in &self.effects {
            v[e.token] = e.logprob_drop as f32;
        }
        v
    }

    /// The probed response as a v1 trace with `causal_effect` beside the attention.
    pub fn to_trace(&self, layers: usize, heads: usize, task: Task, label: &str) -> TraceBuilder {
        let r = &self.rollout;
        let n = r.ids.len();
        let (entropy, logprob) = (r.over_sequence(&r.entropy), r.over_sequence(&r.logprob));
        let changed: Vec<usize> = self.effects.iter().filter(|e| e.changed).map(|e| e.token).collect();
        TraceBuilder::new(
            r.ids.iter().map(|&t| task::token_text(t)).collect(),
            self.spans.question,
            self.spans.response,
            self.spans.answer,
            AttentionInput { shape: vec![layers, heads, n, n], values: self.attention.clone(), dtype: Dtype::F32 },
        )
        .token_ids(r.ids.iter().map(|&t| t as i64).collect())
        .entropy(entropy)
        .logprob(logprob)
        .causal_effect(self.causal_effect())
        .meta("num_layers", layers)
        .meta("task", task.name())
        .meta("sample_id", label)
        .meta("correct", self.right)
        .meta(crate::fidelity::ANSWER_CHANGED, serde_json::to_string(&changed).expect("integers serialise"))
    }
}

/// Refuses a folder for [`write_probes`] that holds anything already: a probe's traces are
/// one set (its problems, its seed), and an earlier probe's left beside them would be read with
/// them. Said before the probe runs, not after its minutes.
pub fn check_probe_folder(dir: &Path) -> Result<()> {
    if dir.is_file() {
        return Err(Error::msg(format!("{}: is a file, not the folder the traces go to", dir.display())));
    }
    match super::held(dir) {
        Some(held) => Err(Error::msg(format!("{}: holds {held}: the probe's traces go into a new or empty folder, so that no earlier file is written over or read with them", dir.display()))),
        None => Ok(()),
    }
}

/// Writes each probe as a trace, `TASK-NNNN.safetensors` (atomically), into `dir`, made if new.
pub fn write_probes(dir: &Path, probes: &[TokenProbe], policy: &Policy, task: Task) -> Result<()> {
    check_probe_folder(dir)?;
    crate::atomic::make_folder(dir).map_err(super::at(dir))?;
    let (layers, heads) = (policy.cfg.layers, policy.cfg.heads);
    for (i, p) in probes.iter().enumerate() {
        let label = format!("{}-{i:04}", task.name());
        let path = dir.join(format!("{label}.safetensors"));
        p.to_trace(layers, heads, task, &label).meta("model", policy.cfg.model_name()).write(&path).map_err(super::at(&path))?;
    }
    Ok(())
}

/// Probes `problems` RL-length problems of `task`: each greedy response that states an answer
/// after at least one reasoning token, every reasoning token hidden alone. `tick(done, of)` after
/// each problem.
pub fn probe_tokens(policy: &Policy, task: Task, problems: usize, seed: u64, cancel: &Cancel, tick: &mut dyn FnMut(usize, usize)) -> Result<Vec<TokenProbe>> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let batch = 32;
    let mut done = 0;
    while done < problems && !cancel.is_cancelled() {
        let probs: Vec<Problem> = (0..batch.min(problems - done)).map(|_| task.problem(&mut rng, Phase::Rl)).collect();
        let prompts: Vec<String> = probs.iter().map(|p| p.prompt.clone()).collect();
        let responses: Vec<Rollout> = rollout::sample_groups(policy, &prompts, 1, 0.0, MAX_NEW, &mut rng)?.into_iter().flatten().collect();
        let attention = attention_of(policy, &responses.iter().collect::<Vec<_>>())?;
        for ((r, p), att) in responses.into_iter().zip(probs).zip(attention) {
            done += 1;
            tick(done, problems);
            if cancel.is_cancelled() {
                break;
            }
            let (question, response, answer) = task::spans(r.prompt_len, r.response());
            let spans = Spans { question, response, answer };
            if answer.is_empty() || answer.start <= response.start + 1 {
                continue;
            }
            let text = r.response_text();
            let before = Task::stated_answer(&text).map(str::to_string);
            let right = Task::verify(&p, &text);
            let tokens: Vec<usize> = (response.start..answer.start).collect();
            let selections: Vec<Vec<usize>> = std::iter::once(vec![]).chain(tokens.iter().map(|&t| vec![t])).collect();
            let regen = hide_and_regenerate(policy, &r, answer, &selections)?;
            let (base, hidden) = regen.split_first().expect("the empty selection comes first");
            let effects = hidden
                .iter()
                .map(|g| TokenEffect {
                    token: g.hidden[0],
                    changed: g.answer != before,
                    flipped: g.answer.as_deref().is_some_and(|a| a == p.answer) != right,
                    logprob_drop: base.answer_logprob - g.answer_logprob,
                })
                .collect();
            out.push(TokenProbe {
                reproduces: base.answer == before,
                answer_logprob: base.answer_logprob,
                problem: p,
                rollout: r,
                spans,
                attention: att,
                right,
                effects,
            });
        }
    }
    Ok(out)
}

/// A trace of the project's policy as the rollout it was, for regenerating from it: its token
/// ids (required) and its prompt length (the question span starts after `<bos>`).
pub fn rollout_of(trace: &Trace) -> Result<Rollout> {
    let ids = trace.token_ids.as_ref().ok_or_else(|| Error::msg("the trace has no token_ids: it cannot be fed back to a policy"))?;
    let vocab = task::vocab_size() as i64;
    if let Some(bad) = ids.iter().find(|&&t| t < 0 || t >= vocab) {
        return Err(Error::msg(format!("token id {bad} is outside the policy's vocabulary of {vocab}")));
    }
    let q = trace.spans.question;
    if q.start != 1 || trace.spans.response.start != q.end {
        return Err(Error::msg(format!("question {q} is not the prompt right after <bos>: not a rollout of the project's policy")));
    }
    Ok(Rollout { ids: ids.iter().map(|&t| t as u32).collect(), prompt_len: q.end - 1, logprob: vec![], entropy: vec![] })
}

/// Where the checkpoint of the policy that wrote `trace` lies: `ckpt/step_N.safetensors` in the
/// run folder (the nearest folder above the trace with a `run.json`), N the trace's `step`.
pub fn checkpoint_for(trace: &Trace) -> Result<PathBuf> {
    let step = trace.meta.step.ok_or_else(|| Error::msg("the trace has no `step` metadata, so no checkpoint is known"))?;
    match trace.meta.model.as_deref() {
        Some(m) if m.starts_with(super::model::MODEL_PREFIX) => {}
        other => return Err(Error::msg(format!("the trace comes from {}, not from the project's policy", other.unwrap_or("an unnamed model")))),
    }
    let run = trace
        .path
        .ancestors()
        .skip(1)
        .take(4)
        .filter(|d| !d.as_os_str().is_empty())
        .find(|d| d.join("run.json").is_file())
        .ok_or_else(|| Error::msg("the trace is not inside a run folder (no run.json above it)"))?;
    let ckpt = run.join(crate::trace::run::CHECKPOINTS).join(format!("step_{step:06}.safetensors"));
    if ckpt.is_file() { Ok(ckpt) } else { Err(Error::msg(format!("the run {} keeps no checkpoint of step {step}", run.display()))) }
}

/// The answer of a trace regenerated with tokens hidden, beside the original.
pub struct WhatIf {
    pub hidden: Vec<usize>,
    pub checkpoint: PathBuf,
    pub before: Option<String>,
    pub after: Option<String>,
    /// log p(original answer), nothing hidden and with the tokens hidden.
    pub logprob_before: f64,
    pub logprob_after: f64,
    /// The regenerated sequence as a trace of its own: the policy's attention on it with the
    /// tokens hidden, so it can be analysed and compared like any other.
    pub trace: TraceBuilder,
}

/// Hides `hidden` from the policy that wrote `trace` (its run's checkpoint of the trace's step),
/// regenerates the answer and scores the original one.
pub fn what_if(trace: &Trace, hidden: &[usize]) -> Result<WhatIf> {
    let checkpoint = checkpoint_for(trace)?;
    let run = checkpoint.parent().and_then(Path::parent).expect("a checkpoint lies in RUN/ckpt/");
    let cfg = std::fs::read(run.join("run.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| serde_json::from_value::<Config>(v["config"]["model"].clone()).ok())
        .unwrap_or_else(Config::small);
    let mut policy = Policy::new(cfg)?;
    policy.load(&checkpoint)?;
    let r = rollout_of(trace)?;
    if let Some(&k) = hidden.iter().find(|&&k| k == 0 || k >= trace.spans.answer.start) {
        return Err(Error::msg(format!("token {k} cannot be hidden: only tokens after <bos> and before the answer can (the answer is what is regenerated)")));
    }
    let regen = hide_and_regenerate(&policy, &r, trace.spans.answer, &[vec![], hidden.to_vec()])?;
    let [base, hid] = &regen[..] else { unreachable!("two selections give two regenerations") };
    let new = &hid.rollout;
    let (question, response, answer) = task::spans(new.prompt_len, new.response());
    let n = new.ids.len();
    let input = Tensor::from_vec(new.ids.clone(), (1, n), &Device::Cpu)?;
    let bias = rollout::hiding_bias(&masks(std::slice::from_ref(&hid.hidden), policy.cfg.context), policy.cfg.context)?;
    let (_, layers) = policy.forward_biased(&input, Some(&bias), true)?;
    let attention: Vec<f32> = layers.iter().map(|l| l.flatten_all().and_then(|l| l.to_vec1::<f32>())).collect::<candle_core::Result<Vec<_>>>()?.concat();
    let mut b = TraceBuilder::new(
        new.ids.iter().map(|&t| task::token_text(t)).collect(),
        question,
        response,
        answer,
        AttentionInput { shape: vec![policy.cfg.layers, policy.cfg.heads, n, n], values: attention, dtype: Dtype::F32 },
    )
    .token_ids(new.ids.iter().map(|&t| t as i64).collect())
    .meta("num_layers", policy.cfg.layers)
    .meta("sample_id", format!("{} with {} hidden", trace.label(), hid.hidden.len()))
    .meta("what_if_hidden", serde_json::to_string(&hid.hidden).expect("integers serialise"));
    for (key, value) in [("model", &trace.meta.model), ("task", &trace.meta.task)] {
        if let Some(v) = value {
            b = b.meta(key, v);
        }
    }
    if let Some(step) = trace.meta.step {
        b = b.meta("step", step);
    }
    let before = Task::stated_answer(&r.response_text()).map(str::to_string);
    Ok(WhatIf { hidden: hid.hidden.clone(), checkpoint, before, after: hid.answer.clone(), logprob_before: base.answer_logprob, logprob_after: hid.answer_logprob, trace: b })
}
