//! Root-only Unix sockets for the agent's local control planes (the
//! journal export, the quarantine and the container hook sockets).

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;

/// Binds `path` for its owner only: a socket file left there (stale: the
/// caller made sure nobody serves it) is replaced, the socket is mode 0600
/// and nonblocking (see [`wait_for_client`]).
pub fn bind_private(path: &Path) -> io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Sleeps in the kernel until a client connects to `listener` or
/// `timeout_ms` passes: an accept loop that checks a stop flag between
/// waits costs nothing on an idle node.
pub fn wait_for_client(listener: &UnixListener, timeout_ms: i32) {
    let mut p = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, timeout_ms) };
}

/// A socket served by a thread of its own: dropping it sets the stop flag
/// the thread checks, joins it, and removes the socket file.
#[derive(Debug)]
pub struct Served {
    path: std::path::PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    /// Binds `path` ([`bind_private`]) and runs `serve(listener, stop)` on
    /// a thread named `name`; `serve` returns once `stop` is set.
    pub fn spawn(
        path: &Path,
        name: &str,
        serve: impl FnOnce(UnixListener, std::sync::Arc<std::sync::atomic::AtomicBool>) + Send + 'static,
    ) -> io::Result<Self> {
        let listener = bind_private(path)?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || serve(listener, s))?;
        Ok(Self {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    use super::*;

    #[test]
    fn a_private_socket_is_the_owners_only_and_replaces_a_stale_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        std::fs::write(&path, b"stale").unwrap();
        let served = Served::spawn(&path, "t", |_listener, stop| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        })
        .unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        drop(served);
        assert!(!path.exists(), "the socket goes with the server");
    }
}
