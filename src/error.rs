//! Errors of the library. Every one of them is a stagebox error (exit 125, as docker does):
//! the workload's own failures are exit statuses, never errors.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user asked for something that cannot be done; the text says what and how to fix it.
    #[error("{0}")]
    Usage(String),
    /// The plan refuses this combination of stages.
    #[error("{0}")]
    Plan(String),
    /// A stage failed inside the container (or while preparing it).
    #[error("stage {stage}: {message}")]
    Stage { stage: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {}", .source.desc())]
    Sys {
        context: String,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("stagebox needs root for this ({what}); run it with sudo, or as root")]
    NotRoot { what: String },
    #[error("{path}: {message}")]
    Path { path: PathBuf, message: String },
    /// The workload's command could not be exec'd: 127 (not found) or 126 (not runnable),
    /// as Docker exits.
    #[error("{message}")]
    NotRunnable { message: String, code: i32 },
}

impl Error {
    /// What `stagebox` exits with for this error: always 125, as `docker run` does, so a
    /// caller can tell a runtime failure from the workload's own exit status.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::NotRunnable { code, .. } => *code,
            _ => 125,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn sys(context: impl Into<String>, source: nix::errno::Errno) -> Self {
        Error::Sys {
            context: context.into(),
            source,
        }
    }

    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
