//! Memory the matrix budget does not see: a trace of line breaks once got a credit picture a
//! line per token tall (20 000 `"\n"` tokens: 893 × 420 080 px, 3.75 GB). The export's peak
//! memory on such a trace must stay under twice that of the same trace with ordinary tokens.
//! (Its own test binary: it reads the peak RSS of its children, which other tests would share.)

mod common;
use flowtracer::trace::Dtype;

#[cfg(unix)]
fn peak_rss_of_children_kib() -> i64 {
    // SAFETY: getrusage writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    u.ru_maxrss
}

#[cfg(unix)]
#[test]
fn a_trace_of_line_breaks_costs_no_more_memory_than_ordinary_text() {
    let n = 6000;
    let dir = common::temp_dir("memory-newlines");
    std::fs::create_dir_all(&dir).unwrap();
    let export = |name: &str, token: &str| {
        let mut tokens: Vec<String> = vec!["1+1".into(), "?".into()];
        tokens.extend((2..n - 1).map(|_| token.to_string()));
        tokens.push("2".into());
        let path = dir.join(format!("{name}.safetensors"));
        common::chain_with_tokens(tokens, Dtype::F16).write(&path).unwrap();
        let out = dir.join(format!("out-{name}"));
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_flowtracer"))
            .args(["--export", out.to_str().unwrap(), "--format", "png", path.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
        peak_rss_of_children_kib()
    };
    // The ordinary trace first: the peak after the second child is the larger of the two.
    let ordinary = export("ordinary", "ab");
    let both = export("newlines", "\n");
    eprintln!("peak RSS: ordinary tokens {ordinary} KiB, line breaks at most {both} KiB");
    assert!(both < 2 * ordinary, "a trace of line breaks peaked at {both} KiB against {ordinary} KiB for ordinary tokens");
}
