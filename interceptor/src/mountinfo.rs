//! `/proc/self/mountinfo`: which paths are mount points, and of what.
//!
//! Used by [`crate::Fanotify::mark`] to refuse paths that are not mount
//! points, and by tests to check that what they are about to mark really is
//! their private tmpfs.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// One line of `/proc/<pid>/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_id: u64,
    pub parent_id: u64,
    /// `major:minor` of the filesystem.
    pub device: String,
    /// The mount point, unescaped, as raw bytes.
    pub mount_point: Vec<u8>,
    /// Per-mount options (`rw,nosuid,...`).
    pub options: String,
    /// Optional fields such as `shared:1` or `master:2` (propagation).
    pub optional: Vec<String>,
    pub fstype: String,
    pub source: String,
    /// Per-superblock options (an overlay's `lowerdir=...,upperdir=...`).
    pub super_options: String,
}

impl MountEntry {
    /// `true` when mount events propagate to or from a peer group
    /// (`shared:N`) — i.e. the mount is not private.
    pub fn is_shared(&self) -> bool {
        self.optional.iter().any(|o| o.starts_with("shared:"))
    }
}

/// Undo the octal escapes (`\040` space, `\011` tab, `\012` newline,
/// `\134` backslash) the kernel writes in mountinfo paths.
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let digits = &b[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Parse one mountinfo line; `None` if malformed.
pub fn parse_line(line: &str) -> Option<MountEntry> {
    let mut it = line.split(' ');
    let mount_id = it.next()?.parse().ok()?;
    let parent_id = it.next()?.parse().ok()?;
    let device = it.next()?.to_owned();
    let _root = it.next()?;
    let mount_point = unescape(it.next()?);
    let options = it.next()?.to_owned();
    let mut optional = Vec::new();
    loop {
        let f = it.next()?;
        if f == "-" {
            break;
        }
        optional.push(f.to_owned());
    }
    let fstype = it.next()?.to_owned();
    let source = it.next().unwrap_or_default().to_owned();
    let super_options = it.next().unwrap_or_default().to_owned();
    Some(MountEntry {
        mount_id,
        parent_id,
        device,
        mount_point,
        options,
        optional,
        fstype,
        source,
        super_options,
    })
}

/// Parse a whole mountinfo text, skipping malformed lines.
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

/// The topmost mount whose mount point is exactly `path` (compare a
/// canonical path), or `None` when `path` is not a mount point.
pub fn find_in(entries: &[MountEntry], path: &Path) -> Option<MountEntry> {
    let want = path.as_os_str().as_bytes();
    entries
        .iter()
        .rev()
        .find(|e| e.mount_point == want)
        .cloned()
}

/// [`find_in`] on `/proc/self/mountinfo`. `path` should be canonical.
pub fn find(path: &Path) -> io::Result<Option<MountEntry>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(find_in(&parse(&text), path))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
35 22 0:31 / /tmp/a\\040b rw,nosuid,nodev shared:15 - tmpfs tmpfs rw,size=1024k
36 22 0:32 / /mnt/x rw,relatime master:3 - tmpfs none rw
37 36 0:33 / /mnt/x rw,relatime - tmpfs top rw
";

    #[test]
    fn parses_fields_and_escapes() {
        let e = parse(SAMPLE);
        assert_eq!(e.len(), 4);
        assert_eq!(e[0].mount_point, b"/");
        assert_eq!(e[0].fstype, "ext4");
        assert!(e[0].is_shared());
        assert_eq!(e[1].mount_point, b"/tmp/a b");
        assert_eq!(e[1].optional, vec!["shared:15".to_owned()]);
        assert_eq!(e[2].optional, vec!["master:3".to_owned()]);
        assert!(!e[2].is_shared());
        assert_eq!(e[3].optional, Vec::<String>::new());
        assert_eq!(e[3].source, "top");
    }

    #[test]
    fn finds_topmost_mount() {
        let e = parse(SAMPLE);
        assert_eq!(
            find_in(&e, Path::new("/mnt/x")).map(|m| m.mount_id),
            Some(37)
        );
        assert_eq!(
            find_in(&e, Path::new("/tmp/a b")).map(|m| m.mount_id),
            Some(35)
        );
        assert!(find_in(&e, Path::new("/tmp")).is_none());
        assert!(find_in(&e, Path::new("/mnt/x/sub")).is_none());
    }

    #[test]
    fn unescapes_octal_only() {
        assert_eq!(unescape("a\\134b\\011c"), b"a\\b\tc");
        assert_eq!(unescape("tail\\04"), b"tail\\04");
        assert_eq!(unescape("bad\\999"), b"bad\\999");
    }

    #[test]
    fn malformed_lines_are_skipped() {
        assert!(parse_line("garbage").is_none());
        assert!(parse_line("1 2 0:1 / /x rw no-dash-here").is_none());
    }
}
