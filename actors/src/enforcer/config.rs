use std::time::Duration;

use portcullis_schemas::{Decision, Mode};
use serde::Deserialize;

/// What to answer when no verdict can be had (deadline, overload, error).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    Allow,
    Deny,
}

impl Fallback {
    pub fn decision(self) -> Decision {
        match self {
            Self::Allow => Decision::Allow,
            Self::Deny => Decision::Deny,
        }
    }
}

/// When files are scanned (the model product's *scan mode*).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ScanMode {
    /// Scan on open for read, exec or write.
    #[default]
    Open,
    /// Scan on open, and again on close if the file was written.
    OpenAndModify,
    /// Like `open_and_modify`, but rescan only when the last writer closes.
    Smart,
}

impl ScanMode {
    /// Whether close-after-write events are needed.
    pub fn watches_close_write(self) -> bool {
        !matches!(self, Self::Open)
    }
}

/// The Enforcer's settings, validated by the pipeline's config loader.
#[derive(Clone, Debug)]
pub struct EnforcerConfig {
    /// The interceptor mode (takes precedence over each policy's mode).
    pub mode: Mode,
    /// How long an opener may wait for a verdict.
    pub deadline: Duration,
    pub on_timeout: Fallback,
    pub on_overload: Fallback,
    pub on_scan_error: Fallback,
    /// An archive whose walk stopped at a limit (`scan.archives.on_limit`).
    pub on_archive_limit: Fallback,
    /// Bound on decisions waiting at once (each holds an open fd).
    pub max_pending: usize,
    /// Bound on the Enforcer's mailbox (accesses not yet looked at).
    pub mailbox: usize,
    /// Reuse verdicts of unchanged files (user-space cache and kernel
    /// ignore marks).
    pub skip_unchanged: bool,
    /// Bound on the user-space verdict cache.
    pub cache_entries: usize,
    /// Journal verdicts of clean objects.
    pub log_clean: bool,
    /// Journal verdicts of objects that were not scanned (too large, scan
    /// timeout, excluded).
    pub log_unprocessed: bool,
    /// How often deadlines are checked; the margin past a deadline.
    pub tick: Duration,
}

impl Default for EnforcerConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Enforce,
            deadline: Duration::from_secs(12),
            on_timeout: Fallback::Allow,
            on_overload: Fallback::Allow,
            on_scan_error: Fallback::Allow,
            on_archive_limit: Fallback::Allow,
            max_pending: 4096,
            mailbox: 1024,
            skip_unchanged: true,
            cache_entries: 65_536,
            log_clean: true,
            log_unprocessed: true,
            tick: Duration::from_millis(5),
        }
    }
}
