//! The shell's panels: menu, toolbar, status bar, side panel and the central view. Each reads
//! the model and UI state and sends commands; only UI state (the view shown, the colour, the
//! diff toggle, the theme) is changed in place.

use super::command::{Command, SpanRole};
use super::dialogs::Pick;
use super::document::Score;
use crate::subword::Tokenizer;
use super::ui_state::View;
use super::{FlowApp, theme, views};

/// The widest the open trace's name is drawn in the toolbar, in points: a run's
/// `sample_0002.safetensors` whole in the picker beside its arrow (at 180 it was cut), and the
/// toolbar still one row at 1280 px (tests/app.rs).
const TITLE_WIDTH: f32 = 190.0;

impl FlowApp {
    pub(super) fn menu(&mut self, ui: &mut egui::Ui) {
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                if ui.button("Open trace…").clicked() {
                    self.dialog(Pick::OpenTrace);
                }
                if ui.button("Open run…").clicked() {
                    self.dialog(Pick::OpenRun);
                }
                ui.menu_button("Recent", |ui| {
                    if self.model.recent.paths.is_empty() {
                        ui.weak("nothing yet");
                    }
                    for p in &self.model.recent.paths {
                        if ui.button(p.display().to_string()).clicked() {
                            self.commands.send(Command::Open(p.clone()));
                        }
                    }
                });
                ui.separator();
                if ui.button("Load parameters…").clicked() {
                    self.dialog(Pick::LoadParams);
                }
                if ui.button("Save parameters…").clicked() {
                    self.dialog(Pick::SaveParams);
                }
                ui.separator();
                if ui.button("Export trace…").clicked() {
                    self.dialog(Pick::ExportTrace);
                }
                if ui.button("Export view as PNG/SVG…").clicked() {
                    self.dialog(Pick::ExportView);
                }
            });
            ui.menu_button("View", |ui| {
                ui.checkbox(&mut self.ui.dark, "dark theme");
                if let Some(d) = self.model.doc() {
                    ui.separator();
                    ui.label("tokens as text").on_hover_text("how the tokens encode their text: detected, or the file's `tokenizer`");
                    for t in [Tokenizer::ByteLevel, Tokenizer::SentencePiece, Tokenizer::WordPiece, Tokenizer::Raw] {
                        if ui.radio(d.tokenizer == t, t.name()).clicked() && d.tokenizer != t {
                            self.commands.send(Command::SetTokenizer(t));
                        }
                    }
                }
            });
        });
    }

    pub(super) fn toolbar(&mut self, ui: &mut egui::Ui) {
        let m = &self.model;
        ui.horizontal_wrapped(|ui| {
            // The trace's name at most TITLE_WIDTH wide (cut short with "…", whole on hover):
            // rollouts' file names are long, and the rest of the toolbar then keeps its row.
            let title_size = egui::vec2(TITLE_WIDTH, ui.spacing().interact_size.y);
            if m.docs.len() > 1 {
                let mut current = m.current;
                ui.allocate_ui(title_size, |ui| {
                    // Named for screen readers, not on screen.
                    let picked = egui::ComboBox::from_id_salt("trace").selected_text(m.docs[current].title()).truncate().show_ui(ui, |ui| {
                        for (i, d) in m.docs.iter().enumerate() {
                            ui.selectable_value(&mut current, i, d.title());
                        }
                    });
                    picked.response.on_hover_text(m.docs[m.current].title()).widget_info(|| egui::WidgetInfo::labeled(egui::Role::ComboBox, true, "trace"));
                });
                if current != m.current {
                    self.commands.send(Command::ShowDocument(current));
                }
            } else if let Some(d) = m.doc() {
                ui.allocate_ui(title_size, |ui| ui.add(egui::Label::new(egui::RichText::new(d.title()).strong()).truncate()));
            }
            ui.separator();
            for v in View::ALL {
                ui.selectable_value(&mut self.ui.view, v, v.name());
            }
            ui.separator();
            egui::ComboBox::from_label("colour by").selected_text(self.ui.score.name()).show_ui(ui, |ui| {
                for s in Score::ALL {
                    ui.selectable_value(&mut self.ui.score, s, s.name());
                }
            });
            ui.separator();
            let mut q = self.ui.search.clone();
            let resp = ui.add(egui::TextEdit::singleline(&mut q).hint_text("search tokens").desired_width(120.0));
            if q != self.ui.search {
                self.commands.send(Command::Search(q));
            }
            let enter = resp.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            ui.small(format!("{} matches", self.ui.marks.hits.len()));
            ui.add_space(6.0);
            // The jumps wrap as one group, "next" with its buttons.
            wrapped_together(ui, "jumps", |ui| {
                ui.label("next");
                if ui.button("match").on_hover_text("the next token the search matches (or Enter in the search box)").clicked() || enter {
                    self.commands.send(Command::JumpNext(self.ui.marks.hits.iter().copied().collect()));
                }
                if let Some(a) = m.doc().and_then(|d| d.analysis.as_ref()) {
                    if ui.button("hub").on_hover_text("the next hub token").clicked() {
                        self.commands.send(Command::JumpNext(a.result.hubs.clone()));
                    }
                    if ui.button("checkpoint").on_hover_text("the next aggregation checkpoint").clicked() {
                        self.commands.send(Command::JumpNext(a.result.checkpoints.clone()));
                    }
                }
            });
            ui.add_space(6.0);
            ui.toggle_value(&mut self.ui.marks.show_changes, format!("diff ({})", self.ui.marks.changed.len()))
                .on_hover_text("outline the tokens whose credit changed at the last re-score");
        });
    }

    pub(super) fn status_bar(&mut self, ui: &mut egui::Ui) {
        let m = &self.model;
        ui.horizontal(|ui| {
            if m.busy() {
                ui.spinner();
                ui.label("re-scoring…");
                if ui.small_button("cancel").clicked() {
                    self.commands.send(Command::CancelRescore);
                }
            }
            ui.label(&m.status).on_hover_text(super::backends());
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if let Some(d) = m.doc() {
                    ui.weak(format!("{} tokens", d.n()));
                }
            });
        });
    }

    pub(super) fn side(&mut self, ui: &mut egui::Ui) {
        let (m, marks) = (&self.model, &self.ui.marks);
        egui::ScrollArea::vertical().id_salt("side-scroll").show(ui, |ui| {
            let Some(d) = m.doc() else {
                ui.weak("Open a trace (File → Open, or drop a file here).");
                return;
            };
            ui.heading("Inspector");
            ui.horizontal_wrapped(|ui| {
                if ui.button("use as question").on_hover_text("the selected token, or shift-click range").clicked() {
                    self.commands.send(Command::UseSelectionAs(SpanRole::Question));
                }
                if ui.button("use as answer").clicked() {
                    self.commands.send(Command::UseSelectionAs(SpanRole::Answer));
                }
                if ui.button("file spans").clicked() {
                    self.commands.send(Command::FileSpans);
                }
            });
            if let Some(a) = &d.analysis {
                self.send(views::inspector::show(ui, &d.trace, &d.text, a, marks.selected));
                ui.separator();
                self.send(views::inspector::what_if(ui, a, &marks.selection(), d));
            }
            ui.separator();
            ui.heading("Re-score");
            self.send(views::rescore::show(ui, &m.params, &d.trace));
            ui.horizontal(|ui| {
                if ui.button("pin as baseline").on_hover_text("compare later analyses against this one").clicked() {
                    self.commands.send(Command::PinBaseline);
                }
                if m.baseline.is_some() && ui.button("clear baseline").clicked() {
                    self.commands.send(Command::ClearBaseline);
                }
            });
        });
    }

    pub(super) fn central(&mut self, ui: &mut egui::Ui) {
        match self.ui.view {
            View::Train => {
                let c = views::train::show(ui, &mut self.model.train_form, self.model.training.as_ref());
                self.send(c);
            }
            View::Run => match &mut self.model.run {
                Some(r) => {
                    let c = views::runs::show(ui, r);
                    self.send(c);
                }
                None => {
                    ui.weak("No run open: File → Open run…, or start with `flowtracer RUN_FOLDER`.");
                }
            },
            _ => self.trace_view(ui),
        }
    }

    /// The Text, Backbone, Matrix and Compare views of the current document.
    fn trace_view(&mut self, ui: &mut egui::Ui) {
        let m = &self.model;
        let Some(d) = m.doc() else {
            ui.centered_and_justified(|ui| ui.label("Open a trace: File → Open trace…, or drop a .safetensors file here."));
            return;
        };
        let Some(a) = &d.analysis else {
            match &d.error {
                Some(e) => ui.colored_label(ui.visuals().error_fg_color, e),
                None => ui.spinner(),
            };
            return;
        };
        let s = &mut self.ui;
        if matches!(s.view, View::Text | View::Compare) {
            let dark = s.dark;
            // Wrapped: a row wider than the view would widen it, and the text laid out to that
            // width would run under the side panel.
            ui.horizontal_wrapped(|ui| {
                theme::legend(ui, s.score.name(), "low", "high", dark);
                theme::marks_legend(ui);
                if !s.score.available(&d.trace) {
                    ui.weak(format!("(this trace has no {}: showing throughput)", s.score.name()));
                } else if s.score == crate::app::document::Score::CausalEffect {
                    causal_fidelity(ui, d, a);
                }
            });
        }
        let c = match s.view {
            View::Text => views::text::show(ui, m.current, d, a, s.score, &s.marks, &mut s.text),
            View::Backbone => views::backbone::show(ui, &d.trace, &d.text, a, &s.marks, &mut s.backbone),
            View::Matrix => views::matrix::show(ui, &d.trace, a, &s.marks, &mut s.matrix),
            View::Compare => views::compare::show(ui, m, s),
            View::Run | View::Train => None,
        };
        self.send(c);
    }
}

/// Beside the causal-effect colours: how well flow throughput ranks this trace's tokens by their
/// measured effect, made again only when the analysis or the spans change.
fn causal_fidelity(ui: &mut egui::Ui, d: &crate::app::document::Document, a: &crate::app::document::Analysis) {
    let id = egui::Id::unique("causal-fidelity");
    let key = (a.generation, d.spans);
    let cached = ui.ctx().data(|m| m.get_temp::<((u64, crate::span::Spans), Option<f64>)>(id)).filter(|(k, _)| *k == key);
    let rho = cached.map(|(_, rho)| rho).unwrap_or_else(|| {
        let rho = crate::fidelity::spearman_of(&d.trace, d.spans, &a.result.throughput);
        ui.ctx().data_mut(|m| m.insert_temp(id, (key, rho)));
        rho
    });
    let probed = format!("{}:{}", d.spans.response.start, d.spans.answer.start);
    match rho {
        Some(rho) => ui.label(format!("ρ with throughput {rho:.3} (tokens {probed})")),
        None => ui.weak(format!("(ρ: nothing to rank over tokens {probed})")),
    }
    .on_hover_text("Spearman correlation of flow throughput with the nats the answer loses when each token is hidden, over the response before the answer: 1 ranks them as the measurement does, 0 not at all. `flowtracer fidelity` sets every score against it over many traces.");
}

/// Widgets that a wrapping row keeps on one line: the row ends before them when they did not fit
/// in what is left of it at the last frame (a nested layout cannot be measured before it is
/// drawn, and egui would otherwise draw it past the window's edge).
fn wrapped_together(ui: &mut egui::Ui, name: &str, add: impl FnOnce(&mut egui::Ui)) {
    let id = ui.scope_id().with(name);
    let width = ui.data(|d| d.get_temp::<f32>(id)).unwrap_or(0.0);
    // In a wrapping layout the available width is the whole row's.
    if width > ui.max_rect().right() - ui.cursor().left() {
        ui.end_row();
    }
    let drawn = ui
        .horizontal(|ui| {
            add(ui);
            ui.min_rect().width()
        })
        .inner;
    ui.data_mut(|d| d.insert_temp(id, drawn));
}
