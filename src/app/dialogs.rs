//! File dialogs that always open. The native one (rfd: the XDG portal, else zenity) is used
//! where the desktop has one; on a desktop without either (a bare X server, a remote session,
//! Xvfb) rfd returns nothing at all, so the app falls back to a file browser drawn inside its
//! own window (egui_file) and says so in the status bar. `FLOWTRACER_FILE_DIALOG=builtin` (or
//! `native`) overrides the choice.

use super::command::Command;
use std::path::{Path, PathBuf};

/// What a dialog is for: its kind, filter, default name and the command its answer becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    OpenTrace,
    OpenRun,
    LoadParams,
    SaveParams,
    ExportTrace,
    ExportView,
}

impl Pick {
    pub fn title(self) -> &'static str {
        match self {
            Pick::OpenTrace => "Open trace",
            Pick::OpenRun => "Open run folder",
            Pick::LoadParams => "Load parameters",
            Pick::SaveParams => "Save parameters",
            Pick::ExportTrace => "Export trace into folder",
            Pick::ExportView => "Export view as PNG/SVG",
        }
    }

    fn extensions(self) -> &'static [&'static str] {
        match self {
            Pick::OpenTrace => &["safetensors"],
            Pick::LoadParams => &["toml", "json"],
            Pick::ExportView => &["png", "svg"],
            _ => &[],
        }
    }

    fn folder(self) -> bool {
        matches!(self, Pick::OpenRun | Pick::ExportTrace)
    }

    pub fn save(self) -> bool {
        matches!(self, Pick::SaveParams | Pick::ExportView)
    }

    fn default_name(self) -> Option<&'static str> {
        match self {
            Pick::SaveParams => Some("params.toml"),
            Pick::ExportView => Some("view.png"),
            _ => None,
        }
    }

    pub fn command(self, path: PathBuf) -> Command {
        match self {
            Pick::OpenTrace | Pick::OpenRun => Command::Open(path),
            Pick::LoadParams => Command::LoadParams(path),
            Pick::SaveParams => Command::SaveParams(path),
            Pick::ExportTrace => Command::ExportTrace(path),
            Pick::ExportView => Command::ExportView(path),
        }
    }

    /// The native dialog, blocking (run it on its own thread).
    pub fn native(self) -> Option<PathBuf> {
        let mut d = rfd::FileDialog::new().set_title(self.title());
        if !self.extensions().is_empty() {
            d = d.add_filter(self.title(), self.extensions());
        }
        if let Some(name) = self.default_name() {
            d = d.set_file_name(name);
        }
        match (self.folder(), self.save()) {
            (true, _) => d.pick_folder(),
            (false, true) => d.save_file(),
            (false, false) => d.pick_file(),
        }
    }

    /// The in-app browser for this pick, starting in `dir`.
    pub fn builtin(self, dir: &Path) -> egui_file::FileDialog {
        let mut d = match (self.folder(), self.save()) {
            (true, _) => egui_file::FileDialog::select_folder(),
            (false, true) => egui_file::FileDialog::save_file(),
            (false, false) => egui_file::FileDialog::open_file(),
        }
        .title(self.title())
        .initial_path(dir.to_path_buf())
        .show_rename(self.save())
        .show_new_folder(self.save() || self.folder());
        if let Some(name) = self.default_name() {
            d = d.default_filename(name);
        }
        let exts = self.extensions();
        if !exts.is_empty() && !self.save() {
            d = d.show_files_filter(Box::new(move |p: &Path| p.extension().and_then(|e| e.to_str()).is_some_and(|e| exts.contains(&e))));
        }
        d.open();
        d
    }
}

/// Whether a native dialog can be shown here: rfd asks the XDG desktop portal over the session
/// bus, or runs zenity; with neither it silently returns nothing.
pub fn native_available() -> bool {
    match std::env::var("FLOWTRACER_FILE_DIALOG").as_deref() {
        Ok("builtin") => return false,
        Ok("native") => return true,
        _ => {}
    }
    if cfg!(any(target_os = "windows", target_os = "macos")) {
        return true;
    }
    let on_path = |exe: &str| std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(exe).is_file()));
    let portal = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some() && std::env::var_os("XDG_CURRENT_DESKTOP").is_some();
    portal || on_path("zenity") || on_path("kdialog")
}

/// The in-app dialog that is open, and what it is for.
pub struct Builtin {
    pub pick: Pick,
    pub dialog: egui_file::FileDialog,
}

impl Builtin {
    /// Draws it; the path the user picked, once they did, and whether it is finished (picked or
    /// cancelled).
    pub fn show(&mut self, ctx: &egui::Context) -> (Option<PathBuf>, bool) {
        self.dialog.show(ctx);
        if self.dialog.selected() {
            return (self.dialog.path().map(Path::to_path_buf), true);
        }
        (None, !self.dialog.visible())
    }
}

/// What the in-app browser picked to save over a file that exists: egui_file's save dialog does
/// not ask (a native one does), so the app asks before anything is written over.
pub struct Replace {
    pub pick: Pick,
    pub path: PathBuf,
}

impl Replace {
    /// The question; the pick's command once the user says Replace, and whether it is answered.
    pub fn show(&self, ctx: &egui::Context) -> (Option<Command>, bool) {
        let mut answer = (None, false);
        egui::Window::new("Replace file?").collapsible(false).resizable(false).anchor(egui::Align2::CENTER_CENTER, egui::vec2(0.0, 0.0)).show(ctx, |ui| {
            ui.label(format!("{} already exists. Replace it?", self.path.display()));
            ui.horizontal(|ui| {
                if ui.button("Replace").clicked() {
                    answer = (Some(self.pick.command(self.path.clone())), true);
                }
                if ui.button("Keep it").clicked() {
                    answer = (None, true);
                }
            });
        });
        answer
    }
}
