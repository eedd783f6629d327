//! A run folder: its traces (step × sample, reward, correctness, status) and its metrics.

use crate::app::command::Command;
use crate::app::run_model::RunModel;
use egui::Ui;
use egui_plot::{Legend, Line, Plot, PlotPoints};

/// The run's metrics and table; a trace the user asked to open comes back as a command.
pub fn show(ui: &mut Ui, view: &mut RunModel) -> Option<Command> {
    if view.poll() {
        ui.ctx().request_repaint_after(std::time::Duration::from_millis(100));
    }
    let mut open = None;
    ui.heading(format!("run {}", view.run.name()));
    if let Some(from) = &view.scored {
        ui.weak(format!("{} traces scored elsewhere, read from {}: statuses as they were scored; a trace whose file is here opens and re-scores", view.rows.len(), from.display()));
    } else if view.watching() {
        ui.weak(format!("{} traces · watching the folder: new traces and metrics appear as they are written", view.rows.len()));
    }
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
    if numeric.is_empty() {
        if view.scored.is_none() {
            ui.weak("no metrics.jsonl");
        }
    } else {
        // Rates and scores (reward, accuracy, loss, γ) live near [0, 1]; timings in the thousands
        // would flatten them, so they get a plot of their own.
        let series = |key: &str| -> Vec<[f64; 2]> {
            view.run
                .metrics
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    let x = m.get("step").and_then(|s| s.as_f64()).unwrap_or(i as f64);
                    m.get(key).and_then(|v| v.as_f64()).map(|y| [x, y])
                })
                .collect()
        };
        let (small, large): (Vec<&String>, Vec<&String>) = numeric.iter().partition(|k| series(k).iter().all(|p| p[1].abs() <= 2.0));
        let half = (ui.available_width() / 2.0 - 8.0).max(200.0);
        ui.horizontal(|ui| {
            for (id, keys) in [("run-metrics", &small), ("run-timings", &large)] {
                if keys.is_empty() {
                    continue;
                }
                Plot::new(id).width(if small.is_empty() || large.is_empty() { 2.0 * half } else { half }).height(180.0).legend(Legend::default().text_style(egui::TextStyle::Small).background_alpha(0.5)).show(ui, |plot| {
                    for key in keys.iter() {
                        plot.line(Line::new(key.as_str(), PlotPoints::from(series(key))));
                    }
                });
            }
        });
    }
    ui.separator();
    // Only the rows on screen are laid out: a run of 10 000 traces draws as fast as one of ten.
    let trace_width = (ui.available_width() - COLUMNS.iter().map(|c| c.1 + SPACING).sum::<f32>()).max(160.0);
    let width = |i: usize| if i == 0 { trace_width } else { COLUMNS[i - 1].1 };
    // Wider than a narrow view (the trace column keeps 160 px), the table scrolls sideways, so
    // the last column's "open" stays in reach.
    egui::ScrollArea::horizontal().id_salt("run-table").auto_shrink([false, false]).show(ui, |ui| {
        ui.horizontal(|ui| {
            for (i, h) in std::iter::once("trace").chain(COLUMNS.iter().map(|c| c.0)).enumerate() {
                cell(ui, width(i), |ui| {
                    ui.strong(h);
                });
            }
        });
        let row_height = ui.spacing().interact_size.y;
        egui::ScrollArea::vertical().id_salt("run-rows").auto_shrink([false, false]).show_rows(ui, row_height, view.rows.len(), |ui, range| {
            for row in &view.rows[range] {
                ui.horizontal(|ui| {
                    cell(ui, width(0), |ui| {
                        ui.add(egui::Label::new(&row.relative).truncate());
                    });
                    for (i, text) in [
                        row.n.map_or("-".into(), |n| n.to_string()),
                        row.step.map_or("-".into(), |s| s.to_string()),
                        row.reward.map_or("-".into(), |r| format!("{r:.3}")),
                        row.correct.map_or("-", |c| if c { "yes" } else { "no" }).to_string(),
                    ]
                    .into_iter()
                    .enumerate()
                    {
                        cell(ui, width(i + 1), |ui| {
                            ui.label(text);
                        });
                    }
                    cell(ui, width(5), |ui| {
                        match &row.status {
                            Some(Ok(s)) => ui.label(*s),
                            Some(Err(e)) => ui.colored_label(ui.visuals().error_fg_color, "failed").on_hover_text(e),
                            None => ui.spinner(),
                        };
                    });
                    cell(ui, width(6), |ui| match row.broken() {
                        Some(e) => {
                            ui.colored_label(ui.visuals().error_fg_color, "broken").on_hover_text(e);
                        }
                        None if row.elsewhere => {
                            ui.weak("not here").on_hover_text(format!("{}: the trace file is not on this machine", row.path.display()));
                        }
                        None => {
                            if ui.button("open").clicked() {
                                open = Some(Command::Open(row.path.clone()));
                            }
                        }
                    });
                });
            }
        });
    });
    open
}

/// The table's columns after the trace's path, and their widths.
const COLUMNS: [(&str, f32); 6] = [("tokens", 60.0), ("step", 50.0), ("reward", 60.0), ("correct", 56.0), ("status", 80.0), ("", 56.0)];
const SPACING: f32 = 8.0;

/// One cell of a fixed width, so the rows line up without a grid measuring every row.
fn cell(ui: &mut Ui, width: f32, add: impl FnOnce(&mut Ui)) {
    let height = ui.spacing().interact_size.y;
    ui.allocate_ui_with_layout(egui::vec2(width, height), egui::Layout::left_to_right(egui::Align::Center), |ui| {
        ui.set_width(width);
        add(ui);
    });
}
