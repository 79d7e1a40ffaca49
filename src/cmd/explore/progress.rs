//! A progress line for long campaigns, only when stderr is a terminal (never in CI logs or
//! when the output is JSON for machines).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

/// Redraw at most every this many runs.
const REDRAW_EVERY: u64 = 16;

/// Counts finished runs and failures; draws on stderr when it is a terminal.
pub struct Progress {
    label: String,
    total: u64,
    done: AtomicU64,
    failed: AtomicU64,
    visible: bool,
}

impl Progress {
    /// A progress line for `total` runs (u64::MAX: unbounded, e.g. with --time).
    pub fn new(label: &str, total: u64, quiet: bool) -> Self {
        Progress {
            label: label.to_string(),
            total,
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            visible: !quiet && std::io::stderr().is_terminal(),
        }
    }

    /// One run finished.
    pub fn tick(&self, failed: bool) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let failed =
            self.failed.fetch_add(u64::from(failed), Ordering::Relaxed) + u64::from(failed);
        if self.visible && (done.is_multiple_of(REDRAW_EVERY) || done == self.total) {
            let total = if self.total == u64::MAX {
                "?".to_string()
            } else {
                self.total.to_string()
            };
            eprint!("\r{}: {done}/{total} runs, {failed} violating", self.label);
        }
    }

    /// Clears the line.
    pub fn finish(&self) {
        if self.visible {
            eprint!("\r\x1b[2K");
        }
    }
}
