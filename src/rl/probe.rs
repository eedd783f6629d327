//! `flowtracer probe`: the paper's causal check on the project's policy. For each greedy
//! response that states an answer, hide a share of its reasoning tokens from the policy's
//! attention (every later query gets −∞ on those key positions), regenerate the answer from the
//! `>` marker on, and count how often the answer changes and how often correctness flips. The
//! tokens hidden are the highest-throughput ones, the lowest, or a random draw of the same count.
//!
//! The reasoning tokens themselves are kept (only what later tokens read from them is cut), so
//! the three conditions regenerate the same span from the same text and differ only in which
//! tokens were hidden.

use super::Result;
use super::grpo::{self, Scored};
use super::model::Policy;
use super::rollout::{self, Rollout};
use super::task::{self, Phase, Problem, Task};
use super::train::attention_of;
use crate::backend::Backend;
use crate::flow::Cancel;
use crate::flow::roles::share_count;
use crate::params::Params;
use crate::synth::Rng;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    Highest,
    Lowest,
    Random,
}

pub const CONDITIONS: [Condition; 3] = [Condition::Highest, Condition::Lowest, Condition::Random];

impl Condition {
    pub fn label(self) -> &'static str {
        match self {
            Condition::Highest => "highest-flow",
            Condition::Lowest => "lowest-flow",
            Condition::Random => "random",
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    pub answer_changed: usize,
    pub correctness_flipped: usize,
    /// Of the flips, how many turned a right answer wrong.
    pub broke: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProbeReport {
    pub task: &'static str,
    pub fraction: f64,
    /// Responses probed (stated an answer after at least one reasoning token).
    pub probed: usize,
    /// Of those, how many the unmasked policy got right.
    pub correct: usize,
    pub skipped: usize,
    pub counts: Vec<(Condition, Counts)>,
}

impl ProbeReport {
    pub fn table(&self) -> String {
        let mut s = format!(
            "{} responses probed ({} correct before masking, {} skipped: no stated answer); {:.0}% of reasoning tokens hidden\n\n| hidden tokens | answer changed | correctness flipped | right → wrong |\n|---|---|---|---|\n",
            self.probed,
            self.correct,
            self.skipped,
            self.fraction * 100.0
        );
        let pct = |k: usize| 100.0 * k as f64 / self.probed.max(1) as f64;
        for (c, n) in &self.counts {
            s += &format!("| {} | {:.1}% | {:.1}% | {:.1}% |\n", c.label(), pct(n.answer_changed), pct(n.correctness_flipped), pct(n.broke));
        }
        s
    }
}

/// The reasoning tokens of a response: after the prompt, before the `>` that opens the answer.
fn reasoning(r: &Rollout, answer_start: usize) -> std::ops::Range<usize> {
    1 + r.prompt_len..answer_start.saturating_sub(1)
}

/// Which problems a share probe runs, and how much of each response it hides.
#[derive(Clone, Copy, Debug)]
pub struct ProbeSpec {
    pub task: Task,
    /// RL-length problems drawn from `seed`.
    pub problems: usize,
    /// Share of each response's reasoning tokens hidden at once.
    pub fraction: f64,
    pub seed: u64,
}

/// Probes the spec's problems in batches, `tick(done, of)` after each.
pub fn probe(policy: &Policy, spec: ProbeSpec, backend: &dyn Backend, params: &Params, cancel: &Cancel, tick: &mut dyn FnMut(usize, usize)) -> Result<ProbeReport> {
    let ProbeSpec { task, problems, fraction, seed } = spec;
    let mut rng = Rng::new(seed);
    let mut report = ProbeReport { task: task.name(), fraction, probed: 0, correct: 0, skipped: 0, counts: CONDITIONS.iter().map(|&c| (c, Counts::default())).collect() };
    let batch = 32;
    let mut done = 0;
    while done < problems && !cancel.is_cancelled() {
        let probs: Vec<Problem> = (0..batch.min(problems - done)).map(|_| task.problem(&mut rng, Phase::Rl)).collect();
        let prompts: Vec<String> = probs.iter().map(|p| p.prompt.clone()).collect();
        let responses: Vec<Rollout> = rollout::sample_groups(policy, &prompts, 1, 0.0, super::train::MAX_NEW, &mut rng)?.into_iter().flatten().collect();
        let attention = attention_of(policy, &responses.iter().collect::<Vec<_>>())?;
        let tokens: Vec<Vec<String>> = responses.iter().map(|r| r.ids.iter().map(|&t| task::token_text(t)).collect()).collect();
        let spans: Vec<crate::span::Spans> = responses
            .iter()
            .map(|r| {
                let (question, response, answer) = task::spans(r.prompt_len, r.response());
                crate::span::Spans { question, response, answer }
            })
            .collect();
        let zeros: Vec<Vec<f32>> = tokens.iter().map(|t| vec![0.0; t.len()]).collect();
        let views: Vec<Scored> = (0..responses.len())
            .map(|i| Scored { tokens: &tokens[i], spans: spans[i], attention: &attention[i], layers: policy.cfg.layers, heads: policy.cfg.heads, entropy: &zeros[i] })
            .collect();
        let results = grpo::flow_results(backend, &views, params);
        for (i, (r, p)) in responses.iter().zip(&probs).enumerate() {
            let answer = spans[i].answer;
            let reasoning = reasoning(r, answer.start);
            let (Some(flow), false) = (&results[i], answer.is_empty() || reasoning.is_empty()) else {
                report.skipped += 1;
                continue;
            };
            let was_right = Task::verify(p, &r.response_text());
            report.probed += 1;
            report.correct += was_right as usize;
            let before = Task::stated_answer(&r.response_text()).map(str::to_string);
            let k = share_count(fraction, reasoning.len()).max(1);
            let mut by_flow: Vec<usize> = reasoning.clone().collect();
            by_flow.sort_by(|&a, &b| flow.throughput[b].total_cmp(&flow.throughput[a]).then(a.cmp(&b)));
            let mut shuffled: Vec<usize> = reasoning.clone().collect();
            for j in (1..shuffled.len()).rev() {
                shuffled.swap(j, rng.below(j + 1));
            }
            let hidden: Vec<Vec<usize>> = CONDITIONS
                .iter()
                .map(|c| match c {
                    Condition::Highest => by_flow[..k].to_vec(),
                    Condition::Lowest => by_flow[by_flow.len() - k..].to_vec(),
                    Condition::Random => shuffled[..k].to_vec(),
                })
                .collect();
            let again = super::causal::hide_and_regenerate(policy, r, answer, &hidden)?;
            for (regen, (_, counts)) in again.iter().zip(report.counts.iter_mut()) {
                let text = regen.rollout.response_text();
                let right = Task::verify(p, &text);
                counts.answer_changed += (Task::stated_answer(&text).map(str::to_string) != before) as usize;
                counts.correctness_flipped += (right != was_right) as usize;
                counts.broke += (was_right && !right) as usize;
            }
        }
        done += probs.len();
        tick(done, problems);
    }
    Ok(report)
}
