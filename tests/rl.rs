//! The RL loop on tiny configurations, in seconds: warm start, gradients, GRPO maths, credit
//! modes, and a resumed run.

mod common;
use candle_core::{Device, Tensor};
use flowtracer::rl::grpo::{self, CreditMode, Scored};
use flowtracer::rl::model::{Config, Policy};
use flowtracer::rl::rollout;
use flowtracer::rl::task::{self, Phase, Task};
use flowtracer::rl::train::{TrainConfig, sft, train};
use flowtracer::synth::Rng;

#[test]
fn supervised_loss_falls() {
    let policy = Policy::new(Config::tiny()).unwrap();
    let mut losses = vec![];
    sft(&policy, Task::Parity, 60, 16, 3e-3, &mut Rng::new(1), |_, l| losses.push(l)).unwrap();
    let first: f64 = losses[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = losses[losses.len() - 5..].iter().sum::<f64>() / 5.0;
    assert!(last < 0.6 * first, "loss {first:.3} → {last:.3}");
}

#[test]
fn every_parameter_receives_a_gradient() {
    let policy = Policy::new(Config::tiny()).unwrap();
    let p = Task::Addition.problem(&mut Rng::new(2), Phase::Sft);
    let mut ids = vec![task::BOS];
    ids.extend(task::encode(&p.prompt));
    ids.extend(task::encode(&p.solution));
    let n = ids.len();
    let t = Tensor::from_vec(ids, (1, n), &Device::Cpu).unwrap();
    let loss = rollout::token_logprobs(&policy, &t).unwrap().sum_all().unwrap().neg().unwrap();
    let grads = loss.backward().unwrap();
    let vars = policy.varmap.data().lock().unwrap();
    assert!(vars.len() > 10);
    for (name, var) in vars.iter() {
        let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{name} has no gradient"));
        let norm = g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(norm > 0.0, "{name} has a zero gradient");
    }
}

#[test]
fn grpo_advantages_and_clipping_on_hand_made_numbers() {
    let a = grpo::group_advantages(&[1.0, 0.0, 0.0, 1.0]);
    // mean 0.5, Bessel std sqrt(1/3).
    let z = 0.5 / (1.0f64 / 3.0).sqrt();
    assert!((a[0] - z).abs() < 1e-5 && (a[1] + z).abs() < 1e-5, "{a:?}");
    assert_eq!(grpo::group_advantages(&[1.0, 1.0, 1.0]), vec![0.0; 3]);
    assert_eq!(grpo::group_advantages(&[1.0]), vec![0.0]);
    // Positive advantage: the ratio is capped at 1 + ε.
    assert_eq!(grpo::clipped_objective(1.5, 2.0, 0.2), (2.4, true));
    assert_eq!(grpo::clipped_objective(0.5, 2.0, 0.2), (1.0, false));
    // Negative advantage: capped from below at 1 − ε.
    assert_eq!(grpo::clipped_objective(0.5, -1.0, 0.2), (-0.8, true));
    assert_eq!(grpo::clipped_objective(1.5, -1.0, 0.2), (-1.5, false));
    // γ is applied to negative advantages only when asked.
    let mut p = flowtracer::params::CreditParams::default();
    assert_eq!(flowtracer::flow::credit::token_advantage(1.5, -2.0, &p), -3.0);
    p.apply_to_negative = false;
    assert_eq!(flowtracer::flow::credit::token_advantage(1.5, -2.0, &p), -2.0);
}

#[test]
fn every_credit_mode_selects_the_same_count() {
    // A chain-attention sequence: flow reaches the answer, so every mode has something to rank.
    let n = 20;
    let b = common::chain_builder(n, flowtracer::trace::Dtype::F32, vec![2, 3, n, n]);
    let t = flowtracer::Trace::from_bytes(b.to_bytes(), std::path::Path::new("chain")).unwrap();
    let mut attention = vec![0f32; 6 * n * n];
    for s in 0..6 {
        for k in 0..n {
            t.attention.row(s / 3, s % 3, k, &mut attention[(s * n + k) * n..(s * n + k + 1) * n]);
        }
    }
    let entropy: Vec<f32> = (0..n).map(|k| (k * 7 % 5) as f32).collect();
    let scored = Scored { tokens: &t.tokens, spans: t.spans, attention: &attention, layers: 2, heads: 3, entropy: &entropy };
    let p = flowtracer::params::CreditParams::default();
    let expect = flowtracer::flow::roles::share_count(p.fraction, t.spans.response.len());
    for mode in [CreditMode::Flow, CreditMode::Random, CreditMode::Entropy, CreditMode::Attention] {
        let g = grpo::credit(mode, &scored, &p, &mut Rng::new(3));
        assert_eq!(g.iter().filter(|&&x| x == p.gamma).count(), expect, "{mode:?}");
        assert!(t.spans.question.range().all(|k| g[k] == 1.0), "{mode:?}: prompt tokens stay 1");
    }
    assert!(grpo::credit(CreditMode::Uniform, &scored, &p, &mut Rng::new(3)).iter().all(|&g| g == 1.0));
}

fn tiny(steps: usize) -> TrainConfig {
    let mut c = TrainConfig::new(Task::Parity, CreditMode::Flow, steps, 7);
    c.model = Config::tiny();
    c.sft_steps = 5;
    c.sft_batch = 8;
    c.prompts_per_step = 2;
    c.group = 4;
    c.eval_every = 2;
    c.eval_size = 3;
    c.checkpoint_every = 2;
    c
}

fn metric_steps(dir: &std::path::Path) -> Vec<u64> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64().unwrap())
        .collect()
}

#[test]
fn an_interrupted_run_resumes_without_losing_or_doubling_metrics() {
    let dir = common::temp_dir("rl-resume");
    let out = dir.join("run");
    // Runs to step 3; the last checkpoint is step 2, so step 3's metrics are "after the crash".
    train(&tiny(3), &out, &Default::default(), &mut |_| {}).unwrap();
    assert_eq!(metric_steps(&out), vec![0, 1, 2, 3]);
    std::fs::remove_file(out.join("ckpt/step_000003.safetensors")).unwrap();
    train(&tiny(5), &out, &Default::default(), &mut |_| {}).unwrap();
    assert_eq!(metric_steps(&out), vec![0, 1, 2, 3, 4, 5]);
    let m: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for key in ["reward", "loss", "clip_fraction", "entropy", "credit_share", "trace_ms", "other_ms"] {
        assert!(m[1][key].is_number(), "{key} missing: {}", m[1]);
    }
    assert!(m[2]["heldout_accuracy"].is_number());
    // The traces it wrote are valid trace files that the export reads.
    let run = flowtracer::trace::run::discover(&out).unwrap();
    assert!(!run.traces.is_empty());
    for p in &run.traces {
        let t = flowtracer::Trace::open(p).unwrap();
        assert!(t.meta.reward.is_some() && t.meta.step.is_some() && t.meta.correct.is_some());
        flowtracer::analyze(&t, &Default::default(), &Default::default()).unwrap();
    }
}
