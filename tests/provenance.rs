//! Where a result came from is data: every step's executor, and each fallback with its reason.
//! A fake device (it offers steps and fails some) drives the one assembly without a GPU.

use flowtracer::flow::{self, AggregateError, Cancel, Executor, Matrix, Offload, Plan, Step, aggregate};
use flowtracer::params::AggregateParams;
use flowtracer::span::Spans;
use flowtracer::trace::{Attention, Problem};
use flowtracer::{Params, sample_trace};

mod common;

/// Aggregates (by the CPU's own function), loses itself at the solves, and offers nothing else.
struct Flaky;

impl Offload for Flaky {
    fn executor(&self) -> Executor {
        Executor::Cuda
    }

    fn device(&self) -> String {
        "flaky test device".into()
    }

    fn aggregate(&self, att: &Attention, sel: &aggregate::Selection, p: &AggregateParams) -> Option<Result<Matrix, AggregateError>> {
        Some(aggregate::aggregate(att, sel, p, &Default::default()).map_err(|e| AggregateError::Device(format!("{e:?}"))))
    }

    fn solve(&self, _: &Matrix, _: Spans) -> Option<Result<(Vec<f64>, flow::unit_flow::UnitFlow, std::time::Duration), String>> {
        Some(Err("device lost".into()))
    }
}

#[test]
fn a_failed_step_runs_on_the_cpu_and_the_result_says_which_and_why() {
    let t = sample_trace();
    let plan = Plan::for_trace(&t, &Params::default()).unwrap();
    let (r, _) = flow::execute(&t, &plan, &Flaky, &Cancel::default()).unwrap();
    let p = &r.provenance;
    assert_eq!(p.on(Step::Aggregate), Some(Executor::Cuda));
    for s in [Step::Reach, Step::Flow, Step::Backbone, Step::Throughput, Step::Credit, Step::Roles] {
        assert_eq!(p.on(s), Some(Executor::Cpu), "{s:?}");
    }
    let fell: Vec<Step> = p.fallbacks.iter().map(|f| f.step).collect();
    assert_eq!(fell, [Step::Reach, Step::Flow]);
    assert!(p.fallbacks.iter().all(|f| f.from == Executor::Cuda && f.reason == "device lost"));
    assert_eq!(p.label(), "cuda: flaky test device");
    assert_eq!(p.summary(), "cuda: flaky test device; reach, flow fell back to the cpu: device lost");
    // The numbers are the CPU's, whichever executor ran which step.
    let cpu = flowtracer::analyze(&t, &Params::default(), &Cancel::default()).unwrap();
    assert_eq!(r.credit, cpu.credit);
    assert_eq!(r.backbone, cpu.backbone);
}

#[test]
fn the_export_writes_the_provenance_beside_the_backend() {
    let dir = std::env::temp_dir().join(format!("flowtracer-provenance-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let input = std::path::PathBuf::from("sample_traces/addition.safetensors");
    let s = flowtracer::export::export(&dir, flowtracer::export::plan(&[input], Some(&dir), false), &Params::default(), flowtracer::export::Formats::ALL, &flowtracer::backend::Cpu, &Cancel::default(), &|_| {}).unwrap();
    assert_eq!(s.exported, 1);
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("addition.json")).unwrap()).unwrap();
    assert_eq!(doc["backend"], "cpu");
    assert_eq!(doc["provenance"]["executor"], "cpu");
    assert_eq!(doc["provenance"]["steps"]["aggregate"], "cpu");
    assert_eq!(doc["provenance"]["fallbacks"].as_array().unwrap().len(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_rescore_is_cancelled_between_steps() {
    let t = sample_trace();
    let plan = Plan::for_trace(&t, &Params::default()).unwrap();
    let (r, m) = flow::execute(&t, &plan, &flow::Cpu, &Cancel::default()).unwrap();
    let cancel = Cancel::default();
    cancel.cancel();
    let again = plan.reusing(t.spans, &Params::default()).unwrap().unwrap();
    let e = flow::rescore(&m, &again, &r.provenance, &cancel).unwrap_err();
    assert_eq!(e.problem, Problem::Cancelled);
}

/// A fully aggregated `[N,N]` may name the layers averaged into it (what `flowtracer.capture`
/// records): the trace loads, and the result reports them; a list that contradicts the model's
/// depth is still refused.
#[test]
fn an_aggregated_trace_reports_the_layers_it_was_averaged_over() {
    let bytes = common::chain_builder(6, flowtracer::trace::Dtype::F32, vec![6, 6]).meta("layers", "[9, 10, 11]").meta("num_layers", 28).to_bytes();
    let t = flowtracer::Trace::from_bytes(bytes, std::path::Path::new("captured.safetensors")).unwrap();
    assert_eq!(t.meta.layers, Some(vec![9, 10, 11]));
    let r = flowtracer::analyze(&t, &Params::default(), &Cancel::default()).unwrap();
    assert_eq!(r.layers, vec![9, 10, 11]);

    let bad = common::chain_builder(6, flowtracer::trace::Dtype::F32, vec![6, 6]).meta("layers", "[9, 30]").meta("num_layers", 28).to_bytes();
    let e = flowtracer::Trace::from_bytes(bad, std::path::Path::new("captured.safetensors")).err().expect("layer 30 of 28 is refused");
    assert!(e.to_string().contains("num_layers"), "{e}");
}
