//! The backbone as arcs over the token axis, question on the left, answer on the right; each
//! path one colour, stroke width proportional to the flow it carries.

use super::axis::TokenAxis;
use super::colormap::{self, CATEGORICAL, hex};
use super::{FONT_FAMILY, escape, layout::display_text};
use crate::flow::FlowResult;
use crate::span::Spans;
use std::collections::BTreeSet;
use std::fmt::Write;

/// `tokens` are the raw tokens (the tooltips), `text` what each shows (`Trace::text`).
pub fn backbone_svg(title: &str, tokens: &[String], text: &[String], spans: Spans, r: &FlowResult) -> String {
    let (width, height) = (1200.0f64, 440.0f64);
    let (left, right) = (40.0, 240.0);
    let axis_y = 330.0;
    let axis = TokenAxis::new(spans, &r.backbone, width - left - right);
    let x_of = |k: usize| axis.x(k, left, width - left - right);
    let half_token = axis.half_token(left, width - left - right);
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="{FONT_FAMILY}, monospace">"##
    );
    s.push_str(r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    let _ = write!(s, r##"<text x="{left}" y="24" font-size="15" fill="#1a1a1a">{}</text>"##, escape(title));

    // Spans on the axis.
    let band = |s: &mut String, a: usize, b: usize, c: [u8; 3], label: &str| {
        if b <= a {
            return;
        }
        let (x0, x1) = (x_of(a) - half_token, x_of(b - 1) + half_token);
        let _ = write!(s, r##"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="8" fill="{}" opacity="0.85"/>"##, axis_y - 4.0, (x1 - x0).max(2.0), hex(c));
        let _ = write!(s, r##"<text x="{x0:.1}" y="{:.1}" font-size="11" fill="{}">{label}</text>"##, axis_y + 20.0, hex(c));
    };
    let _ = write!(s, r##"<line x1="{left}" y1="{axis_y}" x2="{:.1}" y2="{axis_y}" stroke="#999" stroke-width="1"/>"##, width - right);
    band(&mut s, spans.question.start, spans.question.end, colormap::QUESTION, "question");
    band(&mut s, spans.answer.start, spans.answer.end, colormap::ANSWER, "answer");
    // Where the axis is shortened, a break across it and how many tokens it leaves out.
    for gap in axis.gaps() {
        let x = left + gap.at * (width - left - right);
        let _ = write!(
            s,
            r##"<path d="M{:.1},{:.1} l4,-8 M{:.1},{:.1} l4,-8" stroke="#999" stroke-width="1"/><text x="{x:.1}" y="{:.1}" font-size="10" fill="#777" text-anchor="middle">{} tokens</text>"##,
            x - 5.0,
            axis_y + 4.0,
            x + 1.0,
            axis_y + 4.0,
            axis_y - 8.0,
            gap.hidden()
        );
    }

    if r.backbone.is_empty() {
        let _ = write!(s, r##"<text x="{left}" y="{:.0}" font-size="13" fill="#777">no backbone: status {}</text>"##, axis_y - 60.0, r.status.name());
    }
    let max_flow = r.backbone.iter().map(|p| p.flow).fold(0.0, f64::max);
    for (pi, path) in r.backbone.iter().enumerate().rev() {
        let c = hex(CATEGORICAL[pi % CATEGORICAL.len()]);
        let w = 1.0 + 13.0 * path.flow / max_flow.max(1e-300);
        let mut d = String::new();
        for e in path.tokens.windows(2) {
            let (x1, x2) = (x_of(e[0]), x_of(e[1]));
            let rx = ((x2 - x1) / 2.0).max(0.5);
            let ry = rx.min(axis_y - 60.0);
            let _ = write!(d, "M{x1:.1},{axis_y} A{rx:.1},{ry:.1} 0 0 1 {x2:.1},{axis_y} ");
        }
        let _ = write!(
            s,
            r##"<path d="{d}" fill="none" stroke="{c}" stroke-width="{w:.2}" stroke-opacity="0.7" stroke-linecap="round"><title>path {} carries {} of the unit flow: {}</title></path>"##,
            pi + 1,
            super::share(path.flow, 4),
            escape(&path.tokens.iter().map(|&k| display_text(&text[k])).collect::<Vec<_>>().join(" → "))
        );
    }

    // Token markers and labels, thinned so labels never overlap.
    let on_path: BTreeSet<usize> = r.backbone.iter().flat_map(|p| p.tokens.iter().copied()).collect();
    let mut last_label = f64::NEG_INFINITY;
    for &k in &on_path {
        let x = x_of(k);
        let hub = r.hubs.contains(&k);
        let cp = r.checkpoints.contains(&k);
        if cp {
            let _ = write!(s, r##"<rect x="{:.1}" y="{:.1}" width="9" height="9" fill="#ffffff" stroke="{}" stroke-width="2"/>"##, x - 4.5, axis_y - 4.5, hex(colormap::HUB));
        }
        let fill = if hub { hex(colormap::HUB) } else { "#333333".into() };
        let _ = write!(s, r##"<circle cx="{x:.1}" cy="{axis_y}" r="{}" fill="{fill}"><title>#{k} {}</title></circle>"##, if hub { 4.0 } else { 2.5 }, escape(&tokens[k]));
        if x - last_label >= 11.0 {
            last_label = x;
            let label: String = display_text(&text[k]).chars().take(14).collect();
            let _ = write!(
                s,
                r##"<text transform="translate({:.1},{:.1}) rotate(60)" font-size="11" fill="{}" xml:space="preserve">{}</text>"##,
                x - 2.0,
                axis_y + 30.0,
                if hub { hex(colormap::HUB) } else { "#333333".into() },
                escape(&label)
            );
        }
    }

    // Legend: one row per path.
    let lx = width - right + 24.0;
    let _ = write!(s, r##"<text x="{lx}" y="60" font-size="12" fill="#1a1a1a">backbone {} of flow</text>"##, super::percent(r.backbone_flow()));
    for (pi, path) in r.backbone.iter().enumerate() {
        let y = 80.0 + pi as f64 * 18.0;
        let c = hex(CATEGORICAL[pi % CATEGORICAL.len()]);
        let _ = write!(s, r##"<rect x="{lx}" y="{:.0}" width="18" height="{:.1}" fill="{c}"/>"##, y - 6.0, 1.0 + 9.0 * path.flow / max_flow.max(1e-300));
        let _ = write!(s, r##"<text x="{:.0}" y="{:.0}" font-size="11" fill="#333">path {} · {} · {} tokens</text>"##, lx + 24.0, y + 3.0, pi + 1, super::share(path.flow, 3), path.tokens.len());
    }
    let y = 80.0 + r.backbone.len() as f64 * 18.0 + 12.0;
    let _ = write!(s, r##"<circle cx="{:.0}" cy="{y:.0}" r="4" fill="{}"/><text x="{:.0}" y="{:.0}" font-size="11" fill="#333">hub</text>"##, lx + 9.0, hex(colormap::HUB), lx + 24.0, y + 4.0);
    let _ = write!(s, r##"<rect x="{:.0}" y="{:.0}" width="9" height="9" fill="#fff" stroke="{}" stroke-width="2"/><text x="{:.0}" y="{:.0}" font-size="11" fill="#333">checkpoint</text>"##, lx + 4.5, y + 13.5, hex(colormap::HUB), lx + 24.0, y + 22.0);
    s.push_str("</svg>");
    s
}
