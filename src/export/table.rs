//! `scores.csv`: one row per token of every exported trace, for spreadsheets and pandas.

use super::Done;
use crate::render::decimal;
use std::fmt::Write;
use std::ops::Range;

pub fn segment(spans: crate::span::Spans, k: usize) -> &'static str {
    if spans.question.contains(k) {
        "question"
    } else if spans.answer.contains(k) {
        "answer"
    } else if spans.response.contains(k) {
        "response"
    } else {
        "prompt"
    }
}

pub const HEADER: &str = "trace,index,token,segment,reach,flow,throughput,credit,far_sources,hub,checkpoint,backbone\n";

/// The rows of `scores.csv` of one trace's `tokens`, written straight into one string (a row's
/// cells made as strings of their own and its figures by std were most of writing them). A long
/// trace's rows are made a range at a time across the cores and joined in order.
pub fn rows(d: &Done, tokens: Range<usize>) -> String {
    let mut s = String::new();
    let r = &d.result;
    let on_backbone: std::collections::HashSet<usize> = r.backbone.iter().flat_map(|p| p.tokens.iter().copied()).filter(|k| tokens.contains(k)).collect();
    let trace = csv_field(&d.stem.display().to_string());
    let flag = |on: bool| if on { ",1" } else { ",0" };
    for (k, tok) in d.tokens.iter().enumerate().take(tokens.end).skip(tokens.start) {
        let _ = write!(s, "{trace},{k},");
        s.push_str(&csv_field(tok));
        s.push(',');
        s.push_str(segment(d.spans, k));
        for v in [r.reach[k], r.flow[k], r.throughput[k], r.credit[k], r.far_sources[k]] {
            s.push(',');
            decimal::shortest(&mut s, v);
        }
        s.push_str(flag(r.hubs.binary_search(&k).is_ok()));
        s.push_str(flag(r.checkpoints.binary_search(&k).is_ok()));
        s.push_str(flag(on_backbone.contains(&k)));
        s.push('\n');
    }
    s
}

/// A text cell: RFC 4180 quoting (tokens hold commas, quotes and newlines), and a leading `'` on
/// text a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, carriage return: OWASP's
/// CSV injection list). Numbers are written by the caller and never pass through here.
pub fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}
