//! The NRI plugin: containerd (≥ 1.7, NRI enabled; on by default in 2.x)
//! and CRI-O (≥ 1.26, `enable_nri`) call it before a container's
//! entrypoint runs.
//!
//! The plugin dials the runtime's NRI socket, registers, subscribes to
//! `StartContainer` (the container's init exists, `runc create` is done,
//! nothing of the container ran yet; the runtime waits for the answer
//! before it starts the entrypoint) and to `StopContainer` and
//! `RemoveContainer` (bookkeeping). At registration the runtime lists every
//! pod and container it runs (`Synchronize`): running ones not yet
//! protected are marked then, and all of them get their names.
//!
//! Everything runs on one thread: NRI serializes its calls to a plugin
//! (the runtime holds its lock across each), and marking takes
//! milliseconds. The runtime's request timeout (2 s by default) bounds
//! how long the plugin may hold a start; a plugin that times out is
//! disconnected by the runtime, and this one dials again.
//!
//! A container the plugin cannot protect (not an overlay, a refused
//! filesystem) starts, as with the OCI hook: the refusal is journaled.
//! To refuse every start while the agent is away, list the plugin in the
//! runtime's `default_validator.required_plugins` (docs/containers.md).

mod api;
pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_schemas::{ContainerRef, ContainerRuntime, PodRef};
use prost::Message as _;

use crate::error::ContainersError;
use crate::meta::{bounded_labels, ContainerMeta};
use crate::protect::Protector;
use portcullis_schemas::ContainerDiscovery as Discovery;
use wire::{Demux, Message, WireError, PLUGIN_CONN, RUNTIME_CONN, TYPE_REQUEST, TYPE_RESPONSE};

pub use api::Event;

/// The NRI socket containerd and CRI-O listen on by default.
pub const DEFAULT_SOCKET: &str = "/var/run/nri/nri.sock";

/// Settings of the plugin.
#[derive(Clone, Debug)]
pub struct NriConfig {
    /// The runtime's NRI socket.
    pub socket: PathBuf,
    /// The name the plugin registers as (what `required_plugins` lists).
    pub name: String,
    /// Two digits: plugins are called in ascending index order.
    pub index: String,
    /// The runtime the socket belongs to (names the containers).
    pub runtime: ContainerRuntime,
    /// How long to wait before dialing again after a failure.
    pub retry: Duration,
}

impl NriConfig {
    /// Checks the index (two digits, as NRI requires) and the name; an
    /// error names the setting (`plugin_index`, `plugin_name`).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.index.len() != 2 || !self.index.bytes().all(|b| b.is_ascii_digit()) {
            return Err((
                "plugin_index",
                format!("`{}` is not two digits (\"00\"..\"99\")", self.index),
            ));
        }
        if self.name.is_empty() || self.name.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err((
                "plugin_name",
                format!("`{}` is not a plugin name", self.name),
            ));
        }
        Ok(())
    }
}

/// The events the plugin subscribes to.
const EVENTS: [Event; 3] = [
    Event::StartContainer,
    Event::StopContainer,
    Event::RemoveContainer,
];

/// How often a blocked read wakes to look at the stop flag.
const POLL: Duration = Duration::from_millis(250);

/// Starts the plugin's thread. It dials `config.socket` until it answers
/// (a runtime started after the agent is picked up), serves it, and dials
/// again when the runtime goes away. It stops when `stop` turns true,
/// within 250 ms; closing the connection unregisters the plugin.
pub fn spawn(
    config: NriConfig,
    protector: Arc<Protector>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, ContainersError> {
    std::thread::Builder::new()
        .name("pc-nri".into())
        .spawn(move || dial_loop(&config, &protector, &stop))
        .map_err(|source| ContainersError::Io {
            what: "starting the NRI plugin thread".into(),
            source,
        })
}

/// The longest wait between dials after sessions that failed in a row.
const MAX_RETRY: Duration = Duration::from_secs(30);

fn dial_loop(config: &NriConfig, protector: &Arc<Protector>, stop: &AtomicBool) {
    let mut waiting_logged = false;
    let mut retry = config.retry;
    while !stop.load(Ordering::Relaxed) {
        match UnixStream::connect(&config.socket) {
            Ok(stream) => {
                waiting_logged = false;
                let mut session = Session::new(config, protector);
                let result = session.serve(stream, stop);
                // A session that got registered was healthy: dial again
                // soon. One refused or broken before that (the runtime
                // refusing the name, say) backs off, up to MAX_RETRY.
                retry = next_retry(session.registered, retry, config.retry);
                match result {
                    Ok(()) => {
                        tracing::info!(socket = %config.socket.display(), "NRI plugin stopped")
                    }
                    Err(e) => {
                        tracing::warn!(socket = %config.socket.display(), error = %e, next_dial = ?retry, "NRI connection ended; dialing again")
                    }
                }
            }
            Err(e) => {
                retry = config.retry;
                if !waiting_logged {
                    tracing::info!(socket = %config.socket.display(), error = %e, "waiting for the runtime's NRI socket");
                    waiting_logged = true;
                }
            }
        }
        sleep_unless(stop, retry);
    }
}

/// The wait before the next dial after a session ended.
fn next_retry(registered: bool, last: Duration, base: Duration) -> Duration {
    if registered {
        base
    } else {
        (last * 2).min(MAX_RETRY).max(base)
    }
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        std::thread::sleep(POLL.min(until.saturating_duration_since(Instant::now())));
    }
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("the runtime refused the registration: {0}")]
    Refused(String),
    #[error("undecodable {what}: {source}")]
    Decode {
        what: String,
        source: prost::DecodeError,
    },
    #[error("the runtime is shutting down")]
    Shutdown,
}

/// One connection to the runtime.
struct Session<'a> {
    config: &'a NriConfig,
    protector: &'a Arc<Protector>,
    /// Pods from `Synchronize` chunks, for their containers.
    pods: HashMap<String, api::PodSandbox>,
    /// Containers from `Synchronize` chunks not yet handled.
    synced: Vec<api::Container>,
    registered: bool,
}

impl<'a> Session<'a> {
    fn new(config: &'a NriConfig, protector: &'a Arc<Protector>) -> Self {
        Self {
            config,
            protector,
            pods: HashMap::new(),
            synced: Vec::new(),
            registered: false,
        }
    }

    fn serve(&mut self, mut stream: UnixStream, stop: &AtomicBool) -> Result<(), SessionError> {
        stream
            .set_read_timeout(Some(POLL))
            .map_err(WireError::from)?;
        stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .map_err(WireError::from)?;
        let register = api::RegisterPluginRequest {
            plugin_name: self.config.name.clone(),
            plugin_idx: self.config.index.clone(),
            nri_version: String::new(),
        };
        let req = api::Request {
            service: api::RUNTIME_SERVICE.into(),
            method: "RegisterPlugin".into(),
            payload: register.encode_to_vec(),
            timeout_nano: 0,
        };
        wire::send(
            &mut stream,
            &Message {
                conn: RUNTIME_CONN,
                stream: 1,
                kind: TYPE_REQUEST,
                flags: 0,
                payload: req.encode_to_vec(),
            },
        )?;
        let mut demux = Demux::default();
        while !stop.load(Ordering::Relaxed) {
            if !demux.fill(&mut stream)? {
                continue;
            }
            while let Some(m) = demux.next_message()? {
                match (m.conn, m.kind) {
                    (PLUGIN_CONN, TYPE_REQUEST) => {
                        let (reply, after) = self.handle(&m.payload)?;
                        wire::send(
                            &mut stream,
                            &Message {
                                conn: PLUGIN_CONN,
                                stream: m.stream,
                                kind: TYPE_RESPONSE,
                                flags: 0,
                                payload: reply.encode_to_vec(),
                            },
                        )?;
                        match after {
                            After::Nothing => {}
                            After::Synchronized => self.protect_synced(),
                            After::Shutdown => return Err(SessionError::Shutdown),
                        }
                    }
                    (RUNTIME_CONN, TYPE_RESPONSE) => {
                        let r = api::Response::decode(m.payload.as_slice()).map_err(|source| {
                            SessionError::Decode {
                                what: "RegisterPlugin response".into(),
                                source,
                            }
                        })?;
                        match r.status {
                            Some(s) if s.code != api::CODE_OK => {
                                return Err(SessionError::Refused(s.message))
                            }
                            _ => {
                                self.registered = true;
                                tracing::info!(name = %self.config.name, index = %self.config.index, socket = %self.config.socket.display(), "NRI plugin registered");
                            }
                        }
                    }
                    (conn, kind) => {
                        tracing::debug!(conn, kind, "NRI message ignored");
                    }
                }
            }
        }
        Ok(())
    }

    /// Answers one request of the runtime.
    fn handle(&mut self, payload: &[u8]) -> Result<(api::Response, After), SessionError> {
        let req = api::Request::decode(payload).map_err(|source| SessionError::Decode {
            what: "ttrpc request".into(),
            source,
        })?;
        let decode_err = |method: &str| {
            let method = method.to_string();
            move |source| SessionError::Decode {
                what: format!("{method} request"),
                source,
            }
        };
        if req.service != api::PLUGIN_SERVICE {
            return Ok((
                status(
                    api::CODE_UNIMPLEMENTED,
                    format!("no service {}", req.service),
                ),
                After::Nothing,
            ));
        }
        let method = req.method.as_str();
        let body = req.payload.as_slice();
        let (payload, after) = match method {
            "Configure" => {
                let c = api::ConfigureRequest::decode(body).map_err(decode_err(method))?;
                // Configured: the runtime took the registration.
                self.registered = true;
                tracing::info!(runtime = %c.runtime_name, version = %c.runtime_version, nri = %c.nri_version, request_timeout_ms = c.request_timeout, "NRI runtime configured the plugin");
                (
                    api::ConfigureResponse {
                        events: Event::mask(&EVENTS),
                    }
                    .encode_to_vec(),
                    After::Nothing,
                )
            }
            "Synchronize" => {
                let s = api::SynchronizeRequest::decode(body).map_err(decode_err(method))?;
                self.pods
                    .extend(s.pods.into_iter().map(|p| (p.id.clone(), p)));
                self.synced.extend(s.containers);
                let reply = api::SynchronizeResponse {
                    update: Vec::new(),
                    more: s.more,
                }
                .encode_to_vec();
                (
                    reply,
                    if s.more {
                        After::Nothing
                    } else {
                        After::Synchronized
                    },
                )
            }
            "StartContainer" => {
                let r = api::ContainerRequest::decode(body).map_err(decode_err(method))?;
                self.started(r.pod.as_ref(), r.container.as_ref());
                (Vec::new(), After::Nothing)
            }
            "StopContainer" | "RemoveContainer" => {
                self.protector.retire();
                (Vec::new(), After::Nothing)
            }
            // NRI before 0.12 delivers the container events this way.
            "StateChange" => {
                let e = api::StateChangeEvent::decode(body).map_err(decode_err(method))?;
                match Event::from_i32(e.event) {
                    Some(Event::StartContainer) => {
                        self.started(e.pod.as_ref(), e.container.as_ref())
                    }
                    Some(Event::StopContainer | Event::RemoveContainer) => {
                        self.protector.retire();
                    }
                    _ => {}
                }
                (Vec::new(), After::Nothing)
            }
            "Shutdown" => (Vec::new(), After::Shutdown),
            // Events the plugin did not subscribe to: an empty answer is
            // the "no adjustment" of every one of them.
            other => {
                tracing::debug!(
                    method = other,
                    "NRI request not subscribed to; answered empty"
                );
                (Vec::new(), After::Nothing)
            }
        };
        Ok((
            api::Response {
                status: Some(api::Status::default()),
                payload,
            },
            after,
        ))
    }

    /// `StartContainer`: mark before the runtime starts the entrypoint.
    fn started(&mut self, pod: Option<&api::PodSandbox>, c: Option<&api::Container>) {
        let Some(c) = c else {
            tracing::warn!("NRI StartContainer without a container");
            return;
        };
        if c.pid == 0 {
            tracing::warn!(container = %c.id, "NRI StartContainer without the init's pid; left to the /proc scan");
            return;
        }
        tracing::info!(container = %c.id, pid = c.pid, "NRI StartContainer");
        let meta = meta_of(pod, c);
        // The refusal, if any, is journaled by the protector; the runtime
        // starts the container either way (as with the OCI hook).
        let _ = self.protector.protect(
            ContainerRef::new(self.config.runtime, c.id.clone()),
            c.pid,
            None,
            Discovery::Hook,
            meta,
        );
    }

    /// After `Synchronize`: every running container of the runtime is
    /// protected (if the `/proc` scan missed it) and named.
    fn protect_synced(&mut self) {
        let synced = std::mem::take(&mut self.synced);
        let n = synced.len();
        for c in synced {
            if c.pid == 0 || !matches!(c.state, api::CONTAINER_RUNNING | api::CONTAINER_CREATED) {
                continue;
            }
            let meta = meta_of(self.pods.get(&c.pod_sandbox_id), &c);
            let _ = self.protector.protect(
                ContainerRef::new(self.config.runtime, c.id.clone()),
                c.pid,
                None,
                Discovery::Scan,
                meta,
            );
        }
        self.pods.clear();
        tracing::info!(containers = n, "NRI synchronized");
    }
}

/// What to do once the answer is sent.
enum After {
    Nothing,
    Synchronized,
    Shutdown,
}

fn status(code: i32, message: String) -> api::Response {
    api::Response {
        status: Some(api::Status { code, message }),
        payload: Vec::new(),
    }
}

/// A container's metadata from NRI: its name, the pod's name, namespace,
/// uid and labels, the image from NRI's `Image` or the CRI annotations.
fn meta_of(pod: Option<&api::PodSandbox>, c: &api::Container) -> ContainerMeta {
    let annotations: BTreeMap<String, String> = c
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut meta = ContainerMeta::from_annotations(&annotations);
    let nonempty = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
    if let Some(name) = nonempty(&c.name) {
        meta.name = Some(name);
    }
    if let Some(image) = &c.image {
        meta.image = meta.image.or_else(|| nonempty(&image.name));
        meta.image_digest = nonempty(&image.digest)
            .or_else(|| nonempty(&image.config_digest))
            .or(meta.image_digest);
    }
    if let Some(p) = pod.filter(|p| !p.name.is_empty()) {
        meta.pod = Some(PodRef {
            name: p.name.clone(),
            namespace: p.namespace.clone(),
            uid: nonempty(&p.uid),
        });
    }
    // The pod's labels (what policies' `pod_labels` match), then the
    // container's where the pod has none of that key.
    let mut labels: BTreeMap<String, String> = pod
        .map(|p| {
            p.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let from_annotations = std::mem::take(&mut meta.labels);
    for (k, v) in c.labels.iter().chain(&from_annotations) {
        labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    labels.retain(|k, _| !k.starts_with("io.kubernetes."));
    meta.labels = bounded_labels(labels);
    meta
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
