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
use super::task::Task;
pub use crate::fidelity::{Row, ScoreSet, Summary, layer_choices, roc_auc, spearman, summarize};
use crate::fidelity::cells;
use crate::flow::Cancel;
use crate::params::Params;
use crate::trace::Trace;
use std::path::Path;

/// Every score at every probed token, as `flowtracer fidelity` scores the traces the probe
/// writes (one definition of the scores): the probes become those traces in memory.
pub fn score_sets(probes: &[TokenProbe], layers: usize, heads: usize, task: Task, params: &Params, seed: u64) -> Result<Vec<ScoreSet>> {
    let traces = probes
        .iter()
        .enumerate()
        .map(|(i, p)| Trace::from_bytes(p.to_trace(layers, heads, task, &i.to_string()).to_bytes(), Path::new(&format!("probed response {i}"))).map_err(Error::msg))
        .collect::<Result<Vec<_>>>()?;
    Ok(crate::fidelity::measure(&traces, params, seed, &Cancel::default(), &|| {}).map_err(Error::msg)?.sets)
}

/// Each score's AUC ("answer changes") and Spearman (log-prob drop), summarised over problems.
pub fn rows(probes: &[TokenProbe], sets: &[ScoreSet], seed: u64) -> Vec<Row> {
    let changed: Vec<Vec<bool>> = probes.iter().map(|p| p.effects.iter().map(|e| e.changed).collect()).collect();
    let drop: Vec<Vec<f64>> = probes.iter().map(|p| p.effects.iter().map(|e| e.logprob_drop).collect()).collect();
    crate::fidelity::rows(sets, &drop, Some(&changed), seed)
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
