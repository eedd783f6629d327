//! Every malformed category of the trace format, each with a file that triggers it. The error
//! must name the file and the problem, and never panic.

mod common;
use common::{chain_builder, temp_dir};
use flowtracer::trace::{Dtype, Problem, Trace, TraceBuilder};
use flowtracer::{Cancel, Params};
use safetensors::tensor::TensorView;
use std::collections::HashMap;
use std::path::PathBuf;

/// Writes `bytes`, opens and analyses it; returns the error (the test fails if there is none).
fn error_of(name: &str, bytes: &[u8]) -> (PathBuf, flowtracer::TraceError) {
    let dir = temp_dir(name);
    let path = dir.join(format!("{name}.safetensors"));
    std::fs::write(&path, bytes).unwrap();
    // `tests/fuzz/seed.sh` collects every malformed file as a seed of the loader's fuzz corpus.
    if let Some(seeds) = std::env::var_os("FLOWTRACER_FUZZ_SEEDS") {
        std::fs::write(std::path::Path::new(&seeds).join(format!("{name}.safetensors")), bytes).unwrap();
    }
    let err = match Trace::open(&path) {
        Err(e) => e,
        Ok(t) => flowtracer::analyze(&t, &Params::default(), &Cancel::default()).err().unwrap_or_else(|| panic!("{name}: accepted")),
    };
    (path, err)
}

fn expect(name: &str, bytes: &[u8], problem: Problem, words: &str) {
    let (path, e) = error_of(name, bytes);
    let text = e.to_string();
    assert_eq!(e.problem, problem, "{name}: {text}");
    assert!(text.contains(&path.display().to_string()), "{name}: error does not name the file: {text}");
    assert!(text.to_lowercase().contains(words), "{name}: error does not say `{words}`: {text}");
}

fn chain(n: usize) -> TraceBuilder {
    chain_builder(n, Dtype::F32, vec![n, n])
}

/// A chain trace whose attention values are edited by `f` before writing.
fn edited(n: usize, f: impl Fn(&mut [f32])) -> Vec<u8> {
    let mut v = vec![0f32; n * n];
    for k in 0..n {
        if k == 0 {
            v[0] = 1.0;
        } else {
            v[k * n + k - 1] = 1.0;
        }
    }
    f(&mut v);
    raw(&[("attention", safetensors::Dtype::F32, vec![n, n], v.iter().flat_map(|x| x.to_le_bytes()).collect())], n, &[])
}

/// A safetensors file with the given tensors and a valid trace header for `n` tokens.
fn raw(tensors: &[(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)], n: usize, overrides: &[(&str, &str)]) -> Vec<u8> {
    let mut meta: HashMap<String, String> = HashMap::new();
    meta.insert("format".into(), "flowtracer.trace/1".into());
    meta.insert("tokens".into(), serde_json::to_string(&(0..n).map(|i| format!("t{i}")).collect::<Vec<_>>()).unwrap());
    meta.insert("question".into(), "0:1".into());
    meta.insert("answer".into(), format!("{}:{n}", n - 1));
    for (k, v) in overrides {
        if v.is_empty() {
            meta.remove(*k);
        } else {
            meta.insert(k.to_string(), v.to_string());
        }
    }
    let views: Vec<(&str, TensorView)> =
        tensors.iter().map(|(name, d, shape, data)| (*name, TensorView::new(*d, shape.clone(), data).unwrap())).collect();
    safetensors::serialize(views, Some(meta)).unwrap()
}

fn f32s(n: usize) -> Vec<u8> {
    vec![0u8; n * 4]
}

#[test]
fn container_problems() {
    let good = chain(6).to_bytes();
    expect("truncated", &good[..good.len() - 10], Problem::Container, "truncated");
    expect("header_only", &good[..6], Problem::Container, "too short");
    expect("not_safetensors", b"PK\x03\x04 this is a zip file, not a trace at all", Problem::Container, "not a valid safetensors");
    // What a file mistaken for a trace is, where its first bytes say.
    expect("zipped", b"PK\x03\x04 this is a zip file, not a trace at all", Problem::Container, "it is a zip archive (torch.save's .pt");
    expect("npy", b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False}", Problem::Container, "it is a numpy .npy array; trace files are safetensors");
    expect("pickled", b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x05numpy", Problem::Container, "it is a python pickle");
    expect("text", b"import flowtracer\nprint(flowtracer.analyze)\n", Problem::Container, "it is text (it begins `import flowtracer`)");
    // Eight bytes of a safetensors length that points past the end stay a truncated file.
    expect("short_header", &[&1000u64.to_le_bytes()[..], b"{}"].concat(), Problem::Container, "points past the end of the file");
    expect("short_header_of_pickles_bytes", &[&0x0280u64.to_le_bytes()[..], b"{\"__metadata__\""].concat(), Problem::Container, "points past the end of the file");
    let mut padded = good.clone();
    padded.extend([0u8; 16]);
    expect("padded", &padded, Problem::Container, "does not match the file size");
    // A header entry safetensors refuses: the tensor, the field and its value named (the crate
    // gives a column of the JSON, or says only that some tensor disagrees).
    let len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let edited = |key: &str, value: serde_json::Value| {
        let mut header: serde_json::Value = serde_json::from_slice(&good[8..8 + len]).unwrap();
        header["attention"][key] = value;
        let header = serde_json::to_vec(&header).unwrap();
        [&(header.len() as u64).to_le_bytes()[..], &header, &good[8 + len..]].concat()
    };
    expect("reshaped", &edited("shape", serde_json::json!([6, 5])), Problem::Container, "tensor `attention`: shape [6, 5] in f32 is 120 bytes, but its data_offsets [0, 144] hold 144");
    expect("bad_dtype", &edited("dtype", serde_json::json!("X")), Problem::Container, "tensor `attention`: `dtype` is \"x\": unknown variant");
    expect("bad_offsets", &edited("data_offsets", serde_json::json!([1, 2, 3])), Problem::Container, "tensor `attention`: `data_offsets` is [1,2,3]: invalid length 3");
}

#[test]
fn metadata_problems() {
    expect("no_format", &chain(5).meta("format", "").to_bytes().to_vec().into_iter().collect::<Vec<_>>(), Problem::Metadata, "format");
    expect("wrong_format", &chain(5).meta("format", "flowtracer.trace/9").to_bytes(), Problem::Metadata, "expected `flowtracer.trace/1`");
    expect("bad_tokens", &chain(5).meta("tokens", "[1, 2").to_bytes(), Problem::Metadata, "tokens");
    expect("bad_correct", &chain(5).meta("correct", "maybe").to_bytes(), Problem::Metadata, "correct");
    expect("bad_reward", &chain(5).meta("reward", "NaN").to_bytes(), Problem::Metadata, "reward");
    expect("bad_layers", &chain_builder(5, Dtype::F32, vec![2, 5, 5]).meta("layers", "[3]").to_bytes(), Problem::Shape, "layers");
    let missing = raw(&[("attention", safetensors::Dtype::F32, vec![4, 4], f32s(16))], 4, &[("question", "")]);
    expect("no_question", &missing, Problem::Metadata, "question");
}

#[test]
fn shape_dtype_and_count_problems() {
    expect("five_axes", &raw(&[("attention", safetensors::Dtype::F32, vec![1, 1, 1, 4, 4], f32s(16))], 4, &[]), Problem::Shape, "axes");
    expect("not_square", &raw(&[("attention", safetensors::Dtype::F32, vec![4, 3], f32s(12))], 4, &[]), Problem::Shape, "square");
    expect("no_attention", &raw(&[("token_ids", safetensors::Dtype::I64, vec![4], vec![0; 32])], 4, &[]), Problem::Shape, "attention");
    expect("int_attention", &raw(&[("attention", safetensors::Dtype::I8, vec![4, 4], vec![0; 16])], 4, &[]), Problem::Dtype, "dtype");
    expect("f64_attention", &raw(&[("attention", safetensors::Dtype::F64, vec![4, 4], vec![0; 128])], 4, &[]), Problem::Dtype, "f32, f16, bf16");
    expect("n_mismatch", &raw(&[("attention", safetensors::Dtype::F32, vec![5, 5], f32s(25))], 4, &[]), Problem::TokenCount, "5 tokens");
    let ids = raw(
        &[("attention", safetensors::Dtype::F32, vec![4, 4], f32s(16)), ("token_ids", safetensors::Dtype::I64, vec![3], vec![0; 24])],
        4,
        &[],
    );
    expect("ids_mismatch", &ids, Problem::TokenCount, "token_ids");
    let ids_dtype = raw(
        &[("attention", safetensors::Dtype::F32, vec![4, 4], f32s(16)), ("token_ids", safetensors::Dtype::F32, vec![4], f32s(4))],
        4,
        &[],
    );
    expect("ids_dtype", &ids_dtype, Problem::Dtype, "token_ids");
    let ent = raw(
        &[("attention", safetensors::Dtype::F32, vec![4, 4], f32s(16)), ("token_entropy", safetensors::Dtype::F32, vec![4, 1], f32s(4))],
        4,
        &[],
    );
    expect("entropy_shape", &ent, Problem::Shape, "token_entropy");
}

#[test]
fn span_problems() {
    let n = 6;
    let span = |k: &str, v: &str| chain(n).meta(k, v).to_bytes();
    expect("answer_out_of_range", &span("answer", "5:9"), Problem::Span, "outside");
    expect("question_after_response", &span("question", "0:4").to_vec(), Problem::Span, "before the response");
    expect("answer_outside_response", &chain(n).meta("answer", "1:2").to_bytes(), Problem::Span, "not inside the response");
    expect("reversed", &span("answer", "5:4"), Problem::Span, "ends before it starts");
    expect("empty_question", &span("question", "1:1"), Problem::Span, "question span 1:1 is empty");
    expect("garbage_span", &span("response", "two:six"), Problem::Span, "response");
}

#[test]
fn value_problems() {
    let n = 5;
    expect("nan", &edited(n, |v| v[3 * n + 1] = f32::NAN), Problem::NonFinite, "nan");
    expect("inf", &edited(n, |v| v[2 * n] = f32::INFINITY), Problem::NonFinite, "inf");
    expect("negative", &edited(n, |v| v[4 * n] = -0.25), Problem::Negative, "negative");
    expect("non_causal", &edited(n, |v| v[n + 3] = 0.2), Problem::NonCausal, "causal");
    expect("row_sum", &edited(n, |v| v[3 * n] = 0.9), Problem::RowSum, "sums to");
    // Logits stored by mistake: a sum far from 1 is written short.
    expect("row_sum_far", &edited(n, |v| v[3 * n] = 3.0e7), Problem::RowSum, "sums to 3.000e7 > 1");
    // The message says where: layer/head/row.
    let (_, e) = error_of("where", &edited(n, |v| v[2 * n + 4] = 0.5));
    assert!(e.message.contains("query row 2") && e.message.contains("later token 4"), "{e}");
}

#[test]
fn params_that_do_not_fit_the_trace() {
    let t = Trace::from_bytes(chain_builder(6, Dtype::F16, vec![3, 6, 6]).to_bytes(), std::path::Path::new("lnn.safetensors")).unwrap();
    let mut p = Params::default();
    p.aggregate.heads = Some(vec![0]);
    let e = flowtracer::analyze(&t, &p, &Cancel::default()).unwrap_err();
    assert_eq!(e.problem, Problem::Params);
    assert!(e.to_string().contains("lnn.safetensors") && e.to_string().contains("no head axis"), "{e}");
    p.aggregate.heads = None;
    p.aggregate.layers = Some([7, 9]);
    let e = flowtracer::analyze(&t, &p, &Cancel::default()).unwrap_err();
    assert!(e.to_string().contains("holds none of the kept layers"), "{e}");
}

#[test]
fn every_layout_and_dtype_loads_and_agrees() {
    // The same chain through [N,N] f32, [L,N,N] bf16 and [L,H,N,N] f16 gives the same credit.
    let n = 9;
    let mut credits = vec![];
    for (dtype, shape) in [(Dtype::F32, vec![n, n]), (Dtype::BF16, vec![2, n, n]), (Dtype::F16, vec![3, 2, n, n])] {
        let t = Trace::from_bytes(chain_builder(n, dtype, shape.clone()).to_bytes(), std::path::Path::new("layout.safetensors")).unwrap();
        let r = flowtracer::analyze(&t, &Params::default(), &Cancel::default()).unwrap();
        assert_eq!(r.status, flowtracer::Status::Ok, "{shape:?}");
        credits.push(r.credit);
    }
    assert_eq!(credits[0], credits[1]);
    assert_eq!(credits[0], credits[2]);
}

#[test]
fn empty_answer_is_valid_with_status_no_answer() {
    let t = Trace::from_bytes(chain(6).meta("answer", "6:6").to_bytes(), std::path::Path::new("noans.safetensors")).unwrap();
    let r = flowtracer::analyze(&t, &Params::default(), &Cancel::default()).unwrap();
    assert_eq!(r.status, flowtracer::Status::NoAnswer);
    assert!(r.credit.iter().all(|&g| g == 1.0));
}

/// Attention already in memory (the Python binding's arrays) passes the file's checks and gives
/// the file's numbers; bytes that do not match the stated shape are refused by the array's name.
#[test]
fn an_array_in_memory_is_checked_like_a_file() {
    use flowtracer::trace::{ArrayInput, Storage};
    use flowtracer::Span;
    let n = 9;
    let file = Trace::from_bytes(chain(n).to_bytes(), std::path::Path::new("chain.safetensors")).unwrap();
    let bytes = file.attention.bytes().to_vec();
    let array = |bytes: Vec<u8>, shape: Vec<usize>| ArrayInput { bytes: Storage::Owned(bytes), dtype: Dtype::F32, shape };
    let name = std::path::Path::new("rollout[3]");
    let (q, a) = (file.spans.question, file.spans.answer);
    let t = Trace::from_array(array(bytes.clone(), vec![n, n]), file.tokens.clone(), q, a, None, name).unwrap();
    assert_eq!(t.spans, file.spans);
    let from_array = flowtracer::analyze(&t, &Params::default(), &Cancel::default()).unwrap();
    let from_file = flowtracer::analyze(&file, &Params::default(), &Cancel::default()).unwrap();
    assert_eq!(from_array.credit, from_file.credit);

    let e = Trace::from_array(array(bytes[4..].to_vec(), vec![n, n]), file.tokens.clone(), q, a, None, name).err().unwrap();
    assert!(e.to_string().contains("rollout[3]") && e.to_string().contains("bytes"), "{e}");
    let e = Trace::from_array(array(bytes.clone(), vec![n, n]), file.tokens[1..].to_vec(), q, a, None, name).err().unwrap();
    assert_eq!(e.problem, Problem::TokenCount);
    let e = Trace::from_array(array(bytes.clone(), vec![n, n]), file.tokens.clone(), q, Span::new(0, 2), None, name).err().unwrap();
    assert_eq!(e.problem, Problem::Span);
    let mut bad = bytes;
    bad[(2 * n + 5) * 4..(2 * n + 6) * 4].copy_from_slice(&0.5f32.to_le_bytes());
    let t = Trace::from_array(array(bad, vec![n, n]), file.tokens.clone(), q, a, None, name).unwrap();
    let e = flowtracer::analyze(&t, &Params::default(), &Cancel::default()).unwrap_err();
    assert!(e.to_string().contains("rollout[3]") && e.problem == Problem::NonCausal, "{e}");
}

/// A scored run's Parquet cut short or with bytes changed (in its pages or its footer) reads as
/// an error naming the file, or as rows that fail on their own: never a panic. A small xorshift
/// makes the same 150 files every run.
#[test]
fn a_damaged_scored_run_is_an_error_never_a_panic() {
    let good = std::fs::read("tests/scored/samples.parquet").unwrap();
    let dir = temp_dir("malformed-scored");
    let path = dir.join("rows.parquet");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |below: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % below as u64) as usize
    };
    for i in 0..150 {
        let mut bytes = good.clone();
        match i % 3 {
            0 => bytes.truncate(next(good.len())),
            1 => (0..1 + next(16)).for_each(|_| bytes[next(good.len())] = next(256) as u8),
            _ => (0..1 + next(6)).for_each(|_| bytes[good.len() - 1 - next(4000)] = next(256) as u8),
        }
        std::fs::write(&path, &bytes).unwrap();
        let read = std::panic::catch_unwind(|| flowtracer::export::scored::read(&path));
        match read.unwrap_or_else(|_| panic!("case {i}: reading panicked")) {
            Err(e) => assert!(e.contains(&path.display().to_string()), "case {i}: {e}"),
            Ok(rows) => {
                for r in rows {
                    if let flowtracer::export::scored::ScoredRow::Failed { error, .. } = r {
                        assert!(!error.is_empty(), "case {i}");
                    }
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A value no analysis reads (layer 0 of four, outside the default layers [1, 4)) is checked
/// where it is read, so the analysis runs; `check_all`, which Python's `dump` runs before it
/// writes, checks every slab and finds it, naming the layer and the row.
#[test]
fn a_whole_check_finds_what_the_default_layers_skip() {
    let n = 12;
    let mut v = vec![0f32; 4 * n * n];
    for (s, slab) in v.chunks_mut(n * n).enumerate() {
        for k in 0..n {
            slab[k * n + k.saturating_sub(1)] = 1.0;
        }
        if s == 0 {
            slab[3 * n + 7] = 0.5;
        }
    }
    let tokens: Vec<String> = (0..n).map(|i| format!(" w{i}")).collect();
    let input = flowtracer::trace::AttentionInput { shape: vec![4, n, n], values: v, dtype: Dtype::F32 };
    let b = TraceBuilder::new(tokens, flowtracer::Span::new(0, 2), flowtracer::Span::new(2, n), flowtracer::Span::new(n - 1, n), input);
    let path = temp_dir("whole_check").join("layer0.safetensors");
    let t = Trace::from_bytes(b.to_bytes(), &path).unwrap();
    assert!(flowtracer::analyze(&t, &Params::default(), &Cancel::default()).is_ok());
    let e = flowtracer::flow::aggregate::check_all(&t).unwrap_err().at(&path);
    assert_eq!(e.problem, Problem::NonCausal, "{e}");
    assert!(e.to_string().contains("layer0.safetensors: attention[layer 0] query row 3 puts 0.5 on later token 7"), "{e}");
}
