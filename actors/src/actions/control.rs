//! The quarantine's control socket: how `portcullis quarantine restore`
//! and `delete` reach a running agent, which does the change on its
//! Actions thread (never racing a store or a retention purge) and journals
//! it.
//!
//! The socket lives beside the journal, `<journal dir>/quarantine.sock`,
//! like the export socket: whoever holds the journal's lock serves it, so
//! it is replaced when stale and never shared by two agents. Mode 0600;
//! the server also checks the peer's uid (`SO_PEERCRED`: root, or the
//! agent's own user) and journals who asked (uid, login uid, pid).
//!
//! One JSON request line, one JSON response line, then the connection
//! closes. Reads and writes are bounded by timeouts; requests are served
//! one at a time.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix::Addr;
use portcullis_interceptor::{local_socket, procfs};
use portcullis_schemas::{EventBody, FilePath, Operator};
use serde::{Deserialize, Serialize};

use super::{Actions, ChangeQuarantine, QuarantineChange, RestoreTo};

/// The socket's file name inside the journal directory.
pub const QUARANTINE_SOCKET: &str = "quarantine.sock";
/// The largest request line.
const MAX_LINE: u64 = 64 * 1024;
/// How long the server waits for a request line, and a client for the
/// connection to take it.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a change may take on the Actions thread (a restore copies the
/// object, which may be large, after any detection queued before it).
pub const CHANGE_TIMEOUT: Duration = Duration::from_secs(120);

/// The file in the quarantine directory that names the socket of the
/// agent using it: a CLI whose configuration names another journal still
/// finds the agent (and never changes the quarantine behind its back).
pub const AGENT_HINT: &str = ".agent-socket";

/// `<journal dir>/quarantine.sock`.
pub fn socket_path(journal_dir: &Path) -> PathBuf {
    journal_dir.join(QUARANTINE_SOCKET)
}

/// Where an agent may serve this quarantine: the socket its hint names,
/// then the one beside `journal_dir`.
pub fn candidate_sockets(journal_dir: &Path, quarantine_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::with_capacity(2);
    if let Ok(text) = std::fs::read_to_string(quarantine_dir.join(AGENT_HINT)) {
        let named = PathBuf::from(text.trim_end_matches('\n'));
        if named.is_absolute() {
            out.push(named);
        }
    }
    let ours = socket_path(journal_dir);
    if !out.contains(&ours) {
        out.push(ours);
    }
    out
}

/// A change an operator asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    Restore {
        id: String,
        #[serde(default)]
        to: Option<FilePath>,
        #[serde(default)]
        replace: bool,
        #[serde(default)]
        keep_mode: bool,
    },
    Delete {
        id: String,
    },
}

/// The agent's answer: the event it journaled, or why nothing changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum Response {
    Done { event: Box<EventBody> },
    Error { message: String },
}

/// Why a client got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nobody serves the socket: no agent holds this journal.
    #[error("no agent answers on {path}")]
    NoAgent { path: PathBuf },
    #[error("the agent's quarantine socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the agent's quarantine socket {path}: bad answer: {message}")]
    BadAnswer { path: PathBuf, message: String },
}

/// Sends `req` to the agent serving `socket` and waits for its answer.
pub fn request(socket: &Path, req: &Request) -> Result<Response, ClientError> {
    let io = |source| ClientError::Io {
        path: socket.to_path_buf(),
        source,
    };
    let conn = match UnixStream::connect(socket) {
        Ok(c) => c,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ClientError::NoAgent {
                path: socket.to_path_buf(),
            })
        }
        Err(e) => return Err(io(e)),
    };
    conn.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    // The agent answers once the change is done (and journaled).
    conn.set_read_timeout(Some(CHANGE_TIMEOUT + IO_TIMEOUT))
        .map_err(io)?;
    let mut line = serde_json::to_vec(req).map_err(|e| io(std::io::Error::other(e)))?;
    line.push(b'\n');
    (&conn).write_all(&line).map_err(io)?;
    let mut answer = String::new();
    BufReader::new((&conn).take(MAX_LINE * 16))
        .read_line(&mut answer)
        .map_err(io)?;
    serde_json::from_str(&answer).map_err(|e| ClientError::BadAnswer {
        path: socket.to_path_buf(),
        message: e.to_string(),
    })
}

/// The agent's side; dropping it stops serving (a change in progress is
/// answered "stopping" at once; it still completes on the Actions thread)
/// and removes the socket and its hint.
#[derive(Debug)]
pub struct QuarantineServer {
    served: local_socket::Served,
    hint: Option<PathBuf>,
}

impl QuarantineServer {
    /// Binds `<journal dir>/quarantine.sock` (replacing a stale one: the
    /// caller holds the journal's lock), serves on a thread of its own, and
    /// names the socket in `<quarantine dir>/.agent-socket`.
    pub fn start(
        journal_dir: &Path,
        quarantine_dir: &Path,
        actions: Addr<Actions>,
    ) -> std::io::Result<Self> {
        let served = local_socket::Served::spawn(
            &socket_path(journal_dir),
            "pc-quarantine",
            move |listener, stop| accept_loop(&listener, &actions, &stop),
        )?;
        let hint = quarantine_dir.join(AGENT_HINT);
        let named = format!("{}\n", served.path().display());
        // The Actions thread may not have created the directory yet.
        let written = super::Quarantine::open(quarantine_dir)
            .map_err(std::io::Error::other)
            .and_then(|_| std::fs::write(&hint, named));
        let hint = match written {
            Ok(()) => Some(hint),
            Err(e) => {
                tracing::warn!(error = %e, hint = %hint.display(), "cannot name the quarantine socket in the quarantine directory: a CLI configured with another journal will not find this agent");
                None
            }
        };
        Ok(Self { served, hint })
    }

    pub fn path(&self) -> &Path {
        self.served.path()
    }
}

impl Drop for QuarantineServer {
    fn drop(&mut self) {
        // Only our own hint: another agent may use the directory since.
        if let Some(hint) = &self.hint {
            let ours = format!("{}\n", self.served.path().display());
            if std::fs::read_to_string(hint).is_ok_and(|t| t == ours) {
                let _ = std::fs::remove_file(hint);
            }
        }
    }
}

fn accept_loop(listener: &UnixListener, actions: &Addr<Actions>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((conn, _)) => {
                if let Err(e) = serve(&conn, actions, stop) {
                    tracing::warn!(error = %e, "quarantine socket: request failed");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                local_socket::wait_for_client(listener, 250);
            }
            Err(e) => {
                tracing::warn!(error = %e, "quarantine socket: accept failed");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn serve(conn: &UnixStream, actions: &Addr<Actions>, stop: &AtomicBool) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let cred = procfs::peer_credentials(conn.as_fd())?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    // The request line is read first, whoever asks (bounded in size and
    // time): a refusal sent before it would meet a client still writing,
    // which then sees a broken pipe instead of the answer.
    let mut line = String::new();
    BufReader::new(conn.take(MAX_LINE)).read_line(&mut line)?;
    let response = if cred.uid != 0 && cred.uid != me {
        tracing::warn!(
            uid = cred.uid,
            pid = cred.pid,
            "quarantine socket: a change asked by a user other than root refused"
        );
        Response::Error {
            message: format!("uid {} may not change the quarantine", cred.uid),
        }
    } else {
        match serde_json::from_str::<Request>(&line) {
            Err(e) => Response::Error {
                message: format!("bad request: {e}"),
            },
            Ok(req) => {
                let pid = u32::try_from(cred.pid).unwrap_or(0);
                let operator = Operator {
                    uid: cred.uid,
                    login_uid: procfs::login_uid(pid),
                    pid,
                };
                change(actions, req, operator, stop)
            }
        }
    };
    let mut out = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
    out.push(b'\n');
    let mut w = conn;
    w.write_all(&out)
}

fn change(
    actions: &Addr<Actions>,
    req: Request,
    operator: Operator,
    stop: &AtomicBool,
) -> Response {
    let change = match req {
        Request::Restore {
            id,
            to,
            replace,
            keep_mode,
        } => QuarantineChange::Restore {
            id,
            to: RestoreTo {
                to,
                replace,
                keep_mode,
            },
        },
        Request::Delete { id } => QuarantineChange::Delete { id },
    };
    tracing::info!(
        ?change,
        uid = operator.uid,
        pid = operator.pid,
        "quarantine change asked"
    );
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let msg = ChangeQuarantine {
        change,
        operator: Some(operator),
        reply: tx,
    };
    if actions.try_send(msg).is_err() {
        return Response::Error {
            message: "the agent's actions are busy or stopping; try again".into(),
        };
    }
    // In slices: a stopping agent does not wait for a long copy (the
    // shutdown joins this thread).
    let deadline = std::time::Instant::now() + CHANGE_TIMEOUT;
    let unsure = "the change may still happen: see `portcullis quarantine list` and the journal";
    loop {
        match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(Ok(event)) => {
                return Response::Done {
                    event: Box::new(event),
                }
            }
            Ok(Err(message)) => return Response::Error { message },
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Response::Error {
                    message: "the agent's actions stopped".into(),
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if stop.load(Ordering::Relaxed) {
                    return Response::Error {
                        message: format!("the agent is stopping; {unsure}"),
                    };
                }
                if std::time::Instant::now() >= deadline {
                    return Response::Error {
                        message: format!(
                            "no answer from the agent's actions within {CHANGE_TIMEOUT:?}; {unsure}"
                        ),
                    };
                }
            }
        }
    }
}
