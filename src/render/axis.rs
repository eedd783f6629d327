//! Where each token sits along the backbone's axis, shared by the exported picture and the app.
//!
//! Where the paths' tokens lie far enough apart, the axis is linear in token position, so a
//! distance on it reads as a distance in the trace. On a long trace whose paths start and end in
//! a few neighbouring tokens (a 30-token question and a 3-token answer at the two ends of 3 000
//! tokens), a linear axis draws every path over the same pixels and the picture shows one arc
//! for eight. There the stretches between the paths' tokens are shortened, logarithmically past
//! [`KEPT`] tokens, and each shortened stretch is reported ([`TokenAxis::gaps`]) so the picture
//! can say how many tokens it holds: neighbouring tokens keep their spacing, long jumps stay
//! the longest, and every path gets its own arc.

use crate::flow::backbone::FlowPath;
use crate::span::Spans;

/// Tokens a stretch keeps at full length before it is shortened.
const KEPT: f64 = 8.0;
/// Below this many pixels between two neighbouring path tokens the linear axis is unreadable.
const MIN_SEPARATION_PX: f64 = 3.0;

/// The axis runs from the question's first token to the answer's last.
#[derive(Clone, Debug)]
pub struct TokenAxis {
    lo: usize,
    hi: usize,
    /// Where the axis is shortened: the paths' tokens and the spans' ends, each with its
    /// position in token units from the axis' start; empty where the axis is linear.
    knots: Vec<(usize, f64)>,
    units: f64,
}

/// A shortened stretch of the axis: the tokens strictly between two knots.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gap {
    /// The knots on either side.
    pub after: usize,
    pub before: usize,
    /// Where its middle lies, and how much of the axis it takes, as fractions of the axis.
    pub at: f64,
    pub width: f64,
}

/// Room a gap's label leaves on either side for the arcs that rise from its two ends.
const LABEL_MARGIN_PX: f64 = 8.0;

impl Gap {
    /// How many tokens the stretch holds.
    pub fn hidden(&self) -> usize {
        self.before - self.after - 1
    }

    /// What the picture writes over the break.
    pub fn label(&self) -> String {
        format!("{} tokens", self.hidden())
    }

    /// Whether a label `label_px` wide fits over the stretch drawn on an axis `length_px` long,
    /// clear of the arcs at its ends: a short stretch among the question's tokens gets the break
    /// alone, where its label had been drawn under the arcs and cut by them.
    pub fn label_fits(&self, label_px: f64, length_px: f64) -> bool {
        label_px + 2.0 * LABEL_MARGIN_PX <= self.width * length_px
    }
}

impl TokenAxis {
    /// `length_px`: how long the axis is drawn, which decides whether a linear axis keeps the
    /// paths' tokens apart.
    pub fn new(spans: Spans, backbone: &[FlowPath], length_px: f64) -> Self {
        let lo = spans.question.start;
        let hi = spans.answer.end.max(spans.question.end).max(lo + 1);
        let mut axis = TokenAxis { lo, hi, knots: Vec::new(), units: (hi - lo) as f64 };
        let mut anchors: Vec<usize> = backbone.iter().flat_map(|p| p.tokens.iter().copied()).filter(|&k| (lo..hi).contains(&k)).collect();
        for s in [spans.question, spans.answer] {
            if !s.is_empty() {
                anchors.extend([s.start, s.end - 1]);
            }
        }
        anchors.extend([lo, hi - 1]);
        anchors.sort_unstable();
        anchors.dedup();
        let tightest = anchors.windows(2).map(|w| w[1] - w[0]).min().unwrap_or(usize::MAX);
        let crowded = (tightest as f64) * length_px / axis.units < MIN_SEPARATION_PX;
        let shortens = anchors.windows(2).any(|w| (w[1] - w[0]) as f64 > KEPT);
        if !(crowded && shortens) {
            return axis;
        }
        let mut at = 0.5;
        axis.knots.push((anchors[0], at));
        for w in anchors.windows(2) {
            at += shortened((w[1] - w[0]) as f64);
            axis.knots.push((w[1], at));
        }
        axis.units = at + 0.5;
        axis
    }

    /// Whether stretches of the axis are shortened.
    pub fn is_shortened(&self) -> bool {
        !self.knots.is_empty()
    }

    /// The x of token `k` on an axis drawn from `left` over `length`. The linear axis keeps the
    /// arithmetic the pictures always used, so their bytes do not change.
    pub fn x(&self, k: usize, left: f64, length: f64) -> f64 {
        if self.knots.is_empty() {
            return left + (k as f64 - self.lo as f64 + 0.5) / (self.hi - self.lo) as f64 * length;
        }
        left + self.units_at(k) / self.units * length
    }

    /// Half a token's width at the ends of the spans (a linear axis' token, a shortened axis'
    /// unshortened token).
    pub fn half_token(&self, left: f64, length: f64) -> f64 {
        if self.knots.is_empty() {
            return 0.5 * (self.x(1, left, length) - self.x(0, left, length)).abs();
        }
        0.5 * length / self.units
    }

    /// The shortened stretches, left to right.
    pub fn gaps(&self) -> impl Iterator<Item = Gap> + '_ {
        self.knots.windows(2).filter(|w| (w[1].0 - w[0].0) as f64 > KEPT).map(|w| Gap { after: w[0].0, before: w[1].0, at: (w[0].1 + w[1].1) / 2.0 / self.units, width: (w[1].1 - w[0].1) / self.units })
    }

    fn units_at(&self, k: usize) -> f64 {
        let i = self.knots.partition_point(|&(a, _)| a <= k);
        let (a, u) = self.knots[i.saturating_sub(1)];
        match self.knots.get(i) {
            // Between two knots, evenly: a shortened stretch's tokens are spread over it.
            Some(&(b, v)) if i > 0 => u + (k - a) as f64 / (b - a) as f64 * (v - u),
            // Before the first knot or past the last one, a token a unit (outside the spans).
            _ => u + (k as f64 - a as f64),
        }
    }
}

/// The length, in token units, a stretch of `tokens` is drawn: itself up to [`KEPT`], then
/// growing with its logarithm (the two pieces meet with the same slope).
fn shortened(tokens: f64) -> f64 {
    if tokens <= KEPT { tokens } else { KEPT + KEPT * (tokens / KEPT).ln() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::Span;

    fn path(tokens: &[usize]) -> FlowPath {
        FlowPath { tokens: tokens.to_vec(), flow: 0.1 }
    }

    fn spans(n: usize, question: (usize, usize), answer: (usize, usize)) -> Spans {
        let s = Spans { question: Span::new(question.0, question.1), response: Span::new(question.1, n), answer: Span::new(answer.0, answer.1) };
        s.validate(n).unwrap();
        s
    }

    #[test]
    fn a_short_trace_keeps_the_linear_axis_and_its_arithmetic() {
        let s = spans(120, (0, 20), (110, 118));
        let axis = TokenAxis::new(s, &[path(&[3, 40, 111]), path(&[4, 112])], 920.0);
        assert!(!axis.is_shortened());
        for k in [0, 3, 40, 117] {
            assert_eq!(axis.x(k, 40.0, 920.0), 40.0 + (k as f64 - 0.0 + 0.5) / 118.0 * 920.0);
        }
        assert_eq!(axis.gaps().count(), 0);
    }

    #[test]
    fn a_long_trace_whose_paths_crowd_its_ends_gets_an_arc_per_path() {
        // Eight two-token paths from a 30-token question to a 10-token answer 3 000 tokens on.
        let s = spans(3000, (0, 30), (2990, 3000));
        let paths: Vec<FlowPath> = (0..8).map(|i| path(&[3 * i + 2, 2990 + i])).collect();
        let length = 660.0;
        let linear = (length / 3000.0) * 1.0;
        assert!(linear < MIN_SEPARATION_PX, "the linear axis would put neighbours {linear} px apart");
        let axis = TokenAxis::new(s, &paths, length);
        assert!(axis.is_shortened());
        let mut xs: Vec<(usize, f64)> = paths.iter().flat_map(|p| p.tokens.iter()).map(|&k| (k, axis.x(k, 20.0, length))).collect();
        xs.sort_by_key(|&(k, _)| k);
        for w in xs.windows(2) {
            assert!(w[1].1 - w[0].1 >= 5.0, "tokens {} and {} are {} px apart", w[0].0, w[1].0, w[1].1 - w[0].1);
        }
        // Every token keeps its order, and the axis spans what it is given.
        let all: Vec<f64> = (0..3000).map(|k| axis.x(k, 20.0, length)).collect();
        assert!(all.windows(2).all(|w| w[1] > w[0]));
        assert!(all[0] > 20.0 && all[2999] < 20.0 + length);
        // The one long stretch, between the question's last path token and the answer's first.
        let gaps: Vec<Gap> = axis.gaps().collect();
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        assert_eq!((gaps[0].after, gaps[0].before, gaps[0].hidden()), (29, 2990, 2960));
        let mid = 20.0 + gaps[0].at * length;
        assert!(axis.x(29, 20.0, length) < mid && mid < axis.x(2990, 20.0, length));
        // Neighbours in the answer keep a token's spacing; the 2 960-token jump is the longest.
        let unit = axis.x(2991, 20.0, length) - axis.x(2990, 20.0, length);
        assert!((axis.x(2990, 20.0, length) - axis.x(29, 20.0, length)) > 10.0 * unit);
        assert!((2.0 * axis.half_token(20.0, length) - unit).abs() < 1e-9);
    }

    /// A short shortened stretch among the question's path tokens has no room for its label
    /// (it had been drawn under the arcs rising from its ends); the long jump to the answer has.
    #[test]
    fn a_gap_is_labelled_only_where_its_label_fits() {
        let s = spans(8000, (0, 30), (7990, 8000));
        let paths = [path(&[0, 2000, 4000, 6000, 7990]), path(&[11, 2000, 7991])];
        let length = 660.0;
        let axis = TokenAxis::new(s, &paths, length);
        let gaps: Vec<Gap> = axis.gaps().collect();
        assert_eq!(gaps.iter().map(|g| (g.after, g.before)).collect::<Vec<_>>(), [(0, 11), (11, 29), (29, 2000), (2000, 4000), (4000, 6000), (6000, 7990)]);
        for g in &gaps {
            let drawn = axis.x(g.before, 20.0, length) - axis.x(g.after, 20.0, length);
            assert!((g.width * length - drawn).abs() < 1e-9, "a gap's width is the stretch it is drawn over");
        }
        let label_px = |g: &Gap| g.label().len() as f64 * 10.0 * crate::render::CHAR_WIDTH_EM;
        assert_eq!(gaps[0].label(), "10 tokens");
        assert!(!gaps[0].label_fits(label_px(&gaps[0]), length), "{:.1} px for {:.1}", gaps[0].width * length, label_px(&gaps[0]));
        assert!(gaps[2..].iter().all(|g| g.label_fits(label_px(g), length)));
    }

    #[test]
    fn shortening_is_continuous_and_grows() {
        assert_eq!(shortened(1.0), 1.0);
        assert_eq!(shortened(KEPT), KEPT);
        assert!((shortened(KEPT + 1e-6) - KEPT).abs() < 1e-5);
        assert!(shortened(100.0) < shortened(1000.0) && shortened(1000.0) < 100.0);
    }
}
