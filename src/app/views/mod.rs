//! The views of one trace. Each reads the data model and reports what the user did (a token
//! clicked, a path hovered) back to the app, which owns every change.

pub mod backbone;
pub mod inspector;
pub mod matrix;
pub mod rescore;
pub mod runs;
pub mod text;
pub mod train;

use std::collections::HashSet;

/// What a view reports back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Select this token (extend the range when `extend`).
    Select { token: usize, extend: bool },
}

/// Marks shared by the views: the selection, search hits, diff.
#[derive(Default)]
pub struct Marks {
    pub selected: Option<usize>,
    /// Inclusive token range picked with shift-click, for editing spans.
    pub range: Option<(usize, usize)>,
    pub hits: HashSet<usize>,
    pub changed: HashSet<usize>,
    pub show_changes: bool,
}

impl Marks {
    pub fn in_range(&self, k: usize) -> bool {
        self.range.is_some_and(|(a, b)| a <= k && k <= b)
    }
}
