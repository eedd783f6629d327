//! Where a result came from: which executor ran each step, and every fallback with its reason.
//! It travels with the result as data; the binary prints it once, the app shows it in the status
//! bar, the export writes it beside the numbers. Library code never prints a fallback.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What runs the pipeline's steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Executor {
    Cpu,
    Wgpu,
    Cuda,
}

impl Executor {
    pub fn name(self) -> &'static str {
        match self {
            Executor::Cpu => "cpu",
            Executor::Wgpu => "wgpu",
            Executor::Cuda => "cuda",
        }
    }
}

/// The steps an executor may take over (FLOWTRACER.md §1), in pipeline order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Aggregate,
    Reach,
    Flow,
    Throughput,
    Backbone,
    Roles,
    Credit,
}

impl Step {
    pub const ALL: [Step; 7] = [Step::Aggregate, Step::Reach, Step::Flow, Step::Throughput, Step::Backbone, Step::Roles, Step::Credit];

    pub fn name(self) -> &'static str {
        match self {
            Step::Aggregate => "aggregate",
            Step::Reach => "reach",
            Step::Flow => "flow",
            Step::Throughput => "throughput",
            Step::Backbone => "backbone",
            Step::Roles => "roles",
            Step::Credit => "credit",
        }
    }
}

/// A step the executor was asked to run that ran on the CPU instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fallback {
    pub step: Step,
    pub from: Executor,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The executor the run was given.
    pub executor: Executor,
    /// Its device ("" for the CPU).
    pub device: String,
    /// Which executor ran each step.
    pub steps: BTreeMap<Step, Executor>,
    /// The matrix came from an earlier run (a re-score after a change to later steps'
    /// parameters): `steps[aggregate]` is the executor of that run.
    pub reused_aggregation: bool,
    /// Reach and flow are an earlier result's; only the steps from `resumed_at` on ran again (a
    /// change of the backbone, role or credit parameters).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub reused_solution: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub resumed_at: Option<Step>,
    pub fallbacks: Vec<Fallback>,
}

impl Provenance {
    /// Nothing run yet, on `executor`.
    pub fn new(executor: Executor, device: String) -> Self {
        Provenance { executor, device, steps: BTreeMap::new(), reused_aggregation: false, reused_solution: false, resumed_at: None, fallbacks: Vec::new() }
    }

    pub fn ran(&mut self, step: Step, on: Executor) {
        self.steps.insert(step, on);
    }

    /// `step` was asked of the executor, which could not run it: the CPU did.
    pub fn fell_back(&mut self, step: Step, reason: String) {
        self.fallbacks.push(Fallback { step, from: self.executor, reason });
        self.ran(step, Executor::Cpu);
    }

    pub fn on(&self, step: Step) -> Option<Executor> {
        self.steps.get(&step).copied()
    }

    /// Where the aggregation ran, as the export's `backend` has always said it: `cpu`,
    /// `wgpu: ADAPTER`, `cuda: DEVICE`, or `cpu (wgpu failed)` when it fell back.
    pub fn label(&self) -> String {
        let fell_back = self.fallbacks.iter().any(|f| f.step == Step::Aggregate);
        match self.on(Step::Aggregate).unwrap_or(Executor::Cpu) {
            Executor::Cpu if fell_back => format!("cpu ({} failed)", self.executor.name()),
            Executor::Cpu => "cpu".into(),
            e => format!("{}: {}", e.name(), self.device),
        }
    }

    /// One line for a person: where the steps ran, what was reused, what fell back and why.
    pub fn summary(&self) -> String {
        let solved = self.on(Step::Reach).unwrap_or(Executor::Cpu);
        let mut s = if self.reused_solution {
            let rerun = match self.resumed_at {
                Some(Step::Backbone) => "backbone, roles and credit",
                Some(Step::Roles) => "roles and credit",
                _ => "credit only",
            };
            format!("{} ({rerun}; the solution reused from {})", Executor::Cpu.name(), self.label())
        } else if self.reused_aggregation {
            format!("{} (aggregation reused from {})", solved.name(), self.label())
        } else {
            self.label()
        };
        if !self.fallbacks.is_empty() {
            s += "; ";
            s += &describe(&self.fallbacks);
        }
        s
    }
}

/// Fallbacks in words, grouped by reason (a lost device fails every step alike):
/// `reach, flow fell back to the cpu: device lost`.
pub fn describe(fallbacks: &[Fallback]) -> String {
    let mut groups: Vec<(Vec<&'static str>, &str)> = Vec::new();
    for f in fallbacks {
        match groups.iter_mut().find(|(_, r)| *r == f.reason) {
            Some((steps, _)) => steps.push(f.step.name()),
            None => groups.push((vec![f.step.name()], &f.reason)),
        }
    }
    groups.iter().map(|(steps, why)| format!("{} fell back to the cpu: {why}", steps.join(", "))).collect::<Vec<_>>().join("; ")
}
