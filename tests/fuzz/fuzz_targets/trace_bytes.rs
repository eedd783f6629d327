//! The whole loader on arbitrary bytes: the safetensors header, the metadata, the tensors'
//! shapes, dtypes and offsets, the spans. It may refuse; it must not panic, hang or allocate by
//! what the bytes claim.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = flowtracer::Trace::from_bytes(data.to_vec(), std::path::Path::new("fuzz.safetensors")) {
        // A trace that loads is analysed the way `--export` would (small ones only: N² work).
        if t.n() <= 256 {
            let _ = flowtracer::analyze(&t, &Default::default(), &Default::default());
        }
    }
});
