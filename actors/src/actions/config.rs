use std::path::PathBuf;

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

impl Default for ActionsConfig {
    fn default() -> Self {
        Self {
            first: default_first(),
            second: default_second(),
            quarantine_dir: default_quarantine(),
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
        Ok(())
    }
}
