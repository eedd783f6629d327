//! The CUDA backend executed on the CPU, where there is no GPU (CI). `tests/cuda_emulator`
//! compiles `kernels/*.cu` as C++ with CUDA's built-ins played by coroutines (`emulate.h`):
//! - `harness.cpp` launches the kernels in the backend's order for one batch of traces of
//!   different sizes, spans and dtypes: their M must match the CPU's aggregation, and their reach
//!   and flow the CPU's solves on that M;
//! - `fake_driver.cpp` is a stand-in `libcuda.so` around the same kernels: the real binary's
//!   `--backend cuda` (NVRTC, cudarc, the batching, every step's kernels, the fallback) runs end
//!   to end against it.
//!
//! The device itself is checked by tests/cuda.rs where one is lent.

mod common;
use flowtracer::flow::{Matrix, aggregate, reach, unit_flow};
use flowtracer::params::{Params, Reduce};
use flowtracer::trace::{Dtype, Trace};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Compiles one of the emulator's sources with the kernels, as a program or a shared library.
fn build(source: &str, out: &Path, shared: bool) {
    let mut cmd = Command::new("g++");
    cmd.args(["-std=c++20", "-O1", "-pthread"]);
    if shared {
        cmd.args(["-shared", "-fPIC"]);
    }
    let built = cmd.arg("-o").arg(out).arg(source).output().expect("g++ is needed to run the CUDA kernels on the CPU (Debian: apt-get install g++)");
    assert!(built.status.success(), "{source} did not compile:\n{}", String::from_utf8_lossy(&built.stderr));
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
        u(&mut b, t.attention.dtype.kernel_code());
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
    let exe = dir.join("harness");
    build("tests/cuda_emulator/harness.cpp", &exe, false);
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

/// Exports `inputs` with `--backend`, the fake driver first on the library path when `fake` is set.
fn export(out: &Path, backend: &str, fake: Option<&Path>, inputs: &[PathBuf], extra_env: &[(&str, &str)]) -> (serde_json::Value, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flowtracer"));
    cmd.args(["--export", out.to_str().unwrap(), "--backend", backend, "--format", "json,credits"]).args(inputs);
    if let Some(dir) = fake {
        on_fake_driver(&mut cmd, dir);
    }
    cmd.envs(extra_env.iter().copied());
    let o = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "{backend}: one input is broken, so exit 1:\n{stderr}");
    (serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap(), stderr)
}

/// Puts the stand-in driver in `dir` first on the child's library path.
fn on_fake_driver(cmd: &mut Command, dir: &Path) {
    let old = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
    cmd.env("LD_LIBRARY_PATH", format!("{}:{old}", dir.display()));
}

/// A folder holding the stand-in `libcuda.so`, for a child's library path; None (the test says it
/// skipped) without NVRTC, which the backend needs to compile its kernels before it launches them.
fn fake_driver(name: &str) -> Option<common::TempDir> {
    let found = flowtracer::cuda::nvrtc_loads();
    common::required_or_skip(found, "FLOWTRACER_REQUIRE_NVRTC", "NVRTC", " (the backend compiles its kernels before it launches them)")?;
    let dir = common::temp_dir(name);
    build("tests/cuda_emulator/fake_driver.cpp", &dir.join("libcuda.so"), true);
    Some(dir)
}

#[test]
fn the_cuda_backend_runs_end_to_end_on_an_emulated_driver() {
    let Some(dir) = fake_driver("cuda-driver") else { return };
    let mut inputs = vec![PathBuf::from("sample_traces")];
    for (n, seed) in [(2usize, 1u64), (63, 3), (64, 4), (65, 5), (130, 8), (300, 6)] {
        let p = dir.join(format!("random-{n}.safetensors"));
        common::random_trace(n, seed).write(&p).unwrap();
        inputs.push(p);
    }
    let long = dir.join("long-hops.safetensors");
    common::long_hop_trace(400, 70).write(&long).unwrap();
    inputs.push(long);
    let bad = dir.join("noncausal.safetensors");
    common::noncausal_trace(40).write(&bad).unwrap();
    inputs.push(bad);

    let (cpu, _) = export(&dir.join("cpu"), "cpu", None, &inputs, &[]);
    let (cuda, _) = export(&dir.join("cuda"), "cuda", Some(&dir), &inputs, &[]);
    assert_eq!(cuda["backend"], "cuda");
    assert_eq!(cuda["exported"], cpu["exported"]);
    let (a, b) = (cpu["traces"].as_array().unwrap(), cuda["traces"].as_array().unwrap());
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        // The broken file fails the same way: the CPU re-reads it for the exact place.
        assert_eq!((&x["status"], &x["error"]), (&y["status"], &y["error"]), "{}", x["source"]);
        let Some(rel) = x["output"].as_str() else { continue };
        let read = |which: &str| -> serde_json::Value { serde_json::from_slice(&std::fs::read(dir.join(which).join(rel)).unwrap()).unwrap() };
        let (c, d) = (read("cpu"), read("cuda"));
        assert!(d["backend"].as_str().unwrap().starts_with("cuda: FlowTracer CPU emulator"), "{rel}: ran on {}", d["backend"]);
        for key in ["reach", "flow", "throughput"] {
            for (k, (p, q)) in c[key].as_array().unwrap().iter().zip(d[key].as_array().unwrap()).enumerate() {
                let (p, q) = (p.as_f64().unwrap(), q.as_f64().unwrap());
                assert!(close(p, q, 1e-6), "{rel} {key}[{k}]: cpu {p} vs cuda {q}");
            }
        }
        assert_eq!(c["credit"], d["credit"], "{rel}: credit");
        // Step 7 runs on the host, on the matrix that came down, from the device's solves (a
        // chain of dependent sweeps: on an H200 the device's rounds took 50.6 ms at 8k, the CPU's
        // 0.8). Its widths are doubles from solves that differ only in the order of their sums:
        // the same paths, flows equal but for the last bits.
        if d["status"] == "ok" {
            assert_eq!(d["provenance"]["steps"]["backbone"], "cpu", "{rel}");
            assert_eq!(d["provenance"]["steps"]["flow"], "cuda", "{rel}");
        }
        let (p, q) = (c["backbone"].as_array().unwrap(), d["backbone"].as_array().unwrap());
        assert_eq!(p.len(), q.len(), "{rel}: backbone paths");
        for (x, y) in p.iter().zip(q) {
            assert_eq!(x["tokens"], y["tokens"], "{rel}: backbone path");
            assert!(close(x["flow"].as_f64().unwrap(), y["flow"].as_f64().unwrap(), 1e-6), "{rel}: path flow {} vs {}", x["flow"], y["flow"]);
        }
        for key in ["hubs", "checkpoints"] {
            assert_eq!(c[key], d[key], "{rel}: {key}");
        }
    }
    assert_eq!(std::fs::read(dir.join("cpu/credits.safetensors")).unwrap(), std::fs::read(dir.join("cuda/credits.safetensors")).unwrap());

    // A machine that refuses page-locked memory: the copies go the driver's own way, still on
    // the device, with the same answers.
    // (The samples and the broken file: enough to go up and come down many times.)
    let some = [inputs[0].clone(), inputs[inputs.len() - 1].clone()];
    let (unpinned, _) = export(&dir.join("unpinned"), "cuda", Some(&dir), &some, &[("FLOWTRACER_FAKE_CUDA_NO_PAGE_LOCKED", "1")]);
    assert_eq!(unpinned["exported"], 17);
    for rel in unpinned["traces"].as_array().unwrap().iter().filter_map(|t| t["output"].as_str()) {
        let read = |which: &str| -> serde_json::Value { serde_json::from_slice(&std::fs::read(dir.join(which).join(rel)).unwrap()).unwrap() };
        let (c, d) = (read("cpu"), read("unpinned"));
        assert!(d["backend"].as_str().unwrap().starts_with("cuda: "), "{rel}: ran on {}", d["backend"]);
        assert_eq!((&c["credit"], &c["hubs"]), (&d["credit"], &d["hubs"]), "{rel}");
    }

    // A device that fails mid-run: that batch goes to the CPU, the binary says which steps fell
    // back and why, once per trace, and nothing is lost.
    let (failed, stderr) = export(&dir.join("failing"), "cuda", Some(&dir), &inputs, &[("FLOWTRACER_FAKE_CUDA_FAIL_LAUNCH", "3")]);
    assert!(stderr.contains("warning: ") && stderr.contains("aggregate, reach, flow, throughput, credit fell back") && stderr.contains("fell back to the cpu: CUDA"), "{stderr}");
    assert_eq!(failed["exported"], cpu["exported"]);
    let fell_back = failed["traces"].as_array().unwrap().iter().filter_map(|t| t["output"].as_str()).map(|rel| {
        let r: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("failing").join(rel)).unwrap()).unwrap();
        r["backend"].as_str().unwrap().to_string()
    });
    assert!(fell_back.clone().all(|b| b == "cpu (cuda failed)"), "{:?}", fell_back.collect::<Vec<_>>());
    assert_eq!(std::fs::read(dir.join("cpu/credits.safetensors")).unwrap(), std::fs::read(dir.join("failing/credits.safetensors")).unwrap());
}

/// Set in the child process that runs [`resident_attention_in_the_child`] on the fake driver.
const CHILD: &str = "FLOWTRACER_RESIDENT_CHILD";

/// Attention already in device memory (a CUDA tensor handed over from Python) is read where it
/// lies: the CUDA backend's results equal the CPU's on the same values while no attention byte
/// goes up, a bad file still gets the CPU's exact error, and a device that fails sends the batch
/// to the CPU through a host copy, losing nothing. Runs in child processes of this test binary
/// with the fake driver on their library path (once as is, once failing the first launch).
/// `bench --backend cuda` measures the device's own floor in the same run (its memory by a
/// device-to-device copy, its link by copying the trace up) and reads each step against it: on
/// the emulator the "device" is this machine's memory, so every figure is a finite rate, and the
/// aggregation's kernels are timed by the driver's events.
#[test]
fn the_bench_reads_the_device_against_its_own_floor() {
    let Some(dir) = fake_driver("cuda-bench") else { return };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flowtracer"));
    on_fake_driver(&mut cmd, &dir);
    common::assert_device_floor_table(cmd, "cuda", true, &dir);
}

#[test]
fn attention_on_the_device_is_read_where_it_lies() {
    let Some(dir) = fake_driver("cuda-resident") else { return };
    let old = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
    for fail in ["0", "1"] {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "resident_attention_in_the_child", "--include-ignored", "--nocapture", "--test-threads=1"])
            .env("LD_LIBRARY_PATH", format!("{}:{old}", dir.display()))
            .env(CHILD, "1")
            .env("FLOWTRACER_FAKE_CUDA_FAIL_LAUNCH", fail)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let o = common::wait_with_deadline(&mut child, 300);
        let out = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success() && out.contains("1 passed"), "the child (failing launch {fail}) failed:\n{out}");
    }
}

#[test]
#[ignore = "run by attention_on_the_device_is_read_where_it_lies, in a child process on the fake driver"]
fn resident_attention_in_the_child() {
    use flowtracer::backend::{self, Backend, Choice};
    use flowtracer::flow::Cancel;
    use flowtracer::trace::{ArrayInput, Storage};
    assert!(std::env::var_os(CHILD).is_some(), "run by attention_on_the_device_is_read_where_it_lies");
    let failing = std::env::var("FLOWTRACER_FAKE_CUDA_FAIL_LAUNCH").is_ok_and(|v| v != "0");
    let open = |bytes: Vec<u8>, name: &str| Trace::from_bytes(bytes, Path::new(name)).unwrap();
    let mut host = vec![flowtracer::sample_trace()];
    for (n, seed) in [(2usize, 1u64), (65, 5), (300, 6)] {
        host.push(open(common::random_trace(n, seed).to_bytes(), &format!("random-{n}")));
    }
    for (dtype, shape) in [(Dtype::F16, vec![3, 2, 70, 70]), (Dtype::BF16, vec![2, 70, 70])] {
        host.push(open(common::chain_builder(70, dtype, shape).to_bytes(), &format!("{dtype:?}")));
    }
    host.push(open(common::noncausal_trace(40).to_bytes(), "noncausal"));
    // The fake driver's device memory is host memory: each trace's attention, copied into a
    // buffer of its own, stands for a tensor on the GPU.
    let on_device = |t: &Trace| {
        let a = &t.attention;
        let buffer = a.bytes().to_vec();
        let ptr = buffer.as_ptr() as u64;
        let shape = match (a.has_layer_axis, a.has_head_axis) {
            (true, true) => vec![a.layers, a.heads, a.n, a.n],
            (true, false) => vec![a.layers, a.n, a.n],
            _ => vec![a.n, a.n],
        };
        // SAFETY: `buffer` is the whole array and the storage keeps it alive, unwritten.
        let bytes = unsafe { flowtracer::cuda::DeviceBytes::new(ptr, buffer.len(), Some(1), Box::new(buffer)) }.unwrap();
        let input = ArrayInput { bytes: Storage::Device(bytes), dtype: a.dtype, shape };
        let s = t.spans;
        let d = Trace::from_array(input, t.tokens.clone(), s.question, s.answer, Some(s.response), &t.path).unwrap();
        assert_eq!(d.attention.address() as u64, ptr, "{}: the trace reads the device array itself", t.path.display());
        d
    };
    let device: Vec<Trace> = host.iter().map(on_device).collect();
    let cuda = backend::select(Choice::Cuda).unwrap();
    let params = Params::default();
    let cancel = Cancel::default();
    // What the driver was asked to copy up, read from the fake driver itself.
    let bytes_up = || {
        unsafe extern "C" {
            fn dlopen(name: *const std::ffi::c_char, flags: i32) -> *mut std::ffi::c_void;
            fn dlsym(handle: *mut std::ffi::c_void, name: *const std::ffi::c_char) -> *mut std::ffi::c_void;
        }
        // SAFETY: the fake driver cudarc loaded, found by the same name; its counter takes no arguments.
        unsafe {
            let lib = dlopen(c"libcuda.so".as_ptr(), 2);
            let f = dlsym(lib, c"flowtracer_fake_bytes_up".as_ptr());
            assert!(!f.is_null(), "the fake driver is not the libcuda.so this process loaded");
            std::mem::transmute::<*mut std::ffi::c_void, extern "C" fn() -> u64>(f)()
        }
    };
    let run = |ts: &[Trace]| {
        let before = bytes_up();
        let batch: Vec<&Trace> = ts.iter().collect();
        let results = cuda.run_batch(&batch, &params, &cancel);
        (results, bytes_up() - before)
    };
    let (from_device, up_device) = run(&device);
    let cpu: Vec<_> = host.iter().map(|t| backend::Cpu.run_batch(&[t], &params, &cancel).pop().unwrap()).collect();
    for ((t, c), d) in host.iter().zip(&cpu).zip(&from_device) {
        match (c, d) {
            (Ok(c), Ok(d)) if failing => {
                assert_eq!(d.provenance.label(), "cpu (cuda failed)", "{}", t.path.display());
                assert_eq!((&c.reach, &c.flow, &c.credit, &c.hubs), (&d.reach, &d.flow, &d.credit, &d.hubs), "{}: the CPU's fallback on the host copy", t.path.display());
            }
            (Ok(c), Ok(d)) => common::assert_matches_cpu(t, c, d, "cuda"),
            (Err(c), Err(d)) => assert_eq!(c.to_string(), d.to_string(), "the device trace's error is the CPU's"),
            _ => panic!("{}: cpu {:?} vs cuda {:?}", t.path.display(), c.as_ref().err(), d.as_ref().err()),
        }
    }
    if !failing {
        // The same traces from host memory: the only difference in what went up is every
        // selected slab of every trace.
        let (from_host, up_host) = run(&host);
        assert!(from_host.iter().zip(&from_device).all(|(h, d)| h.is_ok() == d.is_ok()));
        let slabs: u64 = host
            .iter()
            .map(|t| {
                let sel = aggregate::select(t, &params.aggregate).unwrap();
                (sel.slabs.len() * t.n() * t.n() * t.attention.dtype.size()) as u64
            })
            .sum();
        assert_eq!(up_host - up_device, slabs, "host traces sent {up_host} bytes up, device ones {up_device}");
    }
}
