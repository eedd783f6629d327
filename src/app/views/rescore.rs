//! Every field of the parameter struct as a widget. The panel edits a copy and hands a changed
//! one back as a command; the app re-scores in the background.

use crate::app::command::Command;
use crate::params::{Params, Reduce, Sink, Split};
use crate::trace::Trace;
use egui::{DragValue, Slider, Ui};

/// The parameters as the user changed them, if they did.
pub fn show(ui: &mut Ui, current: &Params, trace: &Trace) -> Option<Command> {
    let mut edited = current.clone();
    let p = &mut edited;
    let att = &trace.attention;
    ui.collapsing("aggregate", |ui| {
        if att.has_layer_axis {
            let original = trace.original_layers();
            let total = trace.meta.num_layers.unwrap_or_else(|| original.last().map_or(1, |l| l + 1));
            let mut auto = p.aggregate.layers.is_none();
            let (lo, hi) = crate::flow::aggregate::default_layers(total, p.aggregate.deep_from);
            let rule = if total >= p.aggregate.deep_from { "middle third" } else { "middle third to the last: a shallow model" };
            if ui.checkbox(&mut auto, format!("default layers [{lo}, {hi}) ({rule})")).on_hover_text("models of at least `deep_from` layers take their middle third, shallower ones the middle third through the last layer").changed() {
                p.aggregate.layers = if auto { None } else { Some([lo, hi]) };
            }
            if p.aggregate.layers.is_none() {
                ui.horizontal(|ui| {
                    ui.label("middle third from");
                    ui.add(DragValue::new(&mut p.aggregate.deep_from).range(0..=1000));
                    ui.label("layers (deep_from)");
                });
            }
            if let Some([s, e]) = &mut p.aggregate.layers {
                ui.horizontal(|ui| {
                    ui.label("layers");
                    ui.add(DragValue::new(s).range(0..=total.saturating_sub(1)));
                    ui.label("to");
                    ui.add(DragValue::new(e).range(1..=total));
                });
                if *e <= *s {
                    *e = *s + 1;
                }
            }
        } else {
            ui.weak("attention is fully aggregated: no layers to pick");
        }
        if att.has_head_axis {
            ui.label(format!("heads ({} in the file)", att.heads));
            ui.horizontal_wrapped(|ui| {
                let mut chosen: Vec<bool> = (0..att.heads).map(|h| p.aggregate.heads.as_ref().is_none_or(|l| l.contains(&h))).collect();
                let mut changed = false;
                for (h, c) in chosen.iter_mut().enumerate() {
                    changed |= ui.toggle_value(c, h.to_string()).changed();
                }
                if changed {
                    if chosen.iter().all(|&c| c) {
                        p.aggregate.heads = None;
                    } else if chosen.iter().any(|&c| c) {
                        p.aggregate.heads = Some((0..att.heads).filter(|&h| chosen[h]).collect());
                    }
                }
            });
        }
        ui.horizontal(|ui| {
            ui.label("reduce");
            ui.selectable_value(&mut p.aggregate.reduce, Reduce::Mean, "mean");
            ui.selectable_value(&mut p.aggregate.reduce, Reduce::Max, "max");
        });
        ui.add(Slider::new(&mut p.aggregate.threshold, 0.0..=0.2).text("threshold ε").logarithmic(false));
    });
    ui.collapsing("answer sink", |ui| {
        ui.label("the flow ends at");
        ui.radio_value(&mut p.answer.sink, Sink::Writers, "the positions that wrote the answer").on_hover_text("[a0−1, a1−1): in a causal LM token t is written by position t−1");
        ui.radio_value(&mut p.answer.sink, Sink::Tokens, "the answer tokens themselves");
    });
    egui::CollapsingHeader::new("credit").default_open(true).show(ui, |ui| {
        ui.add(Slider::new(&mut p.credit.fraction, 0.0..=1.0).text("fraction"));
        ui.add(Slider::new(&mut p.credit.gamma, 0.1..=4.0).text("γ"));
        ui.checkbox(&mut p.credit.normalize_mean, "normalise γ to mean 1");
        ui.checkbox(&mut p.credit.apply_to_negative, "apply to negative advantages");
    });
    ui.collapsing("backbone", |ui| {
        ui.add(Slider::new(&mut p.backbone.max_paths, 1..=32).text("max paths"));
        ui.add(Slider::new(&mut p.backbone.coverage, 0.05..=1.0).text("coverage"));
        ui.label("steps (the step graph)");
        ui.horizontal(|ui| {
            ui.radio_value(&mut p.steps.split, Split::Lines, "lines");
            ui.radio_value(&mut p.steps.split, Split::Sentences, "sentences");
        });
        ui.add(Slider::new(&mut p.steps.max_tokens, 8..=2048).logarithmic(true).text("max tokens a step"));
    });
    ui.collapsing("hubs and checkpoints", |ui| {
        ui.add(Slider::new(&mut p.roles.hub_fraction, 0.0..=0.5).text("hub fraction"));
        ui.add(Slider::new(&mut p.roles.max_hubs, 1..=1024).logarithmic(true).text("at most hubs"));
        ui.add(Slider::new(&mut p.roles.checkpoint_min_sources, 1.0..=32.0).text("min far sources"));
        ui.add(Slider::new(&mut p.roles.checkpoint_min_distance, 1..=256).text("far = tokens back"));
        ui.add(Slider::new(&mut p.roles.checkpoint_min_merging_paths, 2..=8).text("merging paths"));
    });
    if ui.button("defaults").clicked() {
        *p = Params::default();
    }
    (edited != *current).then_some(Command::SetParams(edited))
}
