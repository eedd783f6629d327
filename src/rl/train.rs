//! `flowtracer train`: supervised warm start, then GRPO with a credit mode, writing a run folder
//! the app and the export read: `run.json`, `metrics.jsonl`, `ckpt/step_NNNNNN.safetensors`, and
//! traces of a few rollouts (`step_NNNNNN/sample_NNNN.safetensors`, trace format v1). A killed
//! run resumes from its last checkpoint; metrics past it are dropped, so none is lost or doubled.

use super::grpo::{self, CreditMode, Scored};
use super::model::{Config, Policy};
use super::rollout::{self, Rollout};
use super::task::{self, Phase, Task};
use crate::flow::Cancel;
use crate::params::CreditParams;
use crate::span::Spans;
use crate::synth::Rng;
use crate::trace::{AttentionInput, Dtype, TraceBuilder};
use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainConfig {
    pub task: Task,
    pub credit_mode: CreditMode,
    pub credit: CreditParams,
    pub steps: usize,
    pub seed: u64,
    pub sft_steps: usize,
    pub sft_batch: usize,
    pub prompts_per_step: usize,
    pub group: usize,
    pub lr: f64,
    pub sft_lr: f64,
    pub clip: f64,
    /// Gradient passes over each batch of rollouts (μ); clipping matters from the second.
    pub passes: usize,
    pub temperature: f64,
    pub eval_every: usize,
    pub eval_size: usize,
    pub checkpoint_every: usize,
    pub traces_per_checkpoint: usize,
    pub model: Config,
    /// Start from these weights instead of a supervised warm start.
    pub init: Option<PathBuf>,
}

impl TrainConfig {
    pub fn new(task: Task, credit_mode: CreditMode, steps: usize, seed: u64) -> Self {
        TrainConfig {
            task,
            credit_mode,
            credit: CreditParams::default(),
            steps,
            seed,
            sft_steps: 1000,
            sft_batch: 32,
            prompts_per_step: 8,
            group: 8,
            lr: 3e-4,
            sft_lr: 2e-3,
            clip: 0.2,
            passes: 2,
            temperature: 1.0,
            eval_every: 10,
            eval_size: 64,
            checkpoint_every: 10,
            traces_per_checkpoint: 4,
            model: Config::small(),
            init: None,
        }
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn ckpt_path(out: &Path, step: usize) -> PathBuf {
    out.join(crate::trace::run::CHECKPOINTS).join(format!("step_{step:06}.safetensors"))
}

/// The newest checkpoint in a run folder, if any.
pub fn latest_checkpoint(out: &Path) -> Option<(usize, PathBuf)> {
    std::fs::read_dir(out.join(crate::trace::run::CHECKPOINTS))
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("step_")?.strip_suffix(".safetensors")?.parse().ok()?;
            Some((step, e.path()))
        })
        .max_by_key(|(s, _)| *s)
}

/// Teacher-forced cross-entropy on the reference solutions: the warm start.
pub fn sft(policy: &Policy, task: Task, steps: usize, batch: usize, lr: f64, rng: &mut Rng, mut log: impl FnMut(usize, f64)) -> Result<f64, String> {
    let mut opt = AdamW::new(policy.varmap.all_vars(), ParamsAdamW { lr, weight_decay: 0.0, ..Default::default() }).map_err(err)?;
    let mut last = f64::NAN;
    for step in 0..steps {
        let probs: Vec<task::Problem> = (0..batch).map(|_| task.problem(rng, Phase::Sft)).collect();
        let seqs: Vec<Vec<u32>> = probs
            .iter()
            .map(|p| {
                let mut ids = vec![task::BOS];
                ids.extend(task::encode(&p.prompt));
                ids.extend(task::encode(&p.solution));
                ids
            })
            .collect();
        let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
        let pl: Vec<usize> = probs.iter().map(|p| task::encode(&p.prompt).len()).collect();
        let (ids, mask, t) = rollout::batch(&refs, &pl).map_err(err)?;
        let logp = rollout::token_logprobs(policy, &ids).map_err(err)?;
        let count: f32 = mask.iter().sum();
        let mask = Tensor::from_vec(mask, (batch, t - 1), &Device::Cpu).map_err(err)?;
        let loss = ((logp * mask).map_err(err)?.sum_all().map_err(err)? / (-(count as f64))).map_err(err)?;
        opt.backward_step(&loss).map_err(err)?;
        last = loss.to_scalar::<f32>().map_err(err)? as f64;
        log(step, last);
    }
    Ok(last)
}

/// Greedy accuracy on a fixed held-out set of RL-length problems.
pub fn evaluate(policy: &Policy, task: Task, size: usize, seed: u64) -> Result<f64, String> {
    let mut rng = Rng::new(seed ^ 0x4845_4c44_4f55_5421);
    let mut correct = 0;
    for _ in 0..size {
        let p = task.problem(&mut rng, Phase::Rl);
        let r = rollout::sample(policy, &p.prompt, 1, 0.0, 80, &mut rng).map_err(err)?;
        correct += Task::verify(&p, &r[0].response_text()) as usize;
    }
    Ok(correct as f64 / size.max(1) as f64)
}

/// Everything one RL step did, one line of `metrics.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepMetrics {
    pub step: usize,
    pub reward: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heldout_accuracy: Option<f64>,
    pub loss: f64,
    pub clip_fraction: f64,
    pub entropy: f64,
    /// Share of response tokens with γ > 1, and the mean γ over response tokens.
    pub credit_share: f64,
    pub credit_mean: f64,
    pub zero_variance_groups: f64,
    pub trace_ms: f64,
    pub other_ms: f64,
}

struct Sample {
    rollout: Rollout,
    reward: f64,
    advantage: f64,
    gamma: Vec<f64>,
    spans: Spans,
    tokens: Vec<String>,
    attention: Vec<f32>,
}

/// Runs (or resumes) a training run into `out`. `tick` gets each step's metrics.
pub fn train(cfg: &TrainConfig, out: &Path, cancel: &Cancel, tick: &mut dyn FnMut(&StepMetrics)) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut policy = Policy::new(cfg.model.clone()).map_err(err)?;
    let metrics_path = out.join("metrics.jsonl");
    let start = match latest_checkpoint(out) {
        Some((step, path)) => {
            policy.load(&path)?;
            truncate_metrics(&metrics_path, step)?;
            step
        }
        None => {
            let mut rng = Rng::new(cfg.seed);
            match &cfg.init {
                Some(p) => policy.load(p)?,
                None => {
                    sft(&policy, cfg.task, cfg.sft_steps, cfg.sft_batch, cfg.sft_lr, &mut rng, |_, _| {})?;
                }
            }
            let acc = evaluate(&policy, cfg.task, cfg.eval_size, cfg.seed)?;
            let info = serde_json::json!({
                "name": out.file_name().map(|n| n.to_string_lossy().into_owned()),
                "model": format!("flowtracer-policy-{}x{}", cfg.model.layers, cfg.model.d),
                "task": cfg.task.name(),
                "credit": cfg.credit_mode.name(),
                "parameters": policy.parameters(),
                "warm_start_accuracy": acc,
                "config": cfg,
            });
            crate::atomic::write_atomic(&out.join("run.json"), &serde_json::to_vec_pretty(&info).unwrap()).map_err(err)?;
            std::fs::write(&metrics_path, b"").map_err(err)?;
            append_metrics(&metrics_path, &serde_json::json!({"step": 0, "heldout_accuracy": acc}))?;
            policy.save(&ckpt_path(out, 0))?;
            0
        }
    };
    let mut opt = AdamW::new(policy.varmap.all_vars(), ParamsAdamW { lr: cfg.lr, weight_decay: 0.0, ..Default::default() }).map_err(err)?;
    for step in start + 1..=cfg.steps {
        if cancel.is_cancelled() {
            break;
        }
        // Each step draws from its own seed, so a resumed run sees the problems it would have.
        let mut rng = Rng::new(cfg.seed.wrapping_mul(0x9e37_79b9).wrapping_add(step as u64));
        let m = rl_step(&policy, &mut opt, cfg, step, &mut rng, out)?;
        let mut m = m;
        if step % cfg.eval_every == 0 || step == cfg.steps {
            m.heldout_accuracy = Some(evaluate(&policy, cfg.task, cfg.eval_size, cfg.seed)?);
        }
        append_metrics(&metrics_path, &serde_json::to_value(&m).unwrap())?;
        if step % cfg.checkpoint_every == 0 || step == cfg.steps {
            policy.save(&ckpt_path(out, step))?;
        }
        tick(&m);
    }
    Ok(())
}

fn rl_step(policy: &Policy, opt: &mut AdamW, cfg: &TrainConfig, step: usize, rng: &mut Rng, out: &Path) -> Result<StepMetrics, String> {
    let t0 = Instant::now();
    let mut trace_time = std::time::Duration::ZERO;
    let mut samples: Vec<Sample> = Vec::new();
    let mut zero_var = 0;
    for _ in 0..cfg.prompts_per_step {
        let p = cfg.task.problem(rng, Phase::Rl);
        let group = rollout::sample(policy, &p.prompt, cfg.group, cfg.temperature, 80, rng).map_err(err)?;
        let rewards: Vec<f64> = group.iter().map(|r| Task::verify(&p, &r.response_text()) as u8 as f64).collect();
        let adv = grpo::group_advantages(&rewards);
        zero_var += adv.iter().all(|&a| a == 0.0) as usize;
        for ((r, reward), advantage) in group.into_iter().zip(rewards).zip(adv) {
            let (q, resp, a) = task::spans(r.prompt_len, r.response());
            let spans = Spans { question: q, response: resp, answer: a };
            let tokens: Vec<String> = r.ids.iter().map(|&t| task::token_text(t)).collect();
            let n = r.ids.len();
            // The policy's own attention on its rollout, for tracing and the attention baseline.
            let ids = Tensor::from_vec(r.ids.clone(), (1, n), &Device::Cpu).map_err(err)?;
            let (_, atts) = policy.forward(&ids, true).map_err(err)?;
            let mut attention = Vec::with_capacity(atts.len() * cfg.model.heads * n * n);
            for a in &atts {
                attention.extend(a.flatten_all().map_err(err)?.to_vec1::<f32>().map_err(err)?);
            }
            let mut entropy = vec![0f32; n];
            entropy[1 + r.prompt_len..].copy_from_slice(&r.entropy);
            let t = Instant::now();
            let scored = Scored { tokens: &tokens, spans, attention: &attention, layers: atts.len(), heads: cfg.model.heads, entropy: &entropy };
            let gamma = grpo::credit(cfg.credit_mode, &scored, &cfg.credit, rng);
            trace_time += t.elapsed();
            samples.push(Sample { rollout: r, reward, advantage, gamma, spans, tokens, attention });
        }
    }
    // Token advantages A_t = γ_t·A (γ left out for negative A unless apply_to_negative).
    let refs: Vec<&[u32]> = samples.iter().map(|s| s.rollout.ids.as_slice()).collect();
    let pl: Vec<usize> = samples.iter().map(|s| s.rollout.prompt_len).collect();
    let (ids, mask, t) = rollout::batch(&refs, &pl).map_err(err)?;
    let b = samples.len();
    let mut adv = vec![0f32; b * (t - 1)];
    let mut old = vec![0f32; b * (t - 1)];
    for (i, s) in samples.iter().enumerate() {
        let r0 = 1 + s.rollout.prompt_len;
        for (&lp, pos) in s.rollout.logprob.iter().zip(r0..) {
            let a = crate::flow::credit::token_advantage(s.gamma[pos], s.advantage, &cfg.credit);
            adv[i * (t - 1) + pos - 1] = a as f32;
            old[i * (t - 1) + pos - 1] = lp;
        }
    }
    let count: f32 = mask.iter().sum::<f32>().max(1.0);
    let adv_t = Tensor::from_vec(adv.clone(), (b, t - 1), &Device::Cpu).map_err(err)?;
    let old_t = Tensor::from_vec(old.clone(), (b, t - 1), &Device::Cpu).map_err(err)?;
    let mask_t = Tensor::from_vec(mask.clone(), (b, t - 1), &Device::Cpu).map_err(err)?;
    let (mut loss_value, mut clipped, mut counted) = (0.0, 0usize, 0usize);
    for _ in 0..cfg.passes.max(1) {
        let logp = rollout::token_logprobs(policy, &ids).map_err(err)?;
        let ratio = (&logp - &old_t).map_err(err)?.clamp(-20f32, 20f32).map_err(err)?.exp().map_err(err)?;
        let unclipped = (&ratio * &adv_t).map_err(err)?;
        let clipped_t = (ratio.clamp(1.0 - cfg.clip as f32, 1.0 + cfg.clip as f32).map_err(err)? * &adv_t).map_err(err)?;
        let objective = unclipped.minimum(&clipped_t).map_err(err)?;
        let loss = ((objective * &mask_t).map_err(err)?.sum_all().map_err(err)? / -(count as f64)).map_err(err)?;
        // Clip statistics from the values this pass used.
        let r = ratio.flatten_all().map_err(err)?.to_vec1::<f32>().map_err(err)?;
        for (k, &m) in mask.iter().enumerate() {
            if m > 0.0 {
                counted += 1;
                clipped += grpo::clipped_objective(r[k] as f64, adv[k] as f64, cfg.clip).1 as usize;
            }
        }
        opt.backward_step(&loss).map_err(err)?;
        loss_value = loss.to_scalar::<f32>().map_err(err)? as f64;
    }
    if step % cfg.checkpoint_every == 0 {
        write_traces(out, step, cfg, &samples)?;
    }
    let resp_tokens: Vec<f64> = samples.iter().flat_map(|s| s.spans.response.range().map(|k| s.gamma[k]).collect::<Vec<_>>()).collect();
    let n_resp = resp_tokens.len().max(1) as f64;
    let entropy: f64 = samples.iter().flat_map(|s| s.rollout.entropy.iter().map(|&e| e as f64)).sum::<f64>()
        / samples.iter().map(|s| s.rollout.entropy.len()).sum::<usize>().max(1) as f64;
    Ok(StepMetrics {
        step,
        reward: samples.iter().map(|s| s.reward).sum::<f64>() / b.max(1) as f64,
        heldout_accuracy: None,
        loss: loss_value,
        clip_fraction: clipped as f64 / counted.max(1) as f64,
        entropy,
        credit_share: resp_tokens.iter().filter(|&&g| g > 1.0).count() as f64 / n_resp,
        credit_mean: resp_tokens.iter().sum::<f64>() / n_resp,
        zero_variance_groups: zero_var as f64 / cfg.prompts_per_step.max(1) as f64,
        trace_ms: trace_time.as_secs_f64() * 1e3,
        other_ms: (t0.elapsed() - trace_time).as_secs_f64() * 1e3,
    })
}

/// A few rollouts of this step in trace format v1: correct and incorrect ones, with reward and
/// advantage in the metadata.
fn write_traces(out: &Path, step: usize, cfg: &TrainConfig, samples: &[Sample]) -> Result<(), String> {
    let mut picked: Vec<&Sample> = samples.iter().filter(|s| s.reward > 0.0).take(cfg.traces_per_checkpoint / 2).collect();
    picked.extend(samples.iter().filter(|s| s.reward == 0.0).take(cfg.traces_per_checkpoint - picked.len()));
    for (i, s) in picked.iter().enumerate() {
        let n = s.tokens.len();
        let heads = cfg.model.heads;
        let layers = s.attention.len() / (heads * n * n);
        let mut logprob = vec![0f32; n];
        logprob[1 + s.rollout.prompt_len..].copy_from_slice(&s.rollout.logprob);
        let mut entropy = vec![0f32; n];
        entropy[1 + s.rollout.prompt_len..].copy_from_slice(&s.rollout.entropy);
        let b = TraceBuilder::new(
            s.tokens.clone(),
            s.spans.question,
            s.spans.response,
            s.spans.answer,
            AttentionInput { shape: vec![layers, heads, n, n], values: s.attention.clone(), dtype: Dtype::F16 },
        )
        .token_ids(s.rollout.ids.iter().map(|&t| t as i64).collect())
        .entropy(entropy)
        .logprob(logprob)
        .meta("num_layers", layers)
        .meta("model", format!("flowtracer-policy-{}x{}", layers, cfg.model.d))
        .meta("task", cfg.task.name())
        .meta("sample_id", format!("step{step}-{i}"))
        .meta("step", step)
        .meta("reward", s.reward)
        .meta("advantage", s.advantage)
        .meta("correct", s.reward > 0.0);
        let path = out.join(format!("step_{step:06}")).join(format!("sample_{i:04}.safetensors"));
        b.write(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn append_metrics(path: &Path, v: &serde_json::Value) -> Result<(), String> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(f, "{v}").map_err(|e| format!("{}: {e}", path.display()))?;
    f.sync_data().map_err(|e| format!("{}: {e}", path.display()))
}

/// Keeps the metrics of steps up to `step` (the checkpoint resumed from), atomically.
fn truncate_metrics(path: &Path, step: usize) -> Result<(), String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let kept: String = text
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v["step"].as_u64()).is_some_and(|s| s as usize <= step))
        .map(|l| format!("{l}\n"))
        .collect();
    crate::atomic::write_atomic(path, kept.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}
