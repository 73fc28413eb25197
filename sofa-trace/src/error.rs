use std::path::PathBuf;

/// Everything that can go wrong reading or writing an archive. Each variant
/// names the file involved so the binary can print one actionable line.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("no archive at {}: directory not found", path.display())]
    NotFound { path: PathBuf },

    #[error("{} is not a sofa archive: it has no meta.json", path.display())]
    NotAnArchive { path: PathBuf },

    #[error("corrupt archive metadata {}: {reason}", path.display())]
    CorruptMeta { path: PathBuf, reason: String },

    #[error(
        "{} uses archive format version {found}, newer than the {supported} this sofa reads",
        path.display()
    )]
    NewerFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    #[error("corrupt or truncated table file {}: {reason}", path.display())]
    CorruptTable { path: PathBuf, reason: String },

    #[error("table `{table}` is missing from the archive: {} not found", path.display())]
    MissingTable { table: String, path: PathBuf },

    // The OS error is the source: `{:#}` prints "PATH: ERROR" once.
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("refusing to record into {}: {reason}", path.display())]
    NotOurs { path: PathBuf, reason: String },

    #[error("{} is being recorded into by another sofa ({holder})", path.display())]
    Busy { path: PathBuf, holder: String },

    #[error("writing {}: {reason}", path.display())]
    Write { path: PathBuf, reason: String },
}

impl TraceError {
    /// The message with its causes on one line ("PATH: No space left on
    /// device"), for where the error is kept as text.
    pub fn with_causes(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        text
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TraceError::Io {
            path: path.into(),
            source,
        }
    }
}
