//! `flowtracer train`: supervised warm start, then GRPO with a credit mode, writing a run folder
//! the app and the export read: `run.json`, `metrics.jsonl`, `ckpt/step_NNNNNN.safetensors`, and
//! traces of a few rollouts (`step_NNNNNN/sample_NNNN.safetensors`, trace format v1). A killed
//! run resumes from its last checkpoint (weights and optimizer state), exactly where it was;
//! metrics past it are dropped, so none is lost or doubled.

use super::{Error, Result, at};
use super::grpo::{self, CreditMode, Scored};
use super::model::{Config, Policy};
use super::optim::Adam;
use super::rollout::{self, Rollout};
use super::task::{self, Phase, Task};
use crate::backend::Backend;
use crate::flow::Cancel;
use crate::params::Params;
use crate::span::Spans;
use crate::synth::Rng;
use crate::trace::{AttentionInput, Dtype, TraceBuilder};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainConfig {
    pub task: Task,
    pub credit_mode: CreditMode,
    /// The flow parameters: which layers and heads the flow mode aggregates, and γ's selection
    /// (`credit`) for every mode.
    pub params: Params,
    pub steps: usize,
    pub seed: u64,
    /// Supervised warm-start steps; `None`: the shipped checkpoint of the task if there is one,
    /// else supervised training until held-out accuracy reaches `warm_target`.
    pub sft_steps: Option<usize>,
    pub warm_target: f64,
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
            params: Params::default(),
            steps,
            seed,
            sft_steps: None,
            warm_target: 0.3,
            sft_batch: 32,
            prompts_per_step: 8,
            group: 8,
            lr: 3e-4,
            sft_lr: 2e-3,
            clip: 0.2,
            passes: 2,
            temperature: 1.0,
            eval_every: 10,
            eval_size: 256,
            checkpoint_every: 10,
            traces_per_checkpoint: 4,
            model: Config::small(),
            init: None,
        }
    }
}

fn ckpt_path(out: &Path, step: usize) -> PathBuf {
    out.join(crate::trace::run::CHECKPOINTS).join(format!("step_{step:06}.safetensors"))
}

/// The weights, then the optimizer's state beside them: a crash between the two leaves weights
/// without state, which resume with fresh moments, never state without weights.
fn checkpoint(policy: &Policy, opt: &Adam, out: &Path, step: usize) -> Result<()> {
    let path = ckpt_path(out, step);
    policy.save(&path)?;
    opt.save(&Adam::path_beside(&path))
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

/// A new run writes `run.json` and `metrics.jsonl` at its folder's top: it starts only in a
/// folder that is new or empty, so a folder of the user's (one that holds a `metrics.jsonl` of
/// another tool, say) is never written over. A folder with checkpoints is a run to resume.
fn refuse_foreign_folder(out: &Path) -> Result<()> {
    match super::held(out) {
        Some(held) if latest_checkpoint(out).is_none() => Err(Error::msg(format!(
            "{}: holds {held} but no run to resume (no {}/step_*.safetensors): a new run starts in a new or empty folder, so that nothing in this one is written over",
            out.display(),
            crate::trace::run::CHECKPOINTS
        ))),
        _ => Ok(()),
    }
}

/// Teacher-forced cross-entropy on the reference solutions: the warm start.
/// `log` gets each step's loss and answers whether to go on.
pub fn sft(policy: &Policy, task: Task, steps: usize, batch: usize, lr: f64, rng: &mut Rng, mut log: impl FnMut(usize, f64) -> bool) -> Result<f64> {
    let mut opt = Adam::new(&policy.varmap, lr)?;
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
        let (ids, mask, t) = rollout::batch(&refs, &pl)?;
        let logp = rollout::token_logprobs(policy, &ids)?;
        let count: f32 = mask.iter().sum();
        let mask = Tensor::from_vec(mask, (batch, t - 1), &Device::Cpu)?;
        let loss = ((logp * mask)?.sum_all()? / (-(count as f64)))?;
        opt.backward_step(&loss)?;
        last = loss.to_scalar::<f32>()? as f64;
        if !log(step, last) {
            break;
        }
    }
    Ok(last)
}

/// Greedy accuracy on the held-out set: the first `size` RL-length problems of a stream no
/// training seed draws from, so runs of every seed and mode are scored on the same problems.
pub fn evaluate(policy: &Policy, task: Task, size: usize) -> Result<f64> {
    let mut rng = Rng::new(0x4845_4c44_4f55_5421);
    let problems: Vec<task::Problem> = (0..size).map(|_| task.problem(&mut rng, Phase::Rl)).collect();
    let prompts: Vec<String> = problems.iter().map(|p| p.prompt.clone()).collect();
    let answers = rollout::sample_groups(policy, &prompts, 1, 0.0, MAX_NEW, &mut rng)?;
    let correct = problems.iter().zip(&answers).filter(|(p, r)| r.first().is_some_and(|r| Task::verify(p, &r.response_text()))).count();
    Ok(correct as f64 / size.max(1) as f64)
}

/// Where a warm start ended: after how many supervised steps, at what held-out accuracy.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct WarmStart {
    pub steps: usize,
    pub accuracy: f64,
}

/// When a warm start stops: held-out accuracy (over `eval_size` problems, measured every
/// `every` steps) first at `target`, or `max_steps`.
#[derive(Clone, Copy, Debug)]
pub struct WarmTarget {
    pub target: f64,
    pub max_steps: usize,
    pub every: usize,
    pub eval_size: usize,
}

/// Supervised training until the target: RL needs a policy that is right sometimes, not always,
/// or every group's rewards are equal and GRPO has no signal. `log(step, loss, accuracy)` sees
/// progress and answers whether to go on.
pub fn warm_start(policy: &Policy, task: Task, until: WarmTarget, rng: &mut Rng, mut log: impl FnMut(usize, f64, Option<f64>) -> bool) -> Result<WarmStart> {
    let WarmTarget { target, max_steps, every, eval_size } = until;
    let mut reached = WarmStart { steps: 0, accuracy: 0.0 };
    let mut failure = None;
    let cfg = TrainConfig::new(task, CreditMode::Uniform, 0, 0);
    sft(policy, task, max_steps, cfg.sft_batch, cfg.sft_lr, rng, |step, loss| {
        if (step + 1) % every.max(1) != 0 && step + 1 != max_steps {
            return log(step + 1, loss, None);
        }
        match evaluate(policy, task, eval_size) {
            Ok(acc) => {
                reached = WarmStart { steps: step + 1, accuracy: acc };
                log(step + 1, loss, Some(acc)) && acc < target
            }
            Err(e) => {
                failure = Some(e);
                false
            }
        }
    })?;
    failure.map_or(Ok(reached), Err)
}

/// The longest response sampled: every task's reference solution fits well inside it.
pub const MAX_NEW: usize = 80;

/// Each sequence's attention `[L,H,n,n]` (row-major, its own length n), from one batched forward
/// pass over the padded sequences.
pub fn attention_of(policy: &Policy, rollouts: &[&Rollout]) -> Result<Vec<Vec<f32>>> {
    let refs: Vec<&[u32]> = rollouts.iter().map(|r| r.ids.as_slice()).collect();
    let pl: Vec<usize> = rollouts.iter().map(|r| r.prompt_len).collect();
    let (ids, _, _) = rollout::batch(&refs, &pl)?;
    let (_, atts) = policy.forward(&ids, true)?;
    split_attention(&atts, rollouts, policy.cfg.heads)
}

/// Cuts each sequence's `[L,H,n,n]` out of a padded batch's per-layer `[B,H,T,T]`: padding sits
/// after every real position, so causal attention never reached it.
fn split_attention(atts: &[Tensor], rollouts: &[&Rollout], heads: usize) -> Result<Vec<Vec<f32>>> {
    let layers: Vec<Vec<f32>> = atts.iter().map(|a| a.flatten_all().and_then(|a| a.to_vec1::<f32>())).collect::<candle_core::Result<_>>()?;
    let t = atts.first().map_or(0, |a| a.dims()[2]);
    Ok(rollouts
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let n = r.ids.len();
            let mut out = Vec::with_capacity(layers.len() * heads * n * n);
            for layer in &layers {
                for h in 0..heads {
                    for row in 0..n {
                        let at = ((i * heads + h) * t + row) * t;
                        out.extend_from_slice(&layer[at..at + n]);
                    }
                }
            }
            out
        })
        .collect())
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

/// What a run reports as it goes.
pub enum Progress<'a> {
    /// Supervised warm start, `step` of at most `max`; accuracy when it was just measured.
    WarmStart { step: usize, max: usize, accuracy: Option<f64> },
    /// The policy RL starts from, and its held-out accuracy.
    Ready { accuracy: f64 },
    Step(&'a StepMetrics),
}

/// The warm start's cap when it has to reach its target accuracy by itself.
pub const WARM_START_MAX_STEPS: usize = 3000;

/// Runs (or resumes) a training run into `out`; `tick` sees its progress. Checkpoints and traces
/// are written every `checkpoint_every` steps and at the last step.
pub fn train(cfg: &TrainConfig, out: &Path, cancel: &Cancel, tick: &mut dyn FnMut(Progress)) -> Result<()> {
    check_params(cfg)?;
    if out.is_file() {
        return Err(Error::msg(format!("{}: is a file, not a run folder", out.display())));
    }
    refuse_foreign_folder(out)?;
    if latest_checkpoint(out).is_some() {
        super::resume::check_settings(out, cfg)?;
    }
    crate::atomic::make_folder(out).map_err(at(out))?;
    let mut policy = Policy::new(cfg.model.clone())?;
    let backend = crate::backend::select(crate::backend::Choice::Auto).map_err(|e| Error::msg(e.to_string()))?;
    let metrics_path = out.join("metrics.jsonl");
    let mut opt = Adam::new(&policy.varmap, cfg.lr)?;
    let start = match latest_checkpoint(out) {
        Some((step, path)) => {
            policy.load(&path)?;
            // Runs from before the optimizer was checkpointed resume with fresh moments.
            let state = Adam::path_beside(&path);
            if state.exists() {
                opt.load(&state)?;
            }
            truncate_metrics(&metrics_path, step)?;
            step
        }
        None => {
            let mut rng = Rng::new(cfg.seed);
            let shipped = super::shipped::checkpoint(cfg.task);
            let warm = match (&cfg.init, cfg.sft_steps, shipped) {
                (Some(p), _, _) => {
                    policy.load(p)?;
                    "init".to_string()
                }
                (None, Some(steps), _) => {
                    sft(&policy, cfg.task, steps, cfg.sft_batch, cfg.sft_lr, &mut rng, |step, _| {
                        tick(Progress::WarmStart { step: step + 1, max: steps, accuracy: None });
                        !cancel.is_cancelled()
                    })?;
                    format!("{steps} supervised steps")
                }
                (None, None, Some(bytes)) => {
                    policy.load_bytes(bytes).map_err(|e| Error::msg(format!("the shipped {} checkpoint: {e}", cfg.task.name())))?;
                    "shipped".to_string()
                }
                (None, None, None) => {
                    let (target, max) = (cfg.warm_target, WARM_START_MAX_STEPS);
                    let until = WarmTarget { target, max_steps: max, every: 100, eval_size: cfg.eval_size };
                    let w = warm_start(&policy, cfg.task, until, &mut rng, |step, _, accuracy| {
                        tick(Progress::WarmStart { step, max, accuracy });
                        !cancel.is_cancelled()
                    })?;
                    format!("{} supervised steps to {:.0}% held-out", w.steps, w.accuracy * 100.0)
                }
            };
            if cancel.is_cancelled() {
                return Ok(());
            }
            let acc = evaluate(&policy, cfg.task, cfg.eval_size)?;
            let info = serde_json::json!({
                "name": out.file_name().map(|n| n.to_string_lossy().into_owned()),
                "model": cfg.model.model_name(),
                "task": cfg.task.name(),
                "credit": cfg.credit_mode.name(),
                "parameters": policy.parameters(),
                "backend": backend.name(),
                "warm_start": warm,
                "warm_start_accuracy": acc,
                "config": cfg,
            });
            crate::atomic::write_atomic(&out.join("run.json"), &serde_json::to_vec_pretty(&info).unwrap())?;
            std::fs::write(&metrics_path, b"")?;
            append_metrics(&metrics_path, &serde_json::json!({"step": 0, "heldout_accuracy": acc}))?;
            policy.save(&ckpt_path(out, 0))?;
            tick(Progress::Ready { accuracy: acc });
            0
        }
    };
    for step in start + 1..=cfg.steps {
        if cancel.is_cancelled() {
            // Stopped by the user: keep the steps done so far, so a resume starts here.
            if step - 1 > start && (step - 1) % cfg.checkpoint_every != 0 {
                checkpoint(&policy, &opt, out, step - 1)?;
            }
            break;
        }
        // Each step draws from its own seed, so a resumed run sees the problems it would have.
        let mut rng = Rng::new(cfg.seed.wrapping_mul(0x9e37_79b9).wrapping_add(step as u64));
        let m = rl_step(&policy, &mut opt, cfg, backend.as_ref(), step, &mut rng, out)?;
        let mut m = m;
        if step % cfg.eval_every == 0 || step == cfg.steps {
            m.heldout_accuracy = Some(evaluate(&policy, cfg.task, cfg.eval_size)?);
        }
        append_metrics(&metrics_path, &serde_json::to_value(&m).unwrap())?;
        if step % cfg.checkpoint_every == 0 || step == cfg.steps {
            checkpoint(&policy, &opt, out, step)?;
        }
        tick(Progress::Step(&m));
    }
    Ok(())
}

/// Parameters that can never apply to the policy would make the engine refuse every rollout, and
/// flow credit would fall back to γ = 1 without a word: refused before the run starts.
fn check_params(cfg: &TrainConfig) -> Result<()> {
    cfg.params.validate().map_err(Error::msg)?;
    let a = &cfg.params.aggregate;
    if let Some([s, e]) = a.layers.filter(|&[s, _]| s >= cfg.model.layers) {
        return Err(Error::msg(format!("aggregate.layers [{s}, {e}) holds none of the policy's {} layers (0–{})", cfg.model.layers, cfg.model.layers - 1)));
    }
    if let Some(h) = a.heads.as_ref().and_then(|hs| hs.iter().find(|&&h| h >= cfg.model.heads)) {
        return Err(Error::msg(format!("aggregate.heads names head {h} but the policy has {} heads", cfg.model.heads)));
    }
    Ok(())
}

/// One GRPO step: sample groups, score them and shape their token advantages with credit,
/// update the policy, then report.
fn rl_step(policy: &Policy, opt: &mut Adam, cfg: &TrainConfig, backend: &dyn Backend, step: usize, rng: &mut Rng, out: &Path) -> Result<StepMetrics> {
    let t0 = Instant::now();
    let batch = sample(policy, cfg, rng)?;
    // Checkpoint steps write traces, which carry the attention whatever the credit mode.
    let writes_traces = step.is_multiple_of(cfg.checkpoint_every) || step == cfg.steps;
    let credited = credit(policy, cfg, backend, batch, writes_traces, rng)?;
    let update = update(policy, opt, cfg, &credited)?;
    if writes_traces {
        write_traces(out, step, cfg, &credited.samples)?;
    }
    Ok(metrics(step, cfg, &credited, &update, t0.elapsed()))
}

/// A step's groups: each problem's responses with their rewards and group advantages, padded
/// into one batch.
struct Batch {
    scored: Vec<(Rollout, f64, f64)>,
    ids: Tensor,
    mask: Vec<f32>,
    /// The padded length.
    t: usize,
    zero_variance_groups: usize,
}

fn sample(policy: &Policy, cfg: &TrainConfig, rng: &mut Rng) -> Result<Batch> {
    let problems: Vec<task::Problem> = (0..cfg.prompts_per_step).map(|_| cfg.task.problem(rng, Phase::Rl)).collect();
    let prompts: Vec<String> = problems.iter().map(|p| p.prompt.clone()).collect();
    let groups = rollout::sample_groups(policy, &prompts, cfg.group, cfg.temperature, MAX_NEW, rng)?;
    let mut zero_variance_groups = 0;
    let mut scored: Vec<(Rollout, f64, f64)> = Vec::new();
    for (p, group) in problems.iter().zip(groups) {
        let rewards: Vec<f64> = group.iter().map(|r| Task::verify(p, &r.response_text()) as u8 as f64).collect();
        let adv = grpo::group_advantages(&rewards);
        zero_variance_groups += adv.iter().all(|&a| a == 0.0) as usize;
        scored.extend(group.into_iter().zip(rewards).zip(adv).map(|((r, w), a)| (r, w, a)));
    }
    let refs: Vec<&[u32]> = scored.iter().map(|s| s.0.ids.as_slice()).collect();
    let pl: Vec<usize> = scored.iter().map(|s| s.0.prompt_len).collect();
    let (ids, mask, t) = rollout::batch(&refs, &pl)?;
    Ok(Batch { scored, ids, mask, t, zero_variance_groups })
}

/// The batch with every sample's credit γ, and the first gradient pass's logits.
struct Credited {
    batch_ids: Tensor,
    mask: Vec<f32>,
    t: usize,
    zero_variance_groups: usize,
    samples: Vec<Sample>,
    first_logits: Tensor,
    trace_time: std::time::Duration,
}

/// The first gradient pass's forward also yields the policy's attention on its own rollouts, so
/// tracing needs no extra pass: its cost is reading the attention out plus the credit. Only the
/// modes that read attention keep it, and steps that write traces.
fn credit(policy: &Policy, cfg: &TrainConfig, backend: &dyn Backend, batch: Batch, writes_traces: bool, rng: &mut Rng) -> Result<Credited> {
    let Batch { scored, ids, mask, t, zero_variance_groups } = batch;
    let wants_attention = matches!(cfg.credit_mode, CreditMode::Flow | CreditMode::Attention) || writes_traces;
    let (first_logits, atts) = policy.forward(&ids, wants_attention)?;
    let t_trace = Instant::now();
    let attention = if wants_attention {
        split_attention(&atts, &scored.iter().map(|s| &s.0).collect::<Vec<_>>(), cfg.model.heads)?
    } else {
        vec![Vec::new(); scored.len()]
    };
    drop(atts);
    let mut samples: Vec<Sample> = scored
        .into_iter()
        .zip(attention)
        .map(|((rollout, reward, advantage), attention)| {
            let (q, resp, a) = task::spans(rollout.prompt_len, rollout.response());
            let tokens = rollout.ids.iter().map(|&t| task::token_text(t)).collect();
            Sample { spans: Spans { question: q, response: resp, answer: a }, tokens, attention, rollout, reward, advantage, gamma: Vec::new() }
        })
        .collect();
    let entropies: Vec<Vec<f32>> = samples.iter().map(|s| s.rollout.over_sequence(&s.rollout.entropy)).collect();
    let views: Vec<Scored> = samples
        .iter()
        .zip(&entropies)
        .map(|(s, e)| Scored { tokens: &s.tokens, spans: s.spans, attention: &s.attention, layers: cfg.model.layers, heads: cfg.model.heads, entropy: e })
        .collect();
    let gammas: Vec<Vec<f64>> = match cfg.credit_mode {
        CreditMode::Flow => grpo::flow_credits(backend, &views, &cfg.params),
        mode => views.iter().map(|v| grpo::credit(mode, v, &cfg.params.credit, rng)).collect(),
    };
    drop(views);
    for (s, g) in samples.iter_mut().zip(gammas) {
        s.gamma = g;
    }
    Ok(Credited { batch_ids: ids, mask, t, zero_variance_groups, samples, first_logits, trace_time: t_trace.elapsed() })
}

/// What the policy update did.
struct Update {
    loss: f64,
    clip_fraction: f64,
}

/// `cfg.passes` clipped-objective passes on token advantages A_t = γ_t·A (γ left out for
/// negative A unless `apply_to_negative`); the first reuses the credit pass's logits.
fn update(policy: &Policy, opt: &mut Adam, cfg: &TrainConfig, c: &Credited) -> Result<Update> {
    let (b, t, mask) = (c.samples.len(), c.t, &c.mask);
    let mut adv = vec![0f32; b * (t - 1)];
    let mut old = vec![0f32; b * (t - 1)];
    for (i, s) in c.samples.iter().enumerate() {
        let r0 = 1 + s.rollout.prompt_len;
        for (&lp, pos) in s.rollout.logprob.iter().zip(r0..) {
            let a = crate::flow::credit::token_advantage(s.gamma[pos], s.advantage, &cfg.params.credit);
            adv[i * (t - 1) + pos - 1] = a as f32;
            old[i * (t - 1) + pos - 1] = lp;
        }
    }
    let count: f32 = mask.iter().sum::<f32>().max(1.0);
    let adv_t = Tensor::from_vec(adv.clone(), (b, t - 1), &Device::Cpu)?;
    let old_t = Tensor::from_vec(old, (b, t - 1), &Device::Cpu)?;
    let mask_t = Tensor::from_vec(mask.clone(), (b, t - 1), &Device::Cpu)?;
    let (mut loss_value, mut clipped, mut counted) = (0.0, 0usize, 0usize);
    for pass in 0..cfg.passes.max(1) {
        let logp = if pass == 0 { rollout::logprobs_of(&c.first_logits, &c.batch_ids) } else { rollout::token_logprobs(policy, &c.batch_ids) }?;
        let ratio = (&logp - &old_t)?.clamp(-20f32, 20f32)?.exp()?;
        let unclipped = (&ratio * &adv_t)?;
        let clipped_t = (ratio.clamp(1.0 - cfg.clip as f32, 1.0 + cfg.clip as f32)? * &adv_t)?;
        let objective = unclipped.minimum(&clipped_t)?;
        let loss = ((objective * &mask_t)?.sum_all()? / -(count as f64))?;
        // Clip statistics from the values this pass used.
        let r = ratio.flatten_all()?.to_vec1::<f32>()?;
        for (k, &m) in mask.iter().enumerate() {
            if m > 0.0 {
                counted += 1;
                clipped += grpo::clipped_objective(r[k] as f64, adv[k] as f64, cfg.clip).1 as usize;
            }
        }
        opt.backward_step(&loss)?;
        loss_value = loss.to_scalar::<f32>()? as f64;
    }
    Ok(Update { loss: loss_value, clip_fraction: clipped as f64 / counted.max(1) as f64 })
}

fn metrics(step: usize, cfg: &TrainConfig, c: &Credited, u: &Update, elapsed: std::time::Duration) -> StepMetrics {
    let samples = &c.samples;
    let resp_gamma: Vec<f64> = samples.iter().flat_map(|s| s.spans.response.range().map(|k| s.gamma[k])).collect();
    let n_resp = resp_gamma.len().max(1) as f64;
    let entropy: f64 = samples.iter().flat_map(|s| s.rollout.entropy.iter().map(|&e| e as f64)).sum::<f64>()
        / samples.iter().map(|s| s.rollout.entropy.len()).sum::<usize>().max(1) as f64;
    StepMetrics {
        step,
        reward: samples.iter().map(|s| s.reward).sum::<f64>() / samples.len().max(1) as f64,
        heldout_accuracy: None,
        loss: u.loss,
        clip_fraction: u.clip_fraction,
        entropy,
        credit_share: resp_gamma.iter().filter(|&&g| g > 1.0).count() as f64 / n_resp,
        credit_mean: resp_gamma.iter().sum::<f64>() / n_resp,
        zero_variance_groups: c.zero_variance_groups as f64 / cfg.prompts_per_step.max(1) as f64,
        trace_ms: c.trace_time.as_secs_f64() * 1e3,
        other_ms: (elapsed - c.trace_time).as_secs_f64() * 1e3,
    }
}

/// A few rollouts of this step in trace format v1: correct and incorrect ones, with reward and
/// advantage in the metadata.
fn write_traces(out: &Path, step: usize, cfg: &TrainConfig, samples: &[Sample]) -> Result<()> {
    let mut picked: Vec<&Sample> = samples.iter().filter(|s| s.reward > 0.0).take(cfg.traces_per_checkpoint / 2).collect();
    picked.extend(samples.iter().filter(|s| s.reward == 0.0).take(cfg.traces_per_checkpoint - picked.len()));
    for (i, s) in picked.iter().enumerate() {
        let n = s.tokens.len();
        let heads = cfg.model.heads;
        let layers = s.attention.len() / (heads * n * n);
        let (logprob, entropy) = (s.rollout.over_sequence(&s.rollout.logprob), s.rollout.over_sequence(&s.rollout.entropy));
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
        .meta("model", cfg.model.model_name())
        .meta("task", cfg.task.name())
        .meta("sample_id", format!("step{step}-{i}"))
        .meta("step", step)
        .meta("reward", s.reward)
        .meta("advantage", s.advantage)
        .meta("correct", s.reward > 0.0);
        let path = out.join(format!("step_{step:06}")).join(format!("sample_{i:04}.safetensors"));
        b.write(&path).map_err(at(&path))?;
    }
    Ok(())
}

fn append_metrics(path: &Path, v: &serde_json::Value) -> Result<()> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(at(path))?;
    writeln!(f, "{v}").map_err(at(path))?;
    f.sync_data().map_err(at(path))
}

/// Keeps the metrics of steps up to `step` (the checkpoint resumed from), atomically.
fn truncate_metrics(path: &Path, step: usize) -> Result<()> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let kept: String = text
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v["step"].as_u64()).is_some_and(|s| s as usize <= step))
        .map(|l| format!("{l}\n"))
        .collect();
    crate::atomic::write_atomic(path, kept.as_bytes()).map_err(at(path))
}
