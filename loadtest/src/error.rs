//! Errors of a load-test run. Each names what was being done.

use crate::process::ChildError;

/// What stopped a run before it could report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag's value is unusable; names the flag.
    #[error("--{flag}: {message}")]
    Flag { flag: &'static str, message: String },
    /// Something the scenario needs is missing here (root, fanotify,
    /// a broker).
    #[error("{scenario} scenario unavailable: {why}")]
    Unavailable { scenario: &'static str, why: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Child(#[from] ChildError),
    /// The opener processes broke their protocol (not a slow or hung open:
    /// those are measured and reported).
    #[error("opener {opener}: {message}")]
    Opener { opener: usize, message: String },
    /// Kafka setup, topics or lag.
    #[error("kafka: {context}: {message}")]
    Kafka { context: String, message: String },
    /// The in-process pipeline (actors, ruleset, configuration).
    #[error("pipeline: {context}: {message}")]
    Pipeline { context: String, message: String },
    /// Drawing a chart.
    #[error("chart {chart}: {message}")]
    Chart {
        chart: &'static str,
        message: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds what was being done to an I/O error.
pub trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }
}

impl Error {
    /// A pipeline error from anything displayable (anyhow errors of the
    /// pipeline crate, actix mailbox errors).
    pub fn pipeline(context: impl Into<String>, e: impl std::fmt::Display) -> Self {
        Self::Pipeline {
            context: context.into(),
            message: format!("{e:#}"),
        }
    }

    pub fn kafka(context: impl Into<String>, e: impl std::fmt::Display) -> Self {
        Self::Kafka {
            context: context.into(),
            message: format!("{e:#}"),
        }
    }

    pub fn flag(flag: &'static str, message: impl Into<String>) -> Self {
        Self::Flag {
            flag,
            message: message.into(),
        }
    }
}
