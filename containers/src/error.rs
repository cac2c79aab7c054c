use std::io;

/// Errors of container discovery, marking and the control socket. Every
/// variant says what was being done.
#[derive(Debug, thiserror::Error)]
pub enum ContainersError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    #[error("{what}: {source}")]
    Mark {
        what: String,
        #[source]
        source: portcullis_interceptor::InterceptError,
    },
    /// Left unmarked on purpose (`[[containers.skip]]`, or the agent's own
    /// container).
    #[error("container {container} not protected: {reason}")]
    Skipped { container: String, reason: String },
    #[error("{what}: no answer within {timeout:?}")]
    Timeout {
        what: String,
        timeout: std::time::Duration,
    },
}
