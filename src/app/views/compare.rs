//! Two analyses side by side: the pinned baseline and the current one, with what changed.

use crate::app::command::Command;
use crate::app::document::credit_changed;
use crate::app::model::Model;
use crate::app::ui_state::UiState;
use egui::Ui;

pub fn show(ui: &mut Ui, m: &Model, s: &mut UiState) -> Option<Command> {
    let Some((bdoc, b)) = &m.baseline else {
        ui.weak("Pin an analysis as the baseline (side panel), change parameters or open another trace, and compare here.");
        return None;
    };
    let (base, current) = (&m.docs[*bdoc], m.doc()?);
    let a = current.analysis.as_ref()?;
    if *bdoc == m.current && b.result.credit.len() == a.result.credit.len() {
        let changed = credit_changed(&a.result, &b.result).len();
        let (ta, tb) = (&a.result.throughput, &b.result.throughput);
        let moved: f64 = ta.iter().zip(tb).map(|(x, y)| (x - y).abs()).sum();
        let total: f64 = ta.iter().chain(tb).sum();
        let share = if total > 0.0 { 100.0 * moved / total } else { 0.0 };
        ui.label(format!("same trace: credit differs on {changed} tokens; {share:.1}% of the throughput moved"));
    }
    let mut command = None;
    ui.columns(2, |cols| {
        cols[0].strong(format!("baseline: {}", base.title()));
        let c = super::text::show(&mut cols[0], bdoc + 1000, base, b, s.score, &s.marks, &mut s.text_b);
        command = command.take().or(c);
        cols[1].strong(format!("current: {}", current.title()));
        let c = super::text::show(&mut cols[1], m.current, current, a, s.score, &s.marks, &mut s.text);
        command = command.take().or(c);
    });
    command
}
