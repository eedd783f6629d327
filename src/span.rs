//! Half-open token spans (`start:end`), the way trace metadata writes them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A half-open range of token positions `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "[usize; 2]", from = "[usize; 2]")]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub const fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }

    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    pub fn contains(&self, i: usize) -> bool {
        self.start <= i && i < self.end
    }

    pub fn range(&self) -> std::ops::Range<usize> {
        self.start..self.end
    }

    /// Parses `start:end`; `n` resolves an omitted end (`12:` means `12:n`).
    pub fn parse(text: &str, n: usize) -> Result<Span, String> {
        let (a, b) = text
            .split_once(':')
            .ok_or_else(|| format!("span `{text}` is not written `start:end`"))?;
        let start: usize = a
            .trim()
            .parse()
            .map_err(|_| format!("span `{text}`: start `{a}` is not a non-negative integer"))?;
        let end: usize = if b.trim().is_empty() {
            n
        } else {
            b.trim()
                .parse()
                .map_err(|_| format!("span `{text}`: end `{b}` is not a non-negative integer"))?
        };
        if end < start {
            return Err(format!("span `{text}` ends before it starts"));
        }
        Ok(Span { start, end })
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.start, self.end)
    }
}

impl From<Span> for [usize; 2] {
    fn from(s: Span) -> Self {
        [s.start, s.end]
    }
}

impl From<[usize; 2]> for Span {
    fn from(a: [usize; 2]) -> Self {
        Span::new(a[0], a[1])
    }
}

/// The three spans of a trace, checked against each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spans {
    pub question: Span,
    pub response: Span,
    pub answer: Span,
}

impl Spans {
    /// The ordering rules of the trace format: question ends before the response starts,
    /// the answer lies inside the response, everything inside `[0, n)`; only the answer may be empty.
    pub fn validate(&self, n: usize) -> Result<(), String> {
        let Spans { question: q, response: r, answer: a } = *self;
        for (name, s) in [("question", q), ("response", r), ("answer", a)] {
            if s.end < s.start {
                return Err(format!("{name} span {s} ends before it starts"));
            }
            if s.end > n {
                return Err(format!("{name} span {s} lies outside the {n} tokens"));
            }
        }
        if q.is_empty() {
            return Err(format!("question span {q} is empty"));
        }
        if r.is_empty() {
            return Err(format!("response span {r} is empty"));
        }
        if q.end > r.start {
            return Err(format!("question span {q} must end before the response {r} starts"));
        }
        if !a.is_empty() && (a.start < r.start || a.end > r.end) {
            return Err(format!("answer span {a} is not inside the response {r}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!(Span::parse("3:7", 10).unwrap(), Span::new(3, 7));
        assert_eq!(Span::parse("3:", 10).unwrap(), Span::new(3, 10));
        assert!(Span::parse("7:3", 10).is_err());
        assert!(Span::parse("a:3", 10).is_err());
        assert!(Span::parse("37", 10).is_err());
    }

    #[test]
    fn ordering_rules() {
        let ok = Spans { question: Span::new(0, 4), response: Span::new(4, 10), answer: Span::new(8, 10) };
        assert!(ok.validate(10).is_ok());
        let empty_answer = Spans { answer: Span::new(9, 9), ..ok };
        assert!(empty_answer.validate(10).is_ok());
        assert!(Spans { question: Span::new(0, 5), ..ok }.validate(10).is_err());
        assert!(Spans { answer: Span::new(2, 6), ..ok }.validate(10).is_err());
        assert!(ok.validate(9).is_err());
        // A reversed answer is an error, not an empty answer (a trace with no answer).
        let reversed = Spans { answer: Span::new(10, 8), ..ok }.validate(10).unwrap_err();
        assert!(reversed.contains("answer span 10:8 ends before it starts"), "{reversed}");
    }
}
