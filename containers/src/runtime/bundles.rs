//! The OCI bundles a runtime keeps on the node while a container runs:
//! containerd's under `<state>/io.containerd.runtime.v2.task/<namespace>/<id>`,
//! CRI-O's under `<storage run root>/overlay-containers/<id>/userdata`.
//! Their `config.json` carries the CRI annotations (container, pod and
//! image names), so a container found by the `/proc` scan (one that ran
//! before the agent, or a runtime without NRI) is named without asking the
//! runtime's API. A local read: the protector asks it while marking.

use std::path::{Path, PathBuf};

use portcullis_schemas::ContainerRuntime;

use super::Runtime;
use crate::error::ContainersError;
use crate::meta::ContainerMeta;
use crate::oci::bundle_annotations;

/// containerd's default state directory.
pub const CONTAINERD_STATE: &str = "/run/containerd";
/// CRI-O's (c/storage) default run root.
pub const CRIO_RUN_ROOT: &str = "/run/containers/storage";

/// A runtime's bundle directories.
#[derive(Debug)]
pub struct Bundles {
    kind: ContainerRuntime,
    base: PathBuf,
}

impl Bundles {
    /// containerd's bundles under its state directory `state`.
    pub fn containerd(state: &Path) -> Self {
        Self {
            kind: ContainerRuntime::Containerd,
            base: state.join("io.containerd.runtime.v2.task"),
        }
    }

    /// CRI-O's bundles under its storage run root.
    pub fn crio(run_root: &Path) -> Self {
        Self {
            kind: ContainerRuntime::CriO,
            base: run_root.join("overlay-containers"),
        }
    }

    /// The bundle of container `id`, if it is there. containerd nests
    /// bundles by namespace (`k8s.io` for CRI, `moby`, `default`, ...).
    pub fn bundle_of(&self, id: &str) -> Option<PathBuf> {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return None;
        }
        match self.kind {
            ContainerRuntime::CriO => Some(self.base.join(id).join("userdata"))
                .filter(|b| b.join("config.json").is_file()),
            _ => std::fs::read_dir(&self.base)
                .ok()?
                .flatten()
                .map(|ns| ns.path().join(id))
                .find(|b| b.join("config.json").is_file()),
        }
    }
}

impl Runtime for Bundles {
    fn kind(&self) -> ContainerRuntime {
        self.kind
    }

    fn inspect(&self, id: &str) -> Result<Option<ContainerMeta>, ContainersError> {
        let Some(bundle) = self.bundle_of(id) else {
            return Ok(None);
        };
        let meta = ContainerMeta::from_annotations(&bundle_annotations(&bundle)?);
        Ok(Some(meta).filter(|m| !m.is_empty()))
    }

    fn is_local(&self) -> bool {
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_containerd_bundle_in_any_namespace_and_reads_its_annotations() {
        let state = tempfile::tempdir().unwrap();
        let b = state
            .path()
            .join("io.containerd.runtime.v2.task/k8s.io/abc");
        std::fs::create_dir_all(&b).unwrap();
        std::fs::create_dir_all(state.path().join("io.containerd.runtime.v2.task/default"))
            .unwrap();
        std::fs::write(
            b.join("config.json"),
            r#"{"annotations":{"io.kubernetes.cri.container-name":"app","io.kubernetes.cri.image-name":"localhost/x:1","io.kubernetes.cri.sandbox-name":"web-0","io.kubernetes.cri.sandbox-namespace":"shop"}}"#,
        )
        .unwrap();
        let r = Bundles::containerd(state.path());
        let m = r.inspect("abc").unwrap().unwrap();
        assert_eq!(m.name.as_deref(), Some("app"));
        assert_eq!(m.image.as_deref(), Some("localhost/x:1"));
        assert_eq!(m.pod.unwrap().namespace, "shop");
        assert_eq!(r.inspect("nope").unwrap(), None);
        assert_eq!(r.bundle_of("../abc"), None);
    }

    #[test]
    fn a_broken_bundle_names_its_file() {
        let run = tempfile::tempdir().unwrap();
        let b = run.path().join("overlay-containers/abc/userdata");
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(b.join("config.json"), "{").unwrap();
        let e = Bundles::crio(run.path())
            .inspect("abc")
            .unwrap_err()
            .to_string();
        assert!(e.contains("userdata/config.json"), "{e}");
    }
}
