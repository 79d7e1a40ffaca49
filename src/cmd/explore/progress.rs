//! A progress bar for long campaigns (indicatif), drawn only when stderr is a terminal and
//! the output is not JSON for machines: CI logs and pipes stay clean.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Counts finished runs and failures on a bar.
pub struct Progress {
    bar: ProgressBar,
    failed: AtomicU64,
}

impl Progress {
    /// A bar for `total` runs (u64::MAX: unbounded, e.g. with --time: a spinner).
    pub fn new(label: &str, total: u64, quiet: bool) -> Self {
        let bar = if total == u64::MAX {
            ProgressBar::new_spinner()
        } else {
            ProgressBar::new(total)
        };
        if quiet || !std::io::stderr().is_terminal() {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        let template = if total == u64::MAX {
            "{prefix} {spinner} {pos} runs {msg} [{elapsed_precise}, {per_sec}]"
        } else {
            "{prefix} [{bar:32}] {pos}/{len} runs {msg} [{elapsed_precise}, eta {eta}]"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_string());
        bar.set_message("0 violating");
        Progress {
            bar,
            failed: AtomicU64::new(0),
        }
    }

    /// One run finished.
    pub fn tick(&self, failed: bool) {
        if failed {
            let count = self.failed.fetch_add(1, Ordering::Relaxed) + 1;
            self.bar.set_message(format!("{count} violating"));
        }
        self.bar.inc(1);
    }

    /// Prints a line on stderr, above the bar when it is drawn.
    pub fn println(&self, line: &str) {
        self.bar.suspend(|| eprintln!("{line}"));
    }

    /// Removes the bar before the summary prints.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
