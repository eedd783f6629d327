//! The one place commands are carried out (rerun's `command_handling.rs`): every change the
//! user asks of the model, from a view, a menu, a dialog or a background job, goes through
//! [`FlowApp::apply`].

use super::FlowApp;
use super::command::{Command, SpanRole};
use super::document::Document;
use super::ui_state::View;
use super::views::Marks;
use crate::params::Params;
use crate::span::Span;
use crate::trace::Trace;
use std::path::Path;

impl FlowApp {
    pub fn apply(&mut self, command: Command) {
        let (m, ui) = (&mut self.model, &mut self.ui);
        match command {
            Command::Open(path) => self.open(&path),
            Command::ShowDocument(i) => {
                if i != m.current {
                    m.show(i);
                    ui.marks = Marks::default();
                }
            }
            Command::Select { token, extend } => self.select(token, extend),
            Command::SelectSpan(s) if !s.is_empty() => {
                self.select(s.start, false);
                self.select(s.end - 1, true);
                self.ui.text.scroll_to = Some(s.start);
                self.ui.view = super::View::Text;
            }
            Command::SelectSpan(_) => {}
            Command::JumpNext(list) => self.jump_next(list),
            Command::Search(q) => self.search(&q),
            Command::SetTokenizer(t) => {
                if let Some(d) = self.model.doc_mut() {
                    d.set_tokenizer(t);
                    self.model.status = format!("tokens shown as {} text", t.name());
                }
            }
            Command::UseSelectionAs(role) => self.use_selection_as(role),
            Command::FileSpans => {
                if let Some(d) = m.doc_mut() {
                    d.spans = d.trace.spans;
                    m.request_rescore();
                }
            }
            Command::SetParams(p) => m.set_params(p),
            Command::LoadParams(path) => match Params::load(&path) {
                Ok(p) => {
                    m.set_params(p);
                    m.status = format!("parameters from {}", path.display());
                }
                Err(e) => m.status = e,
            },
            Command::SaveParams(path) => m.status = save_params(&m.params, &path),
            Command::CancelRescore => m.cancel_rescore(),
            Command::KnockOut => {
                let selection = ui.marks.selection();
                if let Some(d) = m.doc_mut()
                    && let Some(a) = d.analysis.clone() {
                        d.knock_out = Some(crate::flow::knockout::knock_out(&a.matrix, &a.plan.params, &a.result, &selection));
                    }
            }
            Command::WhatIf => {
                let selection = ui.marks.selection();
                if let Some(d) = m.doc_mut() {
                    d.what_if = Some(crate::rl::causal::what_if(&d.trace, &selection).map_err(|e| crate::rl::said(&e)));
                }
            }
            Command::KeepWhatIf => self.keep_what_if(),
            Command::PinBaseline => {
                if let Some(a) = m.doc().and_then(|d| d.analysis.clone()) {
                    m.baseline = Some((m.current, a));
                }
            }
            Command::ClearBaseline => m.baseline = None,
            Command::ExportTrace(dir) => self.export_trace(dir),
            Command::ExportView(path) => m.status = super::export::export_view(m, ui, &path).unwrap_or_else(|e| e),
            Command::StartTraining => {
                // Flow credit aggregates as the Re-score panel says; γ and its share are the form's.
                let credit = m.train_form.cfg.params.credit.clone();
                m.train_form.cfg.params = Params { credit, ..m.params.clone() };
                let tx = self.commands.clone();
                m.training = Some(super::training::Training::start(&m.train_form, move || tx.wake()));
                m.status = format!("training into {}", m.train_form.root.display());
            }
            Command::CancelTraining => {
                if let Some(t) = &m.training {
                    t.cancel();
                    m.status = "cancelling: each run stops after its current step".into();
                }
            }
            Command::Status(s) => m.status = s,
        }
    }

    /// A trace file or a run folder; a trace opened from the Run or Train view is shown as text.
    fn open(&mut self, path: &Path) {
        let (m, ui) = (&mut self.model, &mut self.ui);
        let opened = if path.is_dir() || crate::export::scored::is_scored_run(path) {
            m.open_run(path).map(|()| ui.view = View::Run)
        } else {
            let was = m.docs.len();
            m.open_trace(path).map(|()| {
                if matches!(ui.view, View::Run | View::Train) {
                    ui.view = View::Text;
                }
                if m.docs.len() != was {
                    ui.marks = Marks::default();
                }
            })
        };
        if let Err(e) = opened {
            m.status = e;
        }
    }

    fn select(&mut self, token: usize, extend: bool) {
        let marks = &mut self.ui.marks;
        if extend {
            let anchor = marks.selected.unwrap_or(token);
            marks.range = Some((anchor.min(token), anchor.max(token)));
        } else {
            marks.range = None;
            marks.selected = Some(token);
        }
        self.ui.text.scroll_to = Some(token);
    }

    fn jump_next(&mut self, mut list: Vec<usize>) {
        list.sort_unstable();
        let Some(&first) = list.first() else { return };
        let from = self.ui.marks.selected.map_or(0, |s| s + 1);
        let next = list.iter().copied().find(|&k| k >= from).unwrap_or(first);
        self.select(next, false);
    }

    fn search(&mut self, query: &str) {
        self.ui.search = query.to_string();
        self.ui.marks.hits = match self.model.doc() {
            Some(d) if !query.is_empty() => {
                let q = query.to_lowercase();
                (0..d.n()).filter(|&k| d.text[k].to_lowercase().contains(&q) || d.trace.tokens[k].to_lowercase().contains(&q)).collect()
            }
            _ => Default::default(),
        };
    }

    fn use_selection_as(&mut self, role: SpanRole) {
        let marks = &self.ui.marks;
        let Some(range) = marks.range.or(marks.selected.map(|k| (k, k))) else { return };
        let m = &mut self.model;
        let Some(d) = m.doc_mut() else { return };
        let mut spans = d.spans;
        let s = Span::new(range.0, range.1 + 1);
        match role {
            SpanRole::Answer => spans.answer = s,
            SpanRole::Question => {
                spans.question = s;
                if spans.response.start < s.end {
                    spans.response.start = s.end;
                }
            }
        }
        match spans.validate(d.n()) {
            Ok(()) => {
                d.spans = spans;
                m.request_rescore();
            }
            Err(e) => m.status = format!("cannot use {s} as the {}: {e}", if role == SpanRole::Answer { "answer" } else { "question" }),
        }
    }

    /// Opens the last what-if's regenerated trace and compares it with the original.
    fn keep_what_if(&mut self) {
        let m = &mut self.model;
        let Some(d) = m.doc() else { return };
        let Some(Ok(w)) = &d.what_if else { return };
        let stem = d.trace.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let path = d.trace.path.with_file_name(format!("{stem}.what-if-{}.safetensors", m.docs.len()));
        let baseline = d.analysis.clone().map(|a| (m.current, a));
        match Trace::from_bytes(w.trace.to_bytes(), &path) {
            Ok(t) => {
                m.baseline = baseline.or(m.baseline.take());
                m.add(Document::new(t));
                m.status = format!("{} (not saved): compared with its original", path.display());
                self.ui.marks = Marks::default();
                self.ui.view = View::Compare;
            }
            Err(e) => m.status = e.to_string(),
        }
    }

    /// Writes the current trace's export (the same files as `--export`) on a worker thread.
    fn export_trace(&mut self, dir: std::path::PathBuf) {
        let m = &mut self.model;
        let Some(d) = m.doc() else { return };
        let path = d.trace.path.clone();
        if !path.exists() {
            m.status = "the bundled sample has no file to export from; open a trace first".into();
            return;
        }
        let (params, tx, backend) = (m.params.clone(), self.commands.clone(), m.backend);
        m.status = format!("exporting to {} …", dir.display());
        std::thread::spawn(move || {
            let r = crate::export::export(&dir, crate::export::plan(&[path], Some(&dir), false), &params, crate::export::Formats::ALL, backend, &Default::default(), &|_| {});
            tx.send(Command::Status(match r {
                Ok(s) => format!("exported {} trace(s) to {}", s.exported, dir.display()),
                Err(e) => e,
            }));
        });
    }
}

fn save_params(params: &Params, path: &Path) -> String {
    let text = if path.extension().is_some_and(|e| e == "json") {
        serde_json::to_string_pretty(params).unwrap_or_default()
    } else {
        toml::to_string_pretty(params).unwrap_or_default()
    };
    match crate::atomic::write_atomic(path, text.as_bytes()) {
        Ok(()) => format!("saved parameters to {}", path.display()),
        Err(e) => format!("{}: {e}", path.display()),
    }
}
