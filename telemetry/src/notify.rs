//! systemd's service notifications (`sd_notify(3)`): `READY=1` once the
//! process does its job, `STOPPING=1` when it stops, `STATUS=` lines, and
//! the watchdog (`WATCHDOG=1` at least every `WatchdogSec`), as datagrams
//! on the socket named by `NOTIFY_SOCKET`.
//!
//! Without `NOTIFY_SOCKET` (not started by systemd with `Type=notify`)
//! there is no [`Notifier`] and nothing is sent. The agent's watchdog is
//! pinged from the Enforcer's tick (docs/deployment.md): the actor that
//! answers every open, so a stuck Enforcer stops the pings and systemd
//! restarts the agent.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `NOTIFY_SOCKET` or `WATCHDOG_USEC` unusable.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET: `{value}`: {message}")]
    Socket { value: String, message: String },
    #[error("WATCHDOG_USEC: `{value}` is not a positive number of microseconds")]
    Watchdog { value: String },
}

/// The notification socket of the service manager.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// Where it points, for logs.
    name: String,
    /// `WATCHDOG_USEC` when it is meant for this process.
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From the environment systemd gives a `Type=notify` service: `None`
    /// without `NOTIFY_SOCKET`.
    pub fn from_env() -> Result<Option<Arc<Self>>, NotifyError> {
        let Some(value) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(None);
        };
        let value = value.to_string_lossy().into_owned();
        let watchdog = watchdog_from(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        )?;
        Self::open(&value, watchdog).map(|n| Some(Arc::new(n)))
    }

    /// A notifier for the socket `value` (a path, or `@name` for an
    /// abstract socket).
    pub fn open(value: &str, watchdog: Option<Duration>) -> Result<Self, NotifyError> {
        let err = |message: String| NotifyError::Socket {
            value: value.to_string(),
            message,
        };
        let addr = if let Some(name) = value.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt as _;
            SocketAddr::from_abstract_name(name.as_bytes()).map_err(|e| err(e.to_string()))?
        } else if value.starts_with('/') {
            SocketAddr::from_pathname(value).map_err(|e| err(e.to_string()))?
        } else {
            return Err(err("neither an absolute path nor an @abstract name".into()));
        };
        let socket = UnixDatagram::unbound().map_err(|e| err(e.to_string()))?;
        // A manager that does not read must never block the sender (the
        // watchdog is pinged from the Enforcer's tick).
        socket
            .set_nonblocking(true)
            .map_err(|e| err(e.to_string()))?;
        Ok(Self {
            socket,
            addr,
            name: value.to_string(),
            watchdog,
        })
    }

    /// Sends one notification (newline-separated `KEY=VALUE` lines).
    pub fn send(&self, state: &str) -> std::io::Result<()> {
        self.socket
            .send_to_addr(state.as_bytes(), &self.addr)
            .map(|_| ())
    }

    fn send_logged(&self, state: &str) {
        if let Err(e) = self.send(state) {
            tracing::warn!(socket = %self.name, error = %e, state, "systemd notification not sent");
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.send_logged(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// `STOPPING=1` with a status line.
    pub fn stopping(&self, status: &str) {
        self.send_logged(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
    }

    /// The watchdog, when the service manager asked for one
    /// (`WatchdogSec=`).
    pub fn watchdog(self: &Arc<Self>) -> Option<Arc<Watchdog>> {
        let timeout = self.watchdog?;
        Some(Arc::new(Watchdog::new(Arc::clone(self), timeout)))
    }
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

/// `WATCHDOG_USEC`, unless `WATCHDOG_PID` names another process (the
/// variables were inherited from a parent).
fn watchdog_from(
    usec: Option<&str>,
    pid: Option<&str>,
    own: u32,
) -> Result<Option<Duration>, NotifyError> {
    let Some(usec) = usec else {
        return Ok(None);
    };
    if pid.is_some_and(|p| p.trim().parse::<u32>().ok() != Some(own)) {
        return Ok(None);
    }
    match usec.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(Some(Duration::from_micros(n))),
        _ => Err(NotifyError::Watchdog {
            value: usec.to_string(),
        }),
    }
}

/// Pings the watchdog at half its timeout, from whatever calls
/// [`tick`](Self::tick) often enough.
#[derive(Debug)]
pub struct Watchdog {
    notifier: Arc<Notifier>,
    every_ms: u64,
    started: Instant,
    /// Milliseconds since `started` of the last ping, plus one (0: never).
    last: AtomicU64,
}

impl Watchdog {
    fn new(notifier: Arc<Notifier>, timeout: Duration) -> Self {
        Self {
            notifier,
            every_ms: u64::try_from((timeout / 2).as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            started: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    /// The interval between pings.
    pub fn every(&self) -> Duration {
        Duration::from_millis(self.every_ms)
    }

    /// Sends `WATCHDOG=1` when the last ping is half a timeout old. A clock
    /// read and a load otherwise.
    pub fn tick(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < self.every_ms {
            return;
        }
        self.last.store(now, Ordering::Relaxed);
        if let Err(e) = self.notifier.send("WATCHDOG=1") {
            tracing::warn!(socket = %self.notifier.name, error = %e, "systemd watchdog ping not sent");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn listener() -> (tempfile::TempDir, UnixDatagram, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (dir, sock, path.display().to_string())
    }

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn ready_stopping_and_watchdog_reach_the_socket() {
        let (_dir, sock, path) = listener();
        let n = Arc::new(Notifier::open(&path, Some(Duration::from_millis(100))).unwrap());
        n.ready("protecting 2 mounts\nand more");
        assert_eq!(recv(&sock), "READY=1\nSTATUS=protecting 2 mounts and more");
        let w = n.watchdog().unwrap();
        assert_eq!(w.every(), Duration::from_millis(50));
        w.tick();
        assert_eq!(recv(&sock), "WATCHDOG=1");
        // Ticks within the interval send nothing.
        w.tick();
        w.tick();
        std::thread::sleep(Duration::from_millis(60));
        w.tick();
        assert_eq!(recv(&sock), "WATCHDOG=1");
        n.stopping("answering pending decisions");
        assert_eq!(
            recv(&sock),
            "STOPPING=1\nSTATUS=answering pending decisions"
        );
    }

    #[test]
    fn an_abstract_socket_works_too() {
        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("portcullis-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier::open(&format!("@{name}"), None).unwrap();
        n.ready("ok");
        assert_eq!(recv(&sock), "READY=1\nSTATUS=ok");
        assert!(Arc::new(n).watchdog().is_none());
    }

    #[test]
    fn bad_variables_are_named_and_a_foreign_watchdog_is_ignored() {
        let e = Notifier::open("relative/path", None).unwrap_err();
        assert!(
            e.to_string().starts_with("NOTIFY_SOCKET: `relative/path`"),
            "{e}"
        );
        let e = watchdog_from(Some("soon"), None, 7).unwrap_err();
        assert!(e.to_string().starts_with("WATCHDOG_USEC: `soon`"), "{e}");
        assert!(watchdog_from(Some("0"), None, 7).is_err());
        assert_eq!(
            watchdog_from(Some("30000000"), Some("7"), 7).unwrap(),
            Some(Duration::from_secs(30))
        );
        assert_eq!(watchdog_from(Some("30000000"), Some("8"), 7).unwrap(), None);
        assert_eq!(watchdog_from(None, Some("7"), 7).unwrap(), None);
    }

    #[test]
    fn a_manager_that_is_gone_does_not_block_or_panic() {
        let (dir, sock, path) = listener();
        let n = Arc::new(Notifier::open(&path, Some(Duration::from_millis(2))).unwrap());
        drop(sock);
        drop(dir);
        assert!(n.send("READY=1").is_err());
        n.ready("logged, not raised");
        n.watchdog().unwrap().tick();
    }
}
