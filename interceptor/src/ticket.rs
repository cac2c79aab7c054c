//! [`Ticket`]: the right (and the duty) to answer one intercepted event.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use crate::group::{Fanotify, PERM_EVENTS};

/// The right to answer one intercepted event. Owns the event fd.
///
/// A permission event that is never answered hangs its opener forever (the
/// kernel has no timeout), so dropping an unanswered ticket answers the
/// fallback ([`Ticket::set_fallback`], default ALLOW) and logs a warning.
pub struct Ticket {
    fan: Arc<Fanotify>,
    fd: Arc<OwnedFd>,
    mask: u64,
    answered: bool,
    fallback: bool,
}

impl Ticket {
    pub(crate) fn new(fan: Arc<Fanotify>, fd: Arc<OwnedFd>, mask: u64) -> Self {
        Self {
            fan,
            fd,
            mask,
            answered: false,
            fallback: true,
        }
    }

    /// The event fd: `fstat` / `pread` the content through it (never reopen
    /// the path). Reads through it generate no fanotify events
    /// (`FMODE_NONOTIFY`). The fd may outlive the ticket through a clone of
    /// the `Arc`, but the response is always written while the ticket holds
    /// it, so its number cannot be reused by another event before then.
    pub fn fd(&self) -> &Arc<OwnedFd> {
        &self.fd
    }

    /// The raw fanotify event mask (`FAN_OPEN_PERM`, `FAN_OPEN |
    /// FAN_CLOSE_WRITE`, ...).
    pub fn mask(&self) -> u64 {
        self.mask
    }

    /// `true` for a permission event: someone waits for [`Ticket::answer`].
    pub fn needs_response(&self) -> bool {
        self.mask & PERM_EVENTS != 0
    }

    /// Write the response (if one is needed) — exactly once. Consumes the
    /// ticket. For a notification event this is a no-op returning `Ok`.
    /// An error means the kernel refused the response (e.g. `ENOENT`: the
    /// event is no longer pending); it is not retried.
    pub fn answer(mut self, allow: bool) -> io::Result<()> {
        self.answered = true;
        if self.needs_response() {
            self.fan.respond(self.fd.as_raw_fd(), allow)
        } else {
            Ok(())
        }
    }

    /// What `Drop` answers if the ticket is dropped unanswered (a bug safety
    /// net). Default: allow.
    pub fn set_fallback(&mut self, allow: bool) {
        self.fallback = allow;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.answered || !self.needs_response() {
            return;
        }
        self.answered = true;
        let result = self.fan.respond(self.fd.as_raw_fd(), self.fallback);
        tracing::warn!(
            fd = self.fd.as_raw_fd(),
            mask = format_args!("{:#x}", self.mask),
            allow = self.fallback,
            ok = result.is_ok(),
            "permission event dropped unanswered; answered the fallback"
        );
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("fd", &self.fd.as_raw_fd())
            .field("mask", &format_args!("{:#x}", self.mask))
            .field("answered", &self.answered)
            .field("fallback", &self.fallback)
            .finish()
    }
}
