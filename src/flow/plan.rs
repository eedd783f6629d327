//! What a run of the pipeline will do, validated once: the spans to trace between (and the sink
//! the flow is conditioned on), the parameters, and the layers, heads and slabs to aggregate.
//! Every executor takes a plan; none repeats its checks.

use super::aggregate::{self, Selection};
use super::provenance::Step;
use super::reach;
use crate::params::Params;
use crate::span::Spans;
use crate::trace::{DataError, Problem, Trace, TraceError};

#[derive(Clone, Debug)]
pub struct Plan {
    /// The spans the user traces between (the file's, unless they picked others).
    pub spans: Spans,
    /// `spans` with the answer replaced by the sink (`flow::reach::conditioned`): what the steps
    /// run between.
    pub sink: Spans,
    pub params: Params,
    pub selection: Selection,
    /// The number of tokens.
    pub n: usize,
    pub scope: Scope,
}

/// What a run makes of a trace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// Every step: what the app, the export and `--print` show.
    #[default]
    Everything,
    /// The credit and what it is made from (reach, flow, throughput, status): what an RL step
    /// takes from its rollouts. The backbone and the roles (far sources, hubs, checkpoints) are
    /// left unmade, and the backbone's first sweep no longer rides in the flow solve: together over
    /// a third of a 1k-token trace's time. The provenance lists the steps that ran.
    Credit,
}

impl Plan {
    /// The plan for `trace` between `spans`; the error names the file.
    pub fn new(trace: &Trace, spans: Spans, params: &Params) -> Result<Plan, TraceError> {
        Self::checked(trace, spans, params).map_err(|e| e.at(&trace.path))
    }

    /// The plan for `trace` between its own spans.
    pub fn for_trace(trace: &Trace, params: &Params) -> Result<Plan, TraceError> {
        Self::new(trace, trace.spans, params)
    }

    fn checked(trace: &Trace, spans: Spans, params: &Params) -> Result<Plan, DataError> {
        params.validate().map_err(|e| DataError::new(Problem::Params, e))?;
        spans.validate(trace.n()).map_err(|e| DataError::new(Problem::Span, e))?;
        let selection = aggregate::select(trace, &params.aggregate)?;
        Ok(Plan { spans, sink: reach::conditioned(spans, &params.answer), params: params.clone(), selection, n: trace.n(), scope: Scope::Everything })
    }

    /// Where a run between `spans` with `params` can take up this plan's result (see
    /// [`crate::flow::resume`]): at the backbone when only the backbone, role, credit or step-graph
    /// parameters differ (reach and flow read none of them), at the roles when the backbone's are
    /// the same too, at the credit when only the credit's (or the step graph's, which no step
    /// reads) differ. `None`: the solves must run again.
    pub fn resumes_at(&self, spans: Spans, params: &Params) -> Option<Step> {
        let mut same = params.clone();
        (same.backbone, same.roles, same.credit, same.steps) = (self.params.backbone.clone(), self.params.roles.clone(), self.params.credit.clone(), self.params.steps.clone());
        if spans != self.spans || same != self.params {
            return None;
        }
        Some(if params.backbone != self.params.backbone {
            Step::Backbone
        } else if params.roles != self.params.roles {
            Step::Roles
        } else {
            Step::Credit
        })
    }

    /// A plan for steps 3–9 on the matrix an earlier plan aggregated: new spans or parameters of
    /// the later steps. `None` when the aggregation parameters changed (the matrix would not be
    /// the one these parameters make: a full run is needed).
    pub fn reusing(&self, spans: Spans, params: &Params) -> Option<Result<Plan, DataError>> {
        if params.aggregate != self.params.aggregate {
            return None;
        }
        let checked = params
            .validate()
            .map_err(|e| DataError::new(Problem::Params, e))
            .and_then(|()| spans.validate(self.n).map_err(|e| DataError::new(Problem::Span, e)));
        let scope = self.scope;
        Some(checked.map(|()| Plan { spans, sink: reach::conditioned(spans, &params.answer), params: params.clone(), selection: self.selection.clone(), n: self.n, scope }))
    }
}
