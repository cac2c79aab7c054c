//! Limits of one scan.

use std::time::Duration;

/// The model product's *limits*: skip objects larger than N bytes, stop a
/// scan after N seconds. A skipped object is reported as
/// [`portcullis_schemas::Verdict::Skipped`] (logged as *unprocessed*).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanLimits {
    /// Skip objects larger than this many bytes. `0` = no limit.
    pub max_size: u64,
    /// Stop a scan after this long. `Duration::ZERO` = no limit.
    ///
    /// YARA-X measures scan time with a one-second heartbeat, so the timeout
    /// is rounded up to whole seconds, and a scan may overrun it by up to
    /// about a second.
    pub timeout: Duration,
    /// Archive scanning: which files are walked, within which limits.
    pub archives: ArchiveScan,
}

/// How archives are scanned (`[scan.archives]`, docs/archives.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchiveScan {
    /// `all`, `sfx` (only archives inside an executable) or `off`.
    pub mode: portcullis_archive::ArchiveMode,
    pub limits: portcullis_archive::Limits,
    /// Report each member's verdict ([`super::ScanOutcome::members`]), not
    /// only the archive's.
    pub log_archived: bool,
}

impl Default for ArchiveScan {
    /// Every archive, the walker's default limits, the archive's verdict
    /// only.
    fn default() -> Self {
        Self {
            mode: portcullis_archive::ArchiveMode::All,
            limits: portcullis_archive::Limits::default(),
            log_archived: false,
        }
    }
}

impl ScanLimits {
    /// The default scan timeout of the model product: 60 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
}

impl Default for ScanLimits {
    /// No size limit, 60 s timeout.
    fn default() -> Self {
        Self {
            max_size: 0,
            timeout: Self::DEFAULT_TIMEOUT,
            archives: ArchiveScan::default(),
        }
    }
}
