//! Step 1 on CUDA (`kernels/aggregate.cu`): each selected slab's raw words go up as they are in
//! the file (or stay where they lie, for attention already on the device), the kernel decodes
//! them and folds them into the trace's packed M inside the batch's one device buffer, where the
//! solves find it. Every row's checks come back with it, so a bad
//! file still gets the CPU's error, which names the exact layer, head and row.
//!
//! The whole batch is queued before the host waits once: uploads go through the page-locked ring
//! of `staging`, each overlapping the kernels queued before it, and one slab buffer serves every
//! trace (the stream orders its reuse).

use super::{Cuda, THREADS, cfg, driver_err, guard};
use crate::flow::aggregate::{Selection, row_passes};
use crate::params::{AggregateParams, Reduce};
use crate::trace::Attention;
use cudarc::driver::{CudaSlice, PushKernelArg};
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

impl Cuda {
    /// Folds every trace's slabs into `m`. Answers, per trace, whether its values passed the
    /// checks and the kernels' own time (CUDA events around each launch, uploads excluded): what
    /// the aggregation takes when the attention is already on the device.
    pub(crate) fn aggregate_batch(&self, m: &mut CudaSlice<f32>, folds: &[Fold], p: &AggregateParams) -> Result<Vec<(Aggregated, Duration)>, String> {
        guard("CUDA aggregate", || {
            let s = &self.stream;
            // Attention already on the device is read where it lies; the rest goes up a slab at a time.
            let uploaded = folds.iter().filter(|f| f.att.device_slab(0, 0).is_none());
            let slab_bytes = uploaded.map(|f| f.att.n * f.att.n * f.att.dtype.size()).max().unwrap_or(0);
            let mut words = s.alloc_zeros::<u8>(slab_bytes.next_multiple_of(4).max(4)).map_err(driver_err)?;
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
                let scale = 1.0 / f.sel.slabs.len() as f32;
                let mut timing = Vec::with_capacity(f.sel.slabs.len());
                for (si, &(l, h)) in f.sel.slabs.iter().enumerate() {
                    let resident = att.device_slab(l, h);
                    if resident.is_none() {
                        staging.upload(s, att.rows_bytes(l, h, 0, att.n), &mut words)?;
                    }
                    let flags: u32 = (si == 0) as u32 | ((si + 1 == f.sel.slabs.len()) as u32) << 1 | flag_max;
                    let mut mv = m.slice_mut(f.offset..);
                    let mut sv = stats.slice_mut(4 * at..4 * (at + att.n));
                    at += att.n;
                    let mut launch = s.launch_builder(&self.f.aggregate);
                    match &resident {
                        Some(slab) => launch.arg(slab),
                        None => launch.arg(&words),
                    };
                    launch.arg(&mut mv).arg(&mut sv).arg(&n).arg(&dtype).arg(&flags).arg(&scale).arg(&threshold);
                    let start = s.record_event(timed).map_err(driver_err)?;
                    // SAFETY: the arguments match the kernel's signature (a resident slab's device
                    // address is its `const void*`); every index it forms stays within the slab
                    // (n·n elements) and the trace's packed rows (n(n-1)/2 floats).
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
