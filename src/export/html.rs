//! `report.html`: one self-contained page for every exported trace. No script, no CDN, no
//! network: it opens the same in ten years from a CI artefact.

use super::{Done, Outcome, Summary};
use crate::render::{colormap, decimal};
use crate::render::{backbone::backbone_svg, escape, escape_into, layout::display_text};
use std::fmt::Write;
use std::ops::Range;

const STYLE: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1260px;color:#1a1a1a;background:#fff}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:32px 0 6px;border-top:1px solid #ddd;padding-top:18px}
table{border-collapse:collapse;font-size:13px} td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}
th{background:#f6f6f6} .num{text-align:right;font-variant-numeric:tabular-nums}
.failed{color:#b00020} .muted{color:#666;font-size:13px}
.text{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:13px;line-height:1.9;white-space:pre-wrap;overflow-wrap:anywhere;border:1px solid #e4e4e4;padding:10px;border-radius:4px}
code{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:13px;background:#f2f2f2;border-radius:2px;padding:0 2px;white-space:pre}
.t{padding:1px 0;border-radius:2px} .q{outline:1.5px solid #1f5fbf} .a{outline:1.5px solid #1a8a3a}
.hub{box-shadow:0 0 0 2px #7b1fa2} .cp{box-shadow:0 0 0 2px #7b1fa2 inset} .g{border-bottom:3px solid #d0106a}
.p{color:#888;background:#f2f2f2} svg{max-width:100%;height:auto}
"#;

/// The report comes in three parts, so that a run's traces need not all be held to write it:
/// each trace's row of the table ([`row`]) and its section ([`section`], the bulk, written out as
/// the trace is done), then the page around them ([`page_start`], [`page_end`]) once the whole
/// run is known. The `i`th exported trace's row links to its section where it has one, else to
/// its file `STEM.file` beside the page where the export wrote one (`credit.png`, say).
pub fn row(i: usize, d: &Done, with_section: bool, file: Option<&str>) -> String {
    let r = &d.result;
    let name = escape(&d.stem.display().to_string());
    let name = match (with_section, file) {
        (true, _) => format!("<a href=\"#t{i}\">{name}</a>"),
        (false, Some(ext)) => format!("<a href=\"{}\">{name}</a>", href(&d.stem, ext)),
        (false, None) => name,
    };
    format!(
        "<tr><td>{name}</td><td>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td></tr>",
        r.status.name(),
        d.tokens.len(),
        crate::render::percent(r.backbone_flow()),
        r.backbone.len(),
        r.hubs.len(),
        r.checkpoints.len()
    )
}

/// `STEM.ext` as a link from the page beside it: the stem's components joined by `/`, every byte
/// but the unreserved ones percent-encoded (a trace named `a #1?.safetensors` still links).
fn href(stem: &std::path::Path, ext: &str) -> String {
    let path: Vec<String> = stem.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    let mut out = String::new();
    for b in format!("{}.{ext}", path.join("/")).bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => out.push(b as char),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Tokens the page gives sections to: about 23 MB of page, which a browser opens in a few
/// seconds (a section is ~170 bytes a token, so a run of 12 800 1k-token rollouts would be a
/// page of 2 GB). The first traces in the run's order have theirs while the total stays within
/// it, the first one always; every trace keeps its row, and its own files beside the page.
pub const SECTION_TOKENS: usize = 1 << 17;

/// Everything before the sections: the heading, and the table of `rows` and the failed inputs;
/// `sections` of the exported traces have one.
pub fn page_start(summary: &Summary, rows: &str, sections: usize) -> String {
    let mut s = String::new();
    let _ = write!(s, "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>FlowTracer report</title><style>{STYLE}</style></head><body>");
    let _ = write!(
        s,
        "<h1>FlowTracer report</h1><p class=\"muted\">{} exported, {} failed · backend {} · credit: top {:.0}% of response tokens by throughput get γ = {}</p>",
        summary.exported,
        summary.failed,
        escape(&summary.backend),
        summary.params.credit.fraction * 100.0,
        summary.params.credit.gamma
    );
    if sections < summary.exported {
        let _ = write!(
            s,
            "<p class=\"muted\">Sections below for the first {sections} of the {} traces: the page keeps to {SECTION_TOKENS} tokens of sections so that a browser opens it. Every trace has its row in the table, and the files the export wrote for it beside this page.</p>",
            summary.exported
        );
    }
    s.push_str("<table><tr><th>trace</th><th>status</th><th class=num>tokens</th><th class=num>backbone flow</th><th class=num>paths</th><th class=num>hubs</th><th class=num>checkpoints</th></tr>");
    s.push_str(rows);
    for o in &summary.traces {
        let Outcome::Failed { source, error, .. } = o else { continue };
        let _ = write!(
            s,
            "<tr class=failed><td>{}</td><td colspan=6>failed: {}</td></tr>",
            escape(source),
            escape(error)
        );
    }
    s.push_str("</table>");
    s
}

/// Everything after the sections.
pub fn page_end(summary: &Summary) -> String {
    format!("<h2>Parameters</h2><pre class=muted>{}</pre></body></html>", escape(&serde_json::to_string_pretty(&summary.params).unwrap()))
}

/// The `i`th exported trace's part of the page: its backbone, hubs and text. A long trace's
/// section is made a range of its `tokens` at a time across the cores and joined in order: the
/// range from the first token brings the heading, the one to the last the text's end.
pub fn section(s: &mut String, i: usize, d: &Done, tokens: Range<usize>) {
    let r = &d.result;
    if tokens.start == 0 {
        head(s, i, d);
    }
    let tau_max = d.spans.question.range().chain(d.spans.response.range()).map(|k| r.throughput[k]).fold(0.0, f64::max);
    // Written straight onto the page: a token's classes, colours, tooltip and text made as
    // strings of their own, and its figures by std's exact formatting, were most of a section.
    let mut quoted = String::new();
    for (k, tok) in d.text.iter().enumerate().take(tokens.end).skip(tokens.start) {
        s.push_str("<span class=\"t");
        let in_prompt = k < d.spans.response.start && !d.spans.question.contains(k);
        if in_prompt {
            s.push_str(" p");
        }
        if d.spans.question.contains(k) {
            s.push_str(" q");
        }
        if d.spans.answer.contains(k) {
            s.push_str(" a");
        }
        if r.hubs.binary_search(&k).is_ok() {
            s.push_str(" hub");
        } else if r.checkpoints.binary_search(&k).is_ok() {
            s.push_str(" cp");
        }
        if r.credit[k] > 1.0 {
            s.push_str(" g");
        }
        s.push('"');
        if !in_prompt {
            let bg = colormap::heat(colormap::heat_scale(r.throughput[k], tau_max));
            s.push_str(" style=\"background:");
            colormap::push_hex(s, bg);
            s.push_str(";color:");
            colormap::push_hex(s, colormap::ink_on(bg));
            s.push('"');
        }
        quoted.clear();
        let _ = write!(quoted, "{:?}", d.tokens[k]);
        s.push_str(" title=\"#");
        decimal::integer(s, k as u64, 0);
        s.push(' ');
        escape_into(s, &quoted);
        s.push_str(" · reach ");
        decimal::scientific(s, r.reach[k], 3);
        s.push_str(" · flow ");
        crate::render::share_into(s, r.flow[k], 4);
        s.push_str(" · throughput ");
        crate::render::share_into(s, r.throughput[k], 4);
        s.push_str(" · credit ");
        decimal::fixed(s, r.credit[k], 2);
        s.push_str("\">");
        escape_into(s, tok);
        s.push_str("</span>");
    }
    if tokens.end >= d.text.len() {
        s.push_str("</div>");
    }
}

/// A section's heading: the trace's name and figures, its backbone, hubs and checkpoints.
fn head(s: &mut String, i: usize, d: &Done) {
    let r = &d.result;
    let _ = write!(s, "<h2 id=\"t{i}\">{}</h2>", escape(&d.stem.display().to_string()));
    let _ = write!(
        s,
        "<p class=muted>{} · status {} · {} tokens · question {} · response {} · answer {} · {} question tokens reach the answer · backend {}</p>",
        escape(&d.source),
        r.status.name(),
        d.tokens.len(),
        d.spans.question,
        d.spans.response,
        crate::render::answer_and_sink(d.spans.answer, r.spans.answer),
        r.question_sources,
        escape(&r.provenance.summary())
    );
    let title = format!("{} backbone", d.label);
    s.push_str(&backbone_svg(&title, &d.tokens, &d.text, d.spans, r));
    // Each token's text boxed, so a space or a word piece reads as the token it is.
    let names = |ks: &[usize]| ks.iter().map(|&k| format!("#{k} <code>{}</code>", escape(&display_text(&d.text[k])))).collect::<Vec<_>>().join(", ");
    let _ = write!(s, "<p><b>Hubs</b>: {}<br><b>Checkpoints</b>: {}</p>", names(&r.hubs), names(&r.checkpoints));
    s.push_str("<div class=text>");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page whose sections stop short of the run says so, and how many it has; one with every
    /// section says nothing of it (the sample exports' pages are as they were).
    #[test]
    fn a_page_says_when_its_sections_stop_short() {
        let summary = Summary {
            format: "flowtracer.summary/1",
            backend: "cpu".into(),
            params: crate::Params::default(),
            exported: 3,
            failed: 0,
            interrupted: false,
            errors: Vec::new(),
            runs: Vec::new(),
            traces: Vec::new(),
        };
        assert!(page_start(&summary, "", 1).contains("Sections below for the first 1 of the 3 traces"));
        assert!(!page_start(&summary, "", 3).contains("Sections below"));
    }

    #[test]
    fn a_link_to_a_traces_file_survives_its_name() {
        assert_eq!(href(std::path::Path::new("step_000010/sample 0#1?"), "credit.png"), "step_000010/sample%200%231%3F.credit.png");
        assert_eq!(href(std::path::Path::new("zürich"), "json"), "z%C3%BCrich.json");
    }
}
