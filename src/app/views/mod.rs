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
    /// Take the selection out of the graph and re-solve.
    KnockOut,
    /// Hide the selection from the policy that wrote the trace and regenerate the answer.
    WhatIf,
    /// Open the last what-if's regenerated trace beside the original.
    KeepWhatIf,
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
