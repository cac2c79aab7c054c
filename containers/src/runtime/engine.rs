//! The Docker Engine API over a Unix socket: Docker's own, and Podman's
//! compatible API (`podman system service`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use portcullis_schemas::{ContainerRuntime, PodRef};
use serde::Deserialize;

use super::{http, Runtime};
use crate::error::ContainersError;
use crate::meta::{bounded_labels, ContainerMeta};

/// A client of one engine socket.
#[derive(Debug)]
pub struct EngineApi {
    kind: ContainerRuntime,
    socket: PathBuf,
    timeout: Duration,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Inspect {
    #[serde(default)]
    name: String,
    /// The image id (`sha256:...`).
    #[serde(default)]
    image: String,
    #[serde(default)]
    config: InspectConfig,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct InspectConfig {
    #[serde(default)]
    image: String,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

impl EngineApi {
    pub fn new(kind: ContainerRuntime, socket: PathBuf, timeout: Duration) -> Self {
        Self {
            kind,
            socket,
            timeout,
        }
    }

    /// Parses the body of `GET /containers/<id>/json`.
    pub fn parse_inspect(body: &[u8]) -> Result<ContainerMeta, String> {
        let i: Inspect = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let mut labels = i.config.labels.unwrap_or_default();
        let label = |k: &str| labels.get(k).cloned();
        let pod = match (
            label("io.kubernetes.pod.name"),
            label("io.kubernetes.pod.namespace"),
        ) {
            (Some(name), Some(namespace)) => Some(PodRef {
                name,
                namespace,
                uid: label("io.kubernetes.pod.uid"),
            }),
            _ => None,
        };
        labels.retain(|k, _| !k.starts_with("io.kubernetes."));
        let nonempty = |s: String| Some(s).filter(|s| !s.is_empty());
        Ok(ContainerMeta {
            name: nonempty(i.name.trim_start_matches('/').to_string()),
            image: nonempty(i.config.image),
            image_digest: nonempty(i.image).filter(|d| d.starts_with("sha256:")),
            pod,
            labels: bounded_labels(labels),
        })
    }
}

impl Runtime for EngineApi {
    fn kind(&self) -> ContainerRuntime {
        self.kind
    }

    fn inspect(&self, id: &str) -> Result<Option<ContainerMeta>, ContainersError> {
        let what = || {
            format!(
                "{} API on {}: inspecting container {id}",
                self.kind.as_str(),
                self.socket.display()
            )
        };
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ContainersError::Invalid {
                what: what(),
                message: "not a container id".into(),
            });
        }
        let r = http::get(
            &self.socket,
            &format!("/containers/{id}/json"),
            self.timeout,
        )
        .map_err(|message| ContainersError::Invalid {
            what: what(),
            message,
        })?;
        match r.status {
            200 => {
                Self::parse_inspect(&r.body)
                    .map(Some)
                    .map_err(|message| ContainersError::Invalid {
                        what: what(),
                        message,
                    })
            }
            404 => Ok(None),
            status => Err(ContainersError::Invalid {
                what: what(),
                message: format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&r.body[..r.body.len().min(200)])
                ),
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_name_image_and_pod_labels() {
        let body = br#"{"Id":"abc","Name":"/pc-test-web","Image":"sha256:0123",
            "Config":{"Image":"localhost/portcullis-test:latest","Labels":{"app":"shop",
            "io.kubernetes.pod.name":"web-1","io.kubernetes.pod.namespace":"prod"}}}"#;
        let m = EngineApi::parse_inspect(body).unwrap();
        assert_eq!(m.name.as_deref(), Some("pc-test-web"));
        assert_eq!(m.image.as_deref(), Some("localhost/portcullis-test:latest"));
        assert_eq!(m.image_digest.as_deref(), Some("sha256:0123"));
        assert_eq!(m.pod.unwrap().namespace, "prod");
        assert_eq!(m.labels.len(), 1);
        let m = EngineApi::parse_inspect(br#"{"Name":"x","Config":{"Labels":null}}"#).unwrap();
        assert_eq!(m.name.as_deref(), Some("x"));
        assert!(EngineApi::parse_inspect(b"\"not an object\"").is_err());
    }
}
