//! Step 8, hubs and aggregation checkpoints (named by the paper; the rules are ours).
//! Hubs: the response tokens of highest throughput. Checkpoints: backbone tokens where distinct
//! backbone paths merge, or whose inflow comes from many far-apart sources.

use super::backbone::FlowPath;
use super::conserve::unit_outflow;
use super::matrix::Matrix;
use crate::params::RoleParams;
use crate::span::Spans;
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// Indices of the top-`count` entries of `score` among `candidates`, highest first, ties to the
/// earlier token. Shared by hubs and credit so both rank the same way. The order is total, so
/// the top `count` are one set whichever way they are found: selected in linear time, then
/// only they are sorted (credit takes a fifth of the response, and sorting all of it had been
/// 3% of a batch).
pub fn top_by_score(score: &[f64], candidates: impl Iterator<Item = usize>, count: usize) -> Vec<usize> {
    let order = |a: &usize, b: &usize| score[*b].total_cmp(&score[*a]).then(a.cmp(b));
    let mut idx: Vec<usize> = candidates.collect();
    if count < idx.len() {
        idx.select_nth_unstable_by(count, order);
        idx.truncate(count);
    }
    idx.sort_unstable_by(order);
    idx
}

/// ⌈fraction·len⌉, immune to 0.4·10 = 4.000000000000001.
pub fn share_count(fraction: f64, len: usize) -> usize {
    ((fraction * len as f64) - 1e-9).ceil().max(0.0) as usize
}

pub fn hubs(tau: &[f64], spans: Spans, p: &RoleParams) -> Vec<usize> {
    let r = spans.response;
    let count = share_count(p.hub_fraction, r.len()).clamp(1, p.max_hubs.max(1));
    let mut hubs = top_by_score(tau, r.range().filter(|&k| tau[k] > 0.0), count);
    hubs.sort_unstable();
    hubs
}

/// Effective number of far sources of each backbone token: the share of its inflow from tokens
/// at least `min_distance` back, times the exponential of the entropy of that far inflow. m equal
/// far sources give m; a token fed by its neighbour gives about 0. Off the backbone it is 0: the
/// score only decides checkpoints, and a logarithm per edge of all N² is not worth paying for.
pub fn far_sources(m: &Matrix, h: &[f64], f: &[f64], spans: Spans, paths: &[FlowPath], min_distance: usize) -> Vec<f64> {
    let n = m.n;
    let mut out = vec![0.0; n];
    let g = unit_outflow(h, f, spans.answer);
    let tokens: BTreeSet<usize> = paths.iter().flat_map(|p| p.tokens.iter().copied()).filter(|&k| k >= spans.question.end).collect();
    let values: Vec<(usize, f64)> = tokens.into_par_iter().map(|k| (k, far_sources_from(m, &g, h, f, k, min_distance))).collect();
    for (k, v) in values {
        out[k] = v;
    }
    out
}

/// The far-source score of one token (the app's inspector asks for any token).
pub fn far_sources_of(m: &Matrix, h: &[f64], f: &[f64], spans: Spans, k: usize, min_distance: usize) -> f64 {
    far_sources_from(m, &unit_outflow(h, f, spans.answer), h, f, k, min_distance)
}

/// [`far_sources_of`] with `g` made: the far sources (before `far_end`) and the near ones in two
/// loops, each adding to the inflow in the tokens' order as one loop did.
fn far_sources_from(m: &Matrix, g: &[f64], h: &[f64], f: &[f64], k: usize, min_distance: usize) -> f64 {
    if f[k] <= 0.0 {
        return 0.0;
    }
    let (row, hk) = (m.row(k), h[k]);
    let d = min_distance.max(1);
    let far_end = if k >= d { k - d + 1 } else { 0 };
    // A token that does not conserve has g = 0, so φ = 0 and it is passed over as before.
    let phi = |i: usize| g[i] * row[i] as f64 * hk;
    let (mut total, mut far, mut far_plogp) = (0.0f64, 0.0f64, 0.0f64);
    for phi in (0..far_end).map(phi).filter(|&p| p > 0.0) {
        total += phi;
        far += phi;
        far_plogp += phi * phi.ln();
    }
    for phi in (far_end..k).map(phi).filter(|&p| p > 0.0) {
        total += phi;
    }
    if far <= 0.0 || total <= 0.0 {
        return 0.0;
    }
    // H = -Σ p ln p with p = φ/far  =  ln(far) - Σ φ ln φ / far.
    let entropy = far.ln() - far_plogp / far;
    (far / total) * entropy.exp()
}

pub fn checkpoints(paths: &[FlowPath], sources: &[f64], spans: Spans, p: &RoleParams) -> Vec<usize> {
    let mut preds: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    for path in paths {
        for w in path.tokens.windows(2) {
            preds.entry(w[1]).or_default().insert(w[0]);
        }
    }
    preds
        .into_iter()
        .filter(|(k, from)| {
            !spans.question.contains(*k)
                && (from.len() >= p.checkpoint_min_merging_paths.max(2) || sources[*k] > p.checkpoint_min_sources)
        })
        .map(|(k, _)| k)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::test_rng::XorShift;

    /// Selecting the top entries and sorting only them ranks as sorting every candidate does:
    /// scores with many ties, a NaN, infinities and signed zeros, every count up to all of them.
    #[test]
    fn the_top_entries_are_those_of_a_full_sort() {
        let mut rng = XorShift(7);
        let mut score: Vec<f64> = (0..300).map(|_| (rng.next_u64() % 17) as f64 * 0.125).collect();
        score[3] = f64::NAN;
        score[10] = f64::INFINITY;
        score[11] = -0.0;
        score[12] = 0.0;
        score[13] = f64::NEG_INFINITY;
        let candidates = || (0..300).filter(|k| k % 7 != 0);
        let mut all: Vec<usize> = candidates().collect();
        all.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(a.cmp(&b)));
        for count in 0..=all.len() + 1 {
            assert_eq!(top_by_score(&score, candidates(), count), all[..count.min(all.len())], "count {count}");
        }
    }
}
