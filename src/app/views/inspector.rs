//! The selected token: its numbers, its role, and its strongest flow edges as links.

use crate::app::command::Command;
use crate::app::document::{Analysis, Document};
use crate::export::table::segment;
use crate::flow::conserve::{strongest_into, strongest_out_of};
use crate::flow::roles::far_sources_of;
use crate::render::layout::display_text;
use crate::trace::Trace;
use egui::Ui;

/// What taking the selection away would do: in the graph (any trace) and, for a trace of the
/// project's policy whose checkpoint the run keeps, to the answer itself.
pub fn what_if(ui: &mut Ui, a: &Analysis, selection: &[usize], d: &Document) -> Option<Command> {
    let mut action = None;
    ui.label(match selection {
        [] => "What if: select a token (shift-click for a range)".to_string(),
        [k] => format!("What if #{k} were gone?"),
        s => format!("What if #{}–#{} were gone?", s[0], s[s.len() - 1]),
    });
    ui.horizontal_wrapped(|ui| {
        let some = !selection.is_empty();
        if ui.add_enabled(some, egui::Button::new("knock out")).on_hover_text("take the selection out of the attention graph and re-solve (no model needed)").clicked() {
            action = Some(Command::KnockOut);
        }
        let why = d.checkpoint.as_ref().err().map_or("hide the selection from the policy's attention and regenerate the answer", String::as_str);
        if ui.add_enabled(some && d.checkpoint.is_ok(), egui::Button::new("hide and regenerate")).on_hover_text(why).on_disabled_hover_text(why).clicked() {
            action = Some(Command::WhatIf);
        }
    });
    let failed = |ui: &mut Ui, e: &str| {
        ui.colored_label(ui.visuals().error_fg_color, e);
    };
    match &d.knock_out {
        None => {}
        Some(Err(e)) => failed(ui, e),
        Some(Ok(k)) => {
            ui.strong(format!("knock-out of {} token(s)", k.removed.len()));
            grid(ui, "knockout", &[
                ("answer inflow", format!("{} → {}", crate::render::share(a.result.answer_inflow(), 3), crate::render::share(k.answer_inflow, 3))),
                ("path mass lost", format!("{:.1}%", 100.0 * k.mass_lost)),
                ("backbone lost", format!("{} of {} paths, {} of its flow", k.paths_lost, a.result.backbone.len(), crate::render::percent(k.backbone_lost))),
            ]);
        }
    }
    match &d.what_if {
        None => {}
        Some(Err(e)) => failed(ui, e),
        Some(Ok(w)) => {
            let said = |x: &Option<String>| x.clone().unwrap_or_else(|| "(none stated)".into());
            ui.strong(format!("{} token(s) hidden from the policy", w.hidden.len()));
            grid(ui, "whatif", &[
                ("answer", format!("{} → {}", said(&w.before), said(&w.after))),
                ("log p(original answer)", format!("{:.3} → {:.3}", w.logprob_before, w.logprob_after)),
            ]);
            ui.label(if w.before == w.after { "the answer stays" } else { "the answer changes" });
            ui.weak(format!("policy: {}", w.checkpoint.display()));
            if ui.button("keep as trace").on_hover_text("open the regenerated trace beside this one, in the Compare view").clicked() {
                action = Some(Command::KeepWhatIf);
            }
        }
    }
    action
}

/// `text`: each token as the views show it (the document's decoded tokens); the heading keeps
/// the raw token, what it reads as beside it when they differ ([`super::text::reads_as`]).
pub fn show(ui: &mut Ui, trace: &Trace, text: &[String], a: &Analysis, selected: Option<usize>) -> Option<Command> {
    let Some(k) = selected.filter(|&k| k < trace.n()) else {
        ui.weak("Click a token to inspect it.");
        return None;
    };
    let r = &a.result;
    let mut action = None;
    ui.heading(format!("#{k} {:?}", trace.tokens[k]));
    if let Some(reads) = super::text::reads_as(&trace.tokens, text, k) {
        ui.label(format!("text {reads}"));
    }
    let on_backbone = r.backbone.iter().filter(|p| p.tokens.contains(&k)).count();
    let mut roles = vec![segment(a.plan.spans, k).to_string()];
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
        row("flow", crate::render::share(r.flow[k], 5));
        row("throughput", crate::render::share(r.throughput[k], 5));
        row("credit", format!("{:.3}", r.credit[k]));
        let far = far_sources_of(&a.matrix, &r.reach, &r.flow, r.spans, k, a.plan.params.roles.checkpoint_min_distance);
        row("far sources", format!("{far:.2}"));
        let sink = r.spans.answer;
        row("knock-out loss", if sink.contains(k) { format!("– (in the sink {sink})") } else { format!("{:.1}%", 100.0 * a.knockout[k]) });
        if let Some(c) = &trace.causal_effect {
            // (the nats of the answer's log-probability that hiding the token costs; where the
            // file lists the hidings that changed the answer, whether this one did)
            let changed = match trace.answer_changed() {
                Ok(Some(list)) if list.binary_search(&k).is_ok() => " · changes the answer",
                Ok(Some(_)) => " · answer kept",
                _ => "",
            };
            row("causal effect", format!("{:.3} nats{changed}", c[k]));
        }
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
            let label = format!("#{j} {}  φ {}", display_text(&text[j]), crate::render::share(phi, 4));
            if ui.link(label).clicked() {
                action = Some(Command::Select { token: j, extend: false });
            }
        }
    };
    ui.separator();
    edges(ui, "strongest inflow", strongest_into(&a.matrix, &r.reach, &r.flow, r.spans.answer, k, 5));
    edges(ui, "strongest outflow", strongest_out_of(&a.matrix, &r.reach, &r.flow, r.spans.answer, k, 5));
    action
}

fn grid(ui: &mut Ui, id: &str, rows: &[(&str, String)]) {
    egui::Grid::new(id).num_columns(2).striped(true).show(ui, |ui| {
        for (name, value) in rows {
            ui.label(*name);
            ui.monospace(value);
            ui.end_row();
        }
    });
}
