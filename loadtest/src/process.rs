//! Child processes of a run (responders, scanner services, openers): start
//! with a bounded wait for readiness, stop with a bounded wait, and their
//! CPU time and peak memory from `/proc`.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Why a child could not be started or did not become ready.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("starting {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} exited before it was ready ({status}){log}")]
    Exited {
        what: String,
        status: String,
        log: String,
    },
    #[error("{what} not ready after {secs} s{log}")]
    NotReady {
        what: String,
        secs: u64,
        log: String,
    },
}

/// Makes the child get SIGTERM if this tool dies first (even by
/// SIGKILL), so that no responder, scanner service or opener outlives a
/// run. The signal follows the thread that spawned the child: spawn from
/// a thread that lives as long as the run (the main thread).
///
/// The child also gets a process group of its own: a Ctrl-C at the
/// terminal reaches the tool alone, which then stops its children in
/// order and writes a partial report ([`crate::interrupt`]).
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls prctl, which is async-signal-safe, allocates nothing and takes
    // no lock.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// The last lines of a log file, for error messages (empty if unreadable).
pub fn log_tail(log: Option<&Path>, lines: usize) -> String {
    let Some(text) = log.and_then(|p| std::fs::read_to_string(p).ok()) else {
        return String::new();
    };
    let all: Vec<&str> = text.lines().collect();
    let tail = all[all.len().saturating_sub(lines)..].join("\n");
    if tail.is_empty() {
        tail
    } else {
        format!("; its log ends with:\n{tail}")
    }
}

/// Spawns `cmd` and waits (at most `bound`) until `ready` exists; a child
/// that exits first or is late is killed and reported with its log tail.
pub fn spawn_ready(
    mut cmd: Command,
    what: &str,
    ready: &Path,
    bound: Duration,
    log: Option<&Path>,
) -> Result<Child, ChildError> {
    let _ = std::fs::remove_file(ready);
    let mut child = cmd.spawn().map_err(|source| ChildError::Spawn {
        what: what.to_string(),
        source,
    })?;
    let t = Instant::now();
    while !ready.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(ChildError::Exited {
                what: what.to_string(),
                status: status.to_string(),
                log: log_tail(log, 20),
            });
        }
        if t.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ChildError::NotReady {
                what: what.to_string(),
                secs: bound.as_secs(),
                log: log_tail(log, 20),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(child)
}

/// Stops a child process: SIGTERM, then SIGKILL past `bound`. Returns how it
/// ended (`had exited: …`, its exit status, or `killed after N s`), and
/// whether it stopped on its own.
pub fn stop_child(child: &mut Child, bound: Duration) -> (String, bool) {
    if let Ok(Some(status)) = child.try_wait() {
        return (format!("had exited: {status}"), true);
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let t = Instant::now();
    while t.elapsed() < bound {
        match child.try_wait() {
            Ok(Some(status)) => return (status.to_string(), true),
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return (format!("wait failed: {e}"), false),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    (format!("killed after {} s", bound.as_secs()), false)
}

/// CPU time and peak memory of one process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// User + system CPU seconds (all threads), from `/proc/PID/stat`.
    pub cpu_s: f64,
    /// Peak resident set (`VmHWM` of `/proc/PID/status`), KiB.
    pub peak_rss_kib: u64,
}

impl Usage {
    /// The CPU spent since `earlier`; the peak is this one's (it only grows).
    pub fn since(self, earlier: Usage) -> Usage {
        Usage {
            cpu_s: (self.cpu_s - earlier.cpu_s).max(0.0),
            peak_rss_kib: self.peak_rss_kib,
        }
    }
}

/// Clock ticks per second of `/proc/PID/stat` times.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime, in ticks, from the text of `/proc/PID/stat`. The command
/// name (field 2) may hold spaces and parentheses: fields are counted from
/// the last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid(4) ... utime(14) stime(15).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `VmHWM` in KiB from the text of `/proc/PID/status`.
pub fn parse_status_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The usage of `pid` now (`None` once it is gone).
pub fn usage_of(pid: u32) -> Option<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Usage {
        cpu_s: parse_stat_cpu_ticks(&stat)? as f64 / ticks_per_second(),
        peak_rss_kib: parse_status_hwm_kib(&status).unwrap_or(0),
    })
}

/// This process's usage now.
pub fn own_usage() -> Usage {
    usage_of(std::process::id()).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stat_and_status_fields_are_read() {
        let stat =
            "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 99 0 0";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(300));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
        let status = "Name:\tx\nVmPeak:\t  100 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_status_hwm_kib(status), Some(2048));
        assert_eq!(parse_status_hwm_kib("Name: x\n"), None);
    }

    #[test]
    fn our_own_usage_is_plausible() {
        let u = own_usage();
        assert!(u.peak_rss_kib > 0);
        assert!(u.cpu_s >= 0.0);
        let later = Usage {
            cpu_s: u.cpu_s + 1.0,
            peak_rss_kib: u.peak_rss_kib,
        };
        assert!((later.since(u).cpu_s - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_child_is_started_when_ready_and_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let ready = dir.path().join("ready");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("touch {}; sleep 30", ready.display()));
        let mut child = spawn_ready(cmd, "sleeper", &ready, Duration::from_secs(10), None).unwrap();
        assert!(usage_of(child.id()).is_some());
        let (how, clean) = stop_child(&mut child, Duration::from_secs(5));
        assert!(clean, "{how}");
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("exit 3");
        let e = spawn_ready(cmd, "quitter", &ready, Duration::from_secs(10), None).unwrap_err();
        assert!(e.to_string().contains("quitter exited"), "{e}");
    }
}
