//! The quarantine: backup copies of removed objects with a metadata record,
//! in a directory only root can read.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use portcullis_schemas::{EventId, FilePath, QuarantineEntry, RuleMatch, Timestamp};
use serde::Serialize;

use crate::scanner::ScanContent;

#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error("quarantine directory {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("quarantine directory {dir} is readable by others (mode {mode:o}); it must be 0700 and owned by root")]
    Insecure { dir: PathBuf, mode: u32 },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading the object through its event fd at offset {offset}: {source}")]
    Read { offset: u64, source: std::io::Error },
}

/// The metadata record written beside each backup copy (`<id>.json`).
#[derive(Debug, Serialize)]
pub struct QuarantineRecord<'a> {
    pub id: String,
    pub original_path: String,
    /// Hex of the raw path bytes, exact even for non-UTF-8 names.
    pub original_path_hex: String,
    pub sha256: Option<String>,
    pub size: u64,
    pub device: u64,
    pub inode: u64,
    pub pid: u32,
    pub quarantined_at: String,
    pub rules: Vec<&'a str>,
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
        let meta = fs::metadata(dir).map_err(err)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 || meta.uid() != nix_uid() {
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

    /// Stores a backup copy of `content` and its metadata record.
    #[allow(clippy::too_many_arguments)]
    pub fn store(
        &self,
        access: EventId,
        path: &FilePath,
        content: &ScanContent,
        sha256: Option<[u8; 32]>,
        file: (u64, u64),
        pid: u32,
        matches: &[RuleMatch],
    ) -> Result<QuarantineEntry, QuarantineError> {
        let id = access.to_string();
        let bin = self.dir.join(format!("{id}.bin"));
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
        let size = copy_content(content, &mut out).and_then(|n| {
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
            original_path: path.escaped(),
            original_path_hex: hex::encode(path.as_bytes()),
            sha256: sha256.map(hex::encode),
            size,
            device: file.0,
            inode: file.1,
            pid,
            quarantined_at: Timestamp::now().to_rfc3339(),
            rules: matches.iter().map(|m| m.rule.as_str()).collect(),
        };
        let json = self.dir.join(format!("{id}.json"));
        let body = serde_json::to_vec_pretty(&record).map_err(|e| QuarantineError::Write {
            path: json.clone(),
            source: std::io::Error::other(e),
        })?;
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&json)
            .map_err(werr(&json))?;
        f.write_all(&body)
            .and_then(|_| f.sync_all())
            .map_err(werr(&json))?;
        Ok(QuarantineEntry {
            id,
            stored_at: FilePath::from(bin.as_path()),
        })
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
