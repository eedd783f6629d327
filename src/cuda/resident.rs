//! Attention that already lives in device memory: a torch (or CuPy, or Numba) tensor on the GPU,
//! handed over from Python through `__cuda_array_interface__`. The aggregation kernel reads each
//! selected slab where it lies, so an RL step's attention never goes through host memory. Only
//! a trace that leaves the device (its values break a rule and the CPU must name the place, the
//! device failed, or another backend runs it) is copied back, once, when first read on the host.

use super::{driver_err, guard, shared};
use cudarc::driver::{result, sys};
use std::sync::OnceLock;

/// `len` bytes at device address `ptr`, kept alive by `owner` (the caller's tensor).
pub struct DeviceBytes {
    ptr: u64,
    len: usize,
    _owner: Box<dyn Send + Sync>,
    host: OnceLock<Vec<u8>>,
}

impl DeviceBytes {
    /// Checks that `ptr` is memory of the device this process's CUDA backend runs on, and waits
    /// for `stream` (the one the producer wrote it on, as the interface reports it) so that the
    /// kernels, on another stream, read finished values.
    ///
    /// # Safety
    /// `ptr..ptr + len` must be one allocation that `owner` keeps alive, and nothing may write
    /// it while a trace over it exists (the contract of every zero-copy reader).
    pub unsafe fn new(ptr: u64, len: usize, stream: Option<u64>, owner: Box<dyn Send + Sync>) -> Result<DeviceBytes, String> {
        let cuda = shared()?;
        if len > 0 {
            guard("CUDA", || {
                let ctx = cuda.stream.context();
                ctx.bind_to_thread().map_err(driver_err)?;
                let mut memory_type = 0u32;
                let mut ordinal = -1i32;
                // SAFETY: each attribute is written as the driver documents it (an unsigned int and an int).
                let asked = unsafe {
                    let kind = sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_MEMORY_TYPE;
                    let device = sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL;
                    sys::cuPointerGetAttribute((&mut memory_type as *mut u32).cast(), kind, ptr)
                        .result()
                        .and_then(|()| sys::cuPointerGetAttribute((&mut ordinal as *mut i32).cast(), device, ptr).result())
                };
                if let Err(e) = asked {
                    return Err(format!("address {ptr:#x} is not CUDA memory ({e})"));
                }
                if memory_type != sys::CUmemorytype::CU_MEMORYTYPE_DEVICE as u32 {
                    return Err(format!("address {ptr:#x} is host memory registered with CUDA, not device memory"));
                }
                if ordinal != ctx.ordinal() as i32 {
                    return Err(format!("the array is on CUDA device {ordinal}; the engine runs on device {}", ctx.ordinal()));
                }
                // The whole array inside one allocation: a shape that claims more than the memory
                // holds would have the kernel read past it (a fault that poisons the context).
                let (mut base, mut size) = (0u64, 0usize);
                // SAFETY: the driver writes the allocation's base and size.
                unsafe { sys::cuMemGetAddressRange_v2(&mut base, &mut size, ptr) }.result().map_err(driver_err)?;
                if ptr.checked_add(len as u64).is_none_or(|end| end > base.saturating_add(size as u64)) {
                    return Err(format!("its {len} bytes at {ptr:#x} run past the end of their CUDA allocation ({size} bytes at {base:#x})"));
                }
                if let Some(s) = stream {
                    // SAFETY: a stream handle the array's producer reports (1 and 2 are the legacy
                    // and per-thread default streams), in this context.
                    unsafe { result::stream::synchronize(s as sys::CUstream) }.map_err(driver_err)?;
                }
                Ok(())
            })?;
        }
        Ok(DeviceBytes { ptr, len, _owner: owner, host: OnceLock::new() })
    }

    pub fn address(&self) -> u64 {
        self.ptr
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes in host memory, copied on first use. Two threads asking at once may both copy;
    /// one copy is kept.
    pub fn host(&self) -> Result<&[u8], String> {
        if let Some(bytes) = self.host.get() {
            return Ok(bytes);
        }
        let mut bytes = vec![0u8; self.len];
        if self.len > 0 {
            let cuda = shared()?;
            guard("CUDA", || {
                cuda.stream.context().bind_to_thread().map_err(driver_err)?;
                // SAFETY: `ptr..ptr+len` is live device memory (`new`'s contract), `bytes` as long.
                unsafe { result::memcpy_dtoh_sync(&mut bytes, self.ptr) }.map_err(driver_err)
            })?;
        }
        Ok(self.host.get_or_init(|| bytes))
    }
}
