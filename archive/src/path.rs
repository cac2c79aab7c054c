//! Where a member sits: the names of the archive members leading to it.

use std::fmt;

/// The names of the archive members from the outer file down to a member,
/// displayed joined with `!`: `dir/inner.zip!evil.sh` for `evil.sh` in
/// `dir/inner.zip` in the outer archive. The outer file's own name is not
/// part of it (the caller prepends it); compression layers (gzip, bzip2,
/// xz, zstd) add no component.
///
/// Names come from the archives: they are taken lossily (bytes that are
/// not UTF-8 become U+FFFD), NUL and other control characters are removed,
/// and nothing else is changed (`../../etc/passwd` stays as it is). They are
/// names for display and matching only, never filesystem paths.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MemberPath(Vec<String>);

impl MemberPath {
    /// The empty path: the outer file itself.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a member name as the archive spells it (bytes or text),
    /// cleaned for display (see the type's docs).
    pub fn push(&mut self, raw_name: impl AsRef<[u8]>) {
        self.0.push(display_name(raw_name.as_ref()));
    }

    /// Removes the last component.
    pub fn pop(&mut self) -> Option<String> {
        self.0.pop()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number of components.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The components, outermost first.
    pub fn components(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for MemberPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("!")?;
            }
            f.write_str(c)?;
        }
        Ok(())
    }
}

impl<S: AsRef<str>> FromIterator<S> for MemberPath {
    /// Builds a path from names, cleaned as by [`push`](Self::push).
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut p = Self::new();
        for s in iter {
            p.push(s.as_ref());
        }
        p
    }
}

/// Lossy UTF-8 without control characters (C0, DEL, C1).
fn display_name(raw: &[u8]) -> String {
    let lossy = String::from_utf8_lossy(raw);
    if lossy.chars().any(char::is_control) {
        lossy.chars().filter(|c| !c.is_control()).collect()
    } else {
        lossy.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_joined_with_bang() {
        let mut p = MemberPath::new();
        assert!(p.is_empty());
        assert_eq!(p.to_string(), "");
        p.push(b"dir/inner.zip");
        p.push(b"evil.sh");
        assert_eq!(p.to_string(), "dir/inner.zip!evil.sh");
        assert_eq!(p.len(), 2);
        assert_eq!(p.pop().as_deref(), Some("evil.sh"));
        assert_eq!(p.to_string(), "dir/inner.zip");
    }

    #[test]
    fn names_are_lossy_without_controls_and_otherwise_kept() {
        let mut p = MemberPath::new();
        p.push(b"../../etc/passwd");
        p.push(b"a\0b\x1b[31m\x7f\n.txt");
        p.push(b"caf\xe9.txt");
        assert_eq!(p.components()[0], "../../etc/passwd");
        assert_eq!(p.components()[1], "ab[31m.txt");
        assert_eq!(p.components()[2], "caf\u{fffd}.txt");
        let p: MemberPath = ["/abs", "x\u{85}y"].into_iter().collect();
        assert_eq!(p.to_string(), "/abs!xy");
    }
}
