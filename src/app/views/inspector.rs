//! The selected token: its numbers, its role, and its strongest flow edges as links.

use super::Action;
use crate::app::document::Analysis;
use crate::export::table::segment;
use crate::flow::conserve::{strongest_into, strongest_out_of};
use crate::flow::roles::far_sources_of;
use crate::render::layout::display_text;
use crate::trace::Trace;
use egui::Ui;

pub fn show(ui: &mut Ui, trace: &Trace, a: &Analysis, selected: Option<usize>) -> Option<Action> {
    let Some(k) = selected.filter(|&k| k < trace.n()) else {
        ui.weak("Click a token to inspect it.");
        return None;
    };
    let r = &a.result;
    let mut action = None;
    ui.heading(format!("#{k} {:?}", trace.tokens[k]));
    let on_backbone = r.backbone.iter().filter(|p| p.tokens.contains(&k)).count();
    let mut roles = vec![segment(a.spans, k).to_string()];
    if r.hubs.binary_search(&k).is_ok() {
        roles.push("hub".into());
    }
    if r.checkpoints.binary_search(&k).is_ok() {
        roles.push("checkpoint".into());
    }
    if on_backbone > 0 {
        roles.push(format!("on {on_backbone} backbone path(s)"));
    }
    ui.add(egui::Label::new(roles.join(" · ")).wrap());
    egui::Grid::new("inspector-numbers").num_columns(2).striped(true).show(ui, |ui| {
        let mut row = |name: &str, value: String| {
            ui.label(name);
            ui.monospace(value);
            ui.end_row();
        };
        row("reach", format!("{:.4e}", r.reach[k]));
        row("flow", format!("{:.5}", r.flow[k]));
        row("throughput", format!("{:.5}", r.throughput[k]));
        row("credit", format!("{:.3}", r.credit[k]));
        let far = far_sources_of(&a.matrix, &r.reach, &r.flow, a.spans, k, a.params.roles.checkpoint_min_distance);
        row("far sources", format!("{far:.2}"));
        if let Some(e) = &trace.entropy {
            row("entropy", format!("{:.3}", e[k]));
        }
        if let Some(l) = &trace.logprob {
            row("log-prob", format!("{:.3}", l[k]));
        }
    });
    let mut edges = |ui: &mut Ui, title: &str, list: Vec<(usize, f64)>| {
        ui.label(title);
        if list.is_empty() {
            ui.weak("none");
        }
        for (j, phi) in list {
            let text = format!("#{j} {}  φ {:.4}", display_text(&trace.tokens[j]), phi);
            if ui.link(text).clicked() {
                action = Some(Action::Select { token: j, extend: false });
            }
        }
    };
    ui.separator();
    edges(ui, "strongest inflow", strongest_into(&a.matrix, &r.reach, &r.flow, a.spans.answer, k, 5));
    edges(ui, "strongest outflow", strongest_out_of(&a.matrix, &r.reach, &r.flow, a.spans.answer, k, 5));
    action
}
