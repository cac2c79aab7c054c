//! Podman's (c/storage) container list, `overlay-containers/containers.json`
//! under the storage root: written when a container is created, before its
//! OCI hooks run. Reading it is a local file read with no lock of
//! Podman's, so the agent can name a container synchronously while its
//! hook waits (Podman's API would wait for the container lock the starting
//! `podman` holds).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use portcullis_schemas::ContainerRuntime;
use serde::Deserialize;

use super::Runtime;
use crate::error::ContainersError;
use crate::meta::ContainerMeta;

/// The default storage root of rootful Podman.
pub const DEFAULT_ROOT: &str = "/var/lib/containers/storage";
/// The largest `containers.json` read.
const MAX_LIST: u64 = 64 * 1024 * 1024;

/// Podman's container list.
#[derive(Debug)]
pub struct PodmanStorage {
    list: PathBuf,
}

#[derive(Deserialize)]
struct Entry {
    id: String,
    #[serde(default)]
    names: Vec<String>,
    /// The image id (bare hex).
    #[serde(default)]
    image: String,
    /// libpod's metadata, itself JSON.
    #[serde(default)]
    metadata: String,
}

#[derive(Deserialize, Default)]
struct Metadata {
    #[serde(default, rename = "image-name")]
    image_name: String,
    #[serde(default)]
    name: String,
}

impl PodmanStorage {
    pub fn new(root: PathBuf) -> Self {
        Self {
            list: root.join("overlay-containers").join("containers.json"),
        }
    }

    /// The metadata of container `id` in the list text `json`.
    pub fn find(json: &[u8], id: &str) -> Result<Option<ContainerMeta>, String> {
        let entries: Vec<Entry> = serde_json::from_slice(json).map_err(|e| e.to_string())?;
        Ok(entries.into_iter().find(|e| e.id == id).map(|e| {
            let md: Metadata = serde_json::from_str(&e.metadata).unwrap_or_default();
            let nonempty = |s: String| Some(s).filter(|s| !s.is_empty());
            ContainerMeta {
                name: nonempty(md.name).or_else(|| e.names.into_iter().next()),
                image: nonempty(md.image_name),
                image_digest: nonempty(e.image)
                    .filter(|i| i.bytes().all(|b| b.is_ascii_hexdigit()))
                    .map(|i| format!("sha256:{i}")),
                pod: None,
                labels: BTreeMap::new(),
            }
        }))
    }
}

impl Runtime for PodmanStorage {
    fn kind(&self) -> ContainerRuntime {
        ContainerRuntime::Podman
    }

    fn is_local(&self) -> bool {
        true
    }

    fn inspect(&self, id: &str) -> Result<Option<ContainerMeta>, ContainersError> {
        let what = || format!("reading {}", self.list.display());
        let f = match std::fs::File::open(&self.list) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ContainersError::Io {
                    what: what(),
                    source,
                })
            }
        };
        let mut buf = Vec::new();
        f.take(MAX_LIST)
            .read_to_end(&mut buf)
            .map_err(|source| ContainersError::Io {
                what: what(),
                source,
            })?;
        Self::find(&buf, id).map_err(|message| ContainersError::Invalid {
            what: what(),
            message,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_a_container_from_the_list() {
        let json = br#"[{"id":"aaa","names":["other"],"image":"bbb","metadata":"{}"},
            {"id":"7a3e","names":["pc-test-h"],"image":"8c18ab","layer":"x",
             "metadata":"{\"image-name\":\"localhost/portcullis-test:latest\",\"image-id\":\"8c18ab\",\"name\":\"pc-test-h\",\"created-at\":1764361984}"}]"#;
        let m = PodmanStorage::find(json, "7a3e").unwrap().unwrap();
        assert_eq!(m.name.as_deref(), Some("pc-test-h"));
        assert_eq!(m.image.as_deref(), Some("localhost/portcullis-test:latest"));
        assert_eq!(m.image_digest.as_deref(), Some("sha256:8c18ab"));
        assert_eq!(PodmanStorage::find(json, "zzz").unwrap(), None);
        let m = PodmanStorage::find(json, "aaa").unwrap().unwrap();
        assert_eq!(
            m.name.as_deref(),
            Some("other"),
            "names when the metadata has none"
        );
        assert!(PodmanStorage::find(b"{", "a").is_err());
    }
}
