//! Verifiable reasoning tasks small enough for a CPU-trained policy, each with question, response
//! and answer spans in token positions, fixed seeds and a held-out split.
//!
//! - `addition`: column addition with a written carry chain, trained on short numbers, RL on
//!   longer ones (length extension).
//! - `chain`: chained variable assignments among distractors; one early fact decides the answer.
//! - `parity`: a running XOR; every step lies on the answer's path (a control where credit
//!   methods should tie).

use crate::synth::Rng;
use serde::{Deserialize, Serialize};

/// Characters of every task; ids 0–2 are the specials.
pub const CHARS: &str = "0123456789+=?>.;,^abcdefgh";
pub const PAD: u32 = 0;
pub const BOS: u32 = 1;
pub const EOS: u32 = 2;

pub fn vocab_size() -> usize {
    3 + CHARS.chars().count()
}

pub fn encode(text: &str) -> Vec<u32> {
    text.chars()
        .map(|c| 3 + CHARS.chars().position(|x| x == c).unwrap_or_else(|| panic!("character {c:?} is not in the task vocabulary")) as u32)
        .collect()
}

pub fn token_text(id: u32) -> String {
    match id {
        PAD => "<pad>".into(),
        BOS => "<bos>".into(),
        EOS => "<eos>".into(),
        i => CHARS.chars().nth(i as usize - 3).map(String::from).unwrap_or_else(|| "<?>".into()),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    Addition,
    Chain,
    Parity,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Supervised warm start: the easy lengths.
    Sft,
    /// RL: the lengths the warm start rarely gets right.
    Rl,
}

/// One problem: the prompt the policy reads and the reference response it should write.
#[derive(Clone, Debug)]
pub struct Problem {
    pub prompt: String,
    pub solution: String,
    pub answer: String,
}

impl Task {
    pub fn name(self) -> &'static str {
        match self {
            Task::Addition => "addition",
            Task::Chain => "chain",
            Task::Parity => "parity",
        }
    }

    /// Problems of a split are drawn from disjoint seed streams, so held-out stays held out.
    pub fn problem(self, rng: &mut Rng, phase: Phase) -> Problem {
        match self {
            Task::Addition => {
                let digits = match phase {
                    // Mostly 1–3 digits, about one in ten at the RL length, so RL starts above zero.
                    Phase::Sft => if rng.below(10) == 0 { 4 } else { 1 + rng.below(3) },
                    Phase::Rl => 4,
                };
                let lo = if digits == 1 { 0 } else { 10usize.pow(digits as u32 - 1) };
                let hi = 10usize.pow(digits as u32);
                let (a, b) = (lo + rng.below(hi - lo), lo + rng.below(hi - lo));
                let mut steps = String::new();
                let (mut x, mut y, mut carry) = (a, b, 0);
                for _ in 0..digits {
                    let s = x % 10 + y % 10 + carry;
                    steps.push_str(&format!("{}+{}+{}={}{};", x % 10, y % 10, carry, s / 10, s % 10));
                    carry = s / 10;
                    x /= 10;
                    y /= 10;
                }
                let answer = (a + b).to_string();
                Problem { prompt: format!("{a}+{b}?"), solution: format!("{steps}>{answer}."), answer }
            }
            Task::Chain => {
                let vars: Vec<char> = "abcdefgh".chars().collect();
                let hops = match phase {
                    Phase::Sft => 1 + rng.below(2),
                    Phase::Rl => 3,
                };
                let mut order: Vec<char> = vars.clone();
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.below(i + 1));
                }
                let chain = &order[..=hops];
                let value = rng.below(10);
                let mut lines = vec![format!("{}={value}", chain[0])];
                for w in chain.windows(2) {
                    lines.push(format!("{}={}", w[1], w[0]));
                }
                for &d in &order[hops + 1..hops + 3] {
                    lines.push(format!("{d}={}", rng.below(10)));
                }
                for i in (1..lines.len()).rev() {
                    lines.swap(i, rng.below(i + 1));
                }
                let target = chain[hops];
                let mut sol: String = chain.windows(2).rev().map(|w| format!("{}={};", w[1], w[0])).collect();
                sol.push_str(&format!("{}={value};>{value}.", chain[0]));
                Problem { prompt: format!("{};?{target}", lines.join(";")), solution: sol, answer: value.to_string() }
            }
            Task::Parity => {
                let bits = match phase {
                    // As for addition: one in ten at the RL length, so RL starts above chance.
                    Phase::Sft => if rng.below(10) == 0 { 9 } else { 3 + rng.below(4) },
                    Phase::Rl => 9,
                };
                let b: Vec<usize> = (0..bits).map(|_| rng.below(2)).collect();
                let mut acc = 0;
                let running: Vec<String> = b
                    .iter()
                    .map(|&x| {
                        acc ^= x;
                        acc.to_string()
                    })
                    .collect();
                let bits: String = b.iter().map(|x| x.to_string()).collect();
                Problem { prompt: format!("{bits}?"), solution: format!("{},>{acc}.", running.join(",")), answer: acc.to_string() }
            }
        }
    }

    /// The answer a response states: the characters between the last `>` and the `.` after it.
    pub fn stated_answer(response: &str) -> Option<&str> {
        let start = response.rfind('>')? + 1;
        let end = start + response[start..].find('.')?;
        Some(&response[start..end])
    }

    pub fn verify(problem: &Problem, response: &str) -> bool {
        Task::stated_answer(response) == Some(problem.answer.as_str())
    }
}

/// Token layout of prompt + response for the trace format: `[bos] prompt response [eos]`.
/// Question = the prompt's characters; response = everything generated; answer = the stated
/// answer's characters (empty when the response states none).
pub fn spans(prompt_len: usize, response: &[u32]) -> (crate::Span, crate::Span, crate::Span) {
    let q = crate::Span::new(1, 1 + prompt_len);
    let r0 = 1 + prompt_len;
    let r = crate::Span::new(r0, r0 + response.len());
    let gt = encode(">")[0];
    let dot = encode(".")[0];
    let a = match response.iter().rposition(|&t| t == gt) {
        Some(p) => {
            let end = response[p + 1..].iter().position(|&t| t == dot).map(|e| p + 1 + e);
            match end {
                Some(e) if e > p + 1 => crate::Span::new(r0 + p + 1, r0 + e),
                _ => crate::Span::new(r.end, r.end),
            }
        }
        None => crate::Span::new(r.end, r.end),
    };
    (q, r, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solutions_verify_and_fit_the_context() {
        let mut rng = Rng::new(5);
        for task in [Task::Addition, Task::Chain, Task::Parity] {
            for phase in [Phase::Sft, Phase::Rl] {
                for _ in 0..50 {
                    let p = task.problem(&mut rng, phase);
                    assert!(Task::verify(&p, &p.solution), "{task:?}: {p:?}");
                    assert!(!Task::verify(&p, "1+1=2;>x."));
                    let n = 2 + encode(&p.prompt).len() + encode(&p.solution).len();
                    assert!(n <= 96, "{task:?} {phase:?}: {n} tokens");
                    let (q, r, a) = spans(encode(&p.prompt).len(), &encode(&p.solution));
                    assert_eq!(a.len(), p.answer.len());
                    assert!(q.end <= r.start && r.start <= a.start && a.end <= r.end);
                }
            }
        }
    }

    #[test]
    fn addition_carries() {
        let p = Problem { prompt: "47+38?".into(), solution: "7+8+0=15;4+3+1=08;>85.".into(), answer: "85".into() };
        assert!(Task::verify(&p, &p.solution));
        assert_eq!(Task::stated_answer("xx>12.3>85."), Some("85"));
    }
}
