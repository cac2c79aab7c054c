//! What `/proc` tells about an event's file and process.
//!
//! Called by the consumers of [`crate::ReaderMsg`], **never by the reader
//! thread**: these functions read procfs files (procfs is never marked, but
//! they are still slower than the reader may be).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;

use portcullis_schemas::{ContainerRef, ContainerRuntime, FileInfo, FilePath, ProcessInfo};

use crate::sys;

/// `fstat` + `readlink("/proc/self/fd/N")` of an event fd. `readlink` does
/// not open the target, and non-UTF-8 names survive ([`FilePath`] is
/// bytes). A deleted file's path ends in ` (deleted)`, as the kernel says.
pub fn file_info(fd: BorrowedFd<'_>) -> io::Result<FileInfo> {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
    Ok(FileInfo {
        path: FilePath::from_bytes(link.as_os_str().as_bytes()),
        ..file_identity(fd)?
    })
}

/// `fstat` alone: the file's identity and version (device, inode, size,
/// mtime, ctime) without its path, for checking that a file is unchanged.
pub fn file_identity(fd: BorrowedFd<'_>) -> io::Result<FileInfo> {
    let st = sys::fstat(fd)?;
    Ok(FileInfo {
        path: FilePath::default(),
        device: st.st_dev,
        inode: st.st_ino,
        size: u64::try_from(st.st_size).unwrap_or(0),
        mtime_ns: st
            .st_mtime
            .saturating_mul(1_000_000_000)
            .saturating_add(st.st_mtime_nsec),
        ctime_ns: st
            .st_ctime
            .saturating_mul(1_000_000_000)
            .saturating_add(st.st_ctime_nsec),
    })
}

/// Who is on the other end of a Unix socket (`SO_PEERCRED`): uid, gid
/// and pid when it connected.
pub fn peer_credentials(conn: BorrowedFd<'_>) -> io::Result<libc::ucred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: valid out pointer and length for SO_PEERCRED.
    let rc = unsafe {
        libc::getsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred)
}

/// The login uid of `pid` (`/proc/PID/loginuid`): the user who logged in,
/// whatever `sudo` or `su` made the process. `None` when the kernel does
/// not audit logins (the file says 4294967295) or the process is gone.
pub fn login_uid(pid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/loginuid")).ok()?;
    text.trim().parse().ok().filter(|u| *u != u32::MAX)
}

/// Best effort from `/proc/<pid>/stat` (ppid, comm), `/proc/<pid>/status`
/// (real uid/gid) and `readlink /proc/<pid>/exe`. A vanished process (or an
/// unreadable field) yields what could be read; the rest stays default.
pub fn process_info(pid: u32) -> ProcessInfo {
    let mut info = ProcessInfo {
        pid,
        ..ProcessInfo::default()
    };
    if let Ok(stat) = std::fs::read(format!("/proc/{pid}/stat")) {
        if let Some((comm, ppid)) = parse_stat(&stat) {
            info.command = Some(comm);
            info.ppid = ppid;
        }
    }
    if let Ok(status) = std::fs::read(format!("/proc/{pid}/status")) {
        let (uid, gid) = parse_status(&String::from_utf8_lossy(&status));
        info.uid = uid.unwrap_or(0);
        info.gid = gid.unwrap_or(0);
    }
    if let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) {
        info.executable = Some(FilePath::from_bytes(exe.as_os_str().as_bytes()));
    }
    info
}

/// `(comm, ppid)` from the text of `/proc/<pid>/stat`. `comm` may contain
/// spaces and `)`, so it runs from the first `(` to the **last** `)`.
pub fn parse_stat(stat: &[u8]) -> Option<(String, u32)> {
    let open = stat.iter().position(|&b| b == b'(')?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let comm = String::from_utf8_lossy(&stat[open + 1..close]).into_owned();
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let _state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((comm, ppid))
}

/// Real `(uid, gid)` from the text of `/proc/<pid>/status`.
pub fn parse_status(status: &str) -> (Option<u32>, Option<u32>) {
    let first_id = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_ascii_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    (first_id("Uid:"), first_id("Gid:"))
}

/// The container `pid` runs in, from `/proc/<pid>/cgroup`; `None` for host
/// processes and vanished ones.
pub fn container_of(pid: u32) -> Option<ContainerRef> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    parse_cgroup(&text)
}

/// Pure parser of `/proc/<pid>/cgroup` text (cgroup v1 and v2).
///
/// Recognised (ids are 64 lowercase hex digits):
/// - docker: `/docker/<id>`, `docker-<id>.scope`;
/// - containerd / kubernetes: `cri-containerd-<id>.scope`, and a bare `<id>`
///   under `/kubepods/...` (the cgroupfs driver does not name the runtime;
///   containerd is the common one);
/// - CRI-O: `crio-<id>.scope` or `crio-<id>`; `crio-conmon-<id>` is the
///   monitor, not a container;
/// - podman: `libpod-<id>.scope` or `libpod-<id>`; `libpod-conmon-<id>` is
///   not a container. A trailing `/container` sub-cgroup is fine.
///
/// Each line's path is read from its last component upwards; the first line
/// that names a container wins. Host processes (`/init.scope`,
/// `/user.slice/...`, `/system.slice/docker.service`, ...) give `None`.
pub fn parse_cgroup(text: &str) -> Option<ContainerRef> {
    text.lines().find_map(|line| {
        let path = line.splitn(3, ':').nth(2)?;
        container_in_path(path)
    })
}

fn container_in_path(path: &str) -> Option<ContainerRef> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    for (i, seg) in segments.iter().enumerate().rev() {
        let name = seg.strip_suffix(".scope").unwrap_or(seg);
        let prefixed = [
            ("docker-", ContainerRuntime::Docker),
            ("cri-containerd-", ContainerRuntime::Containerd),
            ("crio-", ContainerRuntime::CriO),
            ("libpod-", ContainerRuntime::Podman),
        ];
        for (prefix, runtime) in prefixed {
            if let Some(id) = name.strip_prefix(prefix) {
                if is_container_id(id) {
                    return Some(ContainerRef::new(runtime, id.to_owned()));
                }
            }
        }
        if is_container_id(seg) {
            let parents = &segments[..i];
            let runtime = if parents.last() == Some(&"docker") {
                Some(ContainerRuntime::Docker)
            } else if parents.iter().any(|p| p.starts_with("kubepods")) {
                Some(ContainerRuntime::Containerd)
            } else {
                None
            };
            if let Some(runtime) = runtime {
                return Some(ContainerRef::new(runtime, (*seg).to_owned()));
            }
        }
    }
    None
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether no process has the file open for writing any more (scan mode
/// `smart`: rescan only when the last writer closes).
///
/// A read lease can only be taken while nobody has the file open for
/// writing, so taking one (and dropping it at once) answers the question
/// without opening anything. `event_fd` must be read-only, as fanotify
/// event fds are. When leases are unavailable (e.g. a filesystem without
/// them), this says `true`: scanning once too often is the safe side.
pub fn is_last_writer(event_fd: BorrowedFd<'_>) -> bool {
    // SAFETY: fcntl on a valid fd with integer arguments.
    let rc = unsafe { libc::fcntl(event_fd.as_raw_fd(), libc::F_SETLEASE, libc::F_RDLCK) };
    if rc == 0 {
        // SAFETY: as above; releases the lease just taken.
        unsafe { libc::fcntl(event_fd.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) };
        return true;
    }
    let err = io::Error::last_os_error();
    !matches!(err.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EBUSY))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4a5e2c9b8d7f6e5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";

    fn parse(text: &str) -> Option<(ContainerRuntime, String)> {
        parse_cgroup(text).map(|c| (c.runtime, c.id))
    }

    fn some(rt: ContainerRuntime) -> Option<(ContainerRuntime, String)> {
        Some((rt, ID.to_owned()))
    }

    #[test]
    fn docker_cgroup_v1_cgroupfs() {
        let text = format!(
            "12:pids:/docker/{ID}\n11:memory:/docker/{ID}\n2:cpu,cpuacct:/docker/{ID}\n1:name=systemd:/docker/{ID}\n0::/system.slice/containerd.service\n"
        );
        assert_eq!(parse(&text), some(ContainerRuntime::Docker));
    }

    #[test]
    fn docker_cgroup_v2_systemd() {
        assert_eq!(
            parse(&format!("0::/system.slice/docker-{ID}.scope\n")),
            some(ContainerRuntime::Docker)
        );
        assert_eq!(
            parse(&format!("1:name=systemd:/system.slice/docker-{ID}.scope\n")),
            some(ContainerRuntime::Docker)
        );
    }

    #[test]
    fn containerd_kubernetes() {
        let v2 = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod8f5a2b1c_7d3e_4f6a_9b8c_1d2e3f4a5b6c.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(parse(&v2), some(ContainerRuntime::Containerd));
        let v1 = format!(
            "11:memory:/kubepods/burstable/pod8f5a2b1c-7d3e-4f6a-9b8c-1d2e3f4a5b6c/{ID}\n10:cpuset:/kubepods/burstable/pod8f5a2b1c-7d3e-4f6a-9b8c-1d2e3f4a5b6c/{ID}\n"
        );
        assert_eq!(parse(&v1), some(ContainerRuntime::Containerd));
        let besteffort =
            format!("0::/kubepods/besteffort/pod8f5a2b1c-7d3e-4f6a-9b8c-1d2e3f4a5b6c/{ID}\n");
        assert_eq!(parse(&besteffort), some(ContainerRuntime::Containerd));
    }

    #[test]
    fn crio_and_its_conmon() {
        let v2 = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1a2b3c4d_5e6f_7a8b_9c0d_1e2f3a4b5c6d.slice/crio-{ID}.scope\n"
        );
        assert_eq!(parse(&v2), some(ContainerRuntime::CriO));
        let cgroupfs =
            format!("0::/kubepods/besteffort/pod1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d/crio-{ID}\n");
        assert_eq!(parse(&cgroupfs), some(ContainerRuntime::CriO));
        let conmon = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1a2b3c4d_5e6f_7a8b_9c0d_1e2f3a4b5c6d.slice/crio-conmon-{ID}.scope\n"
        );
        assert_eq!(parse(&conmon), None);
    }

    #[test]
    fn podman_and_its_conmon() {
        assert_eq!(
            parse(&format!("0::/machine.slice/libpod-{ID}.scope\n")),
            some(ContainerRuntime::Podman)
        );
        assert_eq!(
            parse(&format!("0::/machine.slice/libpod-{ID}.scope/container\n")),
            some(ContainerRuntime::Podman)
        );
        assert_eq!(
            parse(&format!(
                "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope\n"
            )),
            some(ContainerRuntime::Podman)
        );
        assert_eq!(
            parse(&format!("3:memory:/libpod_parent/libpod-{ID}\n")),
            some(ContainerRuntime::Podman)
        );
        assert_eq!(
            parse(&format!("0::/machine.slice/libpod-conmon-{ID}.scope\n")),
            None
        );
    }

    #[test]
    fn host_processes_are_not_containers() {
        for text in [
            "0::/init.scope\n",
            "0::/\n",
            "0::/user.slice/user-1000.slice/session-3.scope\n",
            "0::/user.slice/user-1000.slice/user@1000.service/app.slice/dbus.service\n",
            "0::/system.slice/docker.service\n",
            "0::/system.slice/containerd.service\n",
            "0::/system.slice/crio.service\n",
            "12:pids:/user.slice/user-0.slice/session-1.scope\n11:memory:/user.slice\n1:name=systemd:/user.slice/user-0.slice/session-1.scope\n",
            "",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn ids_must_be_64_lowercase_hex() {
        let short = &ID[..63];
        assert_eq!(
            parse(&format!("0::/system.slice/docker-{short}.scope\n")),
            None
        );
        let upper = ID.to_uppercase();
        assert_eq!(parse(&format!("0::/docker/{upper}\n")), None);
        // A bare id outside docker/kubepods names no known runtime.
        assert_eq!(parse(&format!("0::/somewhere/{ID}\n")), None);
    }

    #[test]
    fn stat_comm_with_spaces_and_parens() {
        let stat = b"4242 (we(ird) name)) S 17 4242 4242 0 -1 4194560 100 0 0 0";
        assert_eq!(parse_stat(stat), Some(("we(ird) name)".to_owned(), 17)));
        assert_eq!(
            parse_stat(b"1 (init) S 0 1 1"),
            Some(("init".to_owned(), 0))
        );
        assert_eq!(parse_stat(b"garbage"), None);
        assert_eq!(parse_stat(b"1 (x"), None);
    }

    #[test]
    fn status_real_ids() {
        let status = "Name:\tcat\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t1000\t0\t0\t0\nGid:\t100\t100\t100\t100\n";
        assert_eq!(parse_status(status), (Some(1000), Some(100)));
        assert_eq!(parse_status("Name:\tx\n"), (None, None));
    }

    #[test]
    fn own_process_info() {
        let me = process_info(std::process::id());
        assert_eq!(me.pid, std::process::id());
        assert!(me.command.is_some());
        assert!(me.executable.is_some());
        // SAFETY: getuid has no preconditions.
        assert_eq!(me.uid, unsafe { libc::getuid() });
        assert_eq!(me.ppid, std::os::unix::process::parent_id());
    }

    #[test]
    fn vanished_process_yields_defaults() {
        // Above the default pid_max (4194304 max): cannot exist.
        let gone = process_info(u32::MAX - 1);
        assert_eq!(gone.pid, u32::MAX - 1);
        assert_eq!(gone.command, None);
        assert_eq!(gone.executable, None);
        assert_eq!(container_of(u32::MAX - 1), None);
    }

    #[test]
    fn file_info_of_a_regular_file() {
        use std::io::Write;
        use std::os::fd::AsFd;
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let mut f = std::fs::File::create(&path).expect("create");
        f.write_all(b"12345").expect("write");
        let info = file_info(f.as_fd()).expect("file_info");
        let meta = std::fs::metadata(&path).expect("metadata");
        assert_eq!(
            info.path.to_path_buf(),
            std::fs::canonicalize(&path).expect("canonicalize")
        );
        assert_eq!(info.size, 5);
        assert_eq!(info.inode, meta.ino());
        assert_eq!(info.device, meta.dev());
        assert_eq!(
            info.mtime_ns,
            meta.mtime() * 1_000_000_000 + meta.mtime_nsec()
        );
    }

    #[test]
    fn last_writer_via_read_lease() {
        use std::os::fd::AsFd;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w");
        let writer = std::fs::File::create(&path).expect("create");
        let reader = std::fs::File::open(&path).expect("open");
        assert!(!is_last_writer(reader.as_fd()), "a writer is still open");
        drop(writer);
        assert!(is_last_writer(reader.as_fd()));
    }
}
