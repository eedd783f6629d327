//! The span parser on arbitrary text and token counts: two bytes of N (little-endian), then the
//! text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [a, b, rest @ ..] = data else { return };
    let n = u16::from_le_bytes([*a, *b]) as usize;
    let Ok(text) = std::str::from_utf8(rest) else { return };
    if let Ok(s) = flowtracer::Span::parse(text, n) {
        assert!(s.start <= s.end && s.end <= n, "{text:?} parsed to {s} outside {n} tokens");
    }
});
