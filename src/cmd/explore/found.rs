//! What a campaign found survives the campaign being stopped: every failure is announced
//! when found, a first failure of each property is kept unshrunk in the corpus at once (the
//! shrunk entry replaces it at the end), and SIGINT or SIGTERM stops the campaign starting
//! runs instead of killing it, so the summary and the shrinking still happen. A second
//! signal ends the process at once; what was kept stays.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use dst::runner::{self, RunOutcome};
use dst_sim::Trace;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

#[cfg(unix)]
extern "C" fn on_signal(signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
    // SAFETY: signal() is async-signal-safe; the default action makes a second signal fatal.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
    }
}

/// Makes SIGINT and SIGTERM stop the campaign starting runs (see the module doc).
pub fn catch_interrupts() {
    #[cfg(unix)]
    // SAFETY: the handler only stores to an atomic and resets its own disposition.
    unsafe {
        let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Whether a signal asked the campaign to stop.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// The unshrunk corpus entries kept so far, by property (None: keeping it failed, and is
/// not tried again for that property).
#[derive(Default)]
pub struct Unshrunk {
    kept: Mutex<BTreeMap<String, Option<PathBuf>>>,
}

impl Unshrunk {
    /// Keeps `outcome`'s failure in `dir` unless one of its property is kept already.
    /// A per-seed run carries no trace (`trace` is None): its seed is run again, recorded.
    pub fn keep(&self, dir: &Path, outcome: &RunOutcome, trace: Option<&Trace>, note: &str) {
        let Some(first) = outcome.violations.first() else {
            return;
        };
        let mut kept = self.kept.lock().expect("unshrunk lock");
        if kept.contains_key(&first.property) {
            return;
        }
        let saved = recorded(outcome, trace).and_then(|trace| {
            dst::corpus::save_unshrunk(dir, &outcome.spec, &trace, &first.property, note)
        });
        if let Err(error) = &saved {
            eprintln!(
                "dst: warning: seed {} not kept unshrunk: {error}",
                outcome.spec.seed
            );
        }
        kept.insert(first.property.clone(), saved.ok());
    }

    /// The entries kept, by property.
    pub fn into_kept(self) -> BTreeMap<String, PathBuf> {
        let kept = self.kept.into_inner().expect("unshrunk lock");
        kept.into_iter()
            .filter_map(|(property, path)| Some((property, path?)))
            .collect()
    }
}

fn recorded(outcome: &RunOutcome, trace: Option<&Trace>) -> Result<Trace, String> {
    if let Some(trace) = trace {
        return Ok(trace.clone());
    }
    let mut spec = outcome.spec.clone();
    spec.record = true;
    let rerun = runner::run(&spec)?;
    rerun
        .trace
        .ok_or_else(|| "the recorded rerun has no trace".to_string())
}
