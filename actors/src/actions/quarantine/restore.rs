//! Writing a quarantined object back, without ever following a symlink.
//!
//! The target's directory is opened with `openat2(RESOLVE_NO_SYMLINKS)`: a
//! directory on the way that became a symlink since the detection (say, to
//! `/etc`) makes the restore fail instead of writing there. The object is
//! written to a temporary name in that directory (`O_EXCL|O_NOFOLLOW`),
//! given its owner and mode, synced, checked against its recorded sha256,
//! and only then renamed into place: `renameat2(RENAME_NOREPLACE)` unless a
//! replace was asked (a rename replaces a symlink itself, never its
//! target). A reader never sees a half-written file.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use portcullis_schemas::FilePath;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{path}: not an absolute path")]
    NotAbsolute { path: String },
    #[error("{path}: a path with a NUL byte")]
    NulByte { path: String },
    #[error("{path}: no file name to restore to")]
    NoName { path: String },
    #[error("{dir}: a component is a symbolic link, and a restore never follows one (restore into the real directory with --to)")]
    Symlink { dir: String },
    #[error("{dir} does not exist (its container may be gone): restore elsewhere with --to")]
    NoDir { dir: String },
    #[error("opening the directory {dir}: {source}")]
    OpenDir { dir: String, source: std::io::Error },
    #[error("{path} exists; --force replaces it")]
    Exists { path: String },
    #[error("{path} is a directory, which a restore never replaces")]
    IsDir { path: String },
    #[error("reading the backup copy {path}: {source}")]
    ReadCopy {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the backup copy {path} does not match its recorded sha256 (recorded {recorded}, found {found}); nothing restored")]
    Corrupt {
        path: PathBuf,
        recorded: String,
        found: String,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// What the restored file gets.
pub(super) struct Meta<'a> {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub sha256: Option<[u8; 32]>,
    /// Names the temporary file (`.portcullis-restore-<tag>`).
    pub tmp_tag: &'a str,
}

pub(super) struct Written {
    pub replaced: bool,
}

/// The file a restore writes: `to`, or `to/<original name>` when `to` is a
/// directory, or the original path.
pub(super) fn target(original: &FilePath, to: Option<&FilePath>) -> Result<FilePath, RestoreError> {
    let Some(to) = to else {
        return Ok(original.clone());
    };
    let path = to.to_path_buf();
    if !path.is_absolute() {
        return Err(RestoreError::NotAbsolute { path: to.escaped() });
    }
    match open_dir(&path, libc::O_PATH) {
        Ok(_) => {
            let name = original.to_path_buf();
            let name = name.file_name().ok_or_else(|| RestoreError::NoName {
                path: original.escaped(),
            })?;
            Ok(FilePath::from(path.join(name).as_path()))
        }
        // Not a directory (yet): `to` names the file.
        Err(RestoreError::NoDir { .. }) => Ok(to.clone()),
        Err(RestoreError::OpenDir { source, .. })
            if source.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            Ok(to.clone())
        }
        Err(e) => Err(e),
    }
}

/// Copies `copy` to `target` (see the module docs).
pub(super) fn write(
    copy: &Path,
    target: &FilePath,
    meta: Meta<'_>,
    replace: bool,
) -> Result<Written, RestoreError> {
    let path = target.to_path_buf();
    let shown = || target.escaped();
    if !path.is_absolute() {
        return Err(RestoreError::NotAbsolute { path: shown() });
    }
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(RestoreError::NoName { path: shown() });
    };
    let name = cstring(name.as_bytes())?;
    let dir = open_dir(parent, libc::O_RDONLY)?;
    let mut source = File::open(copy).map_err(|source| RestoreError::ReadCopy {
        path: copy.to_path_buf(),
        source,
    })?;
    let tmp = cstring(format!(".portcullis-restore-{}", meta.tmp_tag).as_bytes())?;
    // A leftover of an interrupted restore of the same entry.
    // SAFETY: valid dirfd and NUL-terminated name; unlinkat never follows.
    unsafe { libc::unlinkat(dir.as_raw_fd(), tmp.as_ptr(), 0) };
    let werr = |source| RestoreError::Write {
        path: shown(),
        source,
    };
    // SAFETY: valid dirfd, NUL-terminated name; the fd returned is owned below.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            tmp.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(werr(std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh fd that nothing else owns.
    let mut out = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let result = fill(&mut source, &mut out, copy, &meta, werr)
        .and_then(|()| place(&dir, &tmp, &name, replace, shown));
    if result.is_err() {
        // SAFETY: as above.
        unsafe { libc::unlinkat(dir.as_raw_fd(), tmp.as_ptr(), 0) };
    }
    result
}

/// Copies, checks the hash, sets owner and mode, syncs.
fn fill(
    source: &mut File,
    out: &mut File,
    copy: &Path,
    meta: &Meta<'_>,
    werr: impl Fn(std::io::Error) -> RestoreError,
) -> Result<(), RestoreError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(RestoreError::ReadCopy {
                    path: copy.to_path_buf(),
                    source,
                })
            }
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(&werr)?;
    }
    let found: [u8; 32] = hasher.finalize().into();
    if let Some(recorded) = meta.sha256 {
        if recorded != found {
            return Err(RestoreError::Corrupt {
                path: copy.to_path_buf(),
                recorded: hex::encode(recorded),
                found: hex::encode(found),
            });
        }
    }
    // Owner first: chown clears the set-id bits that the mode then sets.
    // SAFETY: a valid fd we own.
    if unsafe { libc::fchown(out.as_raw_fd(), meta.uid, meta.gid) } != 0 {
        return Err(werr(std::io::Error::last_os_error()));
    }
    // SAFETY: as above.
    if unsafe { libc::fchmod(out.as_raw_fd(), (meta.mode & 0o7777) as libc::mode_t) } != 0 {
        return Err(werr(std::io::Error::last_os_error()));
    }
    out.sync_all().map_err(werr)
}

/// Renames the temporary file into place.
fn place(
    dir: &OwnedFd,
    tmp: &CString,
    name: &CString,
    replace: bool,
    shown: impl Fn() -> String,
) -> Result<Written, RestoreError> {
    let d = dir.as_raw_fd();
    // SAFETY: zeroed stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid dirfd, name and out pointer; never follows a symlink.
    let exists =
        unsafe { libc::fstatat(d, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } == 0;
    if exists && st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        return Err(RestoreError::IsDir { path: shown() });
    }
    if exists && !replace {
        return Err(RestoreError::Exists { path: shown() });
    }
    let werr = |source| RestoreError::Write {
        path: shown(),
        source,
    };
    if replace {
        // SAFETY: valid dirfds and names.
        if unsafe { libc::renameat(d, tmp.as_ptr(), d, name.as_ptr()) } != 0 {
            return Err(werr(std::io::Error::last_os_error()));
        }
    } else {
        // SAFETY: as above.
        let rc =
            unsafe { libc::renameat2(d, tmp.as_ptr(), d, name.as_ptr(), libc::RENAME_NOREPLACE) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EEXIST) => return Err(RestoreError::Exists { path: shown() }),
                // A filesystem without RENAME_NOREPLACE: a hard link fails
                // the same way on an existing name.
                Some(libc::EINVAL) => {
                    // SAFETY: as above.
                    if unsafe { libc::linkat(d, tmp.as_ptr(), d, name.as_ptr(), 0) } != 0 {
                        let e = std::io::Error::last_os_error();
                        if e.raw_os_error() == Some(libc::EEXIST) {
                            return Err(RestoreError::Exists { path: shown() });
                        }
                        return Err(werr(e));
                    }
                    // SAFETY: as above.
                    unsafe { libc::unlinkat(d, tmp.as_ptr(), 0) };
                }
                _ => return Err(werr(e)),
            }
        }
    }
    // The new name is durable once the directory is.
    // SAFETY: a valid fd we own.
    if unsafe { libc::fsync(d) } != 0 {
        return Err(werr(std::io::Error::last_os_error()));
    }
    Ok(Written { replaced: exists })
}

/// Opens directory `path` resolving no symlink on the way
/// (`openat2(RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`).
fn open_dir(path: &Path, flags: libc::c_int) -> Result<OwnedFd, RestoreError> {
    let dir = || path.display().to_string();
    let c = cstring(path.as_os_str().as_bytes())?;
    // SAFETY: open_how is plain integers; zero is its "nothing asked".
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: a valid NUL-terminated path and open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        let source = std::io::Error::last_os_error();
        return Err(match source.raw_os_error() {
            Some(libc::ELOOP) => RestoreError::Symlink { dir: dir() },
            Some(libc::ENOENT) => RestoreError::NoDir { dir: dir() },
            _ => RestoreError::OpenDir { dir: dir(), source },
        });
    }
    // SAFETY: a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// A path for the kernel; one with a NUL byte (never from the kernel or a
/// command line) is refused.
fn cstring(bytes: &[u8]) -> Result<CString, RestoreError> {
    CString::new(bytes).map_err(|_| RestoreError::NulByte {
        path: String::from_utf8_lossy(bytes).into_owned(),
    })
}
