//! Container runtimes: where a container's metadata comes from.
//!
//! One module per runtime API behind [`Runtime`]. Marks never wait on a
//! runtime: metadata is resolved after the container is protected, within
//! a bound, and cached in the [`crate::Registry`].
//!
//! - [`engine::EngineApi`]: the Docker Engine API, which Docker serves and
//!   Podman serves too (its compatible API, `podman system service`).
//! - The OCI bundle's annotations ([`crate::ContainerMeta::from_annotations`])
//!   name the pod and image for CRI-O and containerd's CRI plugin.

pub mod engine;
pub mod http;
pub mod storage;

use std::path::PathBuf;
use std::time::Duration;

use portcullis_schemas::ContainerRuntime;

use crate::error::ContainersError;
use crate::meta::ContainerMeta;

/// A runtime that can describe its containers.
pub trait Runtime: Send + Sync + std::fmt::Debug {
    /// Which runtime this is.
    fn kind(&self) -> ContainerRuntime;
    /// The metadata of container `id`; `Ok(None)` when the runtime does not
    /// know it.
    fn inspect(&self, id: &str) -> Result<Option<ContainerMeta>, ContainersError>;
    /// `true` for a source read locally without waiting on the runtime
    /// (a file): the protector asks it synchronously, before it answers a
    /// hook, so the container's first accesses already carry its name.
    fn is_local(&self) -> bool {
        false
    }
}

/// The sockets looked for when `runtimes = ["auto"]`.
pub fn default_sockets(kind: ContainerRuntime) -> &'static [&'static str] {
    match kind {
        ContainerRuntime::Podman => &["/run/podman/podman.sock"],
        ContainerRuntime::Docker => &["/run/docker.sock", "/var/run/docker.sock"],
        ContainerRuntime::Containerd => &["/run/containerd/containerd.sock"],
        ContainerRuntime::CriO => &["/run/crio/crio.sock", "/var/run/crio/crio.sock"],
    }
}

/// The runtime clients for the given kinds, each on its configured socket
/// or, without one, the first default socket that exists. A runtime whose
/// socket is absent is left out (logged): its containers are still
/// protected, with the metadata their annotations carry. Podman's storage
/// list (under `podman_storage`) is always read when Podman is asked for.
pub fn connect(
    kinds: &[(ContainerRuntime, Option<PathBuf>)],
    podman_storage: &std::path::Path,
    timeout: Duration,
) -> Vec<Box<dyn Runtime>> {
    let mut out: Vec<Box<dyn Runtime>> = Vec::new();
    if kinds.iter().any(|(k, _)| *k == ContainerRuntime::Podman) {
        out.push(Box::new(storage::PodmanStorage::new(
            podman_storage.to_path_buf(),
        )));
    }
    for (kind, socket) in kinds {
        let socket = socket.clone().or_else(|| {
            default_sockets(*kind)
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
        });
        match (kind, socket) {
            (ContainerRuntime::Podman | ContainerRuntime::Docker, Some(socket)) => {
                tracing::info!(runtime = kind.as_str(), socket = %socket.display(), "container metadata from the engine API");
                out.push(Box::new(engine::EngineApi::new(*kind, socket, timeout)));
            }
            (ContainerRuntime::Containerd | ContainerRuntime::CriO, Some(socket)) => {
                tracing::info!(runtime = kind.as_str(), socket = %socket.display(), "container metadata from the OCI annotations (CRI)");
            }
            (_, None) => {
                tracing::info!(
                    runtime = kind.as_str(),
                    "no API socket: metadata from the OCI annotations only"
                );
            }
        }
    }
    out
}
