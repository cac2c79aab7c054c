//! Compiling a directory of YARA rule files into a [`Ruleset`].

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use portcullis_schemas::RulesetVersion;
use sha2::{Digest, Sha256};

use super::errors::RulesError;
use super::hashes::{HashListKind, HashLists};

/// File name extensions compiled by [`Ruleset::compile_dir`].
pub const RULE_EXTENSIONS: [&str; 2] = ["yar", "yara"];

/// Hex digits of the sha256 kept in a [`RulesetVersion`].
const VERSION_HEX_LEN: usize = 16;

/// A compiled set of YARA rules, the hash lists beside them, and the
/// identity of their sources.
///
/// A reload compiles a new `Ruleset` and swaps it in ([`super::LiveRules`]);
/// the old one is freed once the last scanner holding it has moved on.
pub struct Ruleset {
    version: RulesetVersion,
    files: Vec<String>,
    rule_count: u32,
    warnings: Vec<String>,
    /// Boxed so that its address never changes while the ruleset lives
    /// ([`super::ScanEngine`] keeps a scanner borrowing it).
    rules: Box<yara_x::Rules>,
    hashes: HashLists,
}

impl Ruleset {
    /// Compiles every `*.yar` / `*.yara` file directly in `dir` (not in its
    /// subdirectories), in file name order. Hidden files (`.name`) are
    /// ignored. Each file gets its own namespace, named after the file stem,
    /// so two files may define rules with the same name.
    ///
    /// `include` statements are disabled: a rule file must stand alone, so
    /// that the ruleset version (a hash of the files read here) covers all
    /// the source that was compiled.
    ///
    /// Fails on an unreadable directory or file, on a directory without rule
    /// files, and on the first file that does not compile, naming the file,
    /// the line and the column.
    ///
    /// The hash lists of the directory (`*.trusted.sha256`,
    /// `*.known-bad.sha256`, see [`super::hashes`]) are loaded with the
    /// rules; a bad line fails the load, naming the file and the line.
    pub fn compile_dir(dir: &Path) -> Result<Ruleset, RulesError> {
        let found = source_files(dir)?;
        let read = |path: PathBuf| {
            let text = fs::read_to_string(&path).map_err(|source| RulesError::ReadFile {
                file: path.clone(),
                source,
            })?;
            Ok::<_, RulesError>((path, text))
        };
        let sources = found
            .rules
            .into_iter()
            .map(read)
            .collect::<Result<Vec<_>, _>>()?;
        let lists = found
            .hash_lists
            .into_iter()
            .map(read)
            .collect::<Result<Vec<_>, _>>()?;
        Self::compile_with_lists(dir, &sources, &lists)
    }

    /// Compiles `(path, source)` pairs, in the given order.
    ///
    /// `dir` only names where the sources came from, in errors. Used for
    /// rules compiled into a binary.
    pub fn compile_sources(
        dir: &Path,
        sources: &[(PathBuf, String)],
    ) -> Result<Ruleset, RulesError> {
        Self::compile_with_lists(dir, sources, &[])
    }

    /// Compiles `(path, source)` rule files and loads `(path, text)` hash
    /// lists (their kind from their file name), in the given order.
    pub fn compile_with_lists(
        dir: &Path,
        sources: &[(PathBuf, String)],
        lists: &[(PathBuf, String)],
    ) -> Result<Ruleset, RulesError> {
        if sources.is_empty() {
            return Err(RulesError::NoRuleFiles {
                dir: dir.to_path_buf(),
            });
        }

        let mut compiler = yara_x::Compiler::new();
        compiler.enable_includes(false);

        let mut hasher = Sha256::new();
        let mut files = Vec::with_capacity(sources.len());
        let mut warnings = Vec::new();

        for (path, text) in sources {
            let name = file_name(path);
            let namespace = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| name.clone());

            // Length-prefixed, so that moving bytes between a file name and
            // a content (or between two files) changes the version.
            for part in [name.as_bytes(), text.as_bytes()] {
                hasher.update((part.len() as u64).to_le_bytes());
                hasher.update(part);
            }

            compiler.new_namespace(&namespace);
            let seen = compiler.warnings().len();
            let origin = path.display().to_string();
            if let Err(err) =
                compiler.add_source(yara_x::SourceCode::from(text.as_str()).with_origin(origin))
            {
                return Err(compile_error(path, text, &err));
            }
            for warning in &compiler.warnings()[seen..] {
                tracing::warn!(file = %name, "{warning}");
                warnings.push(warning.to_string());
            }
            files.push(name);
        }

        let mut hashes = HashLists::default();
        for (path, text) in lists {
            let name = file_name(path);
            let Some(kind) = HashListKind::of_file(&name) else {
                continue;
            };
            // A marker no rule file name can hold keeps the lists' share of
            // the digest apart from the rules'.
            hasher.update(b"\0hash-list\0");
            for part in [name.as_bytes(), text.as_bytes()] {
                hasher.update((part.len() as u64).to_le_bytes());
                hasher.update(part);
            }
            hashes.add(path, kind, text)?;
        }

        // Compiled rules are no longer leaked: a hot reload would leak one
        // ruleset per reload. The engine's scanner borrows them through the
        // `Arc<Ruleset>` it holds (see `ScanEngine`).
        let rules = Box::new(compiler.build());
        let rule_count = u32::try_from(rules.iter().len()).unwrap_or(u32::MAX);
        let digest = hex::encode(hasher.finalize());
        let version = RulesetVersion(digest[..VERSION_HEX_LEN].to_owned());

        let (trusted, known_bad) = hashes.counts();
        tracing::info!(
            ruleset = %version,
            rules = rule_count,
            files = files.len(),
            trusted_hashes = trusted,
            known_bad_hashes = known_bad,
            "compiled rules"
        );

        Ok(Ruleset {
            version,
            files,
            rule_count,
            warnings,
            rules,
            hashes,
        })
    }

    /// The short hex sha256 over the (file name, content) pairs, in order.
    /// Stable while the files are unchanged; it changes when any file is
    /// added, removed, renamed or edited.
    pub fn version(&self) -> &RulesetVersion {
        &self.version
    }

    /// The rule file names compiled, in order.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// The number of rules compiled (private and global rules included).
    pub fn rule_count(&self) -> u32 {
        self.rule_count
    }

    /// Compiler warnings, rendered, in file order.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The compiled rules.
    pub fn rules(&self) -> &yara_x::Rules {
        &self.rules
    }

    /// The hash lists loaded with the rules.
    pub fn hash_lists(&self) -> &HashLists {
        &self.hashes
    }
}

impl fmt::Debug for Ruleset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ruleset")
            .field("version", &self.version)
            .field("files", &self.files)
            .field("rule_count", &self.rule_count)
            .field("warnings", &self.warnings.len())
            .finish_non_exhaustive()
    }
}

/// The files of a rules directory that make a ruleset.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SourceFiles {
    /// `*.yar`, `*.yara`, sorted by file name.
    pub rules: Vec<PathBuf>,
    /// `*.trusted.sha256`, `*.known-bad.sha256`, sorted by file name.
    pub hash_lists: Vec<PathBuf>,
}

/// The rule files and hash lists directly in `dir`, each sorted by file
/// name. Hidden files are ignored. Fails when there is no rule file.
pub fn source_files(dir: &Path) -> Result<SourceFiles, RulesError> {
    let read_dir_err = |source| RulesError::ReadDir {
        dir: dir.to_path_buf(),
        source,
    };
    let mut found = SourceFiles::default();
    for entry in fs::read_dir(dir).map_err(read_dir_err)? {
        let path = entry.map_err(read_dir_err)?.path();
        let name = file_name(&path);
        // `is_file` follows symlinks, so a link to a rule file counts.
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        let is_rule_file = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| RULE_EXTENSIONS.contains(&e));
        if is_rule_file {
            found.rules.push(path);
        } else if HashListKind::of_file(&name).is_some() {
            found.hash_lists.push(path);
        }
    }
    found
        .rules
        .sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    found
        .hash_lists
        .sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    if found.rules.is_empty() {
        return Err(RulesError::NoRuleFiles {
            dir: dir.to_path_buf(),
        });
    }
    Ok(found)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Turns the compiler's error into a [`RulesError::Compile`] with the
/// location of its first label, computed from the label's byte span in
/// `text` (the source the compiler was given).
fn compile_error(path: &Path, text: &str, err: &yara_x::errors::CompileError) -> RulesError {
    let label = err.labels().next();
    let (line, column) = label
        .as_ref()
        .map(|l| line_column(text, l.span().start()))
        .unwrap_or((0, 0));
    let message = match label.as_ref().map(|l| l.text()) {
        Some(text) if !text.is_empty() && text != err.title() => {
            format!("error[{}]: {}: {}", err.code(), err.title(), text)
        }
        _ => format!("error[{}]: {}", err.code(), err.title()),
    };
    RulesError::Compile {
        file: path.to_path_buf(),
        line,
        column,
        message,
        report: err.to_string(),
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.as_bytes().get(..offset).unwrap_or_default();
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::line_column;

    #[test]
    fn line_column_counts_from_one() {
        let text = "ab\ncd\n\u{e9}f";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 1), (1, 2));
        assert_eq!(line_column(text, 3), (2, 1));
        assert_eq!(line_column(text, 4), (2, 2));
        // After a two-byte character, the column counts characters.
        assert_eq!(line_column(text, 8), (3, 2));
        assert_eq!(line_column(text, 999), (3, 3));
    }
}
