//! Configuration of the journal.

use std::path::PathBuf;
use std::time::Duration;

use portcullis_schemas::NodeId;

use super::error::JournalError;

/// Default for [`JournalConfig::max_batch`].
pub const DEFAULT_MAX_BATCH: usize = 1024;

/// Default for [`JournalConfig::commit_interval`].
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(5);

/// Where the journal lives and how the actor groups commits.
///
/// The pipeline's own (serde) configuration maps into this struct; it is not
/// read from a file by itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalConfig {
    /// The sled directory. Created if missing.
    pub dir: PathBuf,
    /// This node. Stamped on every envelope, and stored in the journal at
    /// creation: a journal of another node is refused.
    pub node_id: NodeId,
    /// Max records per group commit (default 1024). The actor commits at
    /// once when this many records are waiting.
    pub max_batch: usize,
    /// Flush (fsync) at most this often when records trickle in (default
    /// 5 ms). A lone record after a quiet period is committed at once.
    pub commit_interval: Duration,
}

impl JournalConfig {
    /// A config with the default `max_batch` and `commit_interval`.
    pub fn new(dir: impl Into<PathBuf>, node_id: NodeId) -> Self {
        Self {
            dir: dir.into(),
            node_id,
            max_batch: DEFAULT_MAX_BATCH,
            commit_interval: DEFAULT_COMMIT_INTERVAL,
        }
    }

    /// Checks the fields. [`super::JournalStore::open`] calls this.
    pub fn validate(&self) -> Result<(), JournalError> {
        let problem = |field: &'static str, problem: &str| JournalError::Config {
            dir: self.dir.clone(),
            field,
            problem: problem.to_owned(),
        };
        if self.max_batch == 0 {
            return Err(problem("max_batch", "must be at least 1"));
        }
        if self.node_id.0.is_empty() {
            return Err(problem("node_id", "must not be empty"));
        }
        if self.dir.as_os_str().is_empty() {
            return Err(problem("dir", "must not be empty"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_config_validation_names_the_field() {
        let mut cfg = JournalConfig::new("/tmp/x", NodeId("n".into()));
        assert!(cfg.validate().is_ok());
        cfg.max_batch = 0;
        let err = cfg
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("max_batch"), "{err}");
        cfg.max_batch = 1;
        cfg.node_id = NodeId(String::new());
        let err = cfg
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("node_id"), "{err}");
    }
}
