//! The Train panel: set up a short fine-tune of several credit modes, watch reward and held-out
//! accuracy per mode as they train, cancel, and open the traces the runs write.

use crate::app::training::{MODES, TrainForm, Training};
use crate::rl::task::Task;
use egui::Ui;
use egui_plot::{Legend, Line, Plot, PlotPoints, Points};
use crate::app::command::Command;
use std::path::PathBuf;

pub fn show(ui: &mut Ui, form: &mut TrainForm, training: Option<&Training>) -> Option<Command> {
    let mut request = None;
    let running = training.is_some_and(Training::running);
    ui.horizontal_top(|ui| {
        ui.vertical(|ui| {
            ui.set_width(250.0);
            ui.heading("Fine-tune");
            ui.add_enabled_ui(!running, |ui| settings(ui, form));
            ui.horizontal(|ui| {
                let any = form.modes.iter().any(|&m| m);
                if ui.add_enabled(!running && any, egui::Button::new("Start")).clicked() {
                    request = Some(Command::StartTraining);
                }
                if ui.add_enabled(running, egui::Button::new("Cancel")).clicked() {
                    request = Some(Command::CancelTraining);
                }
                if running {
                    ui.spinner();
                }
            });
            ui.small(format!("runs go to {}/<mode>-s<seed>; a cancelled run resumes when started again", form.root.display()));
        });
        ui.separator();
        ui.vertical(|ui| match training {
            Some(t) => request = request.take().or(progress(ui, t)),
            None => {
                ui.weak("Choose a task and credit modes and press Start. Each mode trains on its own thread from the same warm start; reward and held-out accuracy plot here as they come in.");
            }
        });
    });
    request
}

fn settings(ui: &mut Ui, form: &mut TrainForm) {
    let cfg = &mut form.cfg;
    egui::Grid::new("train-form").num_columns(2).show(ui, |ui| {
        let l = ui.label("task");
        egui::ComboBox::from_id_salt("train-task")
            .selected_text(cfg.task.name())
            .show_ui(ui, |ui| {
                for t in [Task::Addition, Task::Chain, Task::Parity] {
                    ui.selectable_value(&mut cfg.task, t, t.name());
                }
            })
            .response
            .labelled_by(l.id);
        ui.end_row();
        let l = ui.label("steps");
        ui.add(egui::DragValue::new(&mut cfg.steps).range(1..=10_000)).labelled_by(l.id);
        ui.end_row();
        let l = ui.label("γ");
        ui.add(egui::DragValue::new(&mut cfg.params.credit.gamma).range(1.0..=5.0).speed(0.05)).labelled_by(l.id);
        ui.end_row();
        let l = ui.label("fraction");
        ui.add(egui::Slider::new(&mut cfg.params.credit.fraction, 0.05..=1.0)).labelled_by(l.id);
        ui.end_row();
        ui.label("flow parameters");
        ui.weak("the Re-score panel's (layers, heads, backbone, roles) when Start is pressed");
        ui.end_row();
        let l = ui.label("seed");
        ui.add(egui::DragValue::new(&mut cfg.seed)).labelled_by(l.id);
        ui.end_row();
        let l = ui.label("folder");
        let mut root = form.root.display().to_string();
        if ui.text_edit_singleline(&mut root).labelled_by(l.id).changed() {
            form.root = PathBuf::from(root);
        }
        ui.end_row();
    });
    ui.label("credit modes");
    ui.horizontal_wrapped(|ui| {
        for (m, on) in MODES.iter().zip(form.modes.iter_mut()) {
            ui.checkbox(on, m.name());
        }
    });
    let start = match (crate::rl::shipped::checkpoint(cfg.task), cfg.sft_steps) {
        (_, Some(s)) => format!("warm start: {s} supervised steps"),
        (Some(_), None) => "warm start: the shipped checkpoint".into(),
        (None, None) => format!("warm start: supervised training to {:.0}% held-out (minutes)", cfg.warm_target * 100.0),
    };
    ui.small(start);
}

fn progress(ui: &mut Ui, t: &Training) -> Option<Command> {
    let mut request = None;
    let half = (ui.available_width() / 2.0 - 8.0).max(200.0);
    ui.horizontal(|ui| {
        for (title, pick) in [("reward", 0), ("held-out accuracy", 1)] {
            ui.vertical(|ui| {
                ui.strong(title);
                Plot::new(format!("train-{title}")).width(half).height(200.0).legend(Legend::default().text_style(egui::TextStyle::Small).background_alpha(0.5)).include_y(0.0).include_y(1.0).show(ui, |plot| {
                    for r in &t.runs {
                        let pts = if pick == 0 { &r.reward } else { &r.accuracy };
                        let c = mode_color(r.mode);
                        plot.line(Line::new(r.mode.name(), PlotPoints::from(pts.clone())).color(c));
                        // Accuracy is measured every few steps: mark where.
                        plot.points(Points::new(r.mode.name(), PlotPoints::from(pts.clone())).radius(2.5).color(c));
                    }
                });
            });
        }
    });
    egui::ScrollArea::vertical().id_salt("train-runs").show(ui, |ui| {
        egui::Grid::new("train-runs-grid").striped(true).num_columns(5).show(ui, |ui| {
            for h in ["mode", "state", "reward", "held-out", "traces"] {
                ui.strong(h);
            }
            ui.end_row();
            for r in &t.runs {
                ui.label(r.mode.name());
                match &r.error {
                    Some(e) => ui.colored_label(ui.visuals().error_fg_color, "failed").on_hover_text(e),
                    None => ui.label(&r.phase),
                };
                ui.label(r.reward.last().map_or("-".into(), |p| format!("{:.2}", p[1])));
                ui.label(r.accuracy.last().map_or("-".into(), |p| format!("{:.1}%", p[1] * 100.0)));
                ui.horizontal_wrapped(|ui| {
                    if r.traces.is_empty() {
                        ui.weak("none yet");
                    }
                    for p in r.traces.iter().rev().take(6) {
                        let name = p.strip_prefix(&r.dir).unwrap_or(p).display().to_string();
                        if ui.small_button(name.trim_end_matches(".safetensors")).on_hover_text("open in the viewer").clicked() {
                            request = Some(Command::Open(p.clone()));
                        }
                    }
                });
                ui.end_row();
            }
        });
    });
    request
}

/// One colour per mode, the same in both plots and from run to run.
pub fn mode_color(mode: crate::rl::grpo::CreditMode) -> egui::Color32 {
    use crate::rl::grpo::CreditMode::*;
    match mode {
        Uniform => egui::Color32::from_rgb(150, 150, 150),
        Flow => egui::Color32::from_rgb(235, 120, 60),
        Random => egui::Color32::from_rgb(90, 150, 230),
        Entropy => egui::Color32::from_rgb(110, 190, 110),
        Attention => egui::Color32::from_rgb(200, 110, 200),
    }
}
