//! What the OCI hook did while the agent was unavailable: one small JSON
//! file per container start in a root-only directory, read and removed by
//! the agent at its next start, which journals each.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::ContainersError;
use crate::registry::now_ms;

/// At most this many records are kept; the hook writes no more past it
/// (and says so on stderr), so a node whose agent is gone for long cannot
/// fill its disk.
pub const MAX_RECORDS: usize = 10_000;

/// What the hook decided for one container start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookDecision {
    /// The container started unprotected.
    Allowed,
    /// The hook failed the start.
    Refused,
}

/// One spooled record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookRecord {
    pub container_id: String,
    /// The runtime, when the hook could tell (`--runtime`, annotations).
    #[serde(default)]
    pub runtime: Option<portcullis_schemas::ContainerRuntime>,
    pub pid: Option<u32>,
    pub decision: HookDecision,
    /// Why the agent was unavailable.
    pub reason: String,
    pub at_ms: u64,
}

/// Writes `record` into `dir` (created 0700).
pub fn write(dir: &Path, record: &HookRecord) -> Result<PathBuf, ContainersError> {
    let io = |what: String| move |source| ContainersError::Io { what, source };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(format!("creating the hook spool {}", dir.display())))?;
    let count = std::fs::read_dir(dir)
        .map_err(io(format!("listing {}", dir.display())))?
        .count();
    if count >= MAX_RECORDS {
        return Err(ContainersError::Invalid {
            what: format!("hook spool {}", dir.display()),
            message: format!("full ({MAX_RECORDS} records); this start is not recorded"),
        });
    }
    let id: String = record
        .container_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(64)
        .collect();
    let path = dir.join(format!("{}-{}-{id}.json", record.at_ms, std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io(format!("creating {}", path.display())))?;
    let body = serde_json::to_vec(record).map_err(|e| ContainersError::Invalid {
        what: path.display().to_string(),
        message: e.to_string(),
    })?;
    f.write_all(&body)
        .and_then(|()| f.sync_all())
        .map_err(io(format!("writing {}", path.display())))?;
    Ok(path)
}

/// Reads every record of `dir` in time order and removes them. A file that
/// does not parse is reported (with its name) and moved aside as
/// `*.bad`, never lost.
pub fn drain(dir: &Path) -> Vec<Result<HookRecord, ContainersError>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut out = Vec::with_capacity(files.len());
    for path in files {
        let parsed = std::fs::read(&path)
            .map_err(|source| ContainersError::Io {
                what: format!("reading {}", path.display()),
                source,
            })
            .and_then(|b| {
                serde_json::from_slice::<HookRecord>(&b).map_err(|e| ContainersError::Invalid {
                    what: path.display().to_string(),
                    message: format!("line {} column {}: {e}", e.line(), e.column()),
                })
            });
        match &parsed {
            Ok(_) => {
                let _ = std::fs::remove_file(&path);
            }
            Err(_) => {
                let _ = std::fs::rename(&path, path.with_extension("bad"));
            }
        }
        out.push(parsed);
    }
    out
}

/// A record for `container_id` now.
pub fn record(
    container_id: &str,
    runtime: Option<portcullis_schemas::ContainerRuntime>,
    pid: Option<u32>,
    decision: HookDecision,
    reason: String,
) -> HookRecord {
    HookRecord {
        container_id: container_id.to_string(),
        runtime,
        pid,
        decision,
        reason,
        at_ms: now_ms(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_files_are_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let a = record(
            "abc",
            Some(portcullis_schemas::ContainerRuntime::Podman),
            Some(3),
            HookDecision::Allowed,
            "connect: refused".into(),
        );
        write(&spool, &a).unwrap();
        std::fs::write(spool.join("0-bad.json"), b"{not json").unwrap();
        let got = drain(&spool);
        assert_eq!(got.len(), 2);
        let err = got[0].as_ref().unwrap_err().to_string();
        assert!(
            err.contains("0-bad.json") && err.contains("line 1"),
            "{err}"
        );
        assert_eq!(got[1].as_ref().unwrap(), &a);
        assert!(spool.join("0-bad.bad").exists());
        assert!(drain(&spool).is_empty());
    }
}
