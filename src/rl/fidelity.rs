//! Does a credit score pick the tokens the answer causally depends on? Every score the project
//! has is set against the per-token probe's measurements, one problem at a time: the ROC-AUC of
//! predicting "hiding this token changes the answer" and the Spearman correlation with the drop in
//! the original answer's log-probability, summarised by [`crate::fidelity`]'s statistics.
//!
//! Throughput is scored for each layer choice too (early, middle, late thirds, middle to last,
//! all): the paper found middle layers best on 28+-layer models; this table is where a shallow
//! policy says whether that holds for it.

use super::{Error, Result};
use super::causal::TokenProbe;
use super::grpo::{self, CreditMode, Scored};
pub use crate::fidelity::{ScoreSet, Summary, layer_choices, roc_auc, spearman, summarize};
use crate::fidelity::cells;
use crate::flow::{self, Cancel, knockout};
use crate::params::Params;
use crate::synth::Rng;

/// Every score at every probed token: the flow scores under `params` (throughput, credit, reach,
/// knock-out loss), the baselines (attention received, entropy, surprisal, nearness to the
/// answer, random), and throughput under each layer choice. Flow runs on the CPU: the traces are
/// a few dozen tokens.
pub fn score_sets(probes: &[TokenProbe], layers: usize, heads: usize, params: &Params, seed: u64) -> Result<Vec<ScoreSet>> {
    let mut rng = Rng::new(seed);
    let names = ["flow throughput", "flow credit γ", "reach h", "knock-out loss", "attention received", "entropy", "surprisal −log p", "nearness to the answer", "random"];
    let choices = layer_choices(layers);
    let mut sets: Vec<ScoreSet> = names.iter().map(|n| ScoreSet { name: n.to_string(), values: vec![] }).collect();
    sets.extend(choices.iter().map(|(label, [s, e])| ScoreSet { name: format!("throughput, layers [{s}, {e}) ({label})"), values: vec![] }));
    for p in probes {
        let r = &p.rollout;
        let tokens: Vec<String> = r.ids.iter().map(|&t| super::task::token_text(t)).collect();
        let (entropy, logprob) = (r.over_sequence(&r.entropy), r.over_sequence(&r.logprob));
        let view = Scored { tokens: &tokens, spans: p.spans, attention: &p.attention, layers, heads, entropy: &entropy };
        let trace = grpo::rollout_trace(&view).ok_or_else(|| Error::msg("a probed response is not a valid trace"))?;
        let plan = flow::Plan::for_trace(&trace, params).map_err(Error::msg)?;
        let (res, m) = flow::execute(&trace, &plan, &flow::Cpu, &Cancel::default()).map_err(Error::msg)?;
        let loss = knockout::loss_per_token(&m, &res.reach, res.spans);
        let received = grpo::attention_received(&view);
        let random = grpo::baseline_score(CreditMode::Random, &view, &mut rng);
        let a0 = p.spans.answer.start as f64;
        let mut per: Vec<Vec<f64>> = vec![vec![]; sets.len()];
        for t in p.probed() {
            let values = [
                res.throughput[t],
                res.credit[t],
                res.reach[t],
                loss[t],
                received[t],
                entropy[t] as f64,
                -(logprob[t] as f64),
                -(a0 - t as f64),
                random[t],
            ];
            for (v, out) in values.iter().zip(per.iter_mut()) {
                out.push(*v);
            }
        }
        for (j, (_, range)) in choices.iter().enumerate() {
            let mut q = params.clone();
            q.aggregate.layers = Some(*range);
            let tau = flow::analyze(&trace, &q, &Cancel::default()).map_err(Error::msg)?.throughput;
            per[names.len() + j] = p.probed().map(|t| tau[t]).collect();
        }
        for (set, v) in sets.iter_mut().zip(per) {
            set.values.push(v);
        }
    }
    Ok(sets)
}

/// One line of the table.
pub struct Row {
    pub name: String,
    pub auc: Option<Summary>,
    pub spearman: Option<Summary>,
}

/// Each score's AUC ("answer changes") and Spearman (log-prob drop), summarised over problems.
pub fn rows(probes: &[TokenProbe], sets: &[ScoreSet], seed: u64) -> Vec<Row> {
    let changed: Vec<Vec<bool>> = probes.iter().map(|p| p.effects.iter().map(|e| e.changed).collect()).collect();
    let drop: Vec<Vec<f64>> = probes.iter().map(|p| p.effects.iter().map(|e| e.logprob_drop).collect()).collect();
    sets.iter()
        .map(|s| {
            let aucs: Vec<f64> = s.values.iter().zip(&changed).filter_map(|(v, c)| roc_auc(v, c)).collect();
            let rhos: Vec<f64> = s.values.iter().zip(&drop).filter_map(|(v, d)| spearman(v, d)).collect();
            Row { name: s.name.clone(), auc: summarize(&aucs, seed), spearman: summarize(&rhos, seed ^ 1) }
        })
        .collect()
}

/// The table as Markdown, with a line on what was probed.
pub fn table(task: &str, probes: &[TokenProbe], rows: &[Row]) -> String {
    let tokens: usize = probes.iter().map(|p| p.effects.len()).sum();
    let changed: usize = probes.iter().map(|p| p.effects.iter().filter(|e| e.changed).count()).sum();
    let reproduced = probes.iter().filter(|p| p.reproduces).count();
    let mut s = format!(
        "{task}: {} greedy responses ({} right), {tokens} reasoning tokens each hidden alone; {:.1}% of hidings change the answer; {reproduced}/{} regenerations with nothing hidden restate the original answer\n\n",
        probes.len(),
        probes.iter().filter(|p| p.right).count(),
        100.0 * changed as f64 / tokens.max(1) as f64,
        probes.len()
    );
    s += "| score | ROC-AUC: answer changes | 95% CI | problems | Spearman: log-prob drop | 95% CI | problems |\n|---|---|---|---|---|---|---|\n";
    for r in rows {
        s += &format!("| {} | {} | {} |\n", r.name, cells(&r.auc), cells(&r.spearman));
    }
    s
}
