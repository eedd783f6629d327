//! A run resumes only with the settings it was started with. Its `run.json` keeps the
//! configuration; a resume that would take its next steps another way (another credit mode,
//! task, seed, learning rate, γ's selection, model) is refused, each difference named, instead
//! of going on under the first settings' name with two configurations mixed in one run's
//! metrics and checkpoints. How long it runs, and how often it checkpoints, evaluates and writes
//! traces, may change: they change no step.

use super::train::TrainConfig;
use super::{Error, Result, at};
use serde_json::Value;
use std::path::Path;

/// The settings a resume may change.
const MAY_CHANGE: [&str; 4] = ["steps", "checkpoint_every", "eval_every", "traces_per_checkpoint"];

/// Refuses to resume the run in `out` with `cfg` where they differ in more than [`MAY_CHANGE`].
/// A run without a `run.json`, or one whose `run.json` predates the recorded configuration, is
/// not checked (there is nothing to compare with); a setting added since is not either.
pub fn check_settings(out: &Path, cfg: &TrainConfig) -> Result<()> {
    let path = out.join("run.json");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(at(&path)(e)),
    };
    let info: Value = serde_json::from_slice(&bytes).map_err(at(&path))?;
    let Some(started) = info.get("config") else { return Ok(()) };
    let now = serde_json::to_value(cfg).expect("a training configuration serialises");
    let mut changed = Vec::new();
    differences("", started, &now, &mut changed);
    changed.retain(|(field, _)| !MAY_CHANGE.contains(&field.as_str()));
    if changed.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = changed.into_iter().map(|(field, change)| format!("{field} {change}")).collect();
    Err(Error::msg(format!(
        "{}: this run was started with other settings ({}); resuming it so would mix two configurations in one run: resume it with the settings it was started with, or start a new run in another folder",
        path.display(),
        list.join(", ")
    )))
}

/// `(field, "was → now")` for each leaf of `now` that `was` holds with another value, fields of
/// nested tables named with dots (`params.credit.gamma`).
fn differences(prefix: &str, was: &Value, now: &Value, out: &mut Vec<(String, String)>) {
    match (was, now) {
        (Value::Object(was), Value::Object(now)) => {
            for (key, value) in now {
                let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                if let Some(old) = was.get(key) {
                    differences(&name, old, value, out);
                }
            }
        }
        _ if was != now => out.push((prefix.to_string(), format!("{was} → {now}"))),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_differences_are_named_by_their_path() {
        let was = json!({"credit_mode": "flow", "lr": 0.0003, "steps": 4, "params": {"credit": {"gamma": 1.5, "fraction": 0.4}}, "old": 1});
        let now = json!({"credit_mode": "uniform", "lr": 0.0003, "steps": 9, "params": {"credit": {"gamma": 2.0, "fraction": 0.4}}, "new": 2});
        let mut out = Vec::new();
        differences("", &was, &now, &mut out);
        out.sort();
        let got: Vec<String> = out.into_iter().map(|(field, change)| format!("{field} {change}")).collect();
        assert_eq!(got, ["credit_mode \"flow\" → \"uniform\"", "params.credit.gamma 1.5 → 2.0", "steps 4 → 9"]);
    }
}
