//! The span parser on arbitrary text and token counts: two bytes of N (little-endian), then the
//! text. It may refuse; it must not panic, and what it accepts is well formed and reads back the
//! same. (Whether a span fits the trace is `Spans::validate`'s to say, which the loader calls.)
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [a, b, rest @ ..] = data else { return };
    let n = u16::from_le_bytes([*a, *b]) as usize;
    let Ok(text) = std::str::from_utf8(rest) else { return };
    if let Ok(s) = flowtracer::Span::parse(text, n) {
        assert!(s.start <= s.end, "{text:?} parsed to {s}, which ends before it starts");
        assert_eq!(flowtracer::Span::parse(&s.to_string(), n), Ok(s), "{s} does not read back");
        let spans = flowtracer::Spans { question: s, response: s, answer: s };
        if s.end > n {
            assert!(spans.validate(n).is_err(), "{s} passes as a span of {n} tokens");
        }
    }
});
