//! The per-trace JSON document (`flowtracer.credit/1`): everything the pipeline derived, with the
//! parameters that made it, so a file on its own says how to reproduce it.

use crate::flow::FlowPath;
use crate::params::Params;
use crate::span::Spans;
use crate::trace::TraceMeta;
use serde::Serialize;

pub const CREDIT_FORMAT: &str = "flowtracer.credit/1";

#[derive(Serialize)]
pub struct CreditRecord<'a> {
    pub format: &'static str,
    pub source: String,
    pub status: &'static str,
    /// Where the aggregation ran (`cpu`, `wgpu: ADAPTER`, `cuda: DEVICE`, `cpu (wgpu failed)`).
    pub backend: String,
    /// Which executor ran each step, and any fallback with its reason.
    pub provenance: &'a crate::flow::Provenance,
    pub n: usize,
    pub spans: Spans,
    /// The positions the flow was conditioned on (`answer.sink`).
    pub sink: crate::span::Span,
    pub params: &'a Params,
    pub layers: &'a [usize],
    pub heads: &'a [usize],
    pub meta: &'a TraceMeta,
    pub question_sources: usize,
    pub answer_inflow: f64,
    pub backbone_flow: f64,
    pub tokens: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_ids: Option<&'a [i64]>,
    pub reach: &'a [f64],
    pub flow: &'a [f64],
    pub throughput: &'a [f64],
    pub credit: &'a [f64],
    pub far_sources: &'a [f64],
    pub backbone: &'a [FlowPath],
    /// The per-token probe's measurement, when the trace carries it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub causal_effect: Option<&'a [f32]>,
    pub hubs: &'a [usize],
    pub checkpoints: &'a [usize],
}

pub fn record<'a>(d: &'a super::Done, params: &'a Params) -> CreditRecord<'a> {
    let r = &d.result;
    CreditRecord {
        format: CREDIT_FORMAT,
        source: d.source.clone(),
        status: r.status.name(),
        backend: r.provenance.label(),
        provenance: &r.provenance,
        n: d.tokens.len(),
        spans: d.spans,
        sink: r.spans.answer,
        params,
        layers: &r.layers,
        heads: &r.heads,
        meta: &d.meta,
        question_sources: r.question_sources,
        answer_inflow: r.answer_inflow(),
        backbone_flow: r.backbone_flow(),
        tokens: &d.tokens,
        token_ids: d.token_ids.as_deref(),
        reach: &r.reach,
        flow: &r.flow,
        throughput: &r.throughput,
        credit: &r.credit,
        far_sources: &r.far_sources,
        backbone: &r.backbone,
        causal_effect: d.causal_effect.as_deref(),
        hubs: &r.hubs,
        checkpoints: &r.checkpoints,
    }
}
