//! The reader thread: fanotify fd -> [`ReaderMsg`]s.
//!
//! It never opens a path and never blocks on anything but `poll(2)` on the
//! group fd and its stop eventfd, and `read(2)` of the (non-blocking) group
//! fd. Everything slower happens behind the sink.

use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use fanotify::low_level as fan;
use portcullis_schemas::AccessKind;

use crate::error::InterceptError;
use crate::group::{Fanotify, PERM_EVENTS};
use crate::sys;
use crate::ticket::Ticket;

/// Read buffer size: up to ~2700 events per `read(2)`.
const BUF_BYTES: usize = 64 * 1024;
/// Reads per wake-up before the stop fd is polled again.
const READS_PER_ROUND: usize = 16;
/// Back-off after a read error other than EAGAIN/EINTR (e.g. EMFILE).
const ERROR_BACKOFF_MS: i32 = 10;

/// One intercepted access.
#[derive(Debug)]
pub struct Intercepted {
    pub ticket: Ticket,
    pub pid: u32,
    pub kind: AccessKind,
    /// When the reader read the event.
    pub received: Instant,
}

/// What the reader hands to its sink.
#[derive(Debug)]
pub enum ReaderMsg {
    Event(Intercepted),
    /// `FAN_Q_OVERFLOW`: events were lost (and the kernel allowed them).
    Overflow,
}

/// The running reader thread. Dropping it stops and joins it, like
/// [`ReaderHandle::stop`].
#[derive(Debug)]
pub struct ReaderHandle {
    stop: Arc<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl ReaderHandle {
    /// Stop the thread (via the eventfd it polls) and join it.
    ///
    /// Events still queued in the kernel stay queued: they are allowed when
    /// the last `Arc<Fanotify>` (and with it the group fd) is dropped.
    /// Tickets held by the sink are dropped with it (answering their
    /// fallback) when the thread ends.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        if let Err(e) = sys::eventfd_signal(self.stop.as_fd()) {
            tracing::error!(error = %e, "cannot signal the fanotify reader to stop");
        }
        if thread.join().is_err() {
            tracing::error!("the fanotify reader thread panicked");
        }
    }
}

impl Drop for ReaderHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Spawn the reader thread `portcullis-fanotify-reader`.
///
/// It `poll`s the group fd and a stop eventfd and reads events in 64 KiB
/// batches (EAGAIN/EINTR handled; other read errors are logged and retried
/// after a short back-off). For each event:
/// - a metadata version other than `FANOTIFY_METADATA_VERSION` (3) is logged
///   as an error and the rest of that batch is abandoned (it cannot be
///   parsed);
/// - `FAN_Q_OVERFLOW` -> `sink(ReaderMsg::Overflow)`;
/// - `pid == own_pid` -> answered ALLOW at once (permission events) and the
///   fd closed, never reaching the sink;
/// - otherwise `sink(ReaderMsg::Event(..))`. The kind is `Exec` for
///   `FAN_OPEN_EXEC(_PERM)`, `CloseWrite` for `FAN_CLOSE_WRITE`, else `Open`.
///   A notification event whose mask merges an open and a close-write (the
///   kernel merges queued notifications) is delivered as two messages sharing
///   the fd: the open first.
///
/// **The sink must not block**: the reader is the only thing between the
/// kernel and every waiting opener (including this process' own opens).
/// Bridge into actors with `try_send` on a bounded channel and, when it is
/// full, answer the ticket at once. A panicking sink is caught and logged;
/// the ticket it held is dropped, which answers its fallback.
pub fn spawn_reader(
    fan: Arc<Fanotify>,
    own_pid: u32,
    sink: Box<dyn FnMut(ReaderMsg) + Send>,
) -> Result<ReaderHandle, InterceptError> {
    let stop = Arc::new(sys::eventfd().map_err(|source| InterceptError::Reader {
        op: "eventfd",
        source,
    })?);
    let thread_stop = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("portcullis-fanotify-reader".into())
        .spawn(move || run(fan, thread_stop, own_pid, sink))
        .map_err(|source| InterceptError::Reader {
            op: "spawn thread",
            source,
        })?;
    Ok(ReaderHandle {
        stop,
        thread: Some(thread),
    })
}

fn run(
    fan: Arc<Fanotify>,
    stop: Arc<OwnedFd>,
    own_pid: u32,
    mut sink: Box<dyn FnMut(ReaderMsg) + Send>,
) {
    // u64 storage keeps the buffer aligned for the event headers.
    let mut storage = vec![0u64; BUF_BYTES / 8];
    tracing::debug!(own_pid, "fanotify reader started");
    'outer: loop {
        let ready = match sys::poll(&[fan.group_fd(), stop.as_fd()], -1) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::error!(error = %e, "poll on the fanotify fd failed");
                backoff(&stop);
                continue;
            }
        };
        if ready[1].readable || ready[1].invalid {
            break;
        }
        if ready[0].invalid {
            tracing::error!("the fanotify fd is not open; reader exits");
            break;
        }
        if !ready[0].readable {
            continue;
        }
        for _ in 0..READS_PER_ROUND {
            // The u64 storage, viewed as bytes.
            let buf = as_bytes_mut(&mut storage);
            let n = match sys::read(fan.group_fd(), buf) {
                Ok(0) => continue 'outer,
                Ok(n) => n,
                Err(e) => match e.raw_os_error() {
                    Some(libc::EAGAIN) => continue 'outer,
                    Some(libc::EINTR) => continue,
                    _ => {
                        tracing::warn!(error = %e, "read from the fanotify fd failed");
                        backoff(&stop);
                        continue 'outer;
                    }
                },
            };
            let received = Instant::now();
            dispatch(&fan, own_pid, &buf[..n], received, &mut sink);
        }
    }
    tracing::debug!("fanotify reader stopped");
}

fn as_bytes_mut(storage: &mut [u64]) -> &mut [u8] {
    let len = std::mem::size_of_val(storage);
    // SAFETY: u8 has no alignment requirement and every bit pattern is a
    // valid u8; the slice covers exactly the storage's bytes and borrows it
    // mutably for its lifetime.
    unsafe { std::slice::from_raw_parts_mut(storage.as_mut_ptr().cast::<u8>(), len) }
}

/// Wait a little (on the stop fd only, so a stop is still noticed at once).
fn backoff(stop: &OwnedFd) {
    let _ = sys::poll(&[stop.as_fd()], ERROR_BACKOFF_MS);
}

fn dispatch(
    fan: &Arc<Fanotify>,
    own_pid: u32,
    buf: &[u8],
    received: Instant,
    sink: &mut Box<dyn FnMut(ReaderMsg) + Send>,
) {
    for ev in sys::EventIter::new(buf) {
        if ev.vers != fan::FANOTIFY_METADATA_VERSION {
            tracing::error!(
                got = ev.vers,
                expected = fan::FANOTIFY_METADATA_VERSION,
                "fanotify metadata version mismatch; abandoning this batch"
            );
            return;
        }
        if ev.mask & fan::FAN_Q_OVERFLOW != 0 {
            deliver(sink, ReaderMsg::Overflow);
            if ev.fd < 0 {
                continue;
            }
        }
        if ev.fd < 0 {
            tracing::warn!(
                mask = format_args!("{:#x}", ev.mask),
                pid = ev.pid,
                "fanotify event without an fd"
            );
            continue;
        }
        // SAFETY: the kernel installed this fd in our table for this event;
        // nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(ev.fd) };
        let pid = u32::try_from(ev.pid).unwrap_or(0);
        let is_perm = ev.mask & PERM_EVENTS != 0;
        if pid == own_pid {
            if is_perm {
                if let Err(e) = fan.respond(ev.fd, true) {
                    tracing::warn!(error = %e, "cannot answer our own access");
                }
            }
            drop(fd);
            continue;
        }
        let fd = Arc::new(fd);
        for kind in kinds(ev.mask) {
            let ticket = Ticket::new(Arc::clone(fan), Arc::clone(&fd), ev.mask);
            deliver(
                sink,
                ReaderMsg::Event(Intercepted {
                    ticket,
                    pid,
                    kind,
                    received,
                }),
            );
            if is_perm {
                // A permission event is one access: exactly one ticket.
                break;
            }
        }
    }
}

fn deliver(sink: &mut Box<dyn FnMut(ReaderMsg) + Send>, msg: ReaderMsg) {
    if catch_unwind(AssertUnwindSafe(|| sink(msg))).is_err() {
        tracing::error!("the fanotify reader sink panicked; its ticket answered its fallback");
    }
}

/// The access kinds in one event mask, open/exec before close-write.
fn kinds(mask: u64) -> impl Iterator<Item = AccessKind> {
    let exec = mask & (fan::FAN_OPEN_EXEC_PERM | fan::FAN_OPEN_EXEC) != 0;
    let open = mask & (fan::FAN_OPEN_PERM | fan::FAN_OPEN | fan::FAN_ACCESS_PERM) != 0;
    let close_write = mask & fan::FAN_CLOSE_WRITE != 0;
    let first = if exec {
        Some(AccessKind::Exec)
    } else if open || !close_write {
        Some(AccessKind::Open)
    } else {
        None
    };
    first
        .into_iter()
        .chain(close_write.then_some(AccessKind::CloseWrite))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(mask: u64) -> Vec<AccessKind> {
        kinds(mask).collect()
    }

    #[test]
    fn kinds_from_masks() {
        use AccessKind::*;
        assert_eq!(k(fan::FAN_OPEN_PERM), vec![Open]);
        assert_eq!(k(fan::FAN_OPEN_EXEC_PERM), vec![Exec]);
        assert_eq!(k(fan::FAN_OPEN_EXEC_PERM | fan::FAN_OPEN_PERM), vec![Exec]);
        assert_eq!(k(fan::FAN_OPEN | fan::FAN_OPEN_EXEC), vec![Exec]);
        assert_eq!(k(fan::FAN_CLOSE_WRITE), vec![CloseWrite]);
        assert_eq!(
            k(fan::FAN_OPEN | fan::FAN_CLOSE_WRITE),
            vec![Open, CloseWrite]
        );
        assert_eq!(k(fan::FAN_ACCESS), vec![Open]);
    }
}
