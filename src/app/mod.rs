//! The desktop app (eframe/egui). It calls the same library as the export: the pipeline, the
//! renderers, the export itself. All UI lives in [`FlowApp::draw`], so tests drive the real app
//! headless with egui_kittest.

pub mod document;
pub mod theme;
pub mod training;
pub mod views;
pub mod worker;

use crate::params::Params;
use crate::trace::{Trace, run};
use document::{Document, Score};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};
use views::{Action, Marks};

/// Re-score this long after the last parameter change (a slider drag is many changes).
const DEBOUNCE: Duration = Duration::from_millis(150);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Text,
    Backbone,
    Matrix,
    Run,
    Compare,
    Train,
}

impl View {
    pub const ALL: [View; 6] = [View::Text, View::Backbone, View::Matrix, View::Run, View::Compare, View::Train];
    pub fn name(self) -> &'static str {
        match self {
            View::Text => "Text",
            View::Backbone => "Backbone",
            View::Matrix => "Matrix",
            View::Run => "Run",
            View::Compare => "Compare",
            View::Train => "Train",
        }
    }
}

/// Answers from file dialogs and exports that run on their own threads.
enum Reply {
    Open(Option<PathBuf>),
    LoadParams(Option<PathBuf>),
    SaveParams(Option<PathBuf>),
    ExportTrace(Option<PathBuf>),
    ExportView(Option<PathBuf>),
    Message(String),
}

pub struct FlowApp {
    pub docs: Vec<Document>,
    pub current: usize,
    pub run: Option<views::runs::RunView>,
    pub params: Params,
    pub view: View,
    pub score: Score,
    pub marks: Marks,
    pub search: String,
    pub status: String,
    pub dark: bool,
    /// Run the pipeline on the UI thread (tests); the app itself re-scores in the background.
    pub synchronous: bool,
    pub baseline: Option<(usize, Arc<document::Analysis>)>,
    pub text: views::text::TextState,
    pub text_b: views::text::TextState,
    pub backbone: views::backbone::BackboneState,
    pub matrix: views::matrix::MatrixState,
    pub recent: Vec<PathBuf>,
    /// What full analyses run on (`auto`'s pick; tests set others).
    pub backend: &'static dyn crate::backend::Backend,
    pub train_form: training::TrainForm,
    pub training: Option<training::Training>,
    dirty_since: Option<Instant>,
    worker: worker::Worker,
    replies: (std::sync::mpsc::Sender<Reply>, Receiver<Reply>),
    waker_set: bool,
    fonts_set: bool,
}

impl FlowApp {
    pub fn new(docs: Vec<Document>, params: Params) -> Self {
        let mut app = FlowApp {
            docs,
            current: 0,
            run: None,
            params,
            view: View::Text,
            score: Score::Throughput,
            marks: Marks::default(),
            search: String::new(),
            status: String::new(),
            dark: true,
            synchronous: false,
            baseline: None,
            text: Default::default(),
            text_b: Default::default(),
            backbone: Default::default(),
            matrix: Default::default(),
            recent: load_recent(),
            backend: crate::backend::auto(),
            train_form: Default::default(),
            training: None,
            dirty_since: None,
            worker: worker::Worker::default(),
            replies: channel(),
            waker_set: false,
            fonts_set: false,
        };
        if !app.docs.is_empty() {
            app.dirty_since = Some(Instant::now() - DEBOUNCE);
        }
        app
    }

    /// The app on the bundled sample, analysed on the UI thread (what the tests start from).
    pub fn sample_synchronous() -> Self {
        let mut app = FlowApp::new(vec![Document::new(crate::sample_trace())], Params::default());
        app.synchronous = true;
        app.recent.clear();
        app.dirty_since = None;
        app.rescore_now();
        app
    }

    pub fn doc(&self) -> Option<&Document> {
        self.docs.get(self.current)
    }

    /// Opens a trace file or a run folder; errors go to the status bar, never a panic.
    pub fn open(&mut self, path: &Path) {
        if path.is_dir() {
            match run::discover(path) {
                Ok(r) => {
                    let first = r.traces.first().cloned();
                    self.run = Some(views::runs::RunView::new(r));
                    self.view = View::Run;
                    if let Some(f) = first {
                        self.open_trace(&f);
                    }
                    self.remember(path);
                }
                Err(e) => self.status = e,
            }
        } else {
            self.open_trace(path);
        }
    }

    fn open_trace(&mut self, path: &Path) {
        if let Some(i) = self.docs.iter().position(|d| d.trace.path == path) {
            self.current = i;
            return;
        }
        match Trace::open(path) {
            Ok(t) => {
                self.docs.push(Document::new(t));
                self.current = self.docs.len() - 1;
                self.marks = Marks::default();
                self.request_rescore();
                self.remember(path);
                self.status = format!("opened {}", path.display());
            }
            Err(e) => self.status = e.to_string(),
        }
    }

    fn remember(&mut self, path: &Path) {
        let p = path.to_path_buf();
        self.recent.retain(|r| r != &p);
        self.recent.insert(0, p);
        self.recent.truncate(10);
        if !self.synchronous {
            save_recent(&self.recent);
        }
    }

    pub fn request_rescore(&mut self) {
        if self.synchronous {
            self.rescore_now();
        } else {
            self.dirty_since = Some(Instant::now());
        }
    }

    /// Re-scores the current document on this thread.
    pub fn rescore_now(&mut self) {
        let Some(d) = self.docs.get(self.current) else { return };
        let done = worker::Worker::run_now(self.backend, self.current, &d.trace, d.spans, &self.params, d.analysis.as_deref());
        self.install(done);
    }

    fn install(&mut self, done: worker::Done) {
        let Some(d) = self.docs.get_mut(done.doc) else { return };
        match done.outcome {
            Ok(a) => {
                self.status = format!(
                    "{} · {} · re-scored in {:.1} ms on {}",
                    d.title(),
                    a.result.status.name(),
                    a.elapsed.as_secs_f64() * 1e3,
                    a.result.provenance.summary()
                );
                d.set_analysis(a);
                self.marks.changed = d.credit_changes().into_iter().collect();
            }
            Err(e) => {
                self.status = e.clone();
                d.error = Some(e);
            }
        }
    }

    /// Selects a token (or extends the range with shift) and brings it into view.
    pub fn select(&mut self, token: usize, extend: bool) {
        if extend {
            let anchor = self.marks.selected.unwrap_or(token);
            self.marks.range = Some((anchor.min(token), anchor.max(token)));
        } else {
            self.marks.range = None;
            self.marks.selected = Some(token);
        }
        self.text.scroll_to = Some(token);
    }

    fn apply(&mut self, action: Option<Action>) {
        match action {
            None => {}
            Some(Action::Select { token, extend }) => self.select(token, extend),
            Some(Action::KnockOut) => self.knock_out(),
            Some(Action::WhatIf) => self.what_if(),
            Some(Action::KeepWhatIf) => self.keep_what_if(),
        }
    }

    /// Takes the selection out of the current analysis's graph and re-solves (no model needed).
    pub fn knock_out(&mut self) {
        let selection = self.marks.selection();
        let Some(d) = self.docs.get_mut(self.current) else { return };
        let Some(a) = d.analysis.clone() else { return };
        d.knock_out = Some(crate::flow::knockout::knock_out(&a.matrix, &a.plan.params, &a.result, &selection));
    }

    /// Hides the selection from the policy that wrote the trace and regenerates the answer.
    pub fn what_if(&mut self) {
        let selection = self.marks.selection();
        let Some(d) = self.docs.get_mut(self.current) else { return };
        d.what_if = Some(crate::rl::causal::what_if(&d.trace, &selection));
    }

    /// Opens the last what-if's regenerated trace and compares it with the original.
    pub fn keep_what_if(&mut self) {
        let Some(d) = self.docs.get(self.current) else { return };
        let Some(Ok(w)) = &d.what_if else { return };
        let stem = d.trace.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let path = d.trace.path.with_file_name(format!("{stem}.what-if-{}.safetensors", self.docs.len()));
        match Trace::from_bytes(w.trace.to_bytes(), &path) {
            Ok(t) => {
                if let Some(a) = d.analysis.clone() {
                    self.baseline = Some((self.current, a));
                }
                self.docs.push(Document::new(t));
                self.current = self.docs.len() - 1;
                self.marks = Marks::default();
                self.view = View::Compare;
                self.status = format!("{} (not saved): compared with its original", path.display());
                self.request_rescore();
            }
            Err(e) => self.status = e.to_string(),
        }
    }

    pub fn set_search(&mut self, query: &str) {
        self.search = query.to_string();
        self.marks.hits = match self.doc() {
            Some(d) if !query.is_empty() => {
                let q = query.to_lowercase();
                (0..d.n()).filter(|&k| d.trace.tokens[k].to_lowercase().contains(&q)).collect()
            }
            _ => HashSet::new(),
        };
    }

    /// Moves the selection to the next token of `list` after the current one (wrapping).
    pub fn jump_next(&mut self, mut list: Vec<usize>) {
        list.sort_unstable();
        if list.is_empty() {
            return;
        }
        let from = self.marks.selected.map_or(0, |s| s + 1);
        let next = list.iter().copied().find(|&k| k >= from).unwrap_or(list[0]);
        self.select(next, false);
    }

    /// Sets the question or answer span to the selected range.
    pub fn use_range_as(&mut self, answer: bool) {
        let Some(range) = self.marks.range.or(self.marks.selected.map(|k| (k, k))) else { return };
        let Some(d) = self.docs.get_mut(self.current) else { return };
        let mut spans = d.spans;
        let s = crate::span::Span::new(range.0, range.1 + 1);
        if answer {
            spans.answer = s;
        } else {
            spans.question = s;
            if spans.response.start < s.end {
                spans.response.start = s.end;
            }
        }
        match spans.validate(d.n()) {
            Ok(()) => {
                d.spans = spans;
                self.request_rescore();
            }
            Err(e) => self.status = format!("cannot use {s} as the {}: {e}", if answer { "answer" } else { "question" }),
        }
    }

    fn spawn_dialog(&self, make: impl FnOnce() -> Reply + Send + 'static) {
        let tx = self.replies.0.clone();
        std::thread::spawn(move || {
            let _ = tx.send(make());
        });
    }

    fn handle_replies(&mut self) {
        while let Ok(reply) = self.replies.1.try_recv() {
            match reply {
                Reply::Open(Some(p)) => self.open(&p),
                Reply::LoadParams(Some(p)) => match Params::load(&p) {
                    Ok(params) => {
                        self.params = params;
                        self.request_rescore();
                        self.status = format!("parameters from {}", p.display());
                    }
                    Err(e) => self.status = e,
                },
                Reply::SaveParams(Some(p)) => {
                    let text = if p.extension().is_some_and(|e| e == "json") {
                        serde_json::to_string_pretty(&self.params).unwrap_or_default()
                    } else {
                        toml::to_string_pretty(&self.params).unwrap_or_default()
                    };
                    self.status = match crate::atomic::write_atomic(&p, text.as_bytes()) {
                        Ok(()) => format!("saved parameters to {}", p.display()),
                        Err(e) => format!("{}: {e}", p.display()),
                    };
                }
                Reply::ExportTrace(Some(dir)) => self.export_trace(dir),
                Reply::ExportView(Some(p)) => self.status = self.export_view(&p).unwrap_or_else(|e| e),
                Reply::Message(m) => self.status = m,
                _ => {}
            }
        }
    }

    /// Writes the current trace's export (the same files as `--export`) on a worker thread.
    fn export_trace(&mut self, dir: PathBuf) {
        let Some(d) = self.doc() else { return };
        let path = d.trace.path.clone();
        if !path.exists() {
            self.status = "the bundled sample has no file to export from; open a trace first".into();
            return;
        }
        let params = self.params.clone();
        let tx = self.replies.0.clone();
        self.status = format!("exporting to {} …", dir.display());
        std::thread::spawn(move || {
            let r = crate::export::export(&dir, &[path], &params, crate::export::Formats::ALL, &crate::backend::Cpu, &Default::default(), &|_| {});
            let _ = tx.send(Reply::Message(match r {
                Ok(s) => format!("exported {} trace(s) to {}", s.exported, dir.display()),
                Err(e) => e,
            }));
        });
    }

    /// Writes the current view as SVG or PNG (by extension), drawn by the library's renderers.
    pub fn export_view(&self, path: &Path) -> Result<String, String> {
        let d = self.doc().ok_or("no trace open")?;
        let a = d.analysis.as_ref().ok_or("not analysed yet")?;
        let title = format!("{} · {}", d.title(), a.result.status.name());
        let png = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
        let bytes = match self.view {
            View::Matrix => {
                let s = views::matrix::MAX_TEXTURE.min(d.n());
                let (vals, _) = views::matrix::reduce(&d.trace, a, self.matrix.layer, s);
                matrix_png(&vals, s)?
            }
            View::Backbone => {
                let svg = crate::render::backbone::backbone_svg(&title, &d.trace.tokens, a.plan.spans, &a.result);
                if png { crate::render::svg_to_png(&svg)? } else { svg.into_bytes() }
            }
            _ => {
                let svg = crate::render::text::credit_svg(&title, &d.trace.tokens, a.plan.spans, &a.result, &Default::default());
                if png { crate::render::svg_to_png(&svg)? } else { svg.into_bytes() }
            }
        };
        crate::atomic::write_atomic(path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(format!("wrote {}", path.display()))
    }

    /// Background work: dialogs, dropped files, debounced re-scoring, finished jobs.
    fn update(&mut self, ctx: &egui::Context) {
        if !self.waker_set {
            let c = ctx.clone();
            self.worker.set_waker(move || c.request_repaint());
            self.waker_set = true;
        }
        self.handle_replies();
        if let Some(t) = &mut self.training {
            t.poll();
        }
        let dropped: Vec<PathBuf> = ctx.input(|i| i.raw.dropped_files.iter().map(|f| f.path().to_path_buf()).filter(|p| !p.as_os_str().is_empty()).collect());
        for p in dropped {
            self.open(&p);
        }
        if let Some(done) = self.worker.poll() {
            self.install(done);
        }
        if let Some(since) = self.dirty_since {
            if since.elapsed() >= DEBOUNCE {
                self.dirty_since = None;
                if let Some(d) = self.docs.get(self.current) {
                    self.worker.submit(self.backend, self.current, d.trace.clone(), d.spans, self.params.clone(), d.analysis.clone());
                }
            } else {
                ctx.request_repaint_after(DEBOUNCE);
            }
        }
        if self.worker.busy_since().is_some() {
            ctx.request_repaint_after(Duration::from_millis(50));
        }
        let current_needs_analysis = self.docs.get(self.current).is_some_and(|d| d.analysis.is_none() && d.error.is_none());
        if current_needs_analysis && self.worker.busy_since().is_none() && self.dirty_since.is_none() {
            self.request_rescore();
        }
    }

    /// The whole UI.
    pub fn draw(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        if !self.fonts_set {
            install_fonts(&ctx);
            self.fonts_set = true;
        }
        ctx.set_visuals(if self.dark { egui::Visuals::dark() } else { egui::Visuals::light() });
        self.update(&ctx);
        egui::Panel::top("menu").show(ui, |ui| self.menu(ui));
        egui::Panel::top("toolbar").show(ui, |ui| self.toolbar(ui));
        egui::Panel::bottom("status").show(ui, |ui| self.status_bar(ui));
        // The Train panel is about runs, not the open trace: it gets the whole width.
        if self.view != View::Train {
            egui::Panel::right("side").resizable(true).default_size(330.0).show(ui, |ui| self.side(ui));
        }
        egui::CentralPanel::default().show(ui, |ui| self.central(ui));
    }

    fn menu(&mut self, ui: &mut egui::Ui) {
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                if ui.button("Open trace…").clicked() {
                    self.spawn_dialog(|| Reply::Open(rfd::FileDialog::new().add_filter("trace", &["safetensors"]).pick_file()));
                }
                if ui.button("Open run…").clicked() {
                    self.spawn_dialog(|| Reply::Open(rfd::FileDialog::new().pick_folder()));
                }
                ui.menu_button("Recent", |ui| {
                    if self.recent.is_empty() {
                        ui.weak("nothing yet");
                    }
                    for p in self.recent.clone() {
                        if ui.button(p.display().to_string()).clicked() {
                            self.open(&p);
                        }
                    }
                });
                ui.separator();
                if ui.button("Load parameters…").clicked() {
                    self.spawn_dialog(|| Reply::LoadParams(rfd::FileDialog::new().add_filter("parameters", &["toml", "json"]).pick_file()));
                }
                if ui.button("Save parameters…").clicked() {
                    self.spawn_dialog(|| Reply::SaveParams(rfd::FileDialog::new().set_file_name("params.toml").save_file()));
                }
                ui.separator();
                if ui.button("Export trace…").clicked() {
                    self.spawn_dialog(|| Reply::ExportTrace(rfd::FileDialog::new().pick_folder()));
                }
                if ui.button("Export view as PNG/SVG…").clicked() {
                    self.spawn_dialog(|| Reply::ExportView(rfd::FileDialog::new().add_filter("image", &["png", "svg"]).set_file_name("view.png").save_file()));
                }
            });
            ui.menu_button("View", |ui| {
                ui.checkbox(&mut self.dark, "dark theme");
            });
        });
    }

    fn toolbar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            if self.docs.len() > 1 {
                let mut current = self.current;
                egui::ComboBox::from_label("trace").selected_text(self.docs[current].title()).show_ui(ui, |ui| {
                    for (i, d) in self.docs.iter().enumerate() {
                        ui.selectable_value(&mut current, i, d.title());
                    }
                });
                if current != self.current {
                    self.current = current;
                    self.marks = Marks::default();
                    if self.docs[current].analysis.is_none() {
                        self.request_rescore();
                    }
                }
            } else if let Some(d) = self.doc() {
                ui.strong(d.title());
            }
            ui.separator();
            for v in View::ALL {
                ui.selectable_value(&mut self.view, v, v.name());
            }
            ui.separator();
            egui::ComboBox::from_label("colour by").selected_text(self.score.name()).show_ui(ui, |ui| {
                for s in Score::ALL {
                    ui.selectable_value(&mut self.score, s, s.name());
                }
            });
            ui.separator();
            let mut q = self.search.clone();
            let resp = ui.add(egui::TextEdit::singleline(&mut q).hint_text("search tokens").desired_width(120.0));
            if q != self.search {
                self.set_search(&q);
            }
            let enter = resp.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            if ui.button("next match").clicked() || enter {
                let hits: Vec<usize> = self.marks.hits.iter().copied().collect();
                self.jump_next(hits);
            }
            ui.small(format!("{} matches", self.marks.hits.len()));
            if let Some(a) = self.doc().and_then(|d| d.analysis.clone()) {
                if ui.button("next hub").clicked() {
                    self.jump_next(a.result.hubs.clone());
                }
                if ui.button("next checkpoint").clicked() {
                    self.jump_next(a.result.checkpoints.clone());
                }
            }
            ui.toggle_value(&mut self.marks.show_changes, format!("diff ({})", self.marks.changed.len()))
                .on_hover_text("outline the tokens whose credit changed at the last re-score");
        });
    }

    fn status_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            if self.worker.busy_since().is_some() || self.dirty_since.is_some() {
                ui.spinner();
                ui.label("re-scoring…");
                if ui.small_button("cancel").clicked() {
                    self.worker.cancel();
                    self.dirty_since = None;
                    self.status = "re-score cancelled; the view shows the previous analysis".into();
                    if let Some(d) = self.docs.get_mut(self.current).filter(|d| d.analysis.is_none()) {
                        d.error = Some("analysis cancelled: change a parameter to run it again".into());
                    }
                }
            }
            ui.label(&self.status).on_hover_text(backends());
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if let Some(d) = self.doc() {
                    ui.weak(format!("{} tokens", d.n()));
                }
            });
        });
    }

    fn side(&mut self, ui: &mut egui::Ui) {
        egui::ScrollArea::vertical().id_salt("side-scroll").show(ui, |ui| {
            let Some(d) = self.docs.get(self.current) else {
                ui.weak("Open a trace (File → Open, or drop a file here).");
                return;
            };
            let trace = d.trace.clone();
            let analysis = d.analysis.clone();
            ui.heading("Inspector");
            ui.horizontal_wrapped(|ui| {
                if ui.button("use as question").on_hover_text("the selected token, or shift-click range").clicked() {
                    self.use_range_as(false);
                }
                if ui.button("use as answer").clicked() {
                    self.use_range_as(true);
                }
                if ui.button("file spans").clicked() {
                    let spans = self.docs[self.current].trace.spans;
                    self.docs[self.current].spans = spans;
                    self.request_rescore();
                }
            });
            if let Some(a) = &analysis {
                let act = views::inspector::show(ui, &trace, a, self.marks.selected);
                self.apply(act);
                ui.separator();
                let d = &self.docs[self.current];
                let act = views::inspector::what_if(ui, a, &self.marks.selection(), d);
                self.apply(act);
            }
            ui.separator();
            ui.heading("Re-score");
            let mut p = self.params.clone();
            if views::rescore::show(ui, &mut p, &trace) {
                self.params = p;
                self.request_rescore();
            }
            ui.horizontal(|ui| {
                if ui.button("pin as baseline").on_hover_text("compare later analyses against this one").clicked() {
                    if let Some(a) = analysis.clone() {
                        self.baseline = Some((self.current, a));
                    }
                }
                if self.baseline.is_some() && ui.button("clear baseline").clicked() {
                    self.baseline = None;
                }
            });
        });
    }

    fn central(&mut self, ui: &mut egui::Ui) {
        if self.view == View::Train {
            self.train_panel(ui);
            return;
        }
        if self.view == View::Run {
            match &mut self.run {
                Some(r) => {
                    if let Some(p) = views::runs::show(ui, r) {
                        self.open_trace(&p);
                        self.view = View::Text;
                    }
                }
                None => {
                    ui.weak("No run open: File → Open run…, or start with `flowtracer RUN_FOLDER`.");
                }
            }
            return;
        }
        let Some(d) = self.docs.get(self.current) else {
            ui.centered_and_justified(|ui| ui.label("Open a trace: File → Open trace…, or drop a .safetensors file here."));
            return;
        };
        let Some(a) = d.analysis.clone() else {
            match &d.error {
                Some(e) => {
                    ui.colored_label(ui.visuals().error_fg_color, e);
                }
                None => {
                    ui.spinner();
                }
            }
            return;
        };
        let trace = d.trace.clone();
        let dark = self.dark;
        if matches!(self.view, View::Text | View::Compare) {
            ui.horizontal(|ui| {
                theme::legend(ui, self.score.name(), "low", "high", dark);
                theme::marks_legend(ui);
                if self.score.values(&trace, &a).is_none() {
                    ui.weak(format!("(this trace has no {}: showing throughput)", self.score.name()));
                }
            });
        }
        let action = match self.view {
            View::Text => views::text::show(ui, "text", self.current, &trace, &a, self.score, &self.marks, &mut self.text),
            View::Backbone => views::backbone::show(ui, &trace, &a, &self.marks, &mut self.backbone),
            View::Matrix => views::matrix::show(ui, self.current, &trace, &a, &self.marks, &mut self.matrix),
            View::Compare => self.compare(ui, &trace, &a),
            View::Run | View::Train => None,
        };
        self.apply(action);
    }

    fn train_panel(&mut self, ui: &mut egui::Ui) {
        match views::train::show(ui, &mut self.train_form, self.training.as_ref()) {
            Some(views::train::Request::Start) => {
                // Flow credit aggregates as the Re-score panel says; γ and its share are the form's.
                let credit = self.train_form.cfg.params.credit.clone();
                self.train_form.cfg.params = Params { credit, ..self.params.clone() };
                let ctx = ui.ctx().clone();
                self.training = Some(training::Training::start(&self.train_form, move || ctx.request_repaint()));
                self.status = format!("training into {}", self.train_form.root.display());
            }
            Some(views::train::Request::Cancel) => {
                if let Some(t) = &self.training {
                    t.cancel();
                    self.status = "cancelling: each run stops after its current step".into();
                }
            }
            Some(views::train::Request::Open(p)) => {
                self.open_trace(&p);
                self.view = View::Text;
            }
            None => {}
        }
    }

    fn compare(&mut self, ui: &mut egui::Ui, trace: &Arc<Trace>, a: &Arc<document::Analysis>) -> Option<Action> {
        let Some((bdoc, b)) = self.baseline.clone() else {
            ui.weak("Pin an analysis as the baseline (side panel), change parameters or open another trace, and compare here.");
            return None;
        };
        let btrace = self.docs[bdoc].trace.clone();
        if bdoc == self.current && b.result.credit.len() == a.result.credit.len() {
            let changed = (0..a.result.credit.len()).filter(|&k| a.result.credit[k] != b.result.credit[k]).count();
            let (ta, tb) = (&a.result.throughput, &b.result.throughput);
            let moved: f64 = ta.iter().zip(tb).map(|(x, y)| (x - y).abs()).sum();
            let total: f64 = ta.iter().chain(tb).sum();
            let share = if total > 0.0 { 100.0 * moved / total } else { 0.0 };
            ui.label(format!("same trace: credit differs on {changed} tokens; {share:.1}% of the throughput moved"));
        }
        let mut action = None;
        ui.columns(2, |cols| {
            cols[0].strong(format!("baseline: {}", self.docs[bdoc].title()));
            let act = views::text::show(&mut cols[0], "text-b", bdoc + 1000, &btrace, &b, self.score, &self.marks, &mut self.text_b);
            action = action.or(act);
            cols[1].strong(format!("current: {}", self.docs[self.current].title()));
            let act = views::text::show(&mut cols[1], "text-a", self.current, trace, a, self.score, &self.marks, &mut self.text);
            action = action.or(act);
        });
        action
    }
}

impl eframe::App for FlowApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.draw(ui);
    }
}

fn matrix_png(vals: &[f32], s: usize) -> Result<Vec<u8>, String> {
    let max = vals.iter().cloned().fold(0.0f32, f32::max).max(1e-30);
    let mut pixmap = resvg::tiny_skia::Pixmap::new(s as u32, s as u32).ok_or("empty matrix")?;
    for (px, &v) in pixmap.pixels_mut().iter_mut().zip(vals) {
        let c = crate::render::colormap::heat(((v / max) as f64).sqrt());
        *px = resvg::tiny_skia::PremultipliedColorU8::from_rgba(c[0], c[1], c[2], 255).expect("opaque");
    }
    pixmap.encode_png().map_err(|e| e.to_string())
}

/// The bundled DejaVu Sans Mono as the monospace font and as a fallback for everything else:
/// tokens hold arrows, maths and every script a tokenizer emits.
pub fn install_fonts(ctx: &egui::Context) {
    let mut fonts = egui::FontDefinitions::default();
    fonts.font_data.insert("dejavu-mono".into(), Arc::new(egui::FontData::from_static(crate::render::FONT)));
    fonts.families.entry(egui::FontFamily::Monospace).or_default().insert(0, "dejavu-mono".into());
    fonts.families.entry(egui::FontFamily::Proportional).or_default().push("dejavu-mono".into());
    ctx.set_fonts(fonts);
}

fn recent_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("flowtracer").join("recent.json"))
}

fn load_recent() -> Vec<PathBuf> {
    recent_path()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_recent(list: &[PathBuf]) {
    if let Some(p) = recent_path() {
        let _ = crate::atomic::write_atomic(&p, &serde_json::to_vec(list).unwrap_or_default());
    }
}

/// Whether a window can be opened at all (Linux needs an X11 or Wayland display).
pub fn has_display() -> bool {
    if cfg!(target_os = "linux") {
        std::env::var_os("DISPLAY").is_some_and(|d| !d.is_empty()) || std::env::var_os("WAYLAND_DISPLAY").is_some_and(|d| !d.is_empty())
    } else {
        true
    }
}

/// Opens the window on `inputs` (the bundled sample when empty).
pub fn run(inputs: &[PathBuf], params: Params) -> Result<(), String> {
    if !has_display() {
        return Err("no display to open a window on (DISPLAY and WAYLAND_DISPLAY are unset).\n\
                    Use the headless mode instead: flowtracer --export OUT_DIR TRACE|RUN…"
            .into());
    }
    let mut app = FlowApp::new(vec![], params);
    if inputs.is_empty() {
        app.docs.push(Document::new(crate::sample_trace()));
        app.request_rescore();
    }
    for p in inputs {
        app.open(p);
    }
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default().with_inner_size([1280.0, 800.0]).with_title("FlowTracer Studio").with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native("FlowTracer Studio", options, Box::new(|_cc| Ok(Box::new(app)))).map_err(|e| e.to_string())
}

/// What this machine's backends are, for the status bar's tooltip (probed once).
fn backends() -> &'static str {
    static REPORT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    REPORT.get_or_init(crate::backend::availability_report)
}
