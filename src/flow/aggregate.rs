//! Step 1, aggregate: M[k,i] = mean (or max) over the selected layers and heads, with the
//! self edge dropped and edges below ε zeroed (step 2's threshold). This is the only step that
//! reads the attention, so it is also where the values are checked: NaN, negative, non-causal,
//! rows that hold more than one unit of attention.

use super::matrix::Matrix;
use super::slab_row;
use crate::params::{AggregateParams, Reduce};
use crate::trace::{Attention, DataError, Problem, Trace};
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

/// Attention above the diagonal up to this much is taken for rounding, not information.
pub const CAUSAL_TOLERANCE: f32 = 1e-6;
/// A softmax row sums to 1; half-precision rounding over 8k entries stays far below this.
pub const ROW_SUM_TOLERANCE: f64 = 1e-2;

/// The rules this module checks, on one row as the device kernels summarise it (sum, minimum,
/// largest weight above the diagonal, count of NaN/infinite values). A row that fails goes back
/// to the CPU path, which names the exact place.
pub fn row_passes(sum: f64, min: f32, upper: f32, bad: f32) -> bool {
    bad == 0.0 && sum.is_finite() && min >= 0.0 && upper <= CAUSAL_TOLERANCE && sum <= 1.0 + ROW_SUM_TOLERANCE
}

/// The (layer, head) slabs of the file that the parameters select, plus their original layer
/// numbers and head indices for the export.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selection {
    pub slabs: Vec<(usize, usize)>,
    pub layers: Vec<usize>,
    pub heads: Vec<usize>,
}

pub fn select(trace: &Trace, p: &AggregateParams) -> Result<Selection, DataError> {
    let a = &trace.attention;
    let original = trace.original_layers();
    let file_layers: Vec<usize> = if !a.has_layer_axis {
        if p.layers.is_some() {
            return Err(DataError::new(
                Problem::Params,
                "the attention is fully aggregated ([N,N]); aggregate.layers cannot apply",
            ));
        }
        vec![0]
    } else {
        let picked: Vec<usize> = match p.layers {
            Some([s, e]) => {
                let picked: Vec<usize> = (0..a.layers).filter(|&j| (s..e).contains(&original[j])).collect();
                if picked.is_empty() {
                    return Err(DataError::new(
                        Problem::Params,
                        format!("aggregate.layers [{s}, {e}) holds none of the kept layers {original:?}"),
                    ));
                }
                picked
            }
            None => {
                let total = trace.meta.num_layers.unwrap_or_else(|| original.last().map_or(0, |&l| l + 1));
                let (lo, hi) = default_layers(total, p.deep_from);
                let picked: Vec<usize> = (0..a.layers).filter(|&j| (lo..hi).contains(&original[j])).collect();
                if picked.is_empty() { (0..a.layers).collect() } else { picked }
            }
        };
        picked
    };
    let heads: Vec<usize> = match &p.heads {
        None => (0..a.heads).collect(),
        Some(list) => {
            if !a.has_head_axis {
                return Err(DataError::new(
                    Problem::Params,
                    "the attention has no head axis (heads were averaged when written); aggregate.heads cannot apply",
                ));
            }
            if let Some(&bad) = list.iter().find(|&&h| h >= a.heads) {
                return Err(DataError::new(
                    Problem::Params,
                    format!("aggregate.heads names head {bad} but the trace has {} heads", a.heads),
                ));
            }
            let mut l = list.clone();
            l.sort_unstable();
            l.dedup();
            l
        }
    };
    let slabs = file_layers.iter().flat_map(|&l| heads.iter().map(move |&h| (l, h))).collect();
    let layers = if a.has_layer_axis { file_layers.iter().map(|&j| original[j]).collect() } else { trace.meta.layers.clone().unwrap_or_default() };
    Ok(Selection { slabs, layers, heads: if a.has_head_axis { heads } else { vec![] } })
}

/// Every value of every slab checked as the aggregation checks the slabs it reads (NaN,
/// negative, above the diagonal, rows over one unit). A trace is checked where it is read, so a
/// file whose bad values lie in slabs no analysis selected loads and runs; a file about to be
/// written (Python's `dump`) is checked whole, so one that would fail an analysis is refused
/// before it exists.
/// Slab by slab, row by row, with a row of scratch per thread: no matrix.
pub fn check_all(trace: &Trace) -> Result<(), DataError> {
    let a = &trace.attention;
    for (l, h) in (0..a.layers).flat_map(|l| (0..a.heads).map(move |h| (l, h))) {
        (0..a.n).into_par_iter().with_min_len(16).try_for_each_init(
            || (vec![0f32; a.n], vec![0f32; a.n]),
            |(row, buf), k| one_slab_row(a, l, h, k, true, &mut row[..k], buf),
        )?;
    }
    Ok(())
}

/// The paper's default: layers [floor(L/3), ceil(2L/3)), all of them when L < 3.
pub fn middle_third(total: usize) -> (usize, usize) {
    if total < 3 { (0, total) } else { (total / 3, (2 * total).div_ceil(3)) }
}

/// The layers aggregated when the parameters name none. Models of at least `deep_from` layers
/// take the paper's middle third (its finding on 28+-layer models). Shallower ones take the
/// middle third through the last layer, [floor(L/3), L): on the project's 3-layer policy the
/// per-token probe found that choice the best predictor of which tokens the answer depends on
/// across both tasks, where the middle layer alone and the last alone each failed one of them
/// (README, "Does flow find the tokens that matter?"). All layers when L < 3.
pub fn default_layers(total: usize, deep_from: usize) -> (usize, usize) {
    let (lo, hi) = middle_third(total);
    if total >= deep_from { (lo, hi) } else { (lo, total) }
}

/// A lone slab's row of at most this many bytes has the next one asked for while it is read,
/// where the CPU's prefetcher stops at a page's end (4 KiB) and so starts over at every such row
/// ([`slab_row::prefetcher_stops_at_pages`]): each cache line read asks for the one at the same
/// place in the next row, so the asking is spread over the row as its reading is. On an Intel
/// Xeon (2026-12-02, a batch of 64 1k-token `[N,N]` F32 traces, rows of one page) asking for the
/// whole next row at once before each row gained 8% traces/s on one thread, 6% on two; rows of
/// 8 KiB gained nothing, and at 16 KiB it cost 8%. Spread (2026-12-05, an Intel Xeon with
/// AVX-512, where a fifth of the batch's time had been spent waiting on those requests at each
/// row's start): on traces already checked (the app's re-aggregation, which reads only below the
/// diagonal) 8–9% more than asking all at once on one thread, 8–11% on two, and asking two or
/// three rows ahead no more; on fresh traces (the whole file read, the mapping first touched)
/// no different. On AMD's Zen 4 (2026-12-04, each trace of the batch on a core of
/// its own) asking at all cost 8–10% on one thread and 4–9% on two: its prefetcher follows the
/// rows unasked.
const PREFETCH_ROWS_UP_TO: usize = 4096;

pub fn aggregate(att: &Attention, sel: &Selection, p: &AggregateParams, cancel: &AtomicBool) -> Result<Matrix, DataError> {
    let n = att.n;
    // Every entry is written below (each row in full), or the matrix is dropped with the error.
    let mut m = Matrix::for_overwrite(n);
    let scale = 1.0 / sel.slabs.len() as f64;
    let threshold = p.threshold;
    let check_upper: Vec<bool> = sel.slabs.iter().map(|&(l, h)| !att.causal_checked(l, h)).collect();
    m.rows_mut().into_par_iter().enumerate().with_min_len(16).try_for_each_init(
        || (vec![0f32; n], vec![0f64; n]),
        |(buf, acc), (k, out)| {
            if cancel.load(Ordering::Relaxed) {
                return Err(DataError::new(Problem::Cancelled, "cancelled"));
            }
            if let [(l, h)] = sel.slabs[..] {
                // One slab (an [N,N] file, or one layer and head): mean and max are the values
                // themselves, so they go straight into M without the f64 accumulator.
                one_slab_row(att, l, h, k, check_upper[0], out, buf)?;
                if threshold > 0.0 {
                    out.iter_mut().filter(|x| ((**x) as f64) < threshold).for_each(|x| *x = 0.0);
                }
                return Ok(());
            }
            let mean = p.reduce == Reduce::Mean;
            let es = att.dtype.size();
            for (g, (group, uppers)) in sel.slabs.chunks(slab_row::GROUP).zip(check_upper.chunks(slab_row::GROUP)).enumerate() {
                // The rows in the order they lie in memory, the part up to the diagonal first,
                // so each slab's rows are one forward stream; then each slab's checks in the
                // order they had (a non-causal row reports that before a bad value).
                let mut lowers: [&[u8]; slab_row::GROUP] = [&[]; slab_row::GROUP];
                for (lower, &(l, h)) in lowers.iter_mut().zip(group) {
                    *lower = &att.row_bytes(l, h, k)[..(k + 1) * es];
                }
                let lowers = &lowers[..group.len()];
                let stats = slab_row::accumulate_rows(att.dtype, lowers, &mut acc[..=k], p.reduce, buf, g == 0);
                for ((&(l, h), &upper), (&(sum, min), lower)) in group.iter().zip(uppers).zip(stats.iter().zip(lowers)) {
                    if upper {
                        check_causal(&att.row_bytes(l, h, k)[(k + 1) * es..], slab_row::AHEAD, att, l, h, k)?;
                    }
                    if !sum.is_finite() || min < 0.0 {
                        let row = &mut buf[..=k];
                        att.dtype.decode(lower, row);
                        return Err(first_bad_value(row, att, l, h, k));
                    }
                    check_row_sum(sum, att, l, h, k)?;
                }
            }
            // `out` is M[k, 0..k]: no self edge, nothing from the future.
            slab_row::finish_row(&acc[..k], out, mean.then_some(scale), threshold);
            Ok(())
        },
    )?;
    att.mark_causal_checked(&sel.slabs);
    Ok(m)
}

/// Row `k` of slab (l, h) decoded below the diagonal into `out` (M's row, or a scratch row) and
/// checked, in memory order: the one-slab aggregation's row, and what [`check_all`] runs on
/// every slab. `buf` (≥ k + 1 values) is where a bad row is decoded again to name its value.
#[inline(always)]
fn one_slab_row(att: &Attention, l: usize, h: usize, k: usize, check_upper: bool, out: &mut [f32], buf: &mut [f32]) -> Result<(), DataError> {
    let es = att.dtype.size();
    let bytes = att.row_bytes(l, h, k);
    let ahead = match k + 1 < att.n && bytes.len() <= PREFETCH_ROWS_UP_TO && slab_row::prefetcher_stops_at_pages() {
        true => (att.row_bytes(l, h, k + 1).as_ptr() as usize).wrapping_sub(bytes.as_ptr() as usize),
        false => 0,
    };
    let (sum, min) = slab_row::decode_row(att.dtype, &bytes[..k * es], out, ahead);
    let mut diag = [0f32];
    att.dtype.decode(&bytes[k * es..(k + 1) * es], &mut diag);
    let (sum, min) = (sum + diag[0] as f64, min.min(diag[0]));
    if check_upper {
        check_causal(&bytes[(k + 1) * es..], ahead, att, l, h, k)?;
    }
    if !sum.is_finite() || min < 0.0 {
        buf[..k].copy_from_slice(out);
        buf[k] = diag[0];
        return Err(first_bad_value(&buf[..=k], att, l, h, k));
    }
    check_row_sum(sum, att, l, h, k)
}

fn check_row_sum(sum: f64, att: &Attention, l: usize, h: usize, k: usize) -> Result<(), DataError> {
    if sum > 1.0 + ROW_SUM_TOLERANCE {
        return Err(bad(
            Problem::RowSum,
            att,
            l,
            h,
            k,
            // Far from 1 (logits or counts stored by mistake) in scientific notation, not 40 digits.
            match sum < 1e4 {
                true => format!("sums to {sum:.4} > 1: not attention probabilities (softmax rows sum to 1)"),
                false => format!("sums to {sum:.3e} > 1: not attention probabilities (softmax rows sum to 1)"),
            },
        ));
    }
    Ok(())
}

/// Names the first NaN, infinite or negative entry of a row already known to hold one.
fn first_bad_value(row: &[f32], att: &Attention, l: usize, h: usize, k: usize) -> DataError {
    for (i, &x) in row.iter().enumerate() {
        if !x.is_finite() {
            return bad(Problem::NonFinite, att, l, h, k, format!("weight {x} on key {i}"));
        }
        if x < 0.0 {
            return bad(Problem::Negative, att, l, h, k, format!("negative weight {x} on key {i}"));
        }
    }
    // NaN makes `min` skip it but the sum catches it; reaching here means an overflowing sum.
    bad(Problem::NonFinite, att, l, h, k, "sums to infinity".into())
}

/// `ahead`: each cache line read asks for the one that many bytes on (0: none). A kilobyte
/// ([`slab_row::AHEAD`]) where several slabs' rows are read in turn (the upper parts of a
/// group's rows, each after the group's lower parts, went at the hardware prefetcher's pace:
/// half of a `[4,8,N,N]` F16 aggregation's time, and the prefetch took it 10–20% faster at 4k).
/// A lone slab's row is one forward stream, its next row asked for where that helps
/// ([`PREFETCH_ROWS_UP_TO`]).
fn check_causal(upper: &[u8], ahead: usize, att: &Attention, l: usize, h: usize, k: usize) -> Result<(), DataError> {
    // Fast path: zero bytes (what every causal dump holds above the diagonal).
    if slab_row::all_zero(upper, ahead) {
        return Ok(());
    }
    let mut vals = vec![0f32; upper.len() / att.dtype.size()];
    att.dtype.decode(upper, &mut vals);
    for (j, &x) in vals.iter().enumerate() {
        let i = k + 1 + j;
        if !x.is_finite() {
            return Err(bad(Problem::NonFinite, att, l, h, k, format!("weight {x} on key {i}")));
        }
        if x.abs() > CAUSAL_TOLERANCE {
            return Err(bad(
                Problem::NonCausal,
                att,
                l,
                h,
                k,
                format!("puts {x} on later token {i}: attention must be causal (zero above the diagonal)"),
            ));
        }
    }
    Ok(())
}

fn bad(problem: Problem, att: &Attention, l: usize, h: usize, k: usize, what: String) -> DataError {
    let place = match (att.has_layer_axis, att.has_head_axis) {
        (true, true) => format!("attention[layer {l}, head {h}] query row {k}"),
        (true, false) => format!("attention[layer {l}] query row {k}"),
        _ => format!("attention query row {k}"),
    };
    DataError::new(problem, format!("{place} {what}"))
}
