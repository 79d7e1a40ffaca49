//! A handler that panics (a protocol's assertion fired) ends its run as a finding.
//!
//! [`Sim::run`](crate::Sim::run) catches the panic and reports it in the summary, so a
//! campaign records the seed and goes on, and the shrinker can shrink it like any other
//! violation. The payload says what broke; where it broke (file and line) is known only to
//! the panic hook. A tool that runs many seeds calls [`install_hook`] once: panics inside
//! runs are then captured silently with their location, and every other panic still reaches
//! the previous hook.

use std::any::Any;
use std::cell::{Cell, RefCell};

thread_local! {
    /// Set while this thread runs a simulation.
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    /// Where the last captured panic happened.
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs a panic hook that keeps panics inside simulation runs off stderr and records
/// their location for the run's summary. Other panics go to the hook that was installed
/// before.
pub fn install_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if CAPTURING.get() {
            let location = info.location().map(|l| l.to_string());
            LOCATION.with_borrow_mut(|slot| *slot = location);
        } else {
            previous(info);
        }
    }));
}

/// Runs `body`, catching a panic. On a panic, returns the payload's message and, if the hook
/// is installed, where it was raised.
pub(crate) fn capture<T>(body: impl FnOnce() -> T) -> Result<T, String> {
    let was = CAPTURING.replace(true);
    LOCATION.with_borrow_mut(|slot| *slot = None);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
    CAPTURING.set(was);
    outcome.map_err(|payload| {
        let message = message_of(payload.as_ref());
        match LOCATION.with_borrow_mut(Option::take) {
            Some(location) => format!("{message} (at {location})"),
            None => message,
        }
    })
}

fn message_of(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic with a non-text payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message() {
        let caught = capture(|| -> u32 { panic!("commit index went back: {}", 3) });
        let message = caught.expect_err("the panic is caught");
        assert!(
            message.starts_with("commit index went back: 3"),
            "{message}"
        );
        assert_eq!(capture(|| 7), Ok(7));
    }

    #[test]
    fn the_installed_hook_adds_the_location() {
        install_hook();
        let message = capture(|| panic!("arithmetic")).unwrap_err();
        assert!(message.starts_with("arithmetic (at "), "{message}");
        assert!(message.contains("panic.rs:"), "{message}");
    }

    #[test]
    fn a_non_text_payload_is_named() {
        let message = capture(|| std::panic::panic_any(42u8)).unwrap_err();
        assert_eq!(message, "a panic with a non-text payload");
    }
}
