//! A run folder: its traces (step × sample, reward, correctness, status) and its metrics.

use crate::trace::run::Run;
use egui::Ui;
use egui_plot::{Legend, Line, Plot, PlotPoints};
use std::path::PathBuf;

/// One row of the run table, read from the trace header only (the attention stays unread).
pub struct RunRow {
    pub path: PathBuf,
    pub relative: String,
    pub n: Option<usize>,
    pub step: Option<u64>,
    pub reward: Option<f64>,
    pub correct: Option<bool>,
    pub error: Option<String>,
}

pub struct RunView {
    pub run: Run,
    pub rows: Vec<RunRow>,
}

impl RunView {
    pub fn new(run: Run) -> Self {
        let rows = run
            .traces
            .iter()
            .map(|p| {
                let relative = run.relative(p).display().to_string();
                match crate::trace::Trace::open(p) {
                    Ok(t) => RunRow {
                        path: p.clone(),
                        relative,
                        n: Some(t.n()),
                        step: t.meta.step,
                        reward: t.meta.reward,
                        correct: t.meta.correct,
                        error: None,
                    },
                    Err(e) => RunRow { path: p.clone(), relative, n: None, step: None, reward: None, correct: None, error: Some(e.message) },
                }
            })
            .collect();
        RunView { run, rows }
    }
}

/// Returns a trace the user asked to open.
pub fn show(ui: &mut Ui, view: &RunView) -> Option<PathBuf> {
    let mut open = None;
    ui.heading(format!("run {}", view.run.name()));
    for w in &view.run.warnings {
        ui.colored_label(ui.visuals().warn_fg_color, w);
    }
    let numeric: Vec<String> = {
        let mut keys: Vec<String> = view
            .run
            .metrics
            .iter()
            .flat_map(|m| m.as_object().into_iter().flatten())
            .filter(|(k, v)| v.is_number() && k.as_str() != "step")
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        keys.dedup();
        keys
    };
    if !numeric.is_empty() {
        Plot::new("run-metrics").height(180.0).legend(Legend::default()).show(ui, |plot| {
            for key in &numeric {
                let pts: Vec<[f64; 2]> = view
                    .run
                    .metrics
                    .iter()
                    .enumerate()
                    .filter_map(|(i, m)| {
                        let x = m.get("step").and_then(|s| s.as_f64()).unwrap_or(i as f64);
                        m.get(key).and_then(|v| v.as_f64()).map(|y| [x, y])
                    })
                    .collect();
                plot.line(Line::new(key.clone(), PlotPoints::from(pts)));
            }
        });
    } else {
        ui.weak("no metrics.jsonl");
    }
    ui.separator();
    egui::ScrollArea::vertical().id_salt("run-rows").show(ui, |ui| {
        egui::Grid::new("run-table").striped(true).num_columns(6).show(ui, |ui| {
            for h in ["trace", "tokens", "step", "reward", "correct", ""] {
                ui.strong(h);
            }
            ui.end_row();
            for row in &view.rows {
                ui.label(&row.relative);
                ui.label(row.n.map_or("-".into(), |n| n.to_string()));
                ui.label(row.step.map_or("-".into(), |s| s.to_string()));
                ui.label(row.reward.map_or("-".into(), |r| format!("{r:.3}")));
                ui.label(row.correct.map_or("-", |c| if c { "yes" } else { "no" }));
                match &row.error {
                    Some(e) => {
                        ui.colored_label(ui.visuals().error_fg_color, "broken").on_hover_text(e);
                    }
                    None => {
                        if ui.button("open").clicked() {
                            open = Some(row.path.clone());
                        }
                    }
                }
                ui.end_row();
            }
        });
    });
    open
}
