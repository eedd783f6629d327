//! The parameter parser on arbitrary text: a first byte (odd: JSON, even: TOML), then the file.
//! What it accepts must pass its own checks and run the pipeline without a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [kind, rest @ ..] = data else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    if let Ok(p) = flowtracer::Params::parse(text, kind & 1 == 1) {
        assert!(p.validate().is_ok());
        if let Ok(r) = flowtracer::analyze(&flowtracer::sample_trace(), &p, &Default::default()) {
            assert!(r.credit.iter().all(|g| g.is_finite()), "credit must be finite with {p:?}");
        }
    }
});
