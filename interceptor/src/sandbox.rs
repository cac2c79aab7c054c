//! A safe playground for tests, demos and benches: a private mount namespace
//! with a tmpfs in it, so a permission mark can only ever block accesses to
//! files that exist nowhere else.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use fanotify::low_level as fan;

/// `unshare(CLONE_NEWNS)` + make `/` recursively private, so mounts made
/// afterwards are invisible to (and never propagate to) the rest of the
/// machine.
///
/// **Per thread**: in a multi-threaded process `unshare` moves only the
/// calling thread into the new namespace (with its own `fs_struct`); other
/// threads — and processes they spawn — stay in the old one. Call it before
/// spawning threads, or do all the namespace-sensitive work (mounting,
/// marking, spawning openers) from the calling thread. Tests use a whole
/// process under `unshare -m --propagation private` instead.
pub fn enter_private_mount_namespace() -> io::Result<()> {
    // SAFETY: plain syscall.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let root = c"/";
    // SAFETY: valid NUL-terminated strings; NULL source/fstype/data are
    // allowed for a propagation change.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Mount a fresh tmpfs (`nosuid,nodev`, `size=size_bytes`) on `target`.
///
/// Mount it only inside a private mount namespace
/// ([`enter_private_mount_namespace`]): then a fanotify mark on it cannot
/// touch any file another process uses.
pub fn mount_tmpfs(target: &Path, size_bytes: u64) -> io::Result<()> {
    let target_c = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let data = CString::new(format!("size={size_bytes},mode=0755"))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad tmpfs options"))?;
    let tmpfs = c"tmpfs";
    // SAFETY: all pointers are valid NUL-terminated strings.
    let rc = unsafe {
        libc::mount(
            tmpfs.as_ptr(),
            target_c.as_ptr(),
            tmpfs.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(
            err.kind(),
            format!("mount tmpfs on {}: {err}", target.display()),
        ));
    }
    Ok(())
}

/// `Ok` if a permission-class fanotify group can be created here (root and
/// kernel support), else a human explanation of what is missing.
pub fn fanotify_permission_available() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(format!(
            "fanotify permission events need root (CAP_SYS_ADMIN); running as uid {euid}"
        ));
    }
    match fan::fanotify_init(
        fan::FAN_CLASS_CONTENT | fan::FAN_CLOEXEC | fan::FAN_NONBLOCK,
        libc::O_RDONLY as u32,
    ) {
        Ok(fd) => {
            // SAFETY: fd was just returned by fanotify_init and is ours.
            unsafe { libc::close(fd) };
            Ok(())
        }
        Err(e) => Err(match e.raw_os_error() {
            Some(libc::ENOSYS) => "the kernel has no fanotify (CONFIG_FANOTIFY)".to_owned(),
            Some(libc::EINVAL) => {
                "the kernel has no fanotify permission events (CONFIG_FANOTIFY_ACCESS_PERMISSIONS)"
                    .to_owned()
            }
            Some(libc::EPERM) => {
                "fanotify_init was refused: CAP_SYS_ADMIN is missing (container without privileges?)"
                    .to_owned()
            }
            Some(libc::EMFILE) => "too many fanotify groups for this user (max_user_groups)".to_owned(),
            _ => format!("fanotify_init(FAN_CLASS_CONTENT) failed: {e}"),
        }),
    }
}
