//! `flowtracer train --compare MODES --seeds K`: one run per (mode, seed) from the same warm
//! start, then a table of held-out accuracy at fixed steps (mean ± std over seeds), steps to a
//! target accuracy, and what tracing cost per step. Runs are ordinary run folders
//! (`OUT/<mode>-s<seed>/`), so a killed comparison resumes and the app opens each run.

use super::{Result, at};
use super::grpo::CreditMode;
use super::train::{Progress, TrainConfig, train};
use crate::flow::Cancel;
use std::path::{Path, PathBuf};

pub fn run_dir(root: &Path, mode: CreditMode, seed: u64) -> PathBuf {
    root.join(format!("{}-s{seed}", mode.name()))
}

/// The table's file, at the comparison folder's top (the one file there that is not a run's).
pub const TABLE: &str = "compare.md";

/// A `compare.md` already in `root` is replaced only where an earlier comparison of these modes
/// and seeds wrote it (one of its runs' `run.json` beside it): a folder of the user's that keeps
/// notes of that name is refused before anything is trained.
pub fn check_folder(root: &Path, modes: &[CreditMode], seeds: &[u64]) -> Result<()> {
    let table = root.join(TABLE);
    if !table.exists() {
        return Ok(());
    }
    let ours = seeds.iter().any(|&s| modes.iter().any(|&m| run_dir(root, m, s).join("run.json").is_file()));
    if ours {
        return Ok(());
    }
    Err(crate::rl::Error::msg(format!(
        "{}: holds a {TABLE} that no comparison of these modes and seeds wrote (none of their run folders beside it), and the comparison would write its table over it: compare into a new or empty folder",
        root.display()
    )))
}

/// Writes the table into `root` (atomically): its path.
pub fn write_table(root: &Path, table: &str) -> Result<PathBuf> {
    let path = root.join(TABLE);
    crate::atomic::write_atomic(&path, table.as_bytes()).map_err(at(&path))?;
    Ok(path)
}

/// Trains every (mode, seed) pair that is not complete yet, in order. `tick` sees which run and
/// its progress.
pub fn compare(
    base: &TrainConfig,
    modes: &[CreditMode],
    seeds: &[u64],
    root: &Path,
    cancel: &Cancel,
    tick: &mut dyn FnMut(CreditMode, u64, Progress),
) -> Result<()> {
    check_folder(root, modes, seeds)?;
    for &seed in seeds {
        for &mode in modes {
            if cancel.is_cancelled() {
                return Ok(());
            }
            let mut cfg = base.clone();
            cfg.credit_mode = mode;
            cfg.seed = seed;
            train(&cfg, &run_dir(root, mode, seed), cancel, &mut |p| tick(mode, seed, p))?;
        }
    }
    Ok(())
}

/// One run's curve, read back from its `metrics.jsonl`.
#[derive(Clone, Debug, Default)]
pub struct Curve {
    /// (step, held-out accuracy) wherever it was measured, step 0 = the warm start.
    pub accuracy: Vec<(usize, f64)>,
    pub trace_ms: Vec<f64>,
    pub other_ms: Vec<f64>,
}

impl Curve {
    pub fn read(run: &Path) -> Result<Curve> {
        let path = run.join("metrics.jsonl");
        let text = std::fs::read_to_string(&path).map_err(at(&path))?;
        let mut c = Curve::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).map_err(at(&path))?;
            let step = v["step"].as_u64().unwrap_or(0) as usize;
            if let Some(a) = v["heldout_accuracy"].as_f64() {
                c.accuracy.push((step, a));
            }
            if let (Some(t), Some(o)) = (v["trace_ms"].as_f64(), v["other_ms"].as_f64()) {
                c.trace_ms.push(t);
                c.other_ms.push(o);
            }
        }
        Ok(c)
    }

    pub fn at(&self, step: usize) -> Option<f64> {
        self.accuracy.iter().find(|(s, _)| *s == step).map(|(_, a)| *a)
    }

    /// The first measured step at or above `target`.
    pub fn steps_to(&self, target: f64) -> Option<usize> {
        self.accuracy.iter().find(|(_, a)| *a >= target).map(|(s, _)| *s)
    }
}

/// Mean and sample standard deviation (0 for one value).
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len().max(1) as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 { xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

/// The comparison as a Markdown table: one row per mode.
pub fn table(root: &Path, modes: &[CreditMode], seeds: &[u64], at_steps: &[usize], target: f64) -> Result<String> {
    let mut out = String::from("| credit |");
    for s in at_steps {
        out += &format!(" held-out @ {s} |");
    }
    out += &format!(" steps to {:.0}% | tracing ms/step (share) |\n|---|", target * 100.0);
    out += &"---|".repeat(at_steps.len() + 2);
    out.push('\n');
    for &mode in modes {
        let curves: Vec<Curve> = seeds.iter().map(|&s| Curve::read(&run_dir(root, mode, s))).collect::<Result<_>>()?;
        out += &format!("| {} |", mode.name());
        for &s in at_steps {
            let xs: Vec<f64> = curves.iter().filter_map(|c| c.at(s)).collect();
            let (m, sd) = mean_std(&xs);
            out += &if xs.is_empty() { " – |".to_string() } else { format!(" {:.1} ± {:.1}% |", m * 100.0, sd * 100.0) };
        }
        let reached: Vec<f64> = curves.iter().filter_map(|c| c.steps_to(target)).map(|s| s as f64).collect();
        let (m, _) = mean_std(&reached);
        out += &if reached.is_empty() { format!(" none of {} |", curves.len()) } else { format!(" {m:.0} ({}/{} runs) |", reached.len(), curves.len()) };
        let trace: Vec<f64> = curves.iter().flat_map(|c| c.trace_ms.iter().copied()).collect();
        let other: Vec<f64> = curves.iter().flat_map(|c| c.other_ms.iter().copied()).collect();
        let (t, o) = (mean_std(&trace).0, mean_std(&other).0);
        out += &format!(" {t:.0} ({:.1}%) |\n", 100.0 * t / (t + o).max(1e-9));
    }
    Ok(out)
}
