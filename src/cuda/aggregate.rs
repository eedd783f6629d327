//! Step 1 on CUDA (`kernels/aggregate.cu`): each selected slab's raw words go up as they are in
//! the file, the kernel decodes them and folds them into the trace's packed M inside the batch's
//! one device buffer, where the solves find it. Every row's checks come back with it, so a bad
//! file still gets the CPU's error, which names the exact layer, head and row.

use super::{Cuda, driver_err, guard};
use crate::flow::aggregate::{CAUSAL_TOLERANCE, ROW_SUM_TOLERANCE, Selection};
use crate::params::{AggregateParams, Reduce};
use crate::trace::{Attention, Dtype};
use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use std::time::Duration;

/// What aggregation left for one trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregated {
    Ok,
    /// A value breaks a rule of the format; the CPU path names the exact place.
    BadData,
}

const THREADS: u32 = 256;

/// Device buffers one batch's aggregation reuses: the slab being folded and the rows' checks.
#[derive(Default)]
pub(crate) struct Staging {
    words: Option<CudaSlice<u8>>,
    stats: Option<CudaSlice<f32>>,
}

/// `slot`'s buffer, replaced by a larger one when it holds fewer than `len` elements.
fn grow<'a, T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(cuda: &Cuda, slot: &'a mut Option<CudaSlice<T>>, len: usize) -> Result<&'a mut CudaSlice<T>, String> {
    if slot.as_ref().is_none_or(|b| b.len() < len) {
        *slot = Some(cuda.stream.alloc_zeros::<T>(len.max(1)).map_err(driver_err)?);
    }
    Ok(slot.as_mut().expect("just filled"))
}

impl Cuda {
    /// Folds the slabs `sel` of `att` into `m` from float `offset` on (the trace's packed M).
    /// `staging` holds the upload and check buffers, reused across the batch's traces. Also
    /// answers the kernels' own time (events around each launch, uploads excluded): what the
    /// aggregation would take with the attention already on the device.
    pub(crate) fn aggregate_into(&self, m: &mut CudaSlice<f32>, offset: usize, att: &Attention, sel: &Selection, p: &AggregateParams, staging: &mut Staging) -> Result<(Aggregated, Duration), String> {
        guard("CUDA aggregate", || {
            let n = att.n;
            let s = &self.stream;
            let words = grow(self, &mut staging.words, (n * n * att.dtype.size()).next_multiple_of(4))?;
            let stats = grow(self, &mut staging.stats, 4 * n * sel.slabs.len())?;
            let dtype: u32 = match att.dtype {
                Dtype::F32 => 0,
                Dtype::F16 => 1,
                Dtype::BF16 => 2,
            };
            let (n32, scale, threshold) = (n as u32, 1.0 / sel.slabs.len() as f32, p.threshold as f32);
            let cfg = LaunchConfig { grid_dim: (n32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
            let timed = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
            let mut events = Vec::with_capacity(sel.slabs.len());
            for (si, &(l, h)) in sel.slabs.iter().enumerate() {
                let bytes = att.rows_bytes(l, h, 0, n);
                s.memcpy_htod(bytes, &mut words.slice_mut(0..bytes.len())).map_err(driver_err)?;
                let flags: u32 = (si == 0) as u32 | ((si + 1 == sel.slabs.len()) as u32) << 1 | ((p.reduce == Reduce::Max) as u32) << 2;
                let mut mv = m.slice_mut(offset..);
                let mut sv = stats.slice_mut(4 * n * si..4 * n * (si + 1));
                let mut launch = s.launch_builder(&self.f.aggregate);
                launch.arg(&*words).arg(&mut mv).arg(&mut sv).arg(&n32).arg(&dtype).arg(&flags).arg(&scale).arg(&threshold);
                // SAFETY: the arguments match the kernel's signature; every index it forms stays
                // within the slab (n·n elements) and the trace's packed rows (n(n-1)/2 floats).
                let start = s.record_event(timed).map_err(driver_err)?;
                unsafe { launch.launch(cfg) }.map_err(driver_err)?;
                events.push((start, s.record_event(timed).map_err(driver_err)?));
            }
            let stats = self.read(&stats.slice(0..4 * n * sel.slabs.len()))?;
            let mut kernel_ms = 0.0;
            for (start, end) in &events {
                kernel_ms += start.elapsed_ms(end).map_err(driver_err)? as f64;
            }
            let kernels = Duration::from_secs_f64(kernel_ms / 1e3);
            for row in stats.chunks_exact(4) {
                let (sum, min, upper, bad) = (row[0] as f64, row[1], row[2], row[3]);
                if bad > 0.0 || !sum.is_finite() || min < 0.0 || upper > CAUSAL_TOLERANCE || sum > 1.0 + ROW_SUM_TOLERANCE {
                    return Ok((Aggregated::BadData, kernels));
                }
            }
            att.mark_causal_checked(&sel.slabs);
            Ok((Aggregated::Ok, kernels))
        })
    }

    /// Copies a device buffer to the host, waiting for the work queued before it.
    pub(crate) fn read<T: cudarc::driver::DeviceRepr, S: cudarc::driver::DevicePtr<T>>(&self, src: &S) -> Result<Vec<T>, String> {
        let v = self.stream.clone_dtoh(src).map_err(driver_err)?;
        self.stream.synchronize().map_err(driver_err)?;
        Ok(v)
    }
}
