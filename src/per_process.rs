//! State that belongs to the process holding it, such as thread pools. Python forks all the time
//! (a `multiprocessing` pool, `datasets.map(num_proc=…)`, a DataLoader's workers on Linux), and a
//! forked child inherits a parent's thread pools without their threads: its first job on one
//! waits forever for them. So the child starts from its own value.

use std::sync::{Mutex, PoisonError};

/// A value made for the process that holds it, made again from `T::default()` in a forked child.
pub struct PerProcess<T>(Mutex<Option<(u32, T)>>);

impl<T: Default> PerProcess<T> {
    pub const fn new() -> Self {
        PerProcess(Mutex::new(None))
    }

    /// `use_it` on this process's value, under the lock (to read it or fill it in). The parent's
    /// is forgotten, never dropped: a pool's drop would signal threads the child lacks.
    pub fn with<R>(&self, use_it: impl FnOnce(&mut T) -> R) -> R {
        let pid = std::process::id();
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if held.as_ref().is_some_and(|(owner, _)| *owner != pid) {
            std::mem::forget(held.take());
        }
        use_it(&mut held.get_or_insert_with(|| (pid, T::default())).1)
    }
}

impl<T: Default> Default for PerProcess<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::PerProcess;

    /// The value is kept within the process; another process's (as a fork's child finds its
    /// parent's) is put aside unused, and the child starts from the default.
    #[test]
    fn a_value_serves_only_the_process_that_made_it() {
        let held: PerProcess<Vec<u32>> = PerProcess::new();
        held.with(|v| v.push(1));
        assert_eq!(held.with(|v| v.clone()), [1]);
        *held.0.lock().unwrap() = Some((std::process::id().wrapping_add(1), vec![7]));
        assert_eq!(held.with(|v| v.clone()), Vec::<u32>::new(), "a parent's value is not this process's");
        assert_eq!(held.0.lock().unwrap().as_ref().map(|(pid, _)| *pid), Some(std::process::id()));
    }
}
