//! Does a credit score pick the tokens the answer causally depends on? Every score the project
//! has is set against the per-token probe's measurements, one problem at a time: the ROC-AUC of
//! predicting "hiding this token changes the answer" and the Spearman correlation with the drop in
//! the original answer's log-probability. Means ± std over problems, with a bootstrap interval
//! for the mean (problems resampled), so two scores can be told apart or not.
//!
//! Throughput is scored for each layer choice too (early, middle, late thirds, middle to last,
//! all): the paper found middle layers best on 28+-layer models; this table is where a shallow
//! policy says whether that holds for it.

use super::{Error, Result};
use super::causal::TokenProbe;
use super::grpo::{self, CreditMode, Scored};
use crate::flow::{self, Cancel, knockout};
use crate::params::Params;
use crate::synth::Rng;

/// A statistic over problems: mean, standard deviation, a 95% bootstrap interval of the mean.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub mean: f64,
    pub std: f64,
    pub lo: f64,
    pub hi: f64,
    /// Problems where the statistic is defined (both outcomes present, scores not all tied).
    pub problems: usize,
}

const BOOTSTRAP: usize = 2000;

/// Ranks from 1, ties sharing their average rank.
fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        idx[i..=j].iter().for_each(|&k| r[k] = avg);
        i = j + 1;
    }
    r
}

/// The probability that a random positive scores above a random negative (ties count half):
/// 1 separates perfectly, 0.5 is chance. `None` when one class is absent.
pub fn roc_auc(score: &[f64], positive: &[bool]) -> Option<f64> {
    let pos = positive.iter().filter(|&&p| p).count();
    let neg = positive.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let r = ranks(score);
    let rank_sum: f64 = r.iter().zip(positive).filter(|(_, p)| **p).map(|(r, _)| r).sum();
    Some((rank_sum - (pos * (pos + 1)) as f64 / 2.0) / (pos * neg) as f64)
}

/// Pearson correlation of the ranks. `None` when either side is constant.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    let (rx, ry) = (ranks(x), ranks(y));
    let n = rx.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// Mean, std and a percentile bootstrap interval of the mean; `None` for no values.
pub fn summarize(values: &[f64], seed: u64) -> Option<Summary> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let std = if n > 1 { (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt() } else { 0.0 };
    let mut rng = Rng::new(seed);
    let mut means: Vec<f64> = (0..BOOTSTRAP).map(|_| (0..n).map(|_| values[rng.below(n)]).sum::<f64>() / n as f64).collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * BOOTSTRAP as f64) as usize).min(BOOTSTRAP - 1)];
    Some(Summary { mean, std, lo: at(0.025), hi: at(0.975), problems: n })
}

/// One score's value at each probed token of each problem.
pub struct ScoreSet {
    pub name: String,
    pub values: Vec<Vec<f64>>,
}

/// The layer choices throughput is scored under, by relative depth of an `layers`-layer model:
/// the thirds of the paper's rule, middle to last, and all. Empty choices (too few layers) are left out.
pub fn layer_choices(layers: usize) -> Vec<(&'static str, [usize; 2])> {
    let (lo, hi) = flow::aggregate::middle_third(layers);
    [("early", [0, lo]), ("middle", [lo, hi]), ("late", [hi, layers]), ("middle to last", [lo, layers]), ("all", [0, layers])]
        .into_iter()
        .filter(|(_, [s, e])| s < e)
        .collect()
}

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
    let cell = |x: &Option<Summary>| match x {
        Some(m) => format!("{:.3} ± {:.3} | [{:.3}, {:.3}] | {}", m.mean, m.std, m.lo, m.hi, m.problems),
        None => "– | – | 0".into(),
    };
    for r in rows {
        s += &format!("| {} | {} | {} |\n", r.name, cell(&r.auc), cell(&r.spearman));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_ties_half_and_needs_both_classes() {
        assert_eq!(roc_auc(&[0.1, 0.2, 0.9, 0.8], &[false, false, true, true]), Some(1.0));
        assert_eq!(roc_auc(&[0.9, 0.8, 0.1, 0.2], &[false, false, true, true]), Some(0.0));
        assert_eq!(roc_auc(&[1.0, 1.0, 1.0, 1.0], &[false, true, false, true]), Some(0.5));
        // One positive above one negative, tied with the other: (1 + 0.5) / 2.
        assert_eq!(roc_auc(&[0.5, 0.5, 0.1], &[true, false, false]), Some(0.75));
        assert_eq!(roc_auc(&[0.1, 0.2], &[true, true]), None);
    }

    #[test]
    fn spearman_is_rank_correlation() {
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 300.0, 4000.0]).unwrap() - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap() + 1.0).abs() < 1e-12);
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
    }

    #[test]
    fn bootstrap_interval_holds_the_mean() {
        let v: Vec<f64> = (0..50).map(|i| (i % 7) as f64 / 7.0).collect();
        let s = summarize(&v, 3).unwrap();
        assert!(s.lo <= s.mean && s.mean <= s.hi && s.lo < s.hi);
        assert_eq!(summarize(&[0.4], 1).unwrap().lo, 0.4);
        assert!(summarize(&[], 1).is_none());
    }

    #[test]
    fn layer_choices_follow_relative_depth() {
        assert_eq!(layer_choices(3), vec![("early", [0, 1]), ("middle", [1, 2]), ("late", [2, 3]), ("middle to last", [1, 3]), ("all", [0, 3])]);
        assert_eq!(layer_choices(28)[1], ("middle", [9, 19]));
        assert_eq!(layer_choices(2), vec![("middle", [0, 2]), ("middle to last", [0, 2]), ("all", [0, 2])]);
    }
}
