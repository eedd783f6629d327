//! Step 8, hubs and aggregation checkpoints (named by the paper; the rules are ours).
//! Hubs: the response tokens of highest throughput. Checkpoints: backbone tokens where distinct
//! backbone paths merge, or whose inflow comes from many far-apart sources.

use super::backbone::FlowPath;
use super::conserve::unit_outflow;
use super::logarithm::ln_each;
use super::matrix::Matrix;
use crate::params::RoleParams;
use crate::span::Spans;
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// Indices of the top-`count` entries of `score` among `candidates`, in the tokens' order; ties
/// to the earlier token. Shared by hubs and credit so both choose the same way. The order is
/// total, so the top `count` are one set whichever way they are found: selected in linear time,
/// then put in the tokens' order, which both callers want (ranking them by score as well had
/// been 1% of a batch, and sorting all of them 3%).
pub fn top_by_score(score: &[f64], candidates: impl Iterator<Item = usize>, count: usize) -> Vec<usize> {
    let order = |a: &usize, b: &usize| score[*b].total_cmp(&score[*a]).then(a.cmp(b));
    let mut idx: Vec<usize> = candidates.collect();
    if count < idx.len() {
        idx.select_nth_unstable_by(count, order);
        idx.truncate(count);
    }
    idx.sort_unstable();
    idx
}

/// ⌈fraction·len⌉, immune to 0.4·10 = 4.000000000000001.
pub fn share_count(fraction: f64, len: usize) -> usize {
    ((fraction * len as f64) - 1e-9).ceil().max(0.0) as usize
}

pub fn hubs(tau: &[f64], spans: Spans, p: &RoleParams) -> Vec<usize> {
    let r = spans.response;
    let count = share_count(p.hub_fraction, r.len()).clamp(1, p.max_hubs.max(1));
    top_by_score(tau, r.range().filter(|&k| tau[k] > 0.0), count)
}

/// Effective number of far sources of each backbone token: the share of its inflow from tokens
/// at least `min_distance` back, times the exponential of the entropy of that far inflow. m equal
/// far sources give m; a token fed by its neighbour gives about 0. Off the backbone it is 0: the
/// score only decides checkpoints, and a logarithm per edge of all N² is not worth paying for.
pub fn far_sources(m: &Matrix, h: &[f64], f: &[f64], spans: Spans, paths: &[FlowPath], min_distance: usize) -> Vec<f64> {
    let n = m.n;
    let mut out = vec![0.0; n];
    let g = unit_outflow(h, f, spans.answer);
    let mut tokens: Vec<usize> = paths.iter().flat_map(|p| p.tokens.iter().copied()).filter(|&k| k >= spans.question.end).collect();
    tokens.sort_unstable();
    tokens.dedup();
    let values: Vec<[f64; LANES]> = tokens.par_chunks(LANES).map(|ks| far_sources_side_by_side(m, &g, h, f, ks, min_distance)).collect();
    for (ks, v) in tokens.chunks(LANES).zip(values) {
        for (&k, v) in ks.iter().zip(v) {
            out[k] = v;
        }
    }
    out
}

/// The far-source score of one token (the app's inspector asks for any token).
pub fn far_sources_of(m: &Matrix, h: &[f64], f: &[f64], spans: Spans, k: usize, min_distance: usize) -> f64 {
    far_sources_side_by_side(m, &unit_outflow(h, f, spans.answer), h, f, &[k], min_distance)[0]
}

/// Tokens whose sources are taken side by side: each token's sums are chains of additions in
/// the sources' order (the bits depend on it), so one token waits on each addition; four keep
/// twelve chains going at once.
const LANES: usize = 4;
/// Sources whose φ and logarithm are made before they are added: a few kilobytes a token, in the
/// first-level cache.
const BLOCK: usize = 256;

/// The far-source scores of up to [`LANES`] tokens `ks` (the rest 0). For each token its inflow,
/// its far inflow (from before `far_end`) and Σ φ ln φ over the far sources, each added in the
/// sources' order as one loop over them adds it; a source adding nothing (φ = 0, or past the
/// token) adds +0, which leaves any sum but −0 as it is, and these sums never are −0.
fn far_sources_side_by_side(m: &Matrix, g: &[f64], h: &[f64], f: &[f64], ks: &[usize], min_distance: usize) -> [f64; LANES] {
    let d = min_distance.max(1);
    // A token with no inflow has no sources; one that does not conserve has g = 0, so φ = 0.
    let ends: [usize; LANES] = std::array::from_fn(|l| ks.get(l).filter(|&&k| f[k] > 0.0).map_or(0, |&k| k));
    let far_ends = ends.map(|k| (k + 1).saturating_sub(d));
    let rows: [&[f32]; LANES] = std::array::from_fn(|l| if ends[l] > 0 { m.row(ks[l]) } else { &[] });
    let hs: [f64; LANES] = std::array::from_fn(|l| if ends[l] > 0 { h[ks[l]] } else { 0.0 });
    let (mut total, mut far, mut far_plogp) = ([0.0f64; LANES], [0.0f64; LANES], [0.0f64; LANES]);
    let (mut phis, mut logs) = ([[0.0f64; BLOCK]; LANES], [[0.0f64; BLOCK]; LANES]);
    let end = ends.iter().copied().max().unwrap_or(0);
    for start in (0..end).step_by(BLOCK) {
        let len = (end - start).min(BLOCK);
        for l in 0..LANES {
            let here = ends[l].saturating_sub(start).min(len);
            for (p, i) in phis[l][..here].iter_mut().zip(start..) {
                *p = g[i] * rows[l][i] as f64 * hs[l];
            }
            phis[l][here..len].fill(0.0);
            let far_here = far_ends[l].saturating_sub(start).min(here);
            ln_each(&phis[l][..far_here], &mut logs[l]);
        }
        for j in 0..len {
            let i = start + j;
            for l in 0..LANES {
                let p = phis[l][j];
                let is_far = i < far_ends[l] && p > 0.0;
                total[l] += if p > 0.0 { p } else { 0.0 };
                far[l] += if is_far { p } else { 0.0 };
                far_plogp[l] += if is_far { p * logs[l][j] } else { 0.0 };
            }
        }
    }
    std::array::from_fn(|l| {
        if far[l] <= 0.0 || total[l] <= 0.0 {
            return 0.0;
        }
        // H = -Σ p ln p with p = φ/far  =  ln(far) - Σ φ ln φ / far.
        let entropy = far[l].ln() - far_plogp[l] / far[l];
        (far[l] / total[l]) * entropy.exp()
    })
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

    /// The far-source score one token at a time, as it was first written: one loop over the far
    /// sources and one over the near ones, `f64::ln` per source.
    fn far_sources_one_by_one(m: &Matrix, g: &[f64], h: &[f64], f: &[f64], k: usize, min_distance: usize) -> f64 {
        if f[k] <= 0.0 {
            return 0.0;
        }
        let (row, d) = (m.row(k), min_distance.max(1));
        let far_end = if k >= d { k - d + 1 } else { 0 };
        let phi = |i: usize| g[i] * row[i] as f64 * h[k];
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
        let entropy = far.ln() - far_plogp / far;
        (far / total) * entropy.exp()
    }

    /// Tokens taken side by side score as each alone, to the bit: groups of one to four tokens of
    /// different lengths (shorter and longer than a block), tokens without inflow, sources with
    /// φ = 0 and φ near 1 (the logarithm's other path), every distance from next-door to past
    /// the token's start.
    #[test]
    fn tokens_side_by_side_score_as_each_alone() {
        let n = 700;
        let mut rng = XorShift(0x9e37_79b9);
        let mut m = Matrix::zeros(n);
        for k in 1..n {
            for (i, w) in m.row_mut(k).iter_mut().enumerate() {
                *w = match rng.next_u64() % 10 {
                    0 => 0.0,
                    1 if i % 5 == 0 => 0.97,
                    _ => (rng.unit() / k as f64) as f32,
                };
            }
        }
        let h: Vec<f64> = (0..n).map(|i| if i % 11 == 0 { 0.0 } else { 0.5 + rng.unit() }).collect();
        let f: Vec<f64> = (0..n).map(|i| if i % 13 == 0 { 0.0 } else { rng.unit() }).collect();
        let g: Vec<f64> = (0..n).map(|i| if i % 7 == 0 { 0.0 } else { 0.6 + rng.unit() }).collect();
        let groups: [&[usize]; 6] = [&[699], &[3, 250], &[256, 257, 513, 698], &[0, 1, 2, 130], &[13, 600, 601, 602], &[255, 256, 511, 512]];
        let mut scored = 0;
        for d in [1, 2, 17, 300, 800] {
            for ks in groups {
                let got = far_sources_side_by_side(&m, &g, &h, &f, ks, d);
                for (l, &k) in ks.iter().enumerate() {
                    let want = far_sources_one_by_one(&m, &g, &h, &f, k, d);
                    assert_eq!(got[l].to_bits(), want.to_bits(), "token {k}, distance {d}: {} against {want}", got[l]);
                    scored += usize::from(want > 0.0);
                }
                assert!(got[ks.len()..].iter().all(|&v| v == 0.0));
            }
        }
        assert!(scored > 40, "most tokens have far sources, so the sums are what is compared");
    }

    /// Selecting the top entries chooses the tokens a sort of every candidate puts first: scores
    /// with many ties, a NaN, infinities and signed zeros, every count up to all of them.
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
            let mut top = all[..count.min(all.len())].to_vec();
            top.sort_unstable();
            assert_eq!(top_by_score(&score, candidates(), count), top, "count {count}");
        }
    }
}
