//! Step 1 on CUDA (`kernels/aggregate.cu`): the selected slabs' raw words go up as they are in
//! the file (or stay where they lie, for attention already on the device), and a launch decodes
//! a group of them and folds it into the trace's packed M inside the batch's one device buffer, where the
//! solves find it. Every row's checks come back with it, so a bad
//! file still gets the CPU's error, which names the exact layer, head and row.
//!
//! The whole batch is queued before the host waits once: uploads go through the page-locked ring
//! of `staging`, each overlapping the kernels queued before it, and one buffer of a group's slabs
//! serves every trace (the stream orders its reuse).

use super::{Cuda, THREADS, cfg, driver_err, guard};
use crate::flow::aggregate::{Selection, row_passes};
use crate::params::{AggregateParams, Reduce};
use crate::trace::Attention;
use cudarc::driver::{CudaSlice, PushKernelArg};
use std::ops::Range;
use std::time::Duration;

/// What aggregation left for one trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregated {
    Ok,
    /// A value breaks a rule of the format; the CPU path names the exact place.
    BadData,
}

/// One trace to aggregate: its attention, its slabs, and where its packed M starts in the batch.
pub(crate) struct Fold<'a> {
    pub att: &'a Attention,
    pub sel: &'a Selection,
    pub offset: usize,
}

/// Slabs one launch folds at most (`aggregate_group`'s `GROUP`): M is read and written once a
/// group, where a slab at a time it was read and written once a slab (on an H200 the F16
/// `[4,8,N,N]` fold at 4k ran at 424 GB/s so, 1 044 GB/s in groups).
const GROUP: usize = 8;
/// Fewer slabs than this go one at a time, to `aggregate`: a group's sums hold registers that
/// two slabs' loads do not pay for (on an H200, two slabs in a group up to 12% slower).
const FEWEST: usize = 3;
/// The share of the device's free memory the uploaded slabs of one group may take (one buffer
/// serves every group; the batch's matrices take up to half).
const GROUP_SHARE: usize = 8;

/// The runs of `slabs` (selected `(layer, head)`s, of a tensor with `heads` heads a layer) one
/// launch folds: at most `most` each, and where `adjacent`, slabs lying one after another in
/// memory (attention read where it lies, whose slabs the kernel finds a slab apart). A run of
/// fewer than [`FEWEST`] is folded slab by slab.
fn groups(slabs: &[(usize, usize)], heads: usize, most: usize, adjacent: bool) -> Vec<Range<usize>> {
    let index = |(l, h): (usize, usize)| l * heads + h;
    let mut runs: Vec<Range<usize>> = Vec::new();
    for i in 0..slabs.len() {
        match runs.last_mut() {
            Some(g) if g.len() < most.max(1) && (!adjacent || index(slabs[i]) == index(slabs[i - 1]) + 1) => g.end = i + 1,
            _ => runs.push(i..i + 1),
        }
    }
    runs.into_iter().flat_map(|g| if g.len() >= FEWEST { vec![g] } else { g.map(|i| i..i + 1).collect() }).collect()
}

impl Cuda {
    /// Folds every trace's slabs into `m`. Answers, per trace, whether its values passed the
    /// checks and the kernels' own time (CUDA events around each launch, uploads excluded): what
    /// the aggregation takes when the attention is already on the device.
    pub(crate) fn aggregate_batch(&self, m: &mut CudaSlice<f32>, folds: &[Fold], p: &AggregateParams) -> Result<Vec<(Aggregated, Duration)>, String> {
        guard("CUDA aggregate", || {
            let s = &self.stream;
            // Attention already on the device is read where it lies; the rest goes up a group of
            // slabs at a time.
            let slab_bytes = |f: &Fold| f.att.n * f.att.n * f.att.dtype.size();
            let resident = |f: &Fold| f.att.device_slab(0, 0).is_some();
            let room = self.free_memory().unwrap_or(1 << 30) / GROUP_SHARE;
            let most = |f: &Fold| if resident(f) { GROUP } else { (room / slab_bytes(f).max(1)).clamp(1, GROUP) };
            let buffer = folds.iter().filter(|f| !resident(f)).map(|f| most(f).min(f.sel.slabs.len()) * slab_bytes(f)).max().unwrap_or(0);
            let mut words = s.alloc_zeros::<u8>(buffer.next_multiple_of(4).max(4)).map_err(driver_err)?;
            let mut staging = self.staging();
            // Four floats per row and slab: sum, minimum, largest weight above the diagonal, bad count.
            let rows: Vec<usize> = folds.iter().map(|f| f.att.n * f.sel.slabs.len()).collect();
            let mut stats = s.alloc_zeros::<f32>(4 * rows.iter().sum::<usize>().max(1)).map_err(driver_err)?;
            let timed = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
            let (threshold, flag_max) = (p.threshold as f32, ((p.reduce == Reduce::Max) as u32) << 2);
            let mut events = Vec::with_capacity(folds.len());
            let mut at = 0;
            for f in folds {
                let (att, n) = (f.att, f.att.n as u32);
                let dtype = att.dtype.kernel_code();
                let slabs = &f.sel.slabs;
                let scale = 1.0 / slabs.len() as f32;
                let groups = groups(slabs, att.heads, most(f), resident(f));
                let mut timing = Vec::with_capacity(groups.len());
                for group in groups {
                    let (l, h) = slabs[group.start];
                    let resident = att.device_slab(l, h);
                    if resident.is_none() {
                        for (j, &(l, h)) in slabs[group.clone()].iter().enumerate() {
                            let bytes = slab_bytes(f);
                            staging.upload(s, att.rows_bytes(l, h, 0, att.n), &mut words.slice_mut(j * bytes..(j + 1) * bytes))?;
                        }
                    }
                    let count = group.len() as u32;
                    let flags: u32 = (group.start == 0) as u32 | ((group.end == slabs.len()) as u32) << 1 | flag_max;
                    let mut mv = m.slice_mut(f.offset..);
                    let mut sv = stats.slice_mut(4 * at..4 * (at + att.n * group.len()));
                    at += att.n * group.len();
                    let mut launch = s.launch_builder(if count == 1 { &self.f.aggregate } else { &self.f.aggregate_group });
                    match &resident {
                        Some(slab) => launch.arg(slab),
                        None => launch.arg(&words),
                    };
                    launch.arg(&count).arg(&mut mv).arg(&mut sv).arg(&n).arg(&dtype).arg(&flags).arg(&scale).arg(&threshold);
                    let start = s.record_event(timed).map_err(driver_err)?;
                    // SAFETY: the arguments match the kernel's signature (a resident slab's device
                    // address is its `const void*`); every index it forms stays within the group's
                    // slabs (`count` of n·n elements, one after another: uploaded so, or adjacent
                    // where they lie) and the trace's packed rows (n(n-1)/2 floats).
                    unsafe { launch.launch(cfg((n, 1, 1), THREADS)) }.map_err(driver_err)?;
                    timing.push((start, s.record_event(timed).map_err(driver_err)?));
                }
                events.push(timing);
            }
            let stats = self.read(&stats)?;
            let mut out = Vec::with_capacity(folds.len());
            let mut rows_at = 0;
            for ((f, timing), rows) in folds.iter().zip(&events).zip(rows) {
                let mut kernel_ms = 0.0;
                for (start, end) in timing {
                    kernel_ms += start.elapsed_ms(end).map_err(driver_err)? as f64;
                }
                let passed = stats[4 * rows_at..4 * (rows_at + rows)].chunks_exact(4).all(|r| row_passes(r[0] as f64, r[1], r[2], r[3]));
                rows_at += rows;
                if passed {
                    f.att.mark_causal_checked(&f.sel.slabs);
                }
                out.push((if passed { Aggregated::Ok } else { Aggregated::BadData }, Duration::from_secs_f64(kernel_ms / 1e3)));
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::groups;

    /// Uploaded slabs go in groups of the most a buffer holds, in the selection's order; slabs
    /// read where they lie only with the ones right after them in memory; a run of one or two
    /// slab by slab.
    #[test]
    fn slabs_are_folded_in_groups() {
        let singles = |r: std::ops::Range<usize>| r.map(|i| i..i + 1).collect::<Vec<_>>();
        let all: Vec<(usize, usize)> = (0..3).flat_map(|l| (0..4).map(move |h| (l, h))).collect();
        assert_eq!(groups(&all, 4, 8, false), vec![0..8, 8..12]);
        assert_eq!(groups(&all, 4, 8, true), vec![0..8, 8..12]);
        assert_eq!(groups(&all, 4, 5, true), vec![0..5, 5..10, 10..11, 11..12]);
        assert_eq!(groups(&all, 4, 0, false), singles(0..12));
        assert_eq!(groups(&all[..2], 4, 8, false), singles(0..2));
        // Layers 0 and 2, heads 1 and 3: nothing lies next to anything where it lies.
        let some = [(0, 1), (0, 3), (2, 1), (2, 3)];
        assert_eq!(groups(&some, 4, 8, false), vec![0..4]);
        assert_eq!(groups(&some, 4, 8, true), singles(0..4));
        // The last layer's heads and the next layer's first lie side by side.
        assert_eq!(groups(&[(0, 1), (0, 2), (0, 3), (1, 0), (1, 2)], 4, 8, true), vec![0..4, 4..5]);
        assert!(groups(&[], 4, 8, true).is_empty());
    }
}
