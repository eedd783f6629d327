//! The step graph's edges: for every pair of nodes (a, b), Σ φ(i, k) over the tokens i of a and
//! k of b (i < k), each total added in the order of k, then i, as one loop over the rows adds
//! them: the bits the graph has always had.
//!
//! Each entry's φ = f(i)·(M[k,i]·h(k)/h(i)) is a division, and each addition into a total waits
//! on the one before it, so a row taken entry by entry ran at the divider's pace and the adder's
//! latency (at 8k tokens the graph took longer than the whole pipeline). Here a row's φs are
//! made for all its sources at once, the divisions side by side in vectors (each the IEEE
//! operation it was alone), and the totals of different source nodes, which never wait on each
//! other, are added side by side in [`LANES`] chains, each in its own order.

use super::conserve::conserves;
use super::matrix::Matrix;
use crate::span::Span;
use rayon::prelude::*;
use std::ops::Range;

/// Chains of additions run side by side: an addition's latency (four cycles) times the two a
/// core starts each cycle.
const LANES: usize = 8;

/// For every pair of nodes `(a, b)` whose total of φ from a's tokens into b's is above zero,
/// that total, in no particular order, for the solution `reach`, `flow` conditioned on `answer`.
/// `node_of[t]` is token t's node (`u32::MAX`: none).
pub fn pair_totals(m: &Matrix, reach: &[f64], flow: &[f64], answer: Span, node_of: &[u32], nodes: usize) -> Vec<((u32, u32), f64)> {
    let n = m.n;
    // φ(i, k) = gate[i]·(M[k,i]·h(k)/divisor[i]): f(i) and h(i) where i conserves and carries
    // flow, elsewhere 0 and 1, so that the same operations give +0 where the entry-by-entry loop
    // added nothing (and a total of values ≥ 0 is unchanged by +0).
    let (gate, divisor): (Vec<f64>, Vec<f64>) =
        (0..n).map(|i| if conserves(i, reach, answer) && flow[i] != 0.0 { (flow[i], reach[i]) } else { (0.0, 1.0) }).unzip();
    // Every token of a node is a target; only those that send flow are sources (a sparse
    // matrix, thresholded, leaves many without any: they are passed over, not divided).
    let targets = runs_of(node_of, nodes);
    let runs = sending(&targets, &gate);
    // A task a target node, across the cores; each its own φ row and totals by source node.
    targets
        .par_iter()
        .enumerate()
        .map_init(
            || (vec![0.0f64; n], vec![0.0f64; nodes], Vec::new(), Vec::new()),
            |(phi, totals, sources, items), (b, rows)| {
                for own in rows {
                    // Every row of the run has the same sources: the other nodes' tokens before it.
                    sources_before(&runs, b, own.start, sources, items);
                    for k in own.clone().filter(|&k| flow[k] != 0.0 || reach[k] != 0.0) {
                        let row = m.row(k);
                        for (_, run) in sources.iter() {
                            let (s, e) = (run.start, run.end);
                            fill_phi(&mut phi[s..e], &row[s..e], &gate[s..e], &divisor[s..e], reach[k]);
                        }
                        add_runs(phi, sources, items, totals);
                    }
                }
                // (each total taken, so the next task finds them all 0)
                totals.iter_mut().enumerate().filter(|(_, t)| **t > 0.0).map(|(a, t)| ((a as u32, b as u32), std::mem::take(t))).collect::<Vec<_>>()
            },
        )
        .flatten_iter()
        .collect()
}

/// Each node's runs of consecutive tokens, in the tokens' order (one run where a node's tokens
/// are contiguous, as steps are; more where a trace's own segments overlap).
fn runs_of(node_of: &[u32], nodes: usize) -> Vec<Vec<Range<usize>>> {
    let mut runs = vec![Vec::new(); nodes];
    let mut k = 0;
    while k < node_of.len() {
        let (b, start) = (node_of[k], k);
        while k < node_of.len() && node_of[k] == b {
            k += 1;
        }
        if b != u32::MAX {
            runs[b as usize].push(start..k);
        }
    }
    runs
}

/// Tokens that send no flow between two that do, fewer than this, stay inside a run of
/// sources: their φs are +0, and making a few costs less than starting another run.
const GAP: usize = 16;

/// Each node's runs cut down to the tokens that send flow (`gate` ≠ 0), bridging gaps of
/// fewer than [`GAP`] tokens.
fn sending(runs: &[Vec<Range<usize>>], gate: &[f64]) -> Vec<Vec<Range<usize>>> {
    runs.iter()
        .map(|node_runs| {
            let mut out = Vec::new();
            for run in node_runs {
                let mut current: Option<Range<usize>> = None;
                for i in run.clone().filter(|&i| gate[i] != 0.0) {
                    match &mut current {
                        Some(c) if i - c.end < GAP => c.end = i + 1,
                        _ => out.extend(current.replace(i..i + 1)),
                    }
                }
                out.extend(current);
            }
            out
        })
        .collect()
}

/// The sources of the rows of one of target node `b`'s runs, the one starting at `start`: every
/// other node's runs of sending tokens (`runs`) before it, which all end before it (a token is
/// one node's), as (node, run), each node's together and in order; and `items`, the ranges of
/// `sources` that are one node's, longest first (so that the lanes finish together).
fn sources_before(runs: &[Vec<Range<usize>>], b: usize, start: usize, sources: &mut Vec<(usize, Range<usize>)>, items: &mut Vec<Range<usize>>) {
    sources.clear();
    items.clear();
    for (a, node_runs) in runs.iter().enumerate().filter(|&(a, _)| a != b) {
        let first = sources.len();
        sources.extend(node_runs.iter().take_while(|run| run.start < start).map(|run| (a, run.clone())));
        if sources.len() > first {
            items.push(first..sources.len());
        }
    }
    let tokens = |item: &Range<usize>| -> usize { sources[item.clone()].iter().map(|(_, run)| run.len()).sum() };
    items.sort_by_key(|item| std::cmp::Reverse(tokens(item)));
}

/// φ of a run of sources into one row: `gate·(w·h_k/divisor)` entry by entry, left to right, as
/// `conserve::edge_flow` makes it. Compiled for the widest vectors this CPU has (the divisions
/// are most of it); the same operations on each entry whatever the width, so the same bits.
fn fill_phi(phi: &mut [f64], row: &[f32], gate: &[f64], divisor: &[f64], hk: f64) {
    #[inline(always)]
    fn each(phi: &mut [f64], row: &[f32], gate: &[f64], divisor: &[f64], hk: f64) {
        for (((p, &w), &g), &d) in phi.iter_mut().zip(row).zip(gate).zip(divisor) {
            *p = g * (w as f64 * hk / d);
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        fn wide(phi: &mut [f64], row: &[f32], gate: &[f64], divisor: &[f64], hk: f64) {
            each(phi, row, gate, divisor, hk)
        }
        #[target_feature(enable = "avx2")]
        fn avx2(phi: &mut [f64], row: &[f32], gate: &[f64], divisor: &[f64], hk: f64) {
            each(phi, row, gate, divisor, hk)
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { wide(phi, row, gate, divisor, hk) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { avx2(phi, row, gate, divisor, hk) };
        }
    }
    each(phi, row, gate, divisor, hk)
}

/// Onto `totals[a]` each φ of node a's runs, in order, for every item (one node's runs in
/// `sources`): [`LANES`] items' chains side by side, a lane taking the next item as its own ends.
fn add_runs(phi: &[f64], sources: &[(usize, Range<usize>)], items: &[Range<usize>], totals: &mut [f64]) {
    /// A lane's item: the place in `sources` it has reached, the last, and where in its run.
    #[derive(Clone, Copy)]
    struct Lane {
        source: usize,
        last: usize,
        at: usize,
    }
    let mut queue = items.iter();
    let mut take = |totals: &[f64]| queue.next().map(|item| (Lane { source: item.start, last: item.end - 1, at: sources[item.start].1.start }, totals[sources[item.start].0]));
    let mut lanes: [Option<Lane>; LANES] = [None; LANES];
    let mut sums = [0.0f64; LANES];
    for l in 0..LANES {
        if let Some((lane, sum)) = take(totals) {
            (lanes[l], sums[l]) = (Some(lane), sum);
        }
    }
    while let Some(busy) = lanes.iter().flatten().next().copied() {
        // All lanes step together as far as the nearest end of a run; an idle lane adds a busy
        // one's values onto a sum no one reads.
        let step = lanes.iter().flatten().map(|lane| sources[lane.source].1.end - lane.at).min().unwrap_or(0);
        let from: [&[f64]; LANES] = std::array::from_fn(|l| {
            let at = lanes[l].unwrap_or(busy).at;
            &phi[at..at + step]
        });
        for t in 0..step {
            for (sum, values) in sums.iter_mut().zip(&from) {
                *sum += values[t];
            }
        }
        for l in 0..LANES {
            let Some(lane) = &mut lanes[l] else { continue };
            lane.at += step;
            if lane.at < sources[lane.source].1.end {
                continue;
            }
            if lane.source < lane.last {
                lane.source += 1;
                lane.at = sources[lane.source].1.start;
                continue;
            }
            totals[sources[lane.source].0] = sums[l];
            match take(totals) {
                Some((next, sum)) => (lanes[l], sums[l]) = (Some(next), sum),
                None => lanes[l] = None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::conserve::edge_flow;
    use crate::flow::test_rng::sparse_matrix;

    /// The totals as one loop over the rows adds them, entry by entry: the step graph's own
    /// until `pair_totals` (each target node's rows in order, each row's sources in order).
    fn entry_by_entry(m: &Matrix, reach: &[f64], flow: &[f64], answer: Span, node_of: &[u32], nodes: usize) -> Vec<((u32, u32), f64)> {
        let mut totals = vec![vec![0.0f64; nodes]; nodes];
        for b in 0..nodes as u32 {
            for k in (0..m.n).filter(|&k| node_of[k] == b) {
                if flow[k] == 0.0 && reach[k] == 0.0 {
                    continue;
                }
                for (i, &a) in node_of[..k].iter().enumerate() {
                    if a == u32::MAX || a == b || flow[i] == 0.0 {
                        continue;
                    }
                    let phi = edge_flow(m, reach, flow, answer, i, k);
                    if phi > 0.0 {
                        totals[b as usize][a as usize] += phi;
                    }
                }
            }
        }
        let mut out = Vec::new();
        for (b, row) in totals.iter().enumerate() {
            out.extend(row.iter().enumerate().filter(|(_, t)| **t > 0.0).map(|(a, &t)| ((a as u32, b as u32), t)));
        }
        out
    }

    /// The same totals to the bit, on matrices whose nodes are steps of many lengths (more of
    /// them than lanes, and fewer), with tokens in no node, nodes whose tokens lie in several runs,
    /// tokens without flow or reach, and the answer's tokens (which do not conserve).
    #[test]
    fn the_totals_are_those_of_the_loop_entry_by_entry_to_the_bit() {
        for (seed, n, one_in, nodes, no_flow) in [(1u64, 40, 1, 3, 0.1), (2, 300, 2, 12, 0.1), (3, 700, 1, 40, 0.1), (4, 257, 3, 9, 0.5), (5, 64, 1, 1, 0.1), (6, 600, 1, 20, 0.9), (7, 500, 2, 30, 0.97), (8, 300, 1, 3, 0.1)] {
            let (m, mut rng) = sparse_matrix(n, seed, one_in);
            let answer = Span::new(n - n / 10 - 1, n - n / 20);
            let reach: Vec<f64> = (0..n).map(|i| if i >= answer.end || rng.unit() < 0.05 { 0.0 } else { rng.unit() * 2.0 }).collect();
            // (tokens without flow scattered, and in gaps shorter and longer than a run bridges)
            let flow: Vec<f64> = (0..n).map(|_| if rng.unit() < no_flow { 0.0 } else { rng.unit() / n as f64 }).collect();
            // Nodes in runs of 1 to 60 tokens, in order, some runs in no node, and now and then a
            // run of an earlier node again (as overlapping given segments leave them).
            let mut node_of = vec![u32::MAX; n];
            let (mut at, mut next) = (0, 0u32);
            while at < n {
                let len = 1 + (rng.next_u64() % 60) as usize;
                let node = match rng.next_u64() % 8 {
                    0 => u32::MAX,
                    1 if next > 0 => (rng.next_u64() % next as u64) as u32,
                    _ if next < nodes as u32 => {
                        next += 1;
                        next - 1
                    }
                    _ => (rng.next_u64() % nodes as u64) as u32,
                };
                node_of[at..(at + len).min(n)].fill(node);
                at += len;
            }
            if seed == 8 {
                // Three nodes whose runs of three tokens take turns: each node's runs lie closer
                // together than a run of sources bridges, with the others' between them.
                node_of.iter_mut().enumerate().for_each(|(i, node)| *node = (i / 3 % 3) as u32);
            }
            let sorted = |mut v: Vec<((u32, u32), f64)>| {
                v.sort_by_key(|&(pair, _)| pair);
                v.into_iter().map(|(pair, t)| (pair, t.to_bits())).collect::<Vec<_>>()
            };
            let want = sorted(entry_by_entry(&m, &reach, &flow, answer, &node_of, nodes));
            assert!(want.len() >= nodes.min(2) - 1, "seed {seed}: a graph with edges");
            assert_eq!(sorted(pair_totals(&m, &reach, &flow, answer, &node_of, nodes)), want, "seed {seed}, {n} tokens, {nodes} nodes");
        }
    }
}
