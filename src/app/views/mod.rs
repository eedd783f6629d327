//! The views. Each reads the model, keeps its own UI state, and returns what the user asked for
//! as a [`Command`](super::command::Command) for the app to apply; none changes the model.

pub mod backbone;
pub mod compare;
pub mod inspector;
pub mod matrix;
pub mod rescore;
pub mod runs;
pub mod steps;
pub mod text;
pub mod trace_map;
pub mod train;

use std::collections::HashSet;

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
    /// The shift-click range, else the selected token, else nothing.
    pub fn selection(&self) -> Vec<usize> {
        match (self.range, self.selected) {
            (Some((a, b)), _) => (a..=b).collect(),
            (None, Some(k)) => vec![k],
            (None, None) => vec![],
        }
    }

    pub fn in_range(&self, k: usize) -> bool {
        self.range.is_some_and(|(a, b)| a <= k && k <= b)
    }
}
