//! The configuration file (`portcullis.toml`), validated at load.
//!
//! Every section is a serde struct with `deny_unknown_fields` and documented
//! defaults; [`ConfigFile::build`] checks cross-field rules and turns it into
//! [`Settings`]. Every error names the file and the field. The example file
//! `portcullis.example.toml` at the repository root lists every setting with
//! its default, and a test keeps it loadable.

use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_actors::actions::ActionsConfig;
use portcullis_actors::enforcer::{EnforcerConfig, Fallback, ScanMode};
use portcullis_actors::journal::JournalConfig;
use portcullis_actors::policy::{Policies, PolicySpec};
use portcullis_actors::scanner::{ArchiveScan, ScanLimits};
use portcullis_interceptor::MarkScope;

use crate::kafka::{KafkaSection, KafkaSettings};
use portcullis_schemas::{Mode, NodeId};
use serde::Deserialize;

/// The node id when the file sets none (then the host name).
pub const NODE_ID_ENV: &str = "PORTCULLIS_NODE_ID";

/// The node id without `node_id`: the variable (a DaemonSet passes the
/// node's name from the downward API), else the host name.
fn default_node_id(env: Option<String>) -> String {
    env.map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(hostname)
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {source}")]
    Parse {
        file: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{file}: {field}: {message}")]
    Invalid {
        file: String,
        field: String,
        message: String,
    },
}

/// The file as written. All fields have defaults.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// This node's id in every event. Default: env `PORTCULLIS_NODE_ID`,
    /// else the host name.
    pub node_id: Option<String>,
    /// `enforce` (default) or `audit`; takes precedence over policy modes.
    #[serde(default)]
    pub interceptor_mode: Mode,
    /// Mount points to protect.
    #[serde(default)]
    pub protect: Vec<PathBuf>,
    /// `mount` (default): events through these mounts; `filesystem`: through
    /// any mount of the same filesystem.
    #[serde(default)]
    pub mark_scope: MarkScopeSetting,
    /// Protecting `/` puts every open of the host's root mount through the
    /// agent. Off unless set.
    #[serde(default)]
    pub allow_root_mount: bool,
    #[serde(default)]
    pub scan: ScanSection,
    #[serde(default)]
    pub enforcer: EnforcerSection,
    #[serde(default)]
    pub actions: ActionsConfig,
    #[serde(default)]
    pub logging: LoggingSection,
    #[serde(default)]
    pub journal: JournalSection,
    #[serde(default, rename = "policy")]
    pub policies: Vec<PolicySpec>,
    /// Distributed mode: scan requests and verdicts travel through Kafka,
    /// and every journal event is published. Absent: embedded mode.
    pub kafka: Option<KafkaSection>,
    /// `portcullis siem-export` (needs `[kafka]`); see docs/siem.md.
    pub siem: Option<crate::siem::SiemSection>,
    /// Every container on the node; see docs/containers.md.
    #[serde(default)]
    pub containers: crate::containers::ContainersSection,
    /// Metrics, health endpoints and traces; see docs/observability.md.
    #[serde(default)]
    pub telemetry: portcullis_telemetry::TelemetrySection,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MarkScopeSetting {
    #[default]
    Mount,
    Filesystem,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanSection {
    /// `open` (default), `open_and_modify` or `smart`.
    #[serde(default)]
    pub mode: ScanMode,
    /// Directory of `.yar` files. Default: the built-in ruleset.
    pub rules: Option<PathBuf>,
    /// Skip (and log as unprocessed) objects larger than this. 0 = no limit.
    #[serde(default = "d_max_mb")]
    pub max_object_size_mb: u64,
    /// Stop a scan after this long (logged as unprocessed).
    #[serde(default = "d_scan_timeout")]
    pub timeout: String,
    /// Scanner threads; 0 = one per core.
    #[serde(default)]
    pub threads: usize,
    /// Reuse verdicts of unchanged files (user-space cache + kernel marks).
    #[serde(default = "d_true")]
    pub skip_unchanged: bool,
    /// Reload when the files of `rules` change (SIGHUP always reloads).
    #[serde(default)]
    pub watch_rules: bool,
    /// How often the rules directory is looked at; a change is loaded once
    /// two looks in a row agree (the debounce).
    #[serde(default = "d_watch_interval")]
    pub watch_interval: String,
    /// `[scan.archives]`: archive scanning and its limits.
    #[serde(default)]
    pub archives: ArchivesSection,
}

/// `[scan.archives]` (docs/archives.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchivesSection {
    /// `all`, `sfx` (only archives inside an executable) or `off`.
    #[serde(default)]
    pub mode: portcullis_archive::ArchiveMode,
    /// The open of an archive whose walk stopped at a limit.
    #[serde(default = "d_allow")]
    pub on_limit: Fallback,
    /// Journal each member's verdict, not only the archive's.
    #[serde(default)]
    pub log_archived: bool,
    #[serde(default)]
    pub limits: portcullis_archive::Limits,
}

impl Default for ArchivesSection {
    fn default() -> Self {
        Self {
            mode: portcullis_archive::ArchiveMode::All,
            on_limit: Fallback::Allow,
            log_archived: false,
            limits: portcullis_archive::Limits::default(),
        }
    }
}

impl Default for ScanSection {
    fn default() -> Self {
        Self {
            mode: ScanMode::default(),
            rules: None,
            max_object_size_mb: d_max_mb(),
            timeout: d_scan_timeout(),
            threads: 0,
            skip_unchanged: true,
            watch_rules: false,
            watch_interval: d_watch_interval(),
            archives: ArchivesSection::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnforcerSection {
    /// The longest an opener waits for a verdict.
    #[serde(default = "d_deadline")]
    pub deadline: String,
    #[serde(default = "d_allow")]
    pub on_timeout: Fallback,
    #[serde(default = "d_allow")]
    pub on_overload: Fallback,
    #[serde(default = "d_allow")]
    pub on_scan_error: Fallback,
    #[serde(default = "d_max_pending")]
    pub max_pending: usize,
    #[serde(default = "d_mailbox")]
    pub mailbox: usize,
    #[serde(default = "d_cache_entries")]
    pub cache_entries: usize,
}

impl Default for EnforcerSection {
    fn default() -> Self {
        Self {
            deadline: d_deadline(),
            on_timeout: Fallback::Allow,
            on_overload: Fallback::Allow,
            on_scan_error: Fallback::Allow,
            max_pending: d_max_pending(),
            mailbox: d_mailbox(),
            cache_entries: d_cache_entries(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingSection {
    #[serde(default = "d_true")]
    pub log_clean: bool,
    #[serde(default = "d_true")]
    pub log_unprocessed: bool,
}

impl Default for LoggingSection {
    fn default() -> Self {
        Self {
            log_clean: true,
            log_unprocessed: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalSection {
    #[serde(default = "d_journal_dir")]
    pub dir: PathBuf,
    #[serde(default = "d_commit_interval")]
    pub commit_interval: String,
    #[serde(default = "d_max_batch")]
    pub max_batch: usize,
}

impl Default for JournalSection {
    fn default() -> Self {
        Self {
            dir: d_journal_dir(),
            commit_interval: d_commit_interval(),
            max_batch: d_max_batch(),
        }
    }
}

fn d_true() -> bool {
    true
}
fn d_allow() -> Fallback {
    Fallback::Allow
}
fn d_max_mb() -> u64 {
    100
}
fn d_watch_interval() -> String {
    "1s".into()
}

fn d_scan_timeout() -> String {
    "10s".into()
}
fn d_deadline() -> String {
    "12s".into()
}
fn d_max_pending() -> usize {
    4096
}
fn d_mailbox() -> usize {
    1024
}
fn d_cache_entries() -> usize {
    65_536
}
fn d_journal_dir() -> PathBuf {
    PathBuf::from("/var/lib/portcullis/journal")
}
fn d_commit_interval() -> String {
    "5ms".into()
}
fn d_max_batch() -> usize {
    1024
}

/// Flags that override the file (`portcullis run`).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub protect: Vec<PathBuf>,
    pub mode: Option<Mode>,
    pub rules: Option<PathBuf>,
    pub journal: Option<PathBuf>,
    /// `run --containers`: sets `containers.enabled`.
    pub containers: bool,
    /// `--metrics-listen`: replaces `telemetry.metrics_listen`.
    pub metrics_listen: Option<String>,
}

/// Validated settings, ready for wiring.
#[derive(Debug, Clone)]
pub struct Settings {
    pub node_id: NodeId,
    pub protect: Vec<PathBuf>,
    pub mark_scope: MarkScope,
    pub allow_root_mount: bool,
    pub scan_mode: ScanMode,
    pub rules: Option<PathBuf>,
    /// `scan.watch_rules`: the interval the rules directory is polled at.
    pub rules_watch: Option<Duration>,
    pub limits: ScanLimits,
    pub scan_threads: usize,
    pub enforcer: EnforcerConfig,
    pub actions: ActionsConfig,
    pub journal: JournalConfig,
    pub policies: std::sync::Arc<Policies>,
    pub kafka: Option<std::sync::Arc<KafkaSettings>>,
    pub siem: Option<crate::siem::SiemSettings>,
    pub containers: crate::containers::ContainersSettings,
    pub telemetry: portcullis_telemetry::TelemetrySettings,
}

impl ConfigFile {
    /// Reads and parses a file; errors name it (and the line, for syntax).
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|source| ConfigError::Parse {
            file: file.to_path_buf(),
            source,
        })
    }

    pub fn parse(text: &str) -> Result<Self, Box<toml::de::Error>> {
        toml::from_str(text).map_err(Box::new)
    }

    /// Applies the overrides and validates cross-field rules. `origin`
    /// names the file in errors.
    pub fn build(self, origin: &str, o: Overrides) -> Result<Settings, ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            file: origin.to_string(),
            field: field.to_string(),
            message,
        };
        let duration = |field: &str, s: &str| -> Result<Duration, ConfigError> {
            humantime::parse_duration(s).map_err(|e| {
                invalid(
                    field,
                    format!("`{s}` is not a duration (e.g. \"10s\", \"250ms\"): {e}"),
                )
            })
        };
        let mode = o.mode.unwrap_or(self.interceptor_mode);
        let protect = if o.protect.is_empty() {
            self.protect
        } else {
            o.protect
        };
        for (i, p) in protect.iter().enumerate() {
            if !p.is_absolute() {
                return Err(invalid(
                    &format!("protect[{i}]"),
                    format!("`{}` must be an absolute path", p.display()),
                ));
            }
            if p == Path::new("/") && !self.allow_root_mount {
                return Err(invalid(
                    &format!("protect[{i}]"),
                    "`/` puts every open on the host through the agent; set allow_root_mount = true to mean it".into(),
                ));
            }
        }
        let scan_timeout = duration("scan.timeout", &self.scan.timeout)?;
        let rules = o.rules.or(self.scan.rules);
        let watch_interval = duration("scan.watch_interval", &self.scan.watch_interval)?;
        if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&watch_interval) {
            return Err(invalid(
                "scan.watch_interval",
                format!("{} is not between 100ms and 1h", self.scan.watch_interval),
            ));
        }
        if self.scan.watch_rules && rules.is_none() {
            return Err(invalid(
                "scan.watch_rules",
                "needs scan.rules (or --rules): the built-in ruleset never changes".into(),
            ));
        }
        let rules_watch = self.scan.watch_rules.then_some(watch_interval);
        let archives = &self.scan.archives;
        archives.limits.validate().map_err(|e| {
            invalid(
                &format!("scan.archives.limits.{}", e.field),
                e.message.clone(),
            )
        })?;
        let deadline = duration("enforcer.deadline", &self.enforcer.deadline)?;
        if deadline.is_zero() {
            return Err(invalid(
                "enforcer.deadline",
                "must be greater than zero".into(),
            ));
        }
        if scan_timeout >= deadline {
            return Err(invalid(
                "scan.timeout",
                format!(
                    "{} must be shorter than enforcer.deadline ({}), or every slow scan ends in a deadline decision",
                    self.scan.timeout, self.enforcer.deadline
                ),
            ));
        }
        if self.enforcer.max_pending == 0 || self.enforcer.max_pending > 65_536 {
            return Err(invalid(
                "enforcer.max_pending",
                format!("{} is not in 1..=65536", self.enforcer.max_pending),
            ));
        }
        if self.enforcer.mailbox == 0 {
            return Err(invalid("enforcer.mailbox", "must be at least 1".into()));
        }
        if self.enforcer.cache_entries == 0 {
            return Err(invalid(
                "enforcer.cache_entries",
                "must be at least 1".into(),
            ));
        }
        if self.scan.threads > 256 {
            return Err(invalid(
                "scan.threads",
                format!("{} threads is more than 256", self.scan.threads),
            ));
        }
        let commit_interval = duration("journal.commit_interval", &self.journal.commit_interval)?;
        if self.journal.max_batch == 0 {
            return Err(invalid("journal.max_batch", "must be at least 1".into()));
        }
        self.actions.validate().map_err(|m| {
            let (field, msg) = m.split_once(": ").unwrap_or(("actions", m.as_str()));
            invalid(field, msg.to_string())
        })?;
        let policies =
            Policies::build(&self.policies).map_err(|e| invalid("policy", e.to_string()))?;
        let node_id = match self.node_id {
            Some(n) if n.trim().is_empty() => {
                return Err(invalid("node_id", "must not be empty".into()))
            }
            Some(n) => n,
            None => default_node_id(std::env::var(NODE_ID_ENV).ok()),
        };
        let threads = if self.scan.threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            self.scan.threads
        };
        let journal_dir = o.journal.unwrap_or(self.journal.dir);
        let kafka = match self.kafka {
            None => None,
            Some(k) => Some(std::sync::Arc::new(
                k.build()
                    .map_err(|(field, message)| invalid(&field, message))?,
            )),
        };
        let mut containers = self
            .containers
            .build()
            .map_err(|(field, message)| invalid(&field, message))?;
        containers.enabled |= o.containers;
        let mut telemetry_section = self.telemetry;
        if let Some(listen) = o.metrics_listen {
            telemetry_section.metrics_listen = Some(listen);
        }
        let telemetry = telemetry_section
            .build()
            .map_err(|(field, message)| invalid(&field, message))?;
        let siem = match (self.siem, &kafka) {
            (None, _) => None,
            (Some(s), Some(k)) => Some(
                s.build(k)
                    .map_err(|(field, message)| invalid(&field, message))?,
            ),
            (Some(_), None) => {
                return Err(invalid(
                    "siem",
                    "needs a [kafka] section (siem-export reads the events topic)".into(),
                ))
            }
        };
        Ok(Settings {
            node_id: NodeId(node_id.clone()),
            protect,
            mark_scope: match self.mark_scope {
                MarkScopeSetting::Mount => MarkScope::Mount,
                MarkScopeSetting::Filesystem => MarkScope::Filesystem,
            },
            allow_root_mount: self.allow_root_mount,
            scan_mode: self.scan.mode,
            rules,
            rules_watch,
            limits: ScanLimits {
                max_size: self.scan.max_object_size_mb.saturating_mul(1024 * 1024),
                timeout: scan_timeout,
                archives: ArchiveScan {
                    mode: self.scan.archives.mode,
                    // The walk shares the scan's time budget: at most
                    // scan.timeout, itself shorter than the deadline.
                    limits: portcullis_archive::Limits {
                        timeout: self.scan.archives.limits.timeout.min(scan_timeout),
                        ..self.scan.archives.limits
                    },
                    log_archived: self.scan.archives.log_archived,
                },
            },
            scan_threads: threads,
            enforcer: EnforcerConfig {
                mode,
                deadline,
                on_timeout: self.enforcer.on_timeout,
                on_overload: self.enforcer.on_overload,
                on_scan_error: self.enforcer.on_scan_error,
                on_archive_limit: self.scan.archives.on_limit,
                max_pending: self.enforcer.max_pending,
                mailbox: self.enforcer.mailbox,
                skip_unchanged: self.scan.skip_unchanged,
                cache_entries: self.enforcer.cache_entries,
                log_clean: self.logging.log_clean,
                log_unprocessed: self.logging.log_unprocessed,
                ..EnforcerConfig::default()
            },
            actions: self.actions,
            journal: JournalConfig {
                dir: journal_dir,
                node_id: NodeId(node_id),
                max_batch: self.journal.max_batch,
                commit_interval,
            },
            policies: std::sync::Arc::new(policies),
            kafka,
            siem,
            containers,
            telemetry,
        })
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_node_id_defaults_to_the_variable_then_the_host_name() {
        assert_eq!(default_node_id(Some(" node-7 ".into())), "node-7");
        assert_eq!(default_node_id(Some("  ".into())), hostname());
        assert_eq!(default_node_id(None), hostname());
        assert!(!hostname().is_empty());
    }

    fn build(text: &str) -> Result<Settings, String> {
        ConfigFile::parse(text)
            .map_err(|e| e.to_string())?
            .build("test.toml", Overrides::default())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_documented_values() {
        let s = build("").unwrap();
        assert_eq!(s.enforcer.mode, Mode::Enforce);
        assert_eq!(s.enforcer.deadline, Duration::from_secs(12));
        assert_eq!(s.limits.timeout, Duration::from_secs(10));
        assert_eq!(s.limits.max_size, 100 * 1024 * 1024);
        assert_eq!(s.enforcer.on_timeout, Fallback::Allow);
        assert_eq!(s.scan_mode, ScanMode::Open);
        assert_eq!(s.journal.dir, PathBuf::from("/var/lib/portcullis/journal"));
    }

    #[test]
    fn the_example_config_loads_and_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../portcullis.example.toml");
        let file = ConfigFile::load(&path).unwrap();
        let s = file
            .build("portcullis.example.toml", Overrides::default())
            .unwrap();
        let d = build("").unwrap();
        assert_eq!(s.enforcer.deadline, d.enforcer.deadline);
        assert_eq!(s.limits.timeout, d.limits.timeout);
        assert_eq!(s.limits.max_size, d.limits.max_size);
        assert_eq!(s.enforcer.max_pending, d.enforcer.max_pending);
        assert_eq!(s.journal.max_batch, d.journal.max_batch);
        assert_eq!(s.journal.commit_interval, d.journal.commit_interval);
        assert_eq!(s.scan_mode, d.scan_mode);
        assert_eq!(s.enforcer.mode, d.enforcer.mode);
        let (c, dc) = (&s.containers, &d.containers);
        assert_eq!(c.enabled, dc.enabled);
        assert_eq!(c.runtimes, dc.runtimes);
        assert_eq!(c.local.podman_storage, dc.local.podman_storage);
        assert_eq!(c.local.containerd_state, dc.local.containerd_state);
        assert_eq!(c.local.crio_run_root, dc.local.crio_run_root);
        assert_eq!(
            c.nri.as_ref().map(|n| (&n.socket, &n.name, &n.index)),
            dc.nri.as_ref().map(|n| (&n.socket, &n.name, &n.index))
        );
        assert_eq!(c.volumes, dc.volumes);
        assert_eq!(c.control_socket, dc.control_socket);
        assert_eq!(c.metadata_timeout, dc.metadata_timeout);
        assert_eq!(c.rescan_interval, dc.rescan_interval);
        assert_eq!(c.watch_mounts, dc.watch_mounts);
        assert_eq!(c.recently_gone, dc.recently_gone);
        assert_eq!(c.hook.timeout, dc.hook.timeout);
        assert_eq!(c.hook.on_agent_unavailable, dc.hook.on_agent_unavailable);
        assert_eq!(c.hook.spool_dir, dc.hook.spool_dir);
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_name_and_line() {
        let err = build("[scan]\nmode = \"open\"\ntimeot = \"5s\"\n").unwrap_err();
        assert!(err.contains("timeot") && err.contains("line 3"), "{err}");
    }

    #[test]
    fn watching_the_rules_needs_a_directory_and_a_sane_interval() {
        let build = |text: &str, rules: Option<&str>| {
            ConfigFile::parse(text).unwrap().build(
                "test.toml",
                Overrides {
                    rules: rules.map(PathBuf::from),
                    ..Overrides::default()
                },
            )
        };
        let err = build("[scan]\nwatch_rules = true\n", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("test.toml: scan.watch_rules: needs scan.rules"),
            "{err}"
        );
        let s = build("[scan]\nwatch_rules = true\n", Some("/r")).unwrap();
        assert_eq!(s.rules_watch, Some(Duration::from_secs(1)));
        let s = build("[scan]\nwatch_interval = \"5s\"\n", Some("/r")).unwrap();
        assert_eq!(s.rules_watch, None, "off unless asked");
        for bad in ["10ms", "2h", "soon"] {
            let err = build(&format!("[scan]\nwatch_interval = \"{bad}\"\n"), None)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("test.toml: scan.watch_interval: "), "{err}");
        }
    }

    #[test]
    fn archive_limits_are_validated_by_field_and_the_walk_fits_the_scan_timeout() {
        let build = |text: &str| {
            ConfigFile::parse(text)
                .map_err(|e| e.to_string())
                .and_then(|f| {
                    f.build("test.toml", Overrides::default())
                        .map_err(|e| e.to_string())
                })
        };
        let err = build("[scan.archives.limits]\nmax_depth = 0\n").unwrap_err();
        assert!(
            err.starts_with("test.toml: scan.archives.limits.max_depth: "),
            "{err}"
        );
        let err = build("[scan.archives.limits]\nmax_dpeth = 3\n").unwrap_err();
        assert!(err.contains("unknown field `max_dpeth`"), "{err}");
        let err = build("[scan.archives]\nmode = \"some\"\n").unwrap_err();
        assert!(err.contains("unknown variant `some`"), "{err}");
        let s = build("[scan]\ntimeout = \"2s\"\n[scan.archives]\non_limit = \"deny\"\n").unwrap();
        assert_eq!(
            s.limits.archives.limits.timeout,
            Duration::from_secs(2),
            "capped"
        );
        assert_eq!(s.enforcer.on_archive_limit, Fallback::Deny);
    }

    #[test]
    fn scan_timeout_must_be_shorter_than_the_deadline() {
        let err = build("[scan]\ntimeout = \"30s\"\n[enforcer]\ndeadline = \"5s\"\n").unwrap_err();
        assert!(
            err.starts_with("test.toml: scan.timeout:") && err.contains("enforcer.deadline"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_the_field() {
        for (text, field) in [
            ("[enforcer]\ndeadline = \"soon\"\n", "enforcer.deadline"),
            ("[enforcer]\nmax_pending = 0\n", "enforcer.max_pending"),
            ("protect = [\"relative/dir\"]\n", "protect[0]"),
            ("protect = [\"/\"]\n", "protect[0]"),
            (
                "[actions]\nquarantine_dir = \"q\"\n",
                "actions.quarantine_dir",
            ),
            ("[actions]\nfirst = \"none\"\n", "actions.first"),
            (
                "[actions]\nquarantine_max_age = \"a week\"\n",
                "actions.quarantine_max_age",
            ),
            (
                "[actions]\nquarantine_max_age = \"0s\"\n",
                "actions.quarantine_max_age",
            ),
            (
                "[containers]\nrescan_interval = \"0s\"\n",
                "containers.rescan_interval",
            ),
            ("[[policy]]\nname = \"p\"\npaths = [\"[\"]\n", "policy"),
            (
                "[journal]\ncommit_interval = \"x\"\n",
                "journal.commit_interval",
            ),
        ] {
            let err = build(text).unwrap_err();
            assert!(
                err.starts_with(&format!("test.toml: {field}:")),
                "{text:?} -> {err}"
            );
        }
        let err = build("interceptor_mode = \"block\"\n").unwrap_err();
        assert!(
            err.contains("interceptor_mode") || err.contains("block"),
            "{err}"
        );
    }

    #[test]
    fn flags_override_the_file() {
        let f = ConfigFile::parse("interceptor_mode = \"enforce\"\nprotect = [\"/a\"]\n").unwrap();
        let s = f
            .build(
                "x",
                Overrides {
                    protect: vec!["/b".into()],
                    mode: Some(Mode::Audit),
                    rules: Some("/r".into()),
                    journal: Some("/j".into()),
                    containers: true,
                    metrics_listen: Some("9779".into()),
                },
            )
            .unwrap();
        assert_eq!(
            s.telemetry.metrics_listen.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:9779")
        );
        assert_eq!(s.protect, vec![PathBuf::from("/b")]);
        assert_eq!(s.enforcer.mode, Mode::Audit);
        assert_eq!(s.rules, Some(PathBuf::from("/r")));
        assert_eq!(s.journal.dir, PathBuf::from("/j"));
        assert!(s.containers.enabled);
    }
}
