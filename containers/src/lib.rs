//! Container awareness for portcullis (DESIGN.md §2b).
//!
//! - [`Protector`]: marks each container's root overlay (one filesystem
//!   mark) and its volumes (mount marks), from the runtime's hook, a `/proc`
//!   scan at start, and a watcher of the host's mount table;
//! - [`Registry`]: the protected containers and their metadata, with a
//!   bounded memory of the ones that went;
//! - [`runtime`]: where metadata comes from (the Docker Engine API that
//!   Docker and Podman serve; OCI annotations for CRI runtimes);
//! - [`nri`]: the NRI plugin containerd and CRI-O call before a container
//!   starts;
//! - [`control`]: the agent's root-only control socket, which the OCI hook
//!   ([`OciState`]) and `portcullis containers` use.
//!
//! Nothing here runs on the open() hot path: marking and discovery run on
//! their own threads; the hot path only reads the registry.
#![cfg(target_os = "linux")]

pub mod control;
pub mod discover;
mod error;
mod meta;
pub mod nri;
mod oci;
mod protect;
mod registry;
pub mod runtime;
pub mod skip;
pub mod spool;

pub use error::ContainersError;
pub use meta::{bounded_labels, ContainerMeta, MAX_LABELS, MAX_LABEL_LEN};
pub use oci::{bundle_annotations, read_bundle, Bundle, OciState};
pub use portcullis_schemas::ContainerDiscovery as Discovery;
pub use protect::{layer_dirs, ContainerEvent, Observer, Protector, ProtectorConfig};
pub use registry::{now_ms, Container, Labels, Registry};
pub use skip::{SkipDecision, SkipRule, SkipRules};
