use std::path::PathBuf;
use std::time::Duration;

use super::Retention;

use serde::Deserialize;

/// An action on a detected object, as named in the config file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionChoice {
    /// Deny access to the object (the open fails with EPERM).
    Block,
    /// Delete the object, after keeping a backup copy in quarantine.
    Remove,
    /// Kill the process that opened the object.
    Terminate,
    /// Per threat: the matching rule's `recommended_action` metadata
    /// (`block`, `remove` or `terminate`), else `block`.
    Recommended,
    /// Not possible with YARA rules (they detect, they cannot repair):
    /// always recorded as not possible, so the second action runs.
    Disinfect,
    /// No action (only valid as the second action).
    None,
}

/// `[actions]`: what happens to an infected object in Enforce mode.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionsConfig {
    /// Default `recommended`.
    #[serde(default = "default_first")]
    pub first: ActionChoice,
    /// Runs only if the first action fails. Default `block`.
    #[serde(default = "default_second")]
    pub second: ActionChoice,
    /// Root-only directory for backup copies of removed objects.
    /// Default `/var/lib/portcullis/quarantine`.
    #[serde(default = "default_quarantine")]
    pub quarantine_dir: PathBuf,
    /// Entries older than this are deleted, oldest first, each journaled
    /// (`QuarantineDeleted`, reason `max_age`). `off`: kept until deleted.
    /// Default `30d`.
    #[serde(default = "default_max_age")]
    pub quarantine_max_age: String,
    /// Past this many MiB (copies and records), the oldest entries are
    /// deleted (reason `max_size`); the newest always stays. 0: no limit.
    /// Default 1024.
    #[serde(default = "default_max_size_mb")]
    pub quarantine_max_size_mb: u64,
}

fn default_first() -> ActionChoice {
    ActionChoice::Recommended
}
fn default_second() -> ActionChoice {
    ActionChoice::Block
}
fn default_quarantine() -> PathBuf {
    PathBuf::from("/var/lib/portcullis/quarantine")
}
fn default_max_age() -> String {
    "30d".into()
}
fn default_max_size_mb() -> u64 {
    1024
}

impl Default for ActionsConfig {
    fn default() -> Self {
        Self {
            first: default_first(),
            second: default_second(),
            quarantine_dir: default_quarantine(),
            quarantine_max_age: default_max_age(),
            quarantine_max_size_mb: default_max_size_mb(),
        }
    }
}

impl ActionsConfig {
    /// Cross-field checks; errors name the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.first == ActionChoice::None {
            return Err("actions.first: `none` is only valid as the second action".into());
        }
        if !self.quarantine_dir.is_absolute() {
            return Err(format!(
                "actions.quarantine_dir: `{}` must be an absolute path",
                self.quarantine_dir.display()
            ));
        }
        self.max_age()?;
        Ok(())
    }

    fn max_age(&self) -> Result<Option<Duration>, String> {
        let s = self.quarantine_max_age.trim();
        if s == "off" {
            return Ok(None);
        }
        match humantime::parse_duration(s) {
            Ok(d) if d.is_zero() => Err(format!(
                "actions.quarantine_max_age: `{s}` would delete every entry at once; write `off` to keep entries until deleted"
            )),
            Ok(d) => Ok(Some(d)),
            Err(e) => Err(format!(
                "actions.quarantine_max_age: `{s}` is not a duration (`30d`, `12h`) or `off`: {e}"
            )),
        }
    }

    /// The retention settings (validated by [`validate`](Self::validate);
    /// an invalid age keeps entries).
    pub fn retention(&self) -> Retention {
        Retention {
            max_age: self.max_age().ok().flatten(),
            max_bytes: (self.quarantine_max_size_mb > 0)
                .then(|| self.quarantine_max_size_mb.saturating_mul(1024 * 1024)),
        }
    }
}
