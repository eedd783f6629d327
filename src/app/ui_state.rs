//! What the views remember between frames and nothing else: which view is shown, what tokens are
//! coloured by, the selection and search marks, each view's scroll, zoom and hover. The data the
//! views show lives in the model (`app/model.rs`).

use super::document::Score;
use super::views::{self, Marks};

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

pub struct UiState {
    pub view: View,
    pub score: Score,
    pub marks: Marks,
    pub search: String,
    pub dark: bool,
    pub text: views::text::TextState,
    /// The baseline's column in the Compare view.
    pub text_b: views::text::TextState,
    pub backbone: views::backbone::BackboneState,
    pub matrix: views::matrix::MatrixState,
    /// The in-app file browser, when one is open (no native dialog on this desktop).
    pub file_dialog: Option<super::dialogs::Builtin>,
    /// A save the in-app browser picked over an existing file, until the user answers.
    pub replace: Option<super::dialogs::Replace>,
    /// Whether the desktop shows native file dialogs (found at start; tests set it).
    pub native_dialogs: bool,
}

impl Default for UiState {
    fn default() -> Self {
        UiState {
            view: View::Text,
            score: Score::Throughput,
            marks: Marks::default(),
            search: String::new(),
            dark: true,
            text: views::text::TextState::named("text"),
            text_b: views::text::TextState::named("text-b"),
            backbone: Default::default(),
            matrix: Default::default(),
            file_dialog: None,
            replace: None,
            native_dialogs: super::dialogs::native_available(),
        }
    }
}
