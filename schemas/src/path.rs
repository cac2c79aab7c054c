use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A filesystem path kept as raw bytes, so names that are not UTF-8 survive
/// every encoding unchanged.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct FilePath(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl FilePath {
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// `true` when the bytes are valid UTF-8.
    pub fn is_utf8(&self) -> bool {
        std::str::from_utf8(&self.0).is_ok()
    }

    /// A printable form: valid UTF-8 is kept as is, every byte that is not
    /// part of valid UTF-8 is written as `\xNN` (and a literal backslash as
    /// `\\` when escaping was needed), so the text maps back to the bytes.
    pub fn escaped(&self) -> String {
        self.to_text().into_owned()
    }

    /// [`escaped`](Self::escaped) without a copy when the path is UTF-8
    /// (the common case, and the SIEM encoders' hot path).
    pub fn to_text(&self) -> Cow<'_, str> {
        text_of(&self.0)
    }

    /// The last path component in the [`escaped`](Self::escaped) form.
    pub fn file_name_text(&self) -> Cow<'_, str> {
        text_of(self.file_name())
    }

    /// The last path component, as bytes.
    pub fn file_name(&self) -> &[u8] {
        match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        }
    }
}

/// Bytes in the [`FilePath::escaped`] form: borrowed when they are UTF-8.
pub(crate) fn text_of(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => {
            use std::fmt::Write as _;
            let mut out = String::with_capacity(bytes.len() + 8);
            for chunk in bytes.utf8_chunks() {
                for c in chunk.valid().chars() {
                    if c == '\\' {
                        out.push_str("\\\\");
                    } else {
                        out.push(c);
                    }
                }
                for b in chunk.invalid() {
                    // Writing to a String cannot fail.
                    let _ = write!(out, "\\x{b:02x}");
                }
            }
            Cow::Owned(out)
        }
    }
}

#[cfg(unix)]
impl From<&std::path::Path> for FilePath {
    fn from(p: &std::path::Path) -> Self {
        use std::os::unix::ffi::OsStrExt;
        Self(p.as_os_str().as_bytes().to_vec())
    }
}

#[cfg(unix)]
impl FilePath {
    /// The path as an OS path (lossless on Unix).
    pub fn to_path_buf(&self) -> std::path::PathBuf {
        use std::os::unix::ffi::OsStrExt;
        std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&self.0))
    }
}

impl fmt::Debug for FilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_text())
    }
}

impl fmt::Display for FilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_paths_print_unchanged() {
        assert_eq!(
            FilePath::from_bytes(&b"/srv/a\\b"[..]).escaped(),
            "/srv/a\\b"
        );
    }

    #[test]
    fn non_utf8_bytes_are_escaped() {
        let p = FilePath::from_bytes(&b"/srv/bad\xff\\name"[..]);
        assert!(!p.is_utf8());
        assert_eq!(p.escaped(), "/srv/bad\\xff\\\\name");
        assert_eq!(p.file_name(), b"bad\xff\\name");
    }
}
