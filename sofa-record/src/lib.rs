//! Collectors: run the profiled command and stream what it does into an archive.

use std::ffi::OsString;
use std::path::PathBuf;

/// What `sofa record` was asked to do; built by the binary from its flags.
#[derive(Debug, Clone)]
pub struct RecordConfig {
    /// Archive directory. Default `sofa-out`.
    pub output: PathBuf,
    /// Samples per second per CPU. Default 999 (off the 1 kHz tick, as perf does).
    pub frequency_hz: u64,
    /// Sampling event; `None` picks hardware cycles where a PMU exists, else cpu-clock.
    pub event: Option<String>,
    /// Set `PYTHONPERFSUPPORT=1` in the child so CPython 3.12+ writes perf maps. Default on.
    pub python_perf: bool,
    /// The command and its arguments.
    pub command: Vec<OsString>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("the recorder is not built yet in this version of sofa")]
    NotImplemented,
}

/// Records `config.command` into `config.output`.
pub fn record(_config: &RecordConfig) -> Result<i32, RecordError> {
    Err(RecordError::NotImplemented)
}
