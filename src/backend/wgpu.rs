//! The wgpu backend: step 1 (aggregation, the only step that reads the attention), steps 3 and 5
//! (the reach and flow solves), step 6's throughput and step 9's selection on the solves' h and
//! f, and step 7's widest paths run as compute shaders (`gpu::OnDevice` offers them to the one
//! assembly); the roles (step 8) run on the host as on the CPU. A step the device fails runs on
//! the CPU, recorded in the result's provenance; a bad file gets the CPU's error, which names the
//! exact layer, head and row.

use super::Backend;
use crate::flow::{self, Cancel, Executor, FlowResult, Matrix, Plan};
use crate::gpu::{Gpu, OnDevice};
use crate::trace::{Trace, TraceError};
use rayon::prelude::*;

pub struct Wgpu {
    pub gpu: &'static Gpu,
}

impl Backend for Wgpu {
    fn executor(&self) -> Executor {
        Executor::Wgpu
    }

    fn device(&self) -> String {
        self.gpu.adapter.clone()
    }

    fn memory_floor(&self, host: &[u8], repeat: usize) -> Option<Result<super::DeviceFloor, String>> {
        Some(self.gpu.scoped("wgpu floor", || self.gpu.memory_floor(host, repeat)))
    }

    /// Traces of a batch go through the one queue from several threads at once: while one waits
    /// for its readback (the solves' h and f, each backbone path), the others' work runs.
    fn execute(&self, batch: &[(&Trace, &Plan)], cancel: &Cancel) -> Vec<Result<(FlowResult, Matrix), TraceError>> {
        batch.par_iter().map(|&(t, p)| flow::execute(t, p, &OnDevice::new(self.gpu), cancel)).collect()
    }

    fn batch_size(&self) -> usize {
        16
    }
}
