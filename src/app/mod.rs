//! The desktop app (eframe/egui), in the manner of rerun's viewer and egui's demo app: the
//! model (`model.rs`: documents, analyses, parameters, run, training) apart from the UI state
//! (`ui_state.rs`: view, marks, scroll and zoom), views that read both and return
//! [`Command`]s, and one place that applies them (`apply.rs`). It calls the same library as the
//! export. All UI lives in [`FlowApp::draw`], so tests drive the real app headless with
//! egui_kittest.

mod apply;
pub mod command;
pub mod dialogs;
pub mod document;
mod export;
pub mod model;
mod panels;
pub mod recent;
pub mod run_model;
pub mod theme;
pub mod training;
pub mod ui_state;
pub mod views;
pub mod worker;

pub use command::{Command, SpanRole};
pub use ui_state::View;

use crate::params::Params;
use command::{CommandReceiver, CommandSender, command_channel};
use document::Document;
use model::Model;
use recent::Recent;
use std::path::PathBuf;
use std::sync::Arc;
use ui_state::UiState;

pub struct FlowApp {
    pub model: Model,
    pub ui: UiState,
    commands: CommandSender,
    inbox: CommandReceiver,
    /// The analysis the UI state last followed (the diff marks are recomputed when it changes).
    followed: Option<u64>,
    fonts_set: bool,
    waker_set: bool,
}

impl FlowApp {
    /// The app on the backend `auto` picks.
    pub fn new(docs: Vec<Document>, params: Params, recent: Recent) -> Self {
        Self::on_backend(docs, params, recent, crate::backend::auto())
    }

    /// The app on `backend`: a backend the user named is the only one probed (`auto` would
    /// look for a CUDA device and a wgpu adapter first).
    pub fn on_backend(docs: Vec<Document>, params: Params, recent: Recent, backend: &'static dyn crate::backend::Backend) -> Self {
        let (commands, inbox) = command_channel();
        FlowApp { model: Model::new(docs, params, recent, backend), ui: UiState::default(), commands, inbox, followed: None, fonts_set: false, waker_set: false }
    }

    /// The app on the bundled sample, analysed on the UI thread (what the tests start from).
    pub fn sample_synchronous() -> Self {
        let mut app = FlowApp::new(vec![], Params::default(), Recent::in_memory());
        app.model.rescoring.synchronous = true;
        app.model.add(Document::new(crate::sample_trace()));
        app
    }

    /// Where views, menus and background threads send what the user asked for.
    pub fn sender(&self) -> CommandSender {
        self.commands.clone()
    }

    /// Background work in, commands applied, the UI state brought in line with the model.
    fn update(&mut self, ctx: &egui::Context) {
        if !self.waker_set {
            let c = ctx.clone();
            self.model.set_waker(move || c.request_repaint());
            let c = ctx.clone();
            self.commands.set_waker(Arc::new(move || c.request_repaint()));
            self.waker_set = true;
        }
        let dropped: Vec<PathBuf> = ctx.input(|i| i.raw.dropped_files.iter().map(|f| f.path().to_path_buf()).filter(|p| !p.as_os_str().is_empty()).collect());
        for p in dropped {
            self.apply(Command::Open(p));
        }
        let ticked = self.model.tick();
        if let Some(after) = ticked.repaint_after {
            ctx.request_repaint_after(after);
        }
        self.apply_pending();
    }

    /// Applies every command sent since the last call, then follows the model.
    fn apply_pending(&mut self) {
        for c in self.inbox.drain() {
            self.apply(c);
        }
        let current = self.model.doc().and_then(|d| d.analysis.as_ref().map(|a| a.generation));
        if current != self.followed {
            self.followed = current;
            self.ui.marks.changed = self.model.doc().map(|d| d.credit_changes().into_iter().collect()).unwrap_or_default();
        }
    }

    /// The whole UI.
    pub fn draw(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        if !self.fonts_set {
            install_fonts(&ctx);
            self.fonts_set = true;
        }
        ctx.set_visuals(if self.ui.dark { egui::Visuals::dark() } else { egui::Visuals::light() });
        self.update(&ctx);
        egui::Panel::top("menu").show(ui, |ui| self.menu(ui));
        egui::Panel::top("toolbar").show(ui, |ui| self.toolbar(ui));
        egui::Panel::bottom("status").show(ui, |ui| self.status_bar(ui));
        // The Train panel is about runs, not the open trace: it gets the whole width.
        if self.ui.view != View::Train {
            egui::Panel::right("side").resizable(true).default_size(330.0).show(ui, |ui| self.side(ui));
        }
        egui::CentralPanel::default().show(ui, |ui| self.central(ui));
        self.file_dialog(&ctx);
        self.apply_pending();
    }

    fn send(&self, c: Option<Command>) {
        if let Some(c) = c {
            self.commands.send(c);
        }
    }

    /// A file dialog: the native one on its own thread (it blocks), or, where the desktop has
    /// none, the in-app browser; what the user picked comes back as the pick's command.
    pub fn dialog(&mut self, pick: dialogs::Pick) {
        if self.ui.native_dialogs {
            let tx = self.commands.clone();
            std::thread::spawn(move || {
                if let Some(p) = pick.native() {
                    tx.send(pick.command(p));
                }
            });
            return;
        }
        let start = self.model.doc().and_then(|d| d.trace.path.parent().map(|p| p.to_path_buf())).filter(|p| p.is_dir());
        let start = start.or_else(|| std::env::current_dir().ok()).unwrap_or_else(|| PathBuf::from("."));
        self.ui.file_dialog = Some(dialogs::Builtin { pick, dialog: pick.builtin(&start) });
        self.model.status = "no native file dialog on this desktop (no XDG portal or zenity): using the built-in browser".into();
    }

    /// The in-app file browser, while one is open, and its question before a save replaces a
    /// file.
    fn file_dialog(&mut self, ctx: &egui::Context) {
        if let Some(b) = &mut self.ui.file_dialog {
            let (picked, done) = b.show(ctx);
            match picked {
                Some(path) if b.pick.save() && path.exists() => self.ui.replace = Some(dialogs::Replace { pick: b.pick, path }),
                Some(path) => self.commands.send(b.pick.command(path)),
                None => {}
            }
            if done {
                self.ui.file_dialog = None;
            }
        }
        if let Some(r) = &self.ui.replace {
            let (command, answered) = r.show(ctx);
            if answered {
                if command.is_none() {
                    self.model.status = format!("not saved: {} kept as it was", r.path.display());
                }
                self.send(command);
                self.ui.replace = None;
            }
        }
    }
}
impl eframe::App for FlowApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.draw(ui);
    }
}

/// The bundled DejaVu Sans Mono as the monospace font and as a fallback for everything else:
/// tokens hold arrows, maths and every script a tokenizer emits. Neither it nor egui's own fonts
/// have Chinese, Japanese or Korean, so the first CJK font the system has (or the one
/// `FLOWTRACER_FONT` names) comes after them; without one such text shows as boxes.
pub fn install_fonts(ctx: &egui::Context) {
    let system = std::env::var_os("FLOWTRACER_FONT").map(|p| vec![PathBuf::from(p)]).unwrap_or_else(|| CJK_FONTS.iter().map(PathBuf::from).collect());
    ctx.set_fonts(fonts_with(first_readable(&system)));
}

/// Where desktops keep a font with CJK glyphs (Debian/Ubuntu, Fedora, Arch, macOS, Windows).
const CJK_FONTS: &[&str] = &[
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/wenquanyi/wqy-microhei/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/Hiragino Sans GB.ttc",
    "C:\\Windows\\Fonts\\msyh.ttc",
];

/// The first of `paths` that reads as a font file (no larger than 64 MiB), with its bytes.
pub fn first_readable(paths: &[PathBuf]) -> Option<(PathBuf, Vec<u8>)> {
    paths.iter().find_map(|p| {
        let len = std::fs::metadata(p).ok()?.len();
        (len <= 64 << 20).then(|| std::fs::read(p).ok().map(|b| (p.clone(), b))).flatten()
    })
}

/// The app's fonts: egui's, the bundled DejaVu Sans Mono, then `system` (a CJK fallback) last.
pub fn fonts_with(system: Option<(PathBuf, Vec<u8>)>) -> egui::FontDefinitions {
    let mut fonts = egui::FontDefinitions::default();
    fonts.font_data.insert("dejavu-mono".into(), Arc::new(egui::FontData::from_static(crate::render::FONT)));
    fonts.families.entry(egui::FontFamily::Monospace).or_default().insert(0, "dejavu-mono".into());
    fonts.families.entry(egui::FontFamily::Proportional).or_default().push("dejavu-mono".into());
    if let Some((_, bytes)) = system {
        fonts.font_data.insert(SYSTEM_FONT.into(), Arc::new(egui::FontData::from_owned(bytes)));
        for family in [egui::FontFamily::Proportional, egui::FontFamily::Monospace] {
            fonts.families.entry(family).or_default().push(SYSTEM_FONT.into());
        }
    }
    fonts
}

/// The name the system's fallback font goes by in the font definitions.
pub const SYSTEM_FONT: &str = "system-cjk";

/// Whether a window can be opened at all (Linux needs an X11 or Wayland display).
pub fn has_display() -> bool {
    if cfg!(target_os = "linux") {
        std::env::var_os("DISPLAY").is_some_and(|d| !d.is_empty()) || std::env::var_os("WAYLAND_DISPLAY").is_some_and(|d| !d.is_empty())
    } else {
        true
    }
}

/// Opens the window on `inputs` (the bundled sample when empty), analysed on `backend`.
pub fn run(inputs: &[PathBuf], params: Params, backend: &'static dyn crate::backend::Backend) -> Result<(), String> {
    if !has_display() {
        return Err("no display to open a window on (DISPLAY and WAYLAND_DISPLAY are unset).\n\
                    Use the headless mode instead: flowtracer --export OUT_DIR TRACE|RUN…"
            .into());
    }
    let mut app = FlowApp::on_backend(vec![], params, Recent::load(), backend);
    if inputs.is_empty() {
        app.model.add(Document::new(crate::sample_trace()));
    }
    for p in inputs {
        app.apply(Command::Open(p.clone()));
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
