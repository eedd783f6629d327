//! Synthetic traces with the structure real attention dumps have: an attention sink on the
//! first token, local heads that read the last few tokens, and retrieval heads that jump back to
//! the tokens a step depends on (the digits of the question, the partial sums). The text is a
//! worked addition with filler between the steps. Every file is marked `synthetic`.
//!
//! These stand in for the project's own policy until it exists, and drive tests and `bench`.

use crate::span::Span;
use crate::trace::{AttentionInput, Dtype, TraceBuilder};

/// SplitMix64: small, fast, reproducible across platforms (no `rand` needed for this).
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

#[derive(Clone, Debug)]
pub struct SynthSpec {
    pub seed: u64,
    /// Approximate token count; filler is added until the trace is this long.
    pub target_tokens: usize,
    pub layers: usize,
    pub heads: usize,
    pub dtype: Dtype,
    /// Shape of the attention tensor: 4 = [L,H,N,N], 3 = [L,N,N], 2 = [N,N].
    pub rank: usize,
    /// Leave the answer span empty (a trace cut before it answered).
    pub no_answer: bool,
}

impl Default for SynthSpec {
    fn default() -> Self {
        SynthSpec { seed: 1, target_tokens: 160, layers: 6, heads: 4, dtype: Dtype::F16, rank: 4, no_answer: false }
    }
}

impl SynthSpec {
    /// The slabs the attention has: (layers, heads) of the file, by rank.
    fn slabs(&self) -> (usize, usize) {
        match self.rank {
            4 => (self.layers, self.heads),
            3 => (self.layers, 1),
            _ => (1, 1),
        }
    }

    /// Whether this trace can be made here: at least one layer and head, and its attention (made
    /// in f32 before it is encoded) within the budget the loader gives a trace's matrix, half the
    /// available memory (`FLOWTRACER_MAX_MATRIX_BYTES` changes it). A trace of 10⁸ tokens had
    /// aborted the process on its allocation.
    pub fn check(&self) -> Result<(), String> {
        let (l, h) = self.slabs();
        if l == 0 || h == 0 {
            return Err(format!("the attention needs at least one layer and one head, not {l} and {h}"));
        }
        // The text overshoots the target by at most a sentence, and is never shorter than its
        // question and answer.
        let n = self.target_tokens.max(128) as u128 + 256;
        let need = (l as u128) * (h as u128) * n * n * 4;
        let budget = crate::trace::matrix_budget() as u128;
        if need > budget {
            return Err(format!(
                "about {} tokens × {l} layer(s) × {h} head(s) need {} MiB to make, over the budget of {} MiB (set {} to change it)",
                self.target_tokens,
                need >> 20,
                budget >> 20,
                crate::trace::MAX_MATRIX_BYTES_ENV
            ));
        }
        Ok(())
    }
}

/// A token and the earlier positions it semantically depends on.
struct Text {
    tokens: Vec<String>,
    deps: Vec<Vec<usize>>,
}

impl Text {
    fn push(&mut self, t: &str, deps: &[usize]) -> usize {
        self.tokens.push(t.to_string());
        self.deps.push(deps.to_vec());
        self.tokens.len() - 1
    }

    fn words(&mut self, text: &str) {
        for w in text.split_inclusive(' ').filter(|w| !w.is_empty()) {
            let w = w.trim_end();
            if !w.is_empty() {
                self.push(&format!(" {w}"), &[]);
            }
        }
    }
}

const FILLER: &[&str] = &[
    "Let me double check that step .",
    "Hmm , I should be careful here .",
    "Okay , that looks right so far .",
    "Wait , let me re-read the question .",
    "I will write the digits one by one .",
    "This is a simple column addition .",
];

/// Builds the text: prompt, question, reasoning with carries, answer. Returns spans too.
fn compose(rng: &mut Rng, target: usize, no_answer: bool) -> (Text, Span, Span, Span) {
    let mut t = Text { tokens: vec![], deps: vec![] };
    t.push("<|system|>", &[]);
    t.words("You are a careful solver .");
    t.push("<|user|>", &[]);
    let q0 = t.tokens.len();
    let a = 100 + rng.below(800);
    let b = 100 + rng.below(800);
    let names = ["Ada", "Tom", "Mia", "Raj"];
    let items = ["apples", "coins", "stamps", "books"];
    let (name, item) = (names[rng.below(4)], items[rng.below(4)]);
    t.words(&format!("{name} has"));
    let qa = t.push(&format!(" {a}"), &[]);
    t.words(&format!("{item} and finds"));
    let qb = t.push(&format!(" {b}"), &[]);
    t.words(&format!("more . How many {item} does {name} have ?"));
    let q1 = t.tokens.len();
    t.push("<|assistant|>", &[]);
    let r0 = t.tokens.len();
    t.push(" <think>", &[]);
    t.words("We add");
    let ra = t.push(&format!(" {a}"), &[qa]);
    t.words("and");
    let rb = t.push(&format!(" {b}"), &[qb]);
    t.push(" .", &[]);

    let steps = 3;
    let digits = |x: usize, d: usize| (x / 10usize.pow(d as u32)) % 10;
    let mut carry = 0;
    let mut carry_tok: Option<usize> = None;
    let mut sum_digits = vec![];
    let fill_budget = target.saturating_sub(90);
    let per_gap = fill_budget / (steps + 1);
    for d in 0..steps {
        let mut filled = 0;
        while filled < per_gap {
            let before = t.tokens.len();
            t.words(FILLER[rng.below(FILLER.len())]);
            filled += t.tokens.len() - before;
        }
        let (x, y) = (digits(a, d), digits(b, d));
        let tx = t.push(&format!(" {x}"), &[ra, qa]);
        t.push(" +", &[]);
        let ty = t.push(&format!(" {y}"), &[rb, qb]);
        let mut deps = vec![tx, ty];
        if let Some(c) = carry_tok {
            t.push(" +", &[]);
            let tc = t.push(&format!(" {carry}"), &[c]);
            deps.push(tc);
        }
        t.push(" =", &[]);
        let s = x + y + carry;
        let ts = t.push(&format!(" {s}"), &deps);
        t.words(", write");
        let tw = t.push(&format!(" {}", s % 10), &[ts]);
        sum_digits.push(tw);
        carry = s / 10;
        if carry > 0 {
            t.words("carry");
            carry_tok = Some(t.push(&format!(" {carry}"), &[ts]));
        } else {
            carry_tok = None;
        }
        t.push(" .", &[]);
    }
    let mut filled = 0;
    while filled < per_gap {
        let before = t.tokens.len();
        t.words(FILLER[rng.below(FILLER.len())]);
        filled += t.tokens.len() - before;
    }
    let total = a + b;
    t.words("So the total is");
    let mut deps = sum_digits.clone();
    deps.extend(carry_tok);
    let tt = t.push(&format!(" {total}"), &deps);
    t.push(" .", &[]);
    t.push(" </think>", &[]);
    t.words("The answer is");
    let answer = if no_answer {
        Span::new(t.tokens.len(), t.tokens.len())
    } else {
        let a0 = t.push(&format!(" {total}"), &[tt]);
        Span::new(a0, a0 + 1)
    };
    t.push(" .", &[]);
    let n = t.tokens.len();
    (t, Span::new(q0, q1), Span::new(r0, n), answer)
}

/// One head's attention row for query `k`: sink + local decay + retrieval of dependencies +
/// a little noise, normalised like a softmax output.
fn attention_row(text: &Text, k: usize, kind: f64, rng: &mut Rng, row: &mut [f32]) {
    let sink = 0.15 + 0.5 * (1.0 - kind);
    let local = 0.6 * (1.0 - kind) + 0.15;
    let retrieve = 2.5 * kind;
    let mut w = vec![0.0f64; k + 1];
    w[0] += sink;
    for (i, x) in w.iter_mut().enumerate().skip(k.saturating_sub(6)) {
        *x += local * (-((k - i) as f64) / 1.5).exp();
    }
    if !text.deps[k].is_empty() {
        let share = retrieve / text.deps[k].len() as f64;
        for &d in &text.deps[k] {
            w[d] += share;
        }
    }
    for x in w.iter_mut() {
        *x += 0.02 * rng.f64() / (k + 1) as f64;
    }
    let total: f64 = w.iter().sum();
    for (o, x) in row.iter_mut().zip(&w) {
        *o = (*x / total) as f32;
    }
    row[k + 1..].iter_mut().for_each(|x| *x = 0.0);
}

/// A whole synthetic trace, ready to write. Its size is the spec's to bound: where the spec comes
/// from a user (`synth`, `bench`), [`SynthSpec::check`] first.
pub fn synth_trace(spec: &SynthSpec) -> TraceBuilder {
    let mut rng = Rng::new(spec.seed);
    let (text, q, r, a) = compose(&mut rng, spec.target_tokens, spec.no_answer);
    let n = text.tokens.len();
    let (l, h) = spec.slabs();
    let mut values = vec![0f32; l * h * n * n];
    let slabs: Vec<&mut [f32]> = values.chunks_mut(n * n).collect();
    use rayon::prelude::*;
    slabs.into_par_iter().enumerate().for_each(|(s, slab)| {
        let (li, hi) = (s / h, s % h);
        // Early layers read locally, middle layers retrieve, late layers sink; heads vary.
        let depth = if l > 1 { li as f64 / (l - 1) as f64 } else { 0.5 };
        let bump = (-((depth - 0.5) * 3.0).powi(2)).exp();
        let kind = (bump * (0.55 + 0.45 * ((hi + 1) as f64 / h as f64))).clamp(0.0, 1.0);
        let mut rng = Rng::new(spec.seed.wrapping_mul(1000003).wrapping_add(s as u64));
        for k in 0..n {
            attention_row(&text, k, kind, &mut rng, &mut slab[k * n..(k + 1) * n]);
        }
    });
    let shape = match spec.rank {
        4 => vec![l, h, n, n],
        3 => vec![l, n, n],
        _ => vec![n, n],
    };
    let entropy: Vec<f32> = (0..n)
        .map(|k| if text.deps[k].is_empty() { 0.3 * rng.f64() as f32 } else { 0.8 + rng.f64() as f32 })
        .collect();
    let ids: Vec<i64> = text.tokens.iter().map(|t| token_id(t)).collect();
    let mut b = TraceBuilder::new(text.tokens, q, r, a, AttentionInput { shape, values, dtype: spec.dtype })
        .token_ids(ids)
        .entropy(entropy)
        .meta("synthetic", "true")
        .meta("model", "synthetic")
        .meta("task", "addition")
        .meta("sample_id", format!("synth-{}", spec.seed));
    if spec.rank >= 3 {
        b = b.meta("num_layers", l);
    }
    b
}

/// A stable id per distinct token string (FNV-1a into a 32k vocabulary).
fn token_id(t: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in t.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    (h % 32000) as i64
}
