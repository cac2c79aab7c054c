//! Finding containers in `/proc`, runtime-agnostic: every process whose
//! cgroup names a container ([`procfs::container_of`]); the container's
//! init is the one whose parent is outside the container.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use portcullis_interceptor::{mountinfo, procfs};
use portcullis_schemas::ContainerRef;

/// A container seen in `/proc`, with one of its processes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub container: ContainerRef,
    /// The container's init if it could be told, else its lowest pid.
    pub pid: u32,
}

/// Every container with a live process, by walking `/proc`.
pub fn running() -> Vec<Found> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    // container id -> (container, pids)
    let mut seen: HashMap<String, (ContainerRef, Vec<u32>)> = HashMap::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(c) = procfs::container_of(pid) {
            seen.entry(c.id.clone())
                .or_insert_with(|| (c, Vec::new()))
                .1
                .push(pid);
        }
    }
    let mut out: Vec<Found> = seen
        .into_values()
        .map(|(container, mut pids)| {
            pids.sort_unstable();
            let init = pids
                .iter()
                .copied()
                .find(|&p| {
                    let ppid = ppid_of(p);
                    ppid.is_some_and(|pp| !pids.contains(&pp))
                })
                .or_else(|| pids.first().copied())
                .unwrap_or_default();
            Found {
                container,
                pid: init,
            }
        })
        .filter(|f| f.pid != 0)
        .collect();
    out.sort_by(|a, b| a.container.id.cmp(&b.container.id));
    out
}

fn ppid_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    procfs::parse_stat(&stat).map(|(_, ppid)| ppid)
}

/// Filesystem types that are never a volume: the kernel's pseudo
/// filesystems a runtime mounts into every container.
const PSEUDO_FS: &[&str] = &[
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "mqueue",
    "devtmpfs",
    "securityfs",
    "debugfs",
    "tracefs",
    "bpf",
    "fusectl",
    "configfs",
    "pstore",
    "binfmt_misc",
    "hugetlbfs",
    "nsfs",
    "autofs",
];

/// The volumes of the container whose init is `pid` and whose root is
/// `root` in that process' mount table (`/` for a running container; the
/// host-side root path during `createRuntime`, before `pivot_root`): the
/// directory mounts below `root` other than the root itself, the kernel's
/// pseudo filesystems and what lives under `/proc`, `/sys` and `/dev` of
/// the container. Files bind mounted by the runtime (`/etc/hosts`, ...)
/// are not volumes. Paths are as the host reaches them:
/// `/proc/<pid>/root/<mount point>`.
pub fn volumes(pid: u32, root: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")) else {
        return Vec::new();
    };
    let base = PathBuf::from(format!("/proc/{pid}/root"));
    volume_mount_points(&text, root)
        .into_iter()
        .map(|mp| base.join(mp.strip_prefix("/").unwrap_or(&mp)))
        .filter(|p| p.is_dir())
        .collect()
}

/// The mount points (in the process' mount table) of the volumes of a
/// container rooted at `root`.
pub fn volume_mount_points(mountinfo_text: &str, root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = mountinfo::parse(mountinfo_text)
        .into_iter()
        .filter(|m| !PSEUDO_FS.contains(&m.fstype.as_str()))
        .filter_map(|m| {
            let mp = PathBuf::from(std::ffi::OsStr::from_bytes(&m.mount_point));
            let dest = Path::new("/").join(mp.strip_prefix(root).ok()?);
            let runtime_owned = dest == Path::new("/")
                || ["/proc", "/sys", "/dev"]
                    .iter()
                    .any(|p| dest.starts_with(p));
            (!runtime_owned).then_some(mp)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn volumes_are_the_directory_mounts_past_the_runtime_ones() {
        let text = "\
600 500 0:52 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
601 600 0:53 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
602 600 0:54 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
603 602 0:55 / /dev/pts rw,nosuid,noexec,relatime - devpts devpts rw
604 600 0:56 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
605 600 254:0 /srv/data /data rw,relatime - ext4 /dev/vda rw
606 600 254:0 /var/lib/containers/x/hosts /etc/hosts rw,relatime - ext4 /dev/vda rw
607 600 0:57 / /scratch\\040dir rw,relatime - tmpfs tmpfs rw
608 600 0:58 / /run/secrets rw - tmpfs tmpfs rw
";
        assert_eq!(
            volume_mount_points(text, Path::new("/")),
            vec![
                PathBuf::from("/data"),
                PathBuf::from("/etc/hosts"),
                PathBuf::from("/run/secrets"),
                PathBuf::from("/scratch dir"),
            ],
            "files such as /etc/hosts are dropped later, by is_dir on the live path"
        );
    }

    #[test]
    fn before_pivot_root_only_mounts_below_the_root_count() {
        let text = "\
400 300 254:0 / / rw - ext4 /dev/vda rw
401 400 0:5 / /proc rw - proc proc rw
402 400 254:0 / /work rw - ext4 /dev/vda rw
450 400 0:41 / /o/merged rw - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
451 450 0:60 / /o/merged/dev rw - tmpfs tmpfs rw
452 450 0:61 / /o/merged/proc rw - proc proc rw
453 450 254:0 /srv/data /o/merged/data rw - ext4 /dev/vda rw
";
        assert_eq!(
            volume_mount_points(text, Path::new("/o/merged")),
            vec![PathBuf::from("/o/merged/data")],
            "host mounts, the root and the runtime's own mounts are not volumes"
        );
    }

    #[test]
    fn this_test_process_is_not_in_a_container() {
        let me = std::process::id();
        assert!(running().iter().all(|f| f.pid != me));
    }
}
