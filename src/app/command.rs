//! Everything the user can ask of the app, as data. Views, menus, file dialogs and background
//! threads send commands; `FlowApp::apply` (in `app/apply.rs`) is the one place that carries
//! them out, in the manner of rerun's command sender: a view never changes the model itself.

use crate::params::Params;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

/// Which span a selected range becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanRole {
    Question,
    Answer,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// A trace file or a run folder.
    Open(PathBuf),
    /// Make this open document the current one.
    ShowDocument(usize),
    /// Select a token (extend the range when `extend`) and bring it into view.
    Select { token: usize, extend: bool },
    /// Select these tokens (a step of the step view) and show them in the text view.
    SelectSpan(crate::span::Span),
    /// Move the selection to the next of these tokens after the current one (wrapping).
    JumpNext(Vec<usize>),
    Search(String),
    /// Decode the current trace's tokens this way for display.
    SetTokenizer(crate::subword::Tokenizer),
    /// The selected range becomes the question or the answer span.
    UseSelectionAs(SpanRole),
    /// Back to the spans the file gives.
    FileSpans,
    /// New parameters from the Re-score panel: a debounced re-score follows.
    SetParams(Params),
    LoadParams(PathBuf),
    SaveParams(PathBuf),
    /// Stop the running re-score; the view keeps the previous analysis.
    CancelRescore,
    /// Take the selection out of the graph and re-solve (no model needed).
    KnockOut,
    /// Hide the selection from the policy that wrote the trace and regenerate the answer.
    WhatIf,
    /// Open the last what-if's regenerated trace beside the original.
    KeepWhatIf,
    PinBaseline,
    ClearBaseline,
    /// Write the current trace's export (the same files as `--export`) into this folder.
    ExportTrace(PathBuf),
    /// Write the current view as SVG or PNG (by extension).
    ExportView(PathBuf),
    StartTraining,
    CancelTraining,
    /// Say this in the status bar (a finished background job, a dialog's error).
    Status(String),
}

/// Asks the UI for a frame.
type Waker = Arc<dyn Fn() + Send + Sync>;

/// The sending end, cloned into every view call, dialog thread and background job. Sending
/// wakes the UI so a command from another thread is applied on the next frame.
#[derive(Clone)]
pub struct CommandSender {
    tx: Sender<Command>,
    wake: Arc<std::sync::Mutex<Option<Waker>>>,
}

impl CommandSender {
    pub fn send(&self, c: Command) {
        // The receiver lives as long as the app: a failed send means the app is gone.
        let _ = self.tx.send(c);
        self.wake();
    }

    /// Asks for a frame (background work has news for the views).
    pub fn wake(&self) {
        if let Some(wake) = self.wake.lock().ok().and_then(|w| w.clone()) {
            wake();
        }
    }

    /// Wakes the UI after each send from another thread (the app passes `request_repaint`).
    pub fn set_waker(&self, f: Waker) {
        if let Ok(mut w) = self.wake.lock() {
            *w = Some(f);
        }
    }
}

pub struct CommandReceiver(Receiver<Command>);

impl CommandReceiver {
    /// The commands sent since the last call, in order.
    pub fn drain(&self) -> Vec<Command> {
        self.0.try_iter().collect()
    }
}

pub fn command_channel() -> (CommandSender, CommandReceiver) {
    let (tx, rx) = channel();
    (CommandSender { tx, wake: Default::default() }, CommandReceiver(rx))
}
