//! The quarantine: backup copies of removed objects with a metadata record,
//! in a directory only root can read.
//!
//! Each entry is two files named by its id (the detection's access event
//! id): `<id>.bin`, the object's bytes as they were scanned, and
//! `<id>.json`, its [`QuarantineRecord`]. The record is written last, so an
//! entry without one is an interrupted store; listing reports it and
//! nothing else touches it.
//!
//! Management ([`Quarantine::restore`], [`Quarantine::delete`],
//! [`Quarantine::purge`]) returns the journal event of what it did; the
//! caller journals it (the Actions actor in a running agent, the CLI when
//! no agent runs).

mod restore;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_schemas::{
    ContainerRef, EventId, FilePath, Operator, QuarantineDeleted, QuarantineDeletion,
    QuarantineEntry, QuarantineRestored, QuarantinedObject, RuleMatch, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::scanner::ScanContent;

pub use restore::RestoreError;

#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error("quarantine directory {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("quarantine directory {dir} is readable by others (mode {mode:o}); it must be 0700 and owned by root")]
    Insecure { dir: PathBuf, mode: u32 },
    #[error("quarantine directory {dir} is owned by uid {owner}, not by this user (uid {me}): run as root")]
    NotOwner { dir: PathBuf, owner: u32, me: u32 },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading the object through its event fd at offset {offset}: {source}")]
    Read { offset: u64, source: std::io::Error },
    #[error("`{id}` is not a quarantine id (ids are event ids, as `portcullis quarantine list` prints them)")]
    BadId { id: String },
    #[error("no quarantine entry {id} in {dir}")]
    NotFound { id: String, dir: PathBuf },
    #[error("quarantine record {path}: {message}")]
    BadRecord { path: PathBuf, message: String },
    #[error("reading {path}: {source}")]
    ReadEntry {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("restoring {id}: {source}")]
    Restore {
        id: String,
        #[source]
        source: RestoreError,
    },
    #[error("deleting {path}: {source}")]
    Delete {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The metadata record written beside each backup copy (`<id>.json`).
///
/// Fields added after the first version are optional, so records written
/// by older agents still read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuarantineRecord {
    /// The access event id of the detection (also the file names).
    pub id: String,
    /// The path, escaped where it is not UTF-8 (for people).
    pub original_path: String,
    /// Hex of the raw path bytes, exact even for non-UTF-8 names.
    pub original_path_hex: String,
    pub sha256: Option<String>,
    pub size: u64,
    pub device: u64,
    pub inode: u64,
    /// The object's mode bits (`st_mode & 0o7777`), owner and group when it
    /// was removed: a restore writes them back.
    #[serde(default)]
    pub mode: Option<u32>,
    #[serde(default)]
    pub uid: Option<u32>,
    #[serde(default)]
    pub gid: Option<u32>,
    pub pid: u32,
    /// The container it was detected in.
    #[serde(default)]
    pub container: Option<ContainerRef>,
    pub quarantined_at: String,
    pub rules: Vec<String>,
}

impl QuarantineRecord {
    /// The exact original path.
    pub fn original_path(&self) -> Result<FilePath, String> {
        hex::decode(&self.original_path_hex)
            .map(FilePath::from_bytes)
            .map_err(|e| format!("original_path_hex: {e}"))
    }

    pub fn detection(&self) -> Result<EventId, String> {
        self.id.parse().map_err(|e| format!("id: {e}"))
    }

    pub fn quarantined_at(&self) -> Result<Timestamp, String> {
        Timestamp::parse_rfc3339(&self.quarantined_at).map_err(|e| format!("quarantined_at: {e}"))
    }

    fn sha256_bytes(&self) -> Result<Option<[u8; 32]>, String> {
        let Some(h) = &self.sha256 else {
            return Ok(None);
        };
        let mut out = [0u8; 32];
        hex::decode_to_slice(h, &mut out).map_err(|e| format!("sha256: {e}"))?;
        Ok(Some(out))
    }

    /// What the journal events say about this entry.
    pub fn object(&self) -> Result<QuarantinedObject, String> {
        Ok(QuarantinedObject {
            id: self.id.clone(),
            detection: self.detection()?,
            original_path: self.original_path()?,
            sha256: self.sha256_bytes()?,
            size: self.size,
            container: self.container.clone(),
        })
    }
}

/// One entry of [`Quarantine::list`]: its record, or why it cannot be read
/// (the entry is kept: nothing is deleted for being unreadable).
#[derive(Debug)]
pub struct Listed {
    pub id: String,
    pub record: Result<QuarantineRecord, QuarantineError>,
    /// Bytes the entry takes (backup copy and record).
    pub bytes: u64,
}

/// What [`Quarantine::store`] keeps about a detected object.
#[derive(Debug)]
pub struct Detected<'a> {
    pub access: EventId,
    pub path: &'a FilePath,
    pub content: &'a ScanContent,
    pub sha256: Option<[u8; 32]>,
    /// (device, inode) of the scanned object.
    pub file: (u64, u64),
    /// `st_mode`, uid and gid of the object at removal.
    pub owner: Option<(u32, u32, u32)>,
    pub pid: u32,
    pub container: Option<&'a ContainerRef>,
    pub matches: &'a [RuleMatch],
}

/// Where and how [`Quarantine::restore`] writes an object back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreTo {
    /// A file path, or an existing directory to restore into under the
    /// original name. Default: the original path.
    pub to: Option<FilePath>,
    /// Replace a file that is there (never a directory).
    pub replace: bool,
    /// Elsewhere than the original path too, write the original owner and
    /// mode (set-id bits included). Without it a restore elsewhere is a
    /// sample: owned by whoever restores it, with the owner's permission
    /// bits only.
    #[serde(default)]
    pub keep_mode: bool,
}

/// The retention settings (`actions.quarantine_max_age`,
/// `actions.quarantine_max_size_mb`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Option<Duration>,
    pub max_bytes: Option<u64>,
}

#[derive(Debug)]
pub struct Quarantine {
    dir: PathBuf,
}

impl Quarantine {
    /// Creates the directory (mode 0700) if needed and refuses one that
    /// others can read.
    pub fn open(dir: &Path) -> Result<Self, QuarantineError> {
        let err = |source| QuarantineError::Dir {
            dir: dir.to_path_buf(),
            source,
        };
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(err)?;
        }
        Self::existing(dir)
    }

    /// The store in `dir`, which must exist and be root-only (the CLI never
    /// creates one).
    pub fn existing(dir: &Path) -> Result<Self, QuarantineError> {
        let meta = fs::metadata(dir).map_err(|source| QuarantineError::Dir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if meta.uid() != nix_uid() {
            return Err(QuarantineError::NotOwner {
                dir: dir.to_path_buf(),
                owner: meta.uid(),
                me: nix_uid(),
            });
        }
        if mode & 0o077 != 0 {
            return Err(QuarantineError::Insecure {
                dir: dir.to_path_buf(),
                mode,
            });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores a backup copy of the object and its metadata record.
    pub fn store(&self, d: Detected<'_>) -> Result<QuarantineEntry, QuarantineError> {
        let id = d.access.to_string();
        let bin = self.bin(&id);
        let werr = |p: &Path| {
            let p = p.to_path_buf();
            move |source| QuarantineError::Write { path: p, source }
        };
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&bin)
            .map_err(werr(&bin))?;
        let size = copy_content(d.content, &mut out).and_then(|n| {
            out.sync_all().map_err(|source| QuarantineError::Write {
                path: bin.clone(),
                source,
            })?;
            Ok(n)
        });
        let size = match size {
            Ok(n) => n,
            Err(e) => {
                let _ = fs::remove_file(&bin);
                return Err(e);
            }
        };
        let record = QuarantineRecord {
            id: id.clone(),
            original_path: d.path.escaped(),
            original_path_hex: hex::encode(d.path.as_bytes()),
            sha256: d.sha256.map(hex::encode),
            size,
            device: d.file.0,
            inode: d.file.1,
            mode: d.owner.map(|o| o.0 & 0o7777),
            uid: d.owner.map(|o| o.1),
            gid: d.owner.map(|o| o.2),
            pid: d.pid,
            container: d.container.cloned(),
            quarantined_at: Timestamp::now().to_rfc3339(),
            rules: d.matches.iter().map(|m| m.rule.clone()).collect(),
        };
        let json = self.json(&id);
        let written = serde_json::to_vec_pretty(&record)
            .map_err(std::io::Error::other)
            .and_then(|body| {
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&json)?;
                f.write_all(&body)?;
                f.sync_all()
            });
        if let Err(source) = written {
            // No record, no entry: the copy alone would be an orphan.
            let _ = fs::remove_file(&json);
            let _ = fs::remove_file(&bin);
            return Err(QuarantineError::Write { path: json, source });
        }
        Ok(QuarantineEntry {
            id,
            stored_at: FilePath::from(bin.as_path()),
        })
    }

    /// Every entry, oldest first (entries whose record cannot be read come
    /// last, in id order).
    pub fn list(&self) -> Result<Vec<Listed>, QuarantineError> {
        let dir_err = |source| QuarantineError::Dir {
            dir: self.dir.clone(),
            source,
        };
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(dir_err)? {
            let entry = entry.map_err(dir_err)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let id = name
                .strip_suffix(".json")
                .or_else(|| name.strip_suffix(".bin"));
            if let Some(id) = id.filter(|id| id.parse::<EventId>().is_ok()) {
                ids.push(id.to_string());
            }
        }
        ids.sort();
        ids.dedup();
        let mut out: Vec<Listed> = ids
            .into_iter()
            .map(|id| {
                let bytes = [self.bin(&id), self.json(&id)]
                    .iter()
                    .filter_map(|p| fs::symlink_metadata(p).ok())
                    .map(|m| m.len())
                    .sum();
                let record = self.record(&id);
                Listed { id, record, bytes }
            })
            .collect();
        out.sort_by_key(|l| match l.record.as_ref().map(|r| r.quarantined_at()) {
            Ok(Ok(t)) => (0, t.0),
            _ => (1, 0),
        });
        Ok(out)
    }

    /// The record of entry `id`.
    pub fn record(&self, id: &str) -> Result<QuarantineRecord, QuarantineError> {
        check_id(id)?;
        let path = self.json(id);
        let body = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(if self.bin(id).exists() {
                    QuarantineError::BadRecord {
                        path,
                        message: "missing (an interrupted store: the copy has no record)".into(),
                    }
                } else {
                    QuarantineError::NotFound {
                        id: id.into(),
                        dir: self.dir.clone(),
                    }
                });
            }
            Err(source) => return Err(QuarantineError::ReadEntry { path, source }),
        };
        let record: QuarantineRecord =
            serde_json::from_slice(&body).map_err(|e| QuarantineError::BadRecord {
                path: path.clone(),
                message: e.to_string(),
            })?;
        if record.id != id {
            return Err(QuarantineError::BadRecord {
                path,
                message: format!("its id is {}", record.id),
            });
        }
        Ok(record)
    }

    /// Writes entry `id` back (see [`RestoreTo`]) with its original mode and
    /// owner (elsewhere: as a sample, unless `keep_mode`), after checking
    /// the copy against its recorded sha256. The
    /// entry stays in the quarantine (delete it when done). Never follows a
    /// symlink: see [`restore`](self::restore).
    pub fn restore(
        &self,
        id: &str,
        to: &RestoreTo,
        operator: Option<Operator>,
    ) -> Result<QuarantineRestored, QuarantineError> {
        let record = self.record(id)?;
        let entry = self.object(&record)?;
        let err = |source| QuarantineError::Restore {
            id: id.into(),
            source,
        };
        let target = restore::target(&entry.original_path, to.to.as_ref()).map_err(err)?;
        let mode = record.mode.unwrap_or(0o600);
        let (mode, uid, gid) = if target == entry.original_path || to.keep_mode {
            (mode, record.uid.unwrap_or(0), record.gid.unwrap_or(0))
        } else {
            // A sample to examine: no set-id bits, nothing for others.
            // SAFETY: geteuid/getegid have no preconditions.
            let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
            (mode & 0o700, uid, gid)
        };
        let done = restore::write(
            &self.bin(id),
            &target,
            restore::Meta {
                mode,
                uid,
                gid,
                sha256: entry.sha256,
                tmp_tag: id,
            },
            to.replace,
        )
        .map_err(err)?;
        tracing::info!(quarantine = id, to = %target, replaced = done.replaced, "quarantine entry restored");
        Ok(QuarantineRestored {
            entry,
            restored_to: target,
            replaced: done.replaced,
            operator,
        })
    }

    /// Deletes entry `id` (copy, then record).
    pub fn delete(
        &self,
        id: &str,
        reason: QuarantineDeletion,
        operator: Option<Operator>,
    ) -> Result<QuarantineDeleted, QuarantineError> {
        let record = self.record(id)?;
        let entry = self.object(&record)?;
        self.remove_files(id)?;
        tracing::info!(
            quarantine = id,
            reason = reason.as_str(),
            "quarantine entry deleted"
        );
        Ok(QuarantineDeleted {
            entry,
            reason,
            operator,
        })
    }

    /// Deletes what the retention settings no longer keep: entries older
    /// than `max_age`, then the oldest entries until the store is within
    /// `max_bytes`. Entries whose record cannot be read are never deleted
    /// (and never counted against the newest). Returns what was deleted,
    /// and the errors met on the way (the purge goes on past them).
    pub fn purge(
        &self,
        retention: Retention,
        now: Timestamp,
    ) -> (Vec<QuarantineDeleted>, Vec<QuarantineError>) {
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        if retention.max_age.is_none() && retention.max_bytes.is_none() {
            return (deleted, errors);
        }
        let listed = match self.list() {
            Ok(l) => l,
            Err(e) => return (deleted, vec![e]),
        };
        let cutoff = retention.max_age.map(|a| {
            now.0
                .saturating_sub(i64::try_from(a.as_nanos()).unwrap_or(i64::MAX))
        });
        // Only entries whose record and time read take part: the others
        // can never be deleted here, so they do not count against the
        // size either (else they could make it unreachable and empty the
        // store). Oldest first; the newest always stays (it is what the
        // last detection kept, whatever its size).
        let readable: Vec<(&Listed, i64)> = listed
            .iter()
            .filter_map(|l| {
                let at = l.record.as_ref().ok()?.quarantined_at().ok()?;
                Some((l, at.0))
            })
            .collect();
        let mut total: u64 = readable.iter().map(|(l, _)| l.bytes).sum();
        let last = readable.len().saturating_sub(1);
        for (i, (l, at)) in readable.into_iter().enumerate() {
            let reason = if cutoff.is_some_and(|c| at < c) {
                QuarantineDeletion::MaxAge
            } else if i < last && retention.max_bytes.is_some_and(|m| total > m) {
                QuarantineDeletion::MaxSize
            } else {
                continue;
            };
            match self.delete(&l.id, reason, None) {
                Ok(d) => {
                    total = total.saturating_sub(l.bytes);
                    deleted.push(d);
                }
                Err(e) => errors.push(e),
            }
        }
        (deleted, errors)
    }

    fn object(&self, record: &QuarantineRecord) -> Result<QuarantinedObject, QuarantineError> {
        record
            .object()
            .map_err(|message| QuarantineError::BadRecord {
                path: self.json(&record.id),
                message,
            })
    }

    fn remove_files(&self, id: &str) -> Result<(), QuarantineError> {
        for path in [self.bin(id), self.json(id)] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(QuarantineError::Delete { path, source }),
            }
        }
        Ok(())
    }

    fn bin(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.bin"))
    }

    fn json(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }
}

/// Ids are event ids: anything else (`../x`, an absolute path) never
/// reaches a file name.
fn check_id(id: &str) -> Result<(), QuarantineError> {
    match id.parse::<EventId>() {
        Ok(e) if e.to_string() == id => Ok(()),
        _ => Err(QuarantineError::BadId { id: id.into() }),
    }
}

fn nix_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn copy_content(content: &ScanContent, out: &mut fs::File) -> Result<u64, QuarantineError> {
    match content {
        ScanContent::Bytes(b) => {
            out.write_all(b)
                .map_err(|source| QuarantineError::Read { offset: 0, source })?;
            Ok(b.len() as u64)
        }
        ScanContent::Fd(fd) => {
            use std::os::fd::AsRawFd;
            let mut buf = vec![0u8; 256 * 1024];
            let mut offset: u64 = 0;
            loop {
                // SAFETY: the buffer is valid for `buf.len()` bytes and the fd is
                // kept open by the Arc for the whole call. pread never moves the
                // shared file offset, so the opener is not disturbed.
                let n = unsafe {
                    libc::pread(
                        fd.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        offset as libc::off_t,
                    )
                };
                if n < 0 {
                    let source = std::io::Error::last_os_error();
                    if source.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(QuarantineError::Read { offset, source });
                }
                if n == 0 {
                    return Ok(offset);
                }
                let n = n as usize;
                out.write_all(&buf[..n])
                    .map_err(|source| QuarantineError::Read { offset, source })?;
                offset += n as u64;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
