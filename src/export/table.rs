//! `scores.csv`: one row per token of every exported trace, for spreadsheets and pandas.

use super::Done;
use crate::render::decimal;
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
/// cells made as strings of their own and its figures by std were most of writing them; an
/// 8k-token trace's rows took 3.2 ms with a string per text cell, a hashed lookup for the
/// backbone and std's formatter for the index, 2.3 without). A long trace's rows are made a range
/// at a time across the cores and joined in order.
pub fn rows(d: &Done, tokens: Range<usize>) -> String {
    let mut s = String::with_capacity(tokens.len() * 96);
    let r = &d.result;
    let mut on_backbone = vec![false; tokens.len()];
    for &k in r.backbone.iter().flat_map(|p| &p.tokens).filter(|k| tokens.contains(k)) {
        on_backbone[k - tokens.start] = true;
    }
    let trace = csv_field(&d.stem.display().to_string());
    let flag = |on: bool| if on { ",1" } else { ",0" };
    for (k, tok) in d.tokens.iter().enumerate().take(tokens.end).skip(tokens.start) {
        s.push_str(&trace);
        s.push(',');
        decimal::integer(&mut s, k as u64, 0);
        s.push(',');
        push_csv_field(&mut s, tok);
        s.push(',');
        s.push_str(segment(d.spans, k));
        for v in [r.reach[k], r.flow[k], r.throughput[k], r.credit[k], r.far_sources[k]] {
            s.push(',');
            decimal::shortest(&mut s, v);
        }
        s.push_str(flag(r.hubs.binary_search(&k).is_ok()));
        s.push_str(flag(r.checkpoints.binary_search(&k).is_ok()));
        s.push_str(flag(on_backbone[k - tokens.start]));
        s.push('\n');
    }
    s
}

/// A text cell: RFC 4180 quoting (tokens hold commas, quotes and newlines), and a leading `'` on
/// text a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, carriage return: OWASP's
/// CSV injection list). Numbers are written by the caller and never pass through here.
pub fn csv_field(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 3);
    push_csv_field(&mut out, s);
    out
}

/// [`csv_field`] onto `out`.
pub fn push_csv_field(out: &mut String, s: &str) {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    // What the cell holds after a formula's mark: a leading space is then inside it.
    let quoted = s.contains([',', '"', '\n', '\r']) || (s.starts_with(' ') && !formula) || s.ends_with(' ');
    if quoted {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    if quoted {
        // Rare (a token with a comma, a quote, a line break or an edge space): a copy is fine.
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4180 quoting where a cell needs it, and the formula mark inside the quotes.
    #[test]
    fn cells_are_quoted_and_formulas_marked() {
        let cases = [
            ("plain", "plain"),
            ("", ""),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            (" lead", "\" lead\""),
            ("trail ", "\"trail \""),
            (" ", "\" \""),
            ("line\nbreak", "\"line\nbreak\""),
            ("=1+2", "'=1+2"),
            ("@z", "'@z"),
            ("\tx", "'\tx"),
            ("\rx", "\"'\rx\""),
            ("= x ", "\"'= x \""),
            ("-\"q\"", "\"'-\"\"q\"\"\""),
            ("+ y", "'+ y"),
        ];
        for (cell, written) in cases {
            assert_eq!(csv_field(cell), written, "{cell:?}");
            let mut row = String::from("x,");
            push_csv_field(&mut row, cell);
            assert_eq!(row, format!("x,{written}"), "{cell:?}");
        }
    }
}
