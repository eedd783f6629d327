//! The CUDA kernels executed on the CPU: `tests/cuda_emulator` compiles `kernels/*.cu` as C++
//! with CUDA's built-ins played by threads and a barrier, and launches them in the order the
//! CUDA backend does, for one batch of traces of different sizes, spans and dtypes. Their M must
//! match the CPU's aggregation and their reach and flow the CPU's solves on that M. This runs
//! the very source NVRTC compiles on machines with no GPU (CI); the device itself is checked by
//! tests/cuda.rs where one is lent.

mod common;
use flowtracer::flow::{Matrix, aggregate, reach, unit_flow};
use flowtracer::params::{Params, Reduce};
use flowtracer::trace::{Dtype, Trace};
use std::path::{Path, PathBuf};
use std::process::Command;

fn build_harness(dir: &Path) -> PathBuf {
    let exe = dir.join("harness");
    let out = Command::new("g++")
        .args(["-std=c++20", "-O1", "-pthread", "-o"])
        .arg(&exe)
        .arg("tests/cuda_emulator/harness.cpp")
        .output()
        .expect("g++ is needed to run the CUDA kernels on the CPU (Debian: apt-get install g++)");
    assert!(out.status.success(), "the kernels did not compile as C++:\n{}", String::from_utf8_lossy(&out.stderr));
    exe
}

struct Case {
    trace: Trace,
    params: Params,
}

fn input(cases: &[Case]) -> Vec<u8> {
    let mut b = Vec::new();
    let u = |b: &mut Vec<u8>, x: u32| b.extend_from_slice(&x.to_le_bytes());
    u(&mut b, cases.len() as u32);
    for c in cases {
        let t = &c.trace;
        let s = t.spans;
        let sel = aggregate::select(t, &c.params.aggregate).unwrap();
        for x in [t.n(), s.question.start, s.question.end, s.answer.start, s.answer.end] {
            u(&mut b, x as u32);
        }
        let dtype = match t.attention.dtype {
            Dtype::F32 => 0,
            Dtype::F16 => 1,
            Dtype::BF16 => 2,
        };
        u(&mut b, dtype);
        u(&mut b, sel.slabs.len() as u32);
        u(&mut b, if c.params.aggregate.reduce == Reduce::Max { 4 } else { 0 });
        b.extend_from_slice(&(c.params.aggregate.threshold as f32).to_le_bytes());
        for &(l, h) in &sel.slabs {
            b.extend_from_slice(t.attention.rows_bytes(l, h, 0, t.n()));
        }
    }
    b
}

fn cases() -> Vec<Case> {
    let open = |bytes: Vec<u8>, name: &str| Trace::from_bytes(bytes, Path::new(name)).unwrap();
    let mut cases = vec![Case { trace: flowtracer::sample_trace(), params: Params::default() }];
    for (n, seed) in [(2usize, 1u64), (3, 2), (63, 3), (64, 4), (65, 5), (130, 8), (300, 6)] {
        cases.push(Case { trace: open(common::random_trace(n, seed).to_bytes(), &format!("random-{n}")), params: Params::default() });
    }
    let mut max = Params::default();
    max.aggregate.reduce = Reduce::Max;
    max.aggregate.threshold = 0.1;
    for (dtype, shape) in [(Dtype::F16, vec![3, 2, 70, 70]), (Dtype::BF16, vec![2, 70, 70]), (Dtype::F32, vec![70, 70])] {
        for params in [Params::default(), max.clone()] {
            cases.push(Case { trace: open(common::chain_builder(70, dtype, shape.clone()).to_bytes(), &format!("{dtype:?}")), params });
        }
    }
    // A value above the diagonal: the kernel's row checks must catch it.
    cases.push(Case { trace: open(common::noncausal_trace(40).to_bytes(), "noncausal"), params: Params::default() });
    cases
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()) + 1e-300
}

#[test]
fn cuda_kernels_run_on_the_cpu_match_the_reference() {
    let dir = common::temp_dir("cuda-emulator");
    let exe = build_harness(&dir);
    let cases = cases();
    std::fs::write(dir.join("in.bin"), input(&cases)).unwrap();
    let status = Command::new(&exe).arg(dir.join("in.bin")).arg(dir.join("out.bin")).status().unwrap();
    assert!(status.success(), "the emulated kernels failed: {status}");
    let out = std::fs::read(dir.join("out.bin")).unwrap();
    let mut pos = 0;
    let mut take = |len: usize| {
        let s = &out[pos..pos + len];
        pos += len;
        s
    };
    for c in &cases {
        let t = &c.trace;
        let (n, name) = (t.n(), t.path.display().to_string());
        let ok = u32::from_le_bytes(take(4).try_into().unwrap()) == 1;
        let mut m = Matrix::zeros(n);
        let len = m.data.len();
        for (x, w) in m.data.iter_mut().zip(take(len * 4).chunks_exact(4)) {
            *x = f32::from_le_bytes(w.try_into().unwrap());
        }
        let f64s = |b: &[u8]| b.chunks_exact(8).map(|w| f64::from_le_bytes(w.try_into().unwrap())).collect::<Vec<f64>>();
        let h = f64s(take(n * 8));
        let f = f64s(take(n * 8));
        let sources = u32::from_le_bytes(take(4).try_into().unwrap()) as usize;

        let sel = aggregate::select(t, &c.params.aggregate).unwrap();
        let cpu = aggregate::aggregate(&t.attention, &sel, &c.params.aggregate, &Default::default());
        assert_eq!(ok, cpu.is_ok(), "{name}: the kernel's row checks disagree with the CPU's ({:?})", cpu.err());
        let Ok(cpu_m) = cpu else { continue };
        for (k, (a, b)) in cpu_m.data.iter().zip(&m.data).enumerate() {
            assert!(close(*a as f64, *b as f64, 1e-6), "{name}: M packed[{k}]: cpu {a} vs kernel {b}");
        }
        // The solves on the kernel's own M: both sum f32 weights in double, so only the order
        // of the additions differs.
        let h_cpu = reach::reach(&m, t.spans.answer);
        let uf = unit_flow::unit_flow(&m, &h_cpu, t.spans);
        assert_eq!(sources, uf.sources, "{name}: question sources");
        for k in 0..n {
            assert!(close(h_cpu[k], h[k], 1e-12), "{name}: reach[{k}]: cpu {} vs kernel {}", h_cpu[k], h[k]);
            assert!(close(uf.flow[k], f[k], 1e-12), "{name}: flow[{k}]: cpu {} vs kernel {}", uf.flow[k], f[k]);
        }
    }
    assert_eq!(pos, out.len(), "the harness wrote more than the cases");
}
