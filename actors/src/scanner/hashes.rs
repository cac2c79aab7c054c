//! Hash lists: sha256 digests decided without a scan.
//!
//! They live next to the rules, in the same directory, and are loaded (and
//! reloaded) with them; their names and contents are part of the
//! [`portcullis_schemas::RulesetVersion`], so every verdict cache follows a
//! change of a list as it follows a change of a rule.
//!
//! - `*.trusted.sha256`: content with one of these digests is allowed
//!   without running the rules (decision reason `trusted_hash`);
//! - `*.known-bad.sha256`: content with one of these digests is infected
//!   without running the rules (decision reason `known_bad_hash`; the
//!   verdict names the rule `known_bad_hash` in the list's namespace).
//!
//! The format is `sha256sum`'s output: one digest (64 hex digits) per line,
//! optionally followed by white space and a name; blank lines and lines
//! starting with `#` are ignored. A digest on both kinds of list is known
//! bad: denying is the safe side of a contradiction.

use std::collections::HashMap;
use std::path::Path;

use portcullis_schemas::{MetaValue, RuleMatch};

use super::errors::RulesError;

/// File name suffix of a trusted list.
pub const TRUSTED_SUFFIX: &str = ".trusted.sha256";
/// File name suffix of a known-bad list.
pub const KNOWN_BAD_SUFFIX: &str = ".known-bad.sha256";

/// The rule name a known-bad digest matches as.
pub const KNOWN_BAD_RULE: &str = "known_bad_hash";

/// Which kind of list a digest is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashListKind {
    Trusted,
    KnownBad,
}

impl HashListKind {
    /// The kind of list a file is, from its name; `None` for other files.
    pub fn of_file(name: &str) -> Option<Self> {
        if name.ends_with(TRUSTED_SUFFIX) && name.len() > TRUSTED_SUFFIX.len() {
            Some(Self::Trusted)
        } else if name.ends_with(KNOWN_BAD_SUFFIX) && name.len() > KNOWN_BAD_SUFFIX.len() {
            Some(Self::KnownBad)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trusted => "trusted",
            Self::KnownBad => "known_bad",
        }
    }
}

/// A digest found on a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashListHit {
    pub kind: HashListKind,
    /// The list's file name.
    pub list: String,
}

impl HashListHit {
    /// The match a known-bad digest is reported as.
    pub fn rule_match(&self, sha256: &[u8; 32]) -> RuleMatch {
        RuleMatch {
            rule: KNOWN_BAD_RULE.to_owned(),
            namespace: self.list.clone(),
            tags: vec!["hash_list".to_owned()],
            metadata: vec![("sha256".to_owned(), MetaValue::Str(hex::encode(sha256)))],
        }
    }
}

/// Every list of a ruleset, merged.
#[derive(Clone, Debug, Default)]
pub struct HashLists {
    /// Digest to (kind, index into `files`).
    entries: HashMap<[u8; 32], (HashListKind, usize)>,
    files: Vec<String>,
}

impl HashLists {
    /// Adds the list `text` read from `path` (its kind from its name).
    /// A bad line is an error naming the file and the line.
    pub fn add(&mut self, path: &Path, kind: HashListKind, text: &str) -> Result<(), RulesError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let index = self.files.len();
        self.files.push(name);
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let digest = line.split_whitespace().next().unwrap_or_default();
            // sha256sum escapes names holding `\` or a newline and marks
            // such a line with a leading `\`.
            let digest = digest.strip_prefix('\\').unwrap_or(digest);
            let digest = parse_digest(digest).map_err(|message| RulesError::HashList {
                file: path.to_path_buf(),
                line: n + 1,
                message,
            })?;
            match self.entries.get(&digest) {
                // Known bad wins over trusted, whatever the order.
                Some((HashListKind::KnownBad, _)) => {}
                _ => {
                    self.entries.insert(digest, (kind, index));
                }
            }
        }
        Ok(())
    }

    /// The list `sha256` is on, if any.
    pub fn lookup(&self, sha256: &[u8; 32]) -> Option<HashListHit> {
        let (kind, index) = self.entries.get(sha256)?;
        Some(HashListHit {
            kind: *kind,
            list: self.files.get(*index).cloned().unwrap_or_default(),
        })
    }

    /// The list files, in load order.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// How many digests of each kind: (trusted, known bad).
    pub fn counts(&self) -> (usize, usize) {
        let bad = self
            .entries
            .values()
            .filter(|(k, _)| *k == HashListKind::KnownBad)
            .count();
        (self.entries.len() - bad, bad)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn parse_digest(s: &str) -> Result<[u8; 32], String> {
    // `sha256sum --tag` style is not accepted; its lines start with `SHA256 (`.
    if s.len() != 64 {
        return Err(format!(
            "expected a sha256 digest (64 hex digits), found `{}` ({} characters)",
            s.escape_default(),
            s.len()
        ));
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out)
        .map_err(|e| format!("`{}` is not a hex sha256 digest: {e}", s.escape_default()))?;
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const A: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const B: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";

    #[test]
    fn kinds_come_from_the_file_name() {
        assert_eq!(
            HashListKind::of_file("vendor.trusted.sha256"),
            Some(HashListKind::Trusted)
        );
        assert_eq!(
            HashListKind::of_file("feed.known-bad.sha256"),
            Some(HashListKind::KnownBad)
        );
        assert_eq!(HashListKind::of_file(".trusted.sha256"), None);
        assert_eq!(HashListKind::of_file("x.sha256"), None);
        assert_eq!(HashListKind::of_file("rules.yar"), None);
    }

    #[test]
    fn reads_sha256sum_output_comments_and_blank_lines() {
        let mut lists = HashLists::default();
        let text = format!(
            "# vendor binaries\n\n{A}  /usr/bin/true\n\\{}  /opt/we\\\\ird\n",
            B.to_uppercase()
        );
        lists
            .add(
                Path::new("/r/v.trusted.sha256"),
                HashListKind::Trusted,
                &text,
            )
            .unwrap();
        let a: [u8; 32] = hex::decode(A).unwrap().try_into().unwrap();
        let b: [u8; 32] = hex::decode(B).unwrap().try_into().unwrap();
        assert_eq!(
            lists.lookup(&a),
            Some(HashListHit {
                kind: HashListKind::Trusted,
                list: "v.trusted.sha256".into()
            })
        );
        assert!(lists.lookup(&b).is_some());
        assert_eq!(lists.lookup(&[0; 32]), None);
        assert_eq!(lists.counts(), (2, 0));
    }

    #[test]
    fn known_bad_wins_whatever_the_order() {
        let a: [u8; 32] = hex::decode(A).unwrap().try_into().unwrap();
        for order in [[true, false], [false, true]] {
            let mut lists = HashLists::default();
            for bad in order {
                let (name, kind) = if bad {
                    ("f.known-bad.sha256", HashListKind::KnownBad)
                } else {
                    ("v.trusted.sha256", HashListKind::Trusted)
                };
                lists.add(Path::new(name), kind, A).unwrap();
            }
            let hit = lists.lookup(&a).unwrap();
            assert_eq!(hit.kind, HashListKind::KnownBad);
            assert_eq!(hit.list, "f.known-bad.sha256");
            let m = hit.rule_match(&a);
            assert_eq!(m.rule, KNOWN_BAD_RULE);
            assert_eq!(m.metadata[0].1, MetaValue::Str(A.into()));
        }
    }

    #[test]
    fn a_bad_line_names_the_file_and_line() {
        let mut lists = HashLists::default();
        let err = lists
            .add(
                Path::new("/r/f.known-bad.sha256"),
                HashListKind::KnownBad,
                &format!("{A}\n# ok\nnot-a-digest  x\n"),
            )
            .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("/r/f.known-bad.sha256:3: "), "{text}");
        assert!(text.contains("64 hex digits"), "{text}");
        let err = lists
            .add(
                Path::new("g.known-bad.sha256"),
                HashListKind::KnownBad,
                &"z".repeat(64),
            )
            .unwrap_err();
        assert!(err.to_string().contains("not a hex sha256"), "{err}");
    }
}
