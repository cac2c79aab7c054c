//! What a runtime says about a container: name, image, pod, labels.
//!
//! Runtimes put most of it in the OCI annotations of the container's
//! bundle (`config.json`), which the OCI hook reads: CRI-O and containerd's
//! CRI plugin name the pod and the image there. Podman names neither, so
//! its metadata comes from its API ([`crate::runtime`]).

use std::collections::BTreeMap;

use portcullis_schemas::{ContainerRef, PodRef};
use serde::{Deserialize, Serialize};

/// At most this many labels are kept per container (sorted by key).
pub const MAX_LABELS: usize = 32;
/// Longer label keys and values are cut at a character boundary.
pub const MAX_LABEL_LEN: usize = 256;

/// A container's metadata. Every field is optional: a runtime may not know
/// it, or not have answered yet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerMeta {
    pub name: Option<String>,
    /// The image reference the container was created from
    /// (`docker.io/library/nginx:1.27`).
    pub image: Option<String>,
    /// The image's digest (`sha256:...`): the repository digest when the
    /// runtime knows one, else the image id (the digest of its config).
    pub image_digest: Option<String>,
    pub pod: Option<PodRef>,
    /// At most [`MAX_LABELS`] labels, sorted by key.
    pub labels: BTreeMap<String, String>,
}

impl ContainerMeta {
    /// `true` when nothing is known.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Fills the fields `c` lacks from this metadata.
    pub fn apply_to(&self, c: &mut ContainerRef) {
        if c.name.is_none() {
            c.name.clone_from(&self.name);
        }
        if c.image.is_none() {
            c.image.clone_from(&self.image);
        }
        if c.image_digest.is_none() {
            c.image_digest.clone_from(&self.image_digest);
        }
        if c.pod.is_none() {
            c.pod.clone_from(&self.pod);
        }
    }

    /// Fills the fields `self` lacks from `other` (labels are merged).
    pub fn merge(&mut self, other: ContainerMeta) {
        let ContainerMeta {
            name,
            image,
            image_digest,
            pod,
            labels,
        } = other;
        self.name = self.name.take().or(name);
        self.image = self.image.take().or(image);
        self.image_digest = self.image_digest.take().or(image_digest);
        self.pod = self.pod.take().or(pod);
        for (k, v) in labels {
            self.labels.entry(k).or_insert(v);
        }
        self.labels = bounded_labels(std::mem::take(&mut self.labels));
    }

    /// Reads the annotations runtimes write into an OCI bundle:
    /// - CRI-O: `io.kubernetes.cri-o.ContainerName`, `...ImageName`,
    ///   `...ImageRef`, `...Labels` (JSON), `io.kubernetes.pod.*`;
    /// - containerd CRI: `io.kubernetes.cri.container-name`, `...image-name`,
    ///   `...sandbox-name`, `...sandbox-namespace`, `...sandbox-uid`;
    /// - any runtime: `org.opencontainers.image.ref.name`.
    pub fn from_annotations(a: &BTreeMap<String, String>) -> Self {
        let get = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| a.get(*k))
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        // CRI-O names the container `k8s_<name>_<pod>_<ns>_<uid>_<n>` in
        // `io.kubernetes.cri-o.Name`; the bare name is in the labels.
        let mut labels: BTreeMap<String, String> = a
            .get("io.kubernetes.cri-o.Labels")
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default();
        let name = get(&["io.kubernetes.cri.container-name"])
            .or_else(|| labels.get("io.kubernetes.container.name").cloned())
            .or_else(|| get(&["io.kubernetes.cri-o.ContainerName"]));
        let pod_name = get(&["io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"]);
        let pod_namespace = get(&[
            "io.kubernetes.cri.sandbox-namespace",
            "io.kubernetes.pod.namespace",
        ]);
        let pod = match (pod_name, pod_namespace) {
            (Some(name), Some(namespace)) => Some(PodRef {
                name,
                namespace,
                uid: get(&["io.kubernetes.cri.sandbox-uid", "io.kubernetes.pod.uid"]),
            }),
            _ => None,
        };
        labels.retain(|k, _| !k.starts_with("io.kubernetes."));
        Self {
            name,
            image: get(&[
                "io.kubernetes.cri.image-name",
                "io.kubernetes.cri-o.ImageName",
                "org.opencontainers.image.ref.name",
            ]),
            image_digest: get(&["io.kubernetes.cri-o.ImageRef"])
                .filter(|d| d.starts_with("sha256:") || d.contains("@sha256:")),
            pod,
            labels: bounded_labels(labels),
        }
    }
}

/// Keeps the first [`MAX_LABELS`] labels by key, each cut to
/// [`MAX_LABEL_LEN`] bytes.
pub fn bounded_labels(labels: BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels
        .into_iter()
        .take(MAX_LABELS)
        .map(|(k, v)| (cut(k), cut(v)))
        .collect()
}

fn cut(mut s: String) -> String {
    if s.len() > MAX_LABEL_LEN {
        let mut end = MAX_LABEL_LEN;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn containerd_cri_annotations() {
        let m = ContainerMeta::from_annotations(&map(&[
            ("io.kubernetes.cri.container-type", "container"),
            ("io.kubernetes.cri.container-name", "web"),
            (
                "io.kubernetes.cri.image-name",
                "localhost/portcullis-test:latest",
            ),
            ("io.kubernetes.cri.sandbox-name", "web-7d9f"),
            ("io.kubernetes.cri.sandbox-namespace", "shop"),
            ("io.kubernetes.cri.sandbox-uid", "8f5a2b1c-7d3e"),
        ]));
        assert_eq!(m.name.as_deref(), Some("web"));
        assert_eq!(m.image.as_deref(), Some("localhost/portcullis-test:latest"));
        assert_eq!(
            m.pod,
            Some(PodRef {
                name: "web-7d9f".into(),
                namespace: "shop".into(),
                uid: Some("8f5a2b1c-7d3e".into())
            })
        );
    }

    #[test]
    fn cri_o_annotations_with_labels() {
        let m = ContainerMeta::from_annotations(&map(&[
            (
                "io.kubernetes.cri-o.ContainerName",
                "k8s_web_web-7d9f_shop_uid_0",
            ),
            (
                "io.kubernetes.cri-o.Labels",
                r#"{"io.kubernetes.container.name":"web","io.kubernetes.pod.name":"web-7d9f","app":"shop"}"#,
            ),
            ("io.kubernetes.cri-o.ImageName", "quay.io/x/web:1"),
            ("io.kubernetes.cri-o.ImageRef", "sha256:abc"),
            ("io.kubernetes.pod.name", "web-7d9f"),
            ("io.kubernetes.pod.namespace", "shop"),
        ]));
        assert_eq!(m.name.as_deref(), Some("web"));
        assert_eq!(m.image_digest.as_deref(), Some("sha256:abc"));
        assert_eq!(m.pod.as_ref().unwrap().namespace, "shop");
        assert_eq!(
            m.labels,
            map(&[("app", "shop")]),
            "kubernetes' own labels are not repeated"
        );
    }

    #[test]
    fn no_annotations_no_metadata() {
        assert!(
            ContainerMeta::from_annotations(&map(&[("io.container.manager", "libpod")])).is_empty()
        );
    }

    #[test]
    fn merge_keeps_what_is_known_and_bounds_labels() {
        let mut a = ContainerMeta {
            name: Some("a".into()),
            ..Default::default()
        };
        let many: BTreeMap<String, String> = (0..100)
            .map(|i| (format!("k{i:03}"), "v".repeat(1000)))
            .collect();
        a.merge(ContainerMeta {
            name: Some("b".into()),
            image: Some("img".into()),
            labels: many,
            ..Default::default()
        });
        assert_eq!(a.name.as_deref(), Some("a"));
        assert_eq!(a.image.as_deref(), Some("img"));
        assert_eq!(a.labels.len(), MAX_LABELS);
        assert!(a.labels.values().all(|v| v.len() == MAX_LABEL_LEN));
    }
}
