//! The agent's control socket: a root-only Unix socket on which the OCI
//! hook asks the agent to protect a container before it starts, and
//! `portcullis containers` lists what the agent protects.
//!
//! One JSON request line, one JSON response line, then the connection
//! closes. Every read and write is bounded by a timeout; the server checks
//! the peer's uid (`SO_PEERCRED`) besides the socket's 0600 mode.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use portcullis_interceptor::{local_socket, procfs};
use portcullis_schemas::{ContainerRef, ContainerRuntime};
use serde::{Deserialize, Serialize};

use crate::error::ContainersError;
use crate::oci::OciState;
use crate::protect::Protector;
use crate::registry::Container;
use portcullis_schemas::ContainerDiscovery as Discovery;

/// The default socket path.
pub const DEFAULT_SOCKET: &str = "/run/portcullis/agent.sock";
/// The largest request line.
const MAX_REQUEST: u64 = 4 * 1024 * 1024 + 1024;
/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 64;
/// How long the server waits for a request line.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A request to the agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// Protect this container (from an OCI hook) and answer once it is.
    Protect {
        state: OciState,
        /// The runtime the hook was installed for, if it says.
        runtime: Option<ContainerRuntime>,
    },
    /// What the agent protects.
    List,
}

/// The marks the agent's group holds (the kernel's count).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marks {
    pub filesystems: usize,
    pub mounts: usize,
    pub inodes: usize,
}

/// The agent's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum Response {
    Protected {
        container: Box<Container>,
    },
    Containers {
        containers: Vec<Container>,
        /// Gone containers whose metadata is still kept.
        recently_gone: usize,
        marks: Marks,
    },
    Error {
        message: String,
    },
}

/// Sends one request and reads the answer, all within `timeout`.
pub fn request(
    socket: &Path,
    req: &Request,
    timeout: Duration,
) -> Result<Response, ContainersError> {
    let what = || format!("agent control socket {}", socket.display());
    let io = |source| ContainersError::Io {
        what: what(),
        source,
    };
    let mut s = UnixStream::connect(socket).map_err(io)?;
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_vec(req).map_err(|e| ContainersError::Invalid {
        what: what(),
        message: e.to_string(),
    })?;
    line.push(b'\n');
    s.write_all(&line).map_err(io)?;
    let mut answer = String::new();
    match BufReader::new(s.take(MAX_REQUEST)).read_line(&mut answer) {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            return Err(ContainersError::Timeout {
                what: what(),
                timeout,
            })
        }
        Err(e) => return Err(io(e)),
    }
    serde_json::from_str(&answer).map_err(|e| ContainersError::Invalid {
        what: what(),
        message: format!("bad answer: {e}"),
    })
}

/// The names of the agent's policies that select a container (its
/// reference and labels), for `portcullis containers`.
pub type PolicyNames = Arc<
    dyn Fn(&ContainerRef, &std::collections::BTreeMap<String, String>) -> Vec<String> + Send + Sync,
>;

/// The running server; dropping it stops accepting and removes the socket.
#[derive(Debug)]
pub struct ControlServer(local_socket::Served);

impl ControlServer {
    /// Binds `path` (its directory is created 0700; a stale socket nobody
    /// answers on is replaced) and serves on a thread of its own.
    pub fn start(
        path: &Path,
        protector: Arc<Protector>,
        policies: Option<PolicyNames>,
    ) -> Result<Self, ContainersError> {
        let io = |what: String| move |source| ContainersError::Io { what, source };
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io(format!("creating {}", dir.display())))?;
        }
        if path.exists() && UnixStream::connect(path).is_ok() {
            return Err(ContainersError::Invalid {
                what: format!("agent control socket {}", path.display()),
                message: "another agent is listening on it".into(),
            });
        }
        // Nobody answers on a socket file there: it is stale.
        let served = local_socket::Served::spawn(path, "pc-control", move |listener, stop| {
            accept_loop(listener, protector, policies, &stop)
        })
        .map_err(io(format!("serving {} (mode 0600)", path.display())))?;
        tracing::info!(socket = %path.display(), "agent control socket ready");
        Ok(Self(served))
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

fn accept_loop(
    listener: UnixListener,
    protector: Arc<Protector>,
    policies: Option<PolicyNames>,
    stop: &AtomicBool,
) {
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((conn, _)) => {
                if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                    tracing::warn!("control socket: too many connections; closing one");
                    continue;
                }
                active.fetch_add(1, Ordering::Relaxed);
                let p = protector.clone();
                let names = policies.clone();
                let a = active.clone();
                let spawned = std::thread::Builder::new()
                    .name("pc-control-conn".into())
                    .spawn(move || {
                        if let Err(e) = serve(conn, &p, names.as_ref()) {
                            tracing::warn!(error = %e, "control socket request failed");
                        }
                        a.fetch_sub(1, Ordering::Relaxed);
                    });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::Relaxed);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                local_socket::wait_for_client(&listener, 250);
            }
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn peer_uid(conn: &UnixStream) -> std::io::Result<u32> {
    use std::os::fd::AsFd;
    procfs::peer_credentials(conn.as_fd()).map(|c| c.uid)
}

fn serve(
    conn: UnixStream,
    protector: &Protector,
    policies: Option<&PolicyNames>,
) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(READ_TIMEOUT))?;
    conn.set_write_timeout(Some(READ_TIMEOUT))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let uid = peer_uid(&conn)?;
    // The request line is read first, whoever asks (bounded in size and
    // time): a refusal sent before it would meet a client still writing,
    // which then sees a broken pipe instead of the answer.
    let mut line = String::new();
    BufReader::new((&conn).take(MAX_REQUEST)).read_line(&mut line)?;
    let response = if uid != 0 && uid != me {
        tracing::warn!(
            uid,
            "control socket: a request from a user other than root refused"
        );
        Response::Error {
            message: format!("uid {uid} may not use the agent's control socket"),
        }
    } else {
        match serde_json::from_str::<Request>(&line) {
            Ok(req) => handle(req, protector, policies),
            Err(e) => Response::Error {
                message: format!("bad request: {e}"),
            },
        }
    };
    let mut out = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
    out.push(b'\n');
    (&conn).write_all(&out)
}

fn handle(req: Request, protector: &Protector, policies: Option<&PolicyNames>) -> Response {
    match req {
        Request::List => {
            let marks = protector.fanotify().mark_counts().unwrap_or_default();
            let registry = protector.registry();
            let mut containers = registry.running();
            if let Some(names) = policies {
                for c in &mut containers {
                    c.policies = names(&c.reference(), &c.meta.labels);
                }
            }
            Response::Containers {
                containers,
                recently_gone: registry.sizes().1,
                marks: Marks {
                    filesystems: marks.filesystems,
                    mounts: marks.mounts,
                    inodes: marks.inodes,
                },
            }
        }
        Request::Protect { state, runtime } => {
            tracing::info!(container = %state.id, pid = ?state.pid, "protect request from an OCI hook");
            let Some(pid) = state.pid.filter(|p| *p > 0) else {
                return Response::Error {
                    message: format!("container {}: the OCI state has no pid (is the hook in the createRuntime stage?)", state.id),
                };
            };
            let bundle = state.bundle();
            let annotations = bundle.annotations;
            let container = ContainerRef::new(
                procfs::container_of(pid)
                    .filter(|c| c.id == state.id)
                    .map(|c| c.runtime)
                    .or_else(|| runtime_from_annotations(&annotations))
                    .or(runtime)
                    .unwrap_or(ContainerRuntime::Podman),
                state.id,
            );
            match protector.protect(
                container,
                pid,
                bundle.root,
                Discovery::Hook,
                crate::ContainerMeta::from_annotations(&annotations),
            ) {
                Ok(container) => Response::Protected {
                    container: Box::new(container),
                },
                Err(e) => Response::Error {
                    message: e.to_string(),
                },
            }
        }
    }
}

/// The runtime that wrote a bundle, from its annotations.
pub fn runtime_from_annotations(
    a: &std::collections::BTreeMap<String, String>,
) -> Option<ContainerRuntime> {
    if a.get("io.container.manager").map(String::as_str) == Some("libpod") {
        Some(ContainerRuntime::Podman)
    } else if a.keys().any(|k| k.starts_with("io.kubernetes.cri-o.")) {
        Some(ContainerRuntime::CriO)
    } else if a.keys().any(|k| k.starts_with("io.kubernetes.cri.")) {
        Some(ContainerRuntime::Containerd)
    } else {
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_are_tagged_json() {
        let r = serde_json::to_string(&Request::List).unwrap();
        assert_eq!(r, r#"{"request":"list"}"#);
        let e: Response = serde_json::from_str(r#"{"response":"error","message":"x"}"#).unwrap();
        assert_eq!(
            e,
            Response::Error {
                message: "x".into()
            }
        );
    }

    #[test]
    fn runtime_is_told_by_the_annotations() {
        let m = |k: &str, v: &str| [(k.to_string(), v.to_string())].into_iter().collect();
        assert_eq!(
            runtime_from_annotations(&m("io.container.manager", "libpod")),
            Some(ContainerRuntime::Podman)
        );
        assert_eq!(
            runtime_from_annotations(&m("io.kubernetes.cri-o.Name", "x")),
            Some(ContainerRuntime::CriO)
        );
        assert_eq!(
            runtime_from_annotations(&m("io.kubernetes.cri.container-type", "x")),
            Some(ContainerRuntime::Containerd)
        );
        assert_eq!(runtime_from_annotations(&m("a", "b")), None);
    }
}
