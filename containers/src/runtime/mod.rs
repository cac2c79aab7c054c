//! Container runtimes: where a container's metadata comes from.
//!
//! One module per runtime API behind [`Runtime`]. Marks never wait on a
//! runtime: metadata is resolved after the container is protected, within
//! a bound, and cached in the [`crate::Registry`].
//!
//! - [`engine::EngineApi`]: the Docker Engine API, which Docker serves and
//!   Podman serves too (its compatible API, `podman system service`).
//! - [`bundles::Bundles`]: the OCI bundles containerd and CRI-O keep while a
//!   container runs; their CRI annotations
//!   ([`crate::ContainerMeta::from_annotations`]) name the container, pod
//!   and image. NRI ([`crate::nri`]) and the OCI hook hand the same
//!   annotations over as a container starts.

pub mod bundles;
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

/// Where the runtimes keep what the agent reads locally.
#[derive(Clone, Debug)]
pub struct LocalRoots {
    /// Podman's storage root (its container list).
    pub podman_storage: PathBuf,
    /// containerd's state directory (its running containers' bundles).
    pub containerd_state: PathBuf,
    /// CRI-O's storage run root (its running containers' bundles).
    pub crio_run_root: PathBuf,
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
/// protected, with the metadata their annotations carry. The local
/// sources (Podman's storage list, containerd's and CRI-O's bundles under
/// `local`) are always read for the runtimes asked for.
pub fn connect(
    kinds: &[(ContainerRuntime, Option<PathBuf>)],
    local: &LocalRoots,
    timeout: Duration,
) -> Vec<Box<dyn Runtime>> {
    let mut out: Vec<Box<dyn Runtime>> = Vec::new();
    let asked = |kind| kinds.iter().any(|(k, _)| *k == kind);
    if asked(ContainerRuntime::Podman) {
        out.push(Box::new(storage::PodmanStorage::new(
            local.podman_storage.clone(),
        )));
    }
    if asked(ContainerRuntime::Containerd) {
        out.push(Box::new(bundles::Bundles::containerd(
            &local.containerd_state,
        )));
    }
    if asked(ContainerRuntime::CriO) {
        out.push(Box::new(bundles::Bundles::crio(&local.crio_run_root)));
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
                tracing::info!(runtime = kind.as_str(), socket = %socket.display(), "container metadata from NRI and the bundles' CRI annotations");
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
