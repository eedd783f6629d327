//! wgpu compute against the CPU reference. Needs a wgpu adapter (Mesa's lavapipe does): without
//! one the tests say they skipped and why, unless FLOWTRACER_REQUIRE_GPU=1 (CI), where they fail.

mod common;
use flowtracer::app::views::matrix::{Layer, downsample, scale_for};
use flowtracer::app::worker::analyse;
use flowtracer::{Cancel, Params, Trace};
use std::path::Path;

fn gpu() -> Option<&'static flowtracer::gpu::Gpu> {
    match flowtracer::gpu::shared() {
        Ok(g) => {
            eprintln!("wgpu adapter: {}", g.adapter);
            Some(g)
        }
        Err(why) => {
            if std::env::var("FLOWTRACER_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("FLOWTRACER_REQUIRE_GPU=1 but there is no wgpu adapter: {why}");
            }
            eprintln!("SKIPPED: no wgpu adapter ({why}); install mesa-vulkan-drivers");
            None
        }
    }
}

#[test]
fn gpu_downsample_matches_the_cpu() {
    let Some(g) = gpu() else { return };
    let mut cases: Vec<(Trace, usize)> = vec![(flowtracer::sample_trace(), 64), (flowtracer::sample_trace(), 165)];
    for (n, s) in [(2usize, 2usize), (63, 20), (64, 64), (65, 7), (1000, 768), (300, 299)] {
        let b = common::random_trace(n, n as u64);
        cases.push((Trace::from_bytes(b.to_bytes(), Path::new("random.safetensors")).unwrap(), s));
    }
    for (trace, s) in &cases {
        let a = analyse(trace, trace.spans, Params::default(), None, &Cancel::default()).unwrap();
        for layer in [Layer::Aggregated, Layer::Conserved, Layer::EdgeFlow] {
            let cpu = downsample(trace, &a, layer, *s);
            let scale = scale_for(&a, layer).unwrap();
            let gpu = g.downsample(&a.matrix, &scale, *s).unwrap();
            assert_eq!(cpu.len(), gpu.len());
            for (j, (c, v)) in cpu.iter().zip(&gpu).enumerate() {
                let tol = if layer == Layer::Aggregated { 0.0 } else { 1e-5 * c.abs().max(1e-30) };
                assert!((c - v).abs() <= tol, "N = {}, s = {s}, {layer:?}, cell {j}: CPU {c} vs GPU {v}", trace.n());
            }
        }
    }
}
