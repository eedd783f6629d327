//! Every choice the method leaves open, as data. One struct, loadable from TOML or JSON and
//! saved into every export, so a result always says how it was made.

use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[derive(Default)]
pub struct Params {
    pub aggregate: AggregateParams,
    pub answer: AnswerParams,
    pub backbone: BackboneParams,
    pub roles: RoleParams,
    pub credit: CreditParams,
    pub steps: StepParams,
}

/// How the attention of many layers and heads becomes one token-to-token matrix M.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AggregateParams {
    /// Original layer indices `[start, end)`; `None`: the default rule (`deep_from`).
    #[serde(deserialize_with = "layer_range")]
    pub layers: Option<[usize; 2]>,
    /// When `layers` is unset: models with at least this many layers aggregate their middle third
    /// (the paper's best, on 28+ layers), shallower ones the middle third through the last layer
    /// (the per-token probe's best on the project's 3-layer policy). Between 3 and 28 layers
    /// nothing was measured: 6 is a judgement, and `flowtracer probe --per-token --table`
    /// measures it for a given policy.
    pub deep_from: usize,
    /// Head indices to keep; `None` keeps all.
    pub heads: Option<Vec<usize>>,
    pub reduce: Reduce,
    /// Edges weaker than this are dropped (ε).
    pub threshold: f64,
}

/// What the flow is conditioned on (step 3's sink).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnswerParams {
    pub sink: Sink,
}

/// Which positions absorb the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sink {
    /// The positions whose next-token prediction wrote the answer, [a0−1, a1−1): in a causal LM
    /// token t is written by the attention of position t−1, and the last answer token's own
    /// attention only writes what follows the answer. Kept inside the response (a first answer
    /// token that opens the response is its own writer); a one-token answer at the response's
    /// start falls back to the answer itself.
    Writers,
    /// The answer tokens themselves (FLOWTRACER.md §1, read literally).
    Tokens,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reduce {
    Mean,
    Max,
}

/// The greedy widest-path decomposition of the unit flow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackboneParams {
    pub max_paths: usize,
    /// Stop once this share of the unit flow is explained by the paths taken.
    pub coverage: f64,
}

/// Hubs and aggregation checkpoints (the paper names them; the rules are ours).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoleParams {
    /// Share of response tokens, by throughput, that are hubs (at least one).
    pub hub_fraction: f64,
    /// At most this many hubs: on a 32k-token trace 5% is 1 600 outlined tokens, which singles
    /// nothing out.
    pub max_hubs: usize,
    /// A backbone token whose effective number of far sources exceeds this is a checkpoint.
    pub checkpoint_min_sources: f64,
    /// How far back (in tokens) a source must lie to count as far.
    pub checkpoint_min_distance: usize,
    /// Backbone tokens entered from at least this many distinct backbone paths are checkpoints.
    pub checkpoint_min_merging_paths: usize,
}

/// How the response is cut into reasoning steps for the step-level flow (`flow::steps`); a
/// trace's `segments` metadata, when given, replaces the rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StepParams {
    pub split: Split,
    /// No step is longer than this many tokens (a long line is cut).
    pub max_tokens: usize,
    /// A graph has at most this many steps: where there are more segments, runs of them are
    /// joined into one step (never across the sink). Its edges grow as the square of its steps:
    /// a 16k-token trace cut at sentences had made 2.2 million edges and a 142 MB DOT file.
    pub max_steps: usize,
}

/// Where a step ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// After a token whose text holds a line break.
    Lines,
    /// Also after a token that ends a sentence (`.`, `?`, `!` before a space or the end).
    Sentences,
}

/// From throughput to the per-token advantage multiplier γ.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CreditParams {
    /// Share of response tokens (rounded up) that get `gamma`.
    pub fraction: f64,
    pub gamma: f64,
    /// Rescale γ to mean 1 over the response, so shaping does not change the effective step size.
    pub normalize_mean: bool,
    /// RL only: shape negative advantages too ("toward or away from correct answers").
    pub apply_to_negative: bool,
}


impl Default for AggregateParams {
    fn default() -> Self {
        AggregateParams { layers: None, deep_from: 6, heads: None, reduce: Reduce::Mean, threshold: 0.0 }
    }
}

impl Default for AnswerParams {
    fn default() -> Self {
        AnswerParams { sink: Sink::Writers }
    }
}

impl Default for BackboneParams {
    fn default() -> Self {
        BackboneParams { max_paths: 8, coverage: 0.9 }
    }
}

impl Default for RoleParams {
    fn default() -> Self {
        RoleParams {
            hub_fraction: 0.05,
            max_hubs: 32,
            checkpoint_min_sources: 4.0,
            checkpoint_min_distance: 8,
            checkpoint_min_merging_paths: 2,
        }
    }
}

impl Default for StepParams {
    fn default() -> Self {
        StepParams { split: Split::Lines, max_tokens: 256, max_steps: 512 }
    }
}

impl Default for CreditParams {
    fn default() -> Self {
        CreditParams { fraction: 0.4, gamma: 1.5, normalize_mean: false, apply_to_negative: true }
    }
}

/// `[start, end]` exactly: TOML would otherwise drop a third number without a word.
fn layer_range<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<[usize; 2]>, D::Error> {
    let Some(v) = Option::<Vec<usize>>::deserialize(d)? else { return Ok(None) };
    <[usize; 2]>::try_from(v.as_slice())
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("aggregate.layers must be [start, end], two layer indices; got {} numbers {v:?}", v.len())))
}

/// A parameter file is a few hundred bytes; anything past this is not one.
pub const MAX_PARAMS_BYTES: u64 = 1 << 20;

impl Params {
    /// Reads a parameter file: `.json` as JSON, anything else as TOML. Missing fields take defaults.
    /// Only a regular file of at most `MAX_PARAMS_BYTES` is read (`--params /dev/zero` would
    /// otherwise read until memory runs out).
    pub fn load(path: &Path) -> Result<Params, String> {
        use std::io::Read;
        let fail = |e: String| format!("{}: cannot read parameters: {e}", path.display());
        let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
        if !meta.is_file() {
            return Err(fail("not a regular file".into()));
        }
        let mut bytes = Vec::new();
        std::fs::File::open(path).and_then(|f| f.take(MAX_PARAMS_BYTES + 1).read_to_end(&mut bytes)).map_err(|e| fail(e.to_string()))?;
        if bytes.len() as u64 > MAX_PARAMS_BYTES {
            return Err(fail(format!("larger than {} bytes, the most a parameter file may be", MAX_PARAMS_BYTES)));
        }
        let text = String::from_utf8(bytes).map_err(|e| fail(format!("not UTF-8 text ({e})")))?;
        let json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
        Params::parse(&text, json).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parameters from the text of a file (JSON or TOML), checked.
    pub fn parse(text: &str, json: bool) -> Result<Params, String> {
        let params: Params = if json { serde_json::from_str(text).map_err(|e| e.to_string())? } else { toml::from_str(text).map_err(|e| e.to_string())? };
        params.validate()?;
        Ok(params)
    }

    /// Ranges that the maths needs; anything outside them is a user error, not a panic later.
    pub fn validate(&self) -> Result<(), String> {
        if self.steps.max_tokens == 0 {
            return Err("steps.max_tokens must be at least 1".into());
        }
        if self.steps.max_steps == 0 {
            return Err("steps.max_steps must be at least 1".into());
        }
        let a = &self.aggregate;
        if let Some([s, e]) = a.layers
            && e <= s {
                return Err(format!("aggregate.layers [{s}, {e}] is empty"));
            }
        if a.heads.as_ref().is_some_and(|h| h.is_empty()) {
            return Err("aggregate.heads is an empty list".into());
        }
        if !(a.threshold.is_finite() && a.threshold >= 0.0) {
            return Err(format!("aggregate.threshold {} must be a finite number ≥ 0", a.threshold));
        }
        let b = &self.backbone;
        if !(b.coverage > 0.0 && b.coverage <= 1.0) {
            return Err(format!("backbone.coverage {} must lie in (0, 1]", b.coverage));
        }
        let r = &self.roles;
        if !(r.hub_fraction >= 0.0 && r.hub_fraction <= 1.0) {
            return Err(format!("roles.hub_fraction {} must lie in [0, 1]", r.hub_fraction));
        }
        if !(r.checkpoint_min_sources.is_finite() && r.checkpoint_min_sources >= 1.0) {
            return Err(format!(
                "roles.checkpoint_min_sources {} must be a finite number ≥ 1",
                r.checkpoint_min_sources
            ));
        }
        let c = &self.credit;
        if !(c.fraction >= 0.0 && c.fraction <= 1.0) {
            return Err(format!("credit.fraction {} must lie in [0, 1]", c.fraction));
        }
        if !(c.gamma.is_finite() && c.gamma > 0.0) {
            return Err(format!("credit.gamma {} must be a finite number > 0", c.gamma));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_json_round_trip_with_defaults() {
        let p: Params = toml::from_str("[credit]\ngamma = 2.0\n").unwrap();
        assert_eq!(p.credit.gamma, 2.0);
        assert_eq!(p.credit.fraction, 0.4);
        assert_eq!(p.backbone.max_paths, 8);
        let json = serde_json::to_string(&p).unwrap();
        let back: Params = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn a_layer_range_is_exactly_two_numbers() {
        let e = toml::from_str::<Params>("[aggregate]\nlayers = [1, 2, 3]\n").unwrap_err().to_string();
        assert!(e.contains("aggregate.layers must be [start, end]") && e.contains("got 3"), "{e}");
        let e = serde_json::from_str::<Params>(r#"{"aggregate":{"layers":[1]}}"#).unwrap_err().to_string();
        assert!(e.contains("aggregate.layers"), "{e}");
        let p: Params = toml::from_str("[aggregate]\nlayers = [1, 3]\n").unwrap();
        assert_eq!(p.aggregate.layers, Some([1, 3]));
        assert_eq!(serde_json::from_str::<Params>(&serde_json::to_string(&p).unwrap()).unwrap(), p);
    }

    #[test]
    fn parameter_files_are_bounded_regular_files() {
        let dir = std::env::temp_dir().join(format!("flowtracer-params-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.toml");
        std::fs::write(&big, format!("# {}\n", "x".repeat(MAX_PARAMS_BYTES as usize))).unwrap();
        let e = Params::load(&big).unwrap_err();
        assert!(e.contains("big.toml") && e.contains("larger than"), "{e}");
        assert!(Params::load(&dir).unwrap_err().contains("not a regular file"));
        #[cfg(unix)]
        assert!(Params::load(Path::new("/dev/zero")).unwrap_err().contains("/dev/zero: cannot read parameters: not a regular file"));
        let ok = dir.join("ok.toml");
        std::fs::write(&ok, "[credit]\ngamma = 2.0\n").unwrap();
        assert_eq!(Params::load(&ok).unwrap().credit.gamma, 2.0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_sink_reads_from_toml() {
        let p: Params = toml::from_str("[answer]\nsink = \"tokens\"\n").unwrap();
        assert_eq!(p.answer.sink, Sink::Tokens);
        assert_eq!(Params::default().answer.sink, Sink::Writers);
        assert!(toml::from_str::<Params>("[answer]\nsink = \"readers\"\n").is_err());
    }

    #[test]
    fn unknown_fields_and_bad_ranges_are_refused() {
        assert!(toml::from_str::<Params>("[credit]\ngama = 2.0\n").is_err());
        let mut p = Params::default();
        p.credit.fraction = 1.5;
        assert!(p.validate().unwrap_err().contains("credit.fraction"));
        p = Params::default();
        p.aggregate.layers = Some([4, 4]);
        assert!(p.validate().is_err());
    }
}
