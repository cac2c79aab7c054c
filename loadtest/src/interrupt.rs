//! Ctrl-C. The first SIGINT asks the run to stop: the phase under way ends
//! as aborted ("interrupted"), no further target or phase starts, every
//! child is stopped as usual and the report of what was measured until
//! then is written; the tool exits with 130. The handler is reset by the
//! first signal, so a second Ctrl-C ends the tool at once (its children
//! then get SIGTERM from `PR_SET_PDEATHSIG`).
//!
//! Children run in process groups of their own
//! ([`die_with_parent`](crate::process::die_with_parent)), so a Ctrl-C at
//! the terminal reaches the tool only, and the tool decides how they stop.

use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// What an interrupted phase says in `aborted`.
pub const WHY: &str = "interrupted (SIGINT): the report holds what was measured until then";

extern "C" fn on_sigint(_: libc::c_int) {
    // An atomic store: async-signal-safe.
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Installs the SIGINT handler (once, in the tool's own process, not in
/// its openers).
pub fn install() -> std::io::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_sigint),
        // SA_RESTART: blocking calls of the run go on; SA_RESETHAND: the
        // second Ctrl-C gets the default action.
        SaFlags::SA_RESTART | SaFlags::SA_RESETHAND,
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is
    // async-signal-safe; no other SIGINT handler is replaced.
    unsafe { sigaction(Signal::SIGINT, &action) }
        .map(drop)
        .map_err(std::io::Error::from)
}

/// True once a SIGINT arrived.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// `Some(WHY)` once a SIGINT arrived: for a phase's `aborted`.
pub fn aborted() -> Option<String> {
    requested().then(|| WHY.to_string())
}
