//! Errors of the scanner module.

use std::io;
use std::path::PathBuf;

/// Why a rules directory could not be turned into a [`super::Ruleset`].
///
/// Every variant names the directory or file at fault; compile errors also
/// carry the line and column of the first error the compiler reported.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The rules directory could not be listed.
    #[error("cannot read rules directory `{}`: {source}", dir.display())]
    ReadDir {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A rule file could not be read.
    #[error("cannot read rule file `{}`: {source}", file.display())]
    ReadFile {
        file: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The directory holds no `*.yar` / `*.yara` file.
    #[error("no rule files (*.yar, *.yara) in `{}`", dir.display())]
    NoRuleFiles { dir: PathBuf },

    /// A line of a hash list is not a sha256 digest (`line` is 1-based).
    #[error("{}:{line}: {message}", file.display())]
    HashList {
        file: PathBuf,
        line: usize,
        message: String,
    },

    /// A rule file does not compile.
    ///
    /// `line` and `column` are 1-based and point at the first error of the
    /// file (0 when the compiler gave no location). `report` is the full
    /// report as YARA-X renders it, with the offending source line.
    #[error("{}:{line}:{column}: {message}", file.display())]
    Compile {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
        report: String,
    },
}
