//! The OCI runtime state a hook receives on its standard input, and the
//! annotations of the container's bundle.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::ContainersError;

/// The largest state or `config.json` read (runtimes write a few KiB).
pub const MAX_STATE_BYTES: u64 = 4 * 1024 * 1024;

/// The state of a container as the OCI runtime spec defines it
/// (`state` on a hook's stdin).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    #[serde(default)]
    pub oci_version: String,
    pub id: String,
    #[serde(default)]
    pub status: String,
    /// The container's init process, in the runtime's pid namespace (the
    /// host's, for an agent with `hostPID`). Absent before `create`.
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub bundle: PathBuf,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl OciState {
    /// Reads and parses the state from `input` (at most
    /// [`MAX_STATE_BYTES`]).
    pub fn read(input: impl Read) -> Result<Self, ContainersError> {
        let mut buf = Vec::new();
        input
            .take(MAX_STATE_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(|source| ContainersError::Io {
                what: "reading the OCI state from stdin".into(),
                source,
            })?;
        if buf.len() as u64 > MAX_STATE_BYTES {
            return Err(ContainersError::Invalid {
                what: "the OCI state on stdin".into(),
                message: format!("larger than {MAX_STATE_BYTES} bytes"),
            });
        }
        serde_json::from_slice(&buf).map_err(|e| ContainersError::Invalid {
            what: "the OCI state on stdin".into(),
            message: format!("line {} column {}: {e}", e.line(), e.column()),
        })
    }

    /// The bundle's `config.json`, with the state's annotations merged into
    /// its own (the state's win). A missing or unreadable bundle gives the
    /// state's annotations alone and no root, with a warning.
    pub fn bundle(&self) -> Bundle {
        let mut b = if self.bundle.as_os_str().is_empty() {
            Bundle::default()
        } else {
            match read_bundle(&self.bundle) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the container's bundle");
                    Bundle::default()
                }
            }
        };
        b.annotations.extend(self.annotations.clone());
        b
    }
}

#[derive(Deserialize)]
struct BundleConfig {
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    root: Option<BundleRoot>,
}

#[derive(Deserialize)]
struct BundleRoot {
    path: PathBuf,
}

/// What the hook needs of a bundle's `config.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bundle {
    pub annotations: BTreeMap<String, String>,
    /// `root.path`, made absolute against the bundle: the container's root
    /// as the host sees it (an overlay the runtime mounted there). During
    /// `createRuntime` the container's init has not switched to it yet, so
    /// `/proc/<pid>/root` is still the host's `/`: this is the path to mark.
    pub root: Option<PathBuf>,
}

/// The `annotations` of `<bundle>/config.json`.
pub fn bundle_annotations(bundle: &Path) -> Result<BTreeMap<String, String>, ContainersError> {
    read_bundle(bundle).map(|b| b.annotations)
}

/// Reads `<bundle>/config.json`.
pub fn read_bundle(bundle: &Path) -> Result<Bundle, ContainersError> {
    let path = bundle.join("config.json");
    let file = std::fs::File::open(&path).map_err(|source| ContainersError::Io {
        what: format!("opening {}", path.display()),
        source,
    })?;
    let mut buf = Vec::new();
    file.take(MAX_STATE_BYTES)
        .read_to_end(&mut buf)
        .map_err(|source| ContainersError::Io {
            what: format!("reading {}", path.display()),
            source,
        })?;
    let config: BundleConfig =
        serde_json::from_slice(&buf).map_err(|e| ContainersError::Invalid {
            what: path.display().to_string(),
            message: format!("line {} column {}: {e}", e.line(), e.column()),
        })?;
    Ok(Bundle {
        annotations: config.annotations,
        root: config.root.map(|r| {
            if r.path.is_absolute() {
                r.path
            } else {
                bundle.join(r.path)
            }
        }),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_runtime_state_and_merges_the_bundle() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"annotations":{"a":"bundle","b":"bundle"}}"#,
        )
        .unwrap();
        let text = format!(
            r#"{{"ociVersion":"1.0.2","id":"abc","status":"created","pid":4242,"bundle":"{}","annotations":{{"b":"state"}}}}"#,
            dir.path().display()
        );
        let s = OciState::read(text.as_bytes()).unwrap();
        assert_eq!(s.id, "abc");
        assert_eq!(s.pid, Some(4242));
        let b = s.bundle();
        assert_eq!(b.annotations["a"], "bundle");
        assert_eq!(b.annotations["b"], "state");
        assert_eq!(
            b.root,
            Some(dir.path().join("rootfs")),
            "relative to the bundle"
        );
    }

    #[test]
    fn a_bad_state_names_the_position() {
        let e = OciState::read(&b"{\"id\": 3}"[..]).unwrap_err().to_string();
        assert!(e.contains("OCI state") && e.contains("line 1"), "{e}");
    }
}
