//! A terminal view of one result: the backbone as token chains, hubs, checkpoints and the
//! credited tokens. What `flowtracer` prints when there is no window to open.

use crate::flow::FlowResult;
use crate::render::layout::display_text;
use crate::trace::Trace;
use std::fmt::Write;

pub fn describe(trace: &Trace, r: &FlowResult) -> String {
    let mut s = String::new();
    let sp = trace.spans;
    let text = trace.text();
    let tok = |k: usize| format!("#{k}{:?}", display_text(&text[k]));
    let _ = writeln!(
        s,
        "{} — {} tokens, status {}, on {}\n  question {} · response {} · answer {} · {} question tokens reach the answer",
        trace.path.display(),
        trace.n(),
        r.status.name(),
        r.provenance.summary(),
        sp.question,
        sp.response,
        crate::render::answer_and_sink(sp.answer, r.spans.answer),
        r.question_sources
    );
    if !r.layers.is_empty() {
        let heads = r.heads.len().max(1);
        let _ = writeln!(s, "  layers {:?}, {heads} head{}", r.layers, if heads == 1 { "" } else { "s" });
    }
    let _ = writeln!(s, "  inflow into the answer {:.6}; backbone explains {}", r.answer_inflow(), crate::render::percent(r.backbone_flow()));
    for (i, p) in r.backbone.iter().enumerate() {
        let chain: Vec<String> = p.tokens.iter().map(|&k| tok(k)).collect();
        let _ = writeln!(s, "  path {} ({}): {}", i + 1, crate::render::share(p.flow, 3), chain.join(" → "));
    }
    let list = |ks: &[usize]| ks.iter().map(|&k| tok(k)).collect::<Vec<_>>().join(" ");
    let _ = writeln!(s, "  hubs: {}", list(&r.hubs));
    let _ = writeln!(s, "  checkpoints: {}", list(&r.checkpoints));
    let credited: Vec<usize> = (0..trace.n()).filter(|&k| r.credit[k] > 1.0).collect();
    let _ = writeln!(s, "  credit γ > 1 on {} of {} response tokens", credited.len(), sp.response.len());
    s
}
