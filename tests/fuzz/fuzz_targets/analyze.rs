//! Structure-aware: a valid header around hostile numbers. Small traces of arbitrary size,
//! layout, dtype, spans and values (NaN, infinities, negatives, rows over one, non-causal
//! entries), through the loader and the whole pipeline with arbitrary parameters.
#![no_main]
use arbitrary::Arbitrary;
use flowtracer::Span;
use flowtracer::trace::{AttentionInput, Dtype, TraceBuilder};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    n: u8,
    layers: u8,
    heads: u8,
    rank: u8,
    dtype: u8,
    spans: [u8; 6],
    values: Vec<f32>,
    tokens: Vec<String>,
    fraction: f64,
    gamma: f64,
    normalize: bool,
    threshold: f64,
    max_paths: u8,
    reduce_max: bool,
}

fuzz_target!(|i: Input| {
    let n = (i.n as usize % 48) + 1;
    let (layers, heads) = ((i.layers as usize % 3) + 1, (i.heads as usize % 3) + 1);
    let shape = match i.rank % 3 {
        0 => vec![n, n],
        1 => vec![layers, n, n],
        _ => vec![layers, heads, n, n],
    };
    let len: usize = shape.iter().product();
    let values: Vec<f32> = (0..len).map(|k| i.values.get(k % i.values.len().max(1)).copied().unwrap_or(0.0)).collect();
    let dtype = [Dtype::F32, Dtype::F16, Dtype::BF16][i.dtype as usize % 3];
    let tokens: Vec<String> = (0..n).map(|k| i.tokens.get(k).cloned().unwrap_or_else(|| format!("t{k}"))).collect();
    let s = |a: u8, b: u8| {
        let (a, b) = (a as usize % (n + 1), b as usize % (n + 1));
        Span::new(a.min(b), a.max(b))
    };
    let [q0, q1, r0, r1, a0, a1] = i.spans;
    let builder = TraceBuilder::new(tokens, s(q0, q1), s(r0, r1), s(a0, a1), AttentionInput { shape, values, dtype });
    let Ok(trace) = flowtracer::Trace::from_bytes(builder.to_bytes(), std::path::Path::new("fuzz.safetensors")) else { return };
    let mut p = flowtracer::Params::default();
    p.credit.fraction = i.fraction;
    p.credit.gamma = i.gamma;
    p.credit.normalize_mean = i.normalize;
    p.aggregate.threshold = i.threshold;
    p.backbone.max_paths = i.max_paths as usize;
    if i.reduce_max {
        p.aggregate.reduce = flowtracer::params::Reduce::Max;
    }
    if let Ok(r) = flowtracer::analyze(&trace, &p, &Default::default()) {
        assert!(r.credit.iter().all(|g| g.is_finite()), "credit must be finite: {:?} with {p:?}", r.credit);
        assert!(r.flow.iter().all(|f| f.is_finite()), "flow must be finite");
    }
});
