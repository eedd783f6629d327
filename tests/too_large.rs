//! A trace whose N×N matrix would not fit the memory budget is refused at open, by name.
//! (Its own test binary: it sets the process-wide budget variable.)

mod common;
use flowtracer::trace::{Dtype, MAX_MATRIX_BYTES_ENV, Problem, Trace};

#[test]
fn refuses_what_would_not_fit() {
    // SAFETY: this binary has one test, so no other thread reads the environment meanwhile.
    unsafe { std::env::set_var(MAX_MATRIX_BYTES_ENV, "500") };
    let n = 20; // 20·19/2·4 = 760 bytes > 500
    let bytes = common::chain_builder(n, Dtype::F32, vec![n, n]).to_bytes();
    let e = Trace::from_bytes(bytes, std::path::Path::new("big.safetensors")).err().expect("refused");
    assert_eq!(e.problem, Problem::TooLarge);
    assert!(e.to_string().starts_with("big.safetensors:") && e.to_string().contains(MAX_MATRIX_BYTES_ENV), "{e}");
}
