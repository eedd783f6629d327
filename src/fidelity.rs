//! Does a credit score pick the tokens the answer causally depends on? Scores are set against
//! measured per-token effects one trace (problem) at a time: the Spearman correlation with the
//! drop in the answer's log-probability when the token is hidden (and, where the probe also
//! regenerated the answer, the ROC-AUC of predicting that the answer changes). Means ± std over
//! traces, with a bootstrap interval for the mean (traces resampled), so two scores can be told
//! apart or not.
//!
//! The statistics serve both tables: the policy's (`probe --per-token --table`, `rl::fidelity`)
//! and any model's, from trace files that carry their `causal_effect` (`flowtracer fidelity`:
//! files `probe --out` writes, or Python's `causal_effect` + `dump` on a Hugging Face model).

use crate::flow::{self, Cancel, knockout};
use crate::params::Params;
use crate::synth::Rng;
use crate::trace::Trace;

/// A statistic over traces: mean, standard deviation, a 95% bootstrap interval of the mean.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub mean: f64,
    pub std: f64,
    pub lo: f64,
    pub hi: f64,
    /// Traces where the statistic is defined (both outcomes present, scores not all tied).
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

/// A summary as the tables show it: `mean ± std | [lo, hi] | traces`.
pub fn cells(x: &Option<Summary>) -> String {
    match x {
        Some(m) => format!("{:.3} ± {:.3} | [{:.3}, {:.3}] | {}", m.mean, m.std, m.lo, m.hi, m.problems),
        None => "– | – | 0".into(),
    }
}

/// One score's value at each probed token of each trace.
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

/// Traces with their measured effects, scored: the sets, and the effect (nats lost) at each
/// probed token, the response before the answer, as `probe --per-token` probes it.
pub struct Measured {
    pub sets: Vec<ScoreSet>,
    pub effects: Vec<Vec<f64>>,
    /// Whether hiding each probed token changed the regenerated answer, where every trace says
    /// (`probe --out` writes the tokens that did as `causal_answer_changed`, and so does Python's
    /// `dump` from `causal_effect(..., return_changed=True)`).
    pub changed: Option<Vec<Vec<bool>>>,
    /// Traces given without `causal_effect`: counted, not measured.
    pub left_out: usize,
}

pub use crate::trace::ANSWER_CHANGED;

/// Every score at every probed token of traces that carry `causal_effect`: the flow scores under
/// `params` (throughput, credit, reach, knock-out loss), attention received (the mean a token
/// gets from later tokens over every layer and head), entropy and surprisal where every trace has
/// them, nearness to the answer, random, and throughput under each layer choice where the traces
/// share a layer count. Traces without `causal_effect` are counted and left out (an error when
/// no trace has one); an error names the file. `done` is told after each trace; `stop` stops it
/// between traces.
pub fn measure(traces: &[Trace], params: &Params, seed: u64, stop: &Cancel, done: &dyn Fn()) -> Result<Measured, String> {
    let mut rng = Rng::new(seed);
    let (all, traces): (&[Trace], Vec<&Trace>) = (traces, traces.iter().filter(|t| t.causal_effect.is_some()).collect());
    let left_out = all.len() - traces.len();
    if traces.is_empty() {
        return Err(format!("no trace among the inputs carries causal_effect ({left_out} without it): write them with `flowtracer probe --per-token --out DIR`, or Python's flowtracer.causal_effect and dump(..., causal_effect=...)"));
    }
    let with_entropy = traces.iter().all(|t| t.entropy.is_some() && t.logprob.is_some());
    let layers = traces.first().map_or(0, |t| t.attention.layers);
    let choices = if traces.iter().all(|t| t.attention.has_layer_axis && t.attention.layers == layers) { layer_choices(layers) } else { vec![] };
    let mut names = vec!["flow throughput".to_string(), "flow credit γ".into(), "reach h".into(), "knock-out loss".into(), "attention received".into()];
    if with_entropy {
        names.extend(["entropy".into(), "surprisal −log p".into()]);
    }
    names.extend(["nearness to the answer".into(), "random".into()]);
    names.extend(choices.iter().map(|(label, [s, e])| format!("throughput, layers [{s}, {e}) ({label})")));
    let mut sets: Vec<ScoreSet> = names.into_iter().map(|name| ScoreSet { name, values: vec![] }).collect();
    let mut effects = Vec::with_capacity(traces.len());
    let mut changed = Some(Vec::with_capacity(traces.len()));
    for _ in 0..left_out {
        done();
    }
    for trace in traces {
        if stop.is_cancelled() {
            return Err("interrupted".into());
        }
        let at = |e: String| format!("{}: {e}", trace.path.display());
        let effect = trace.causal_effect.as_ref().expect("only traces with effects are measured");
        let plan = flow::Plan::for_trace(trace, params).map_err(|e| e.to_string())?;
        let (res, m) = flow::execute(trace, &plan, &flow::Cpu, &Cancel::default()).map_err(|e| e.to_string())?;
        let loss = knockout::loss_per_token(&m, &res.reach, res.spans);
        drop(m);
        let received = attention_received(trace)?;
        let probed = trace.spans.response.start..trace.spans.answer.start;
        let a0 = trace.spans.answer.start as f64;
        // A draw for every token, used or not: the probe's random baseline always drew so.
        let random: Vec<f64> = (0..trace.tokens.len()).map(|_| rng.f64()).collect();
        let mut per: Vec<Vec<f64>> = vec![Vec::with_capacity(probed.len()); sets.len()];
        for t in probed.clone() {
            let mut values = vec![res.throughput[t], res.credit[t], res.reach[t], loss[t], received[t]];
            if let (true, Some(h), Some(lp)) = (with_entropy, &trace.entropy, &trace.logprob) {
                values.extend([h[t] as f64, -(lp[t] as f64)]);
            }
            values.extend([-(a0 - t as f64), random[t]]);
            values.into_iter().zip(per.iter_mut()).for_each(|(v, out)| out.push(v));
        }
        let fixed = sets.len() - choices.len();
        for (j, (_, range)) in choices.iter().enumerate() {
            let mut q = params.clone();
            q.aggregate.layers = Some(*range);
            let tau = flow::analyze(trace, &q, &Cancel::default()).map_err(|e| e.to_string())?.throughput;
            per[fixed + j] = probed.clone().map(|t| tau[t]).collect();
        }
        sets.iter_mut().zip(per).for_each(|(set, v)| set.values.push(v));
        changed = changed.zip(trace.answer_changed().map_err(at)?).map(|(mut all, these)| {
            all.push(probed.clone().map(|t| these.binary_search(&t).is_ok()).collect());
            all
        });
        effects.push(probed.map(|t| effect[t] as f64).collect());
        done();
    }
    Ok(Measured { sets, effects, changed, left_out })
}

/// How well `score` (one value per token) ranks one trace's tokens by their measured effect:
/// the Spearman correlation over the response before the answer of `spans`. `None` without
/// effects or where either side is constant (the app shows it beside the causal-effect colours).
pub fn spearman_of(trace: &Trace, spans: crate::span::Spans, score: &[f64]) -> Option<f64> {
    let effect = trace.causal_effect.as_ref()?;
    let probed = spans.response.start..spans.answer.start.min(score.len()).min(effect.len());
    let effect: Vec<f64> = effect[probed.clone()].iter().map(|&e| e as f64).collect();
    spearman(&score[probed], &effect)
}

/// Σ over later tokens of the attention a token receives, averaged over every layer and head
/// the file holds and over those tokens: the one-hop baseline (of an `[N,N]` file, its layers as
/// they were averaged into it).
fn attention_received(trace: &Trace) -> Result<Vec<f64>, String> {
    let mut every = Params::default();
    every.aggregate.layers = trace.attention.has_layer_axis.then_some([0, trace.attention.layers]);
    every.aggregate.threshold = 0.0;
    let plan = flow::Plan::for_trace(trace, &every).map_err(|e| e.to_string())?;
    let m = flow::aggregate::aggregate(&trace.attention, &plan.selection, &every.aggregate, &std::sync::atomic::AtomicBool::new(false)).map_err(|e| e.at(&trace.path).to_string())?;
    let n = m.n;
    let mut sums = vec![0.0f64; n];
    for k in 1..n {
        m.row(k).iter().zip(&mut sums).for_each(|(&w, s)| *s += w as f64);
    }
    Ok(sums.iter().enumerate().map(|(i, s)| if i + 1 < n { s / (n - i - 1) as f64 } else { 0.0 }).collect())
}

/// One score, summarised over traces.
pub struct Row {
    pub name: String,
    /// ROC-AUC of "hiding the token changes the answer", where the changes are known.
    pub auc: Option<Summary>,
    /// Spearman correlation with the nats the answer loses.
    pub spearman: Option<Summary>,
}

/// Each score's Spearman correlation with `effects` and, given `changed`, its ROC-AUC, one trace
/// at a time, summarised over traces.
pub fn rows(sets: &[ScoreSet], effects: &[Vec<f64>], changed: Option<&[Vec<bool>]>, seed: u64) -> Vec<Row> {
    sets.iter()
        .map(|set| {
            let rhos: Vec<f64> = set.values.iter().zip(effects).filter_map(|(v, e)| spearman(v, e)).collect();
            let auc = changed.and_then(|changed| summarize(&set.values.iter().zip(changed).filter_map(|(v, c)| roc_auc(v, c)).collect::<Vec<_>>(), seed));
            Row { name: set.name.clone(), auc, spearman: summarize(&rhos, seed ^ 1) }
        })
        .collect()
}

/// The table of measured traces as Markdown, under a line on what was measured: the AUC columns
/// where the answer's changes are known.
pub fn table(measured: &Measured, seed: u64) -> String {
    let tokens: usize = measured.effects.iter().map(Vec::len).sum();
    let costly = measured.effects.iter().flatten().filter(|&&e| e > 0.1).count();
    let mut s = format!(
        "{} traces with causal_effect, {tokens} tokens probed (the response before the answer); {:.1}% of hidings cost the answer over 0.1 nats",
        measured.effects.len(),
        100.0 * costly as f64 / tokens.max(1) as f64
    );
    if measured.left_out > 0 {
        s += &format!("; {} traces without causal_effect left out", measured.left_out);
    }
    let with_auc = measured.changed.is_some();
    s += match with_auc {
        true => "\n\n| score | ROC-AUC: answer changes | 95% CI | traces | Spearman: log-prob drop | 95% CI | traces |\n|---|---|---|---|---|---|---|\n",
        false => "\n\n| score | Spearman: log-prob drop | 95% CI | traces |\n|---|---|---|---|\n",
    };
    for r in rows(&measured.sets, &measured.effects, measured.changed.as_deref(), seed) {
        let auc = if with_auc { format!("{} | ", cells(&r.auc)) } else { String::new() };
        s += &format!("| {} | {auc}{} |\n", r.name, cells(&r.spearman));
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
