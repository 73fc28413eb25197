//! One actionable hint and an exit status per kind of error.

use sofa_analyze::AnalyzeError;
use sofa_record::RecordError;
use sofa_report::ReportError;
use sofa_trace::TraceError;

/// Exit status for an error: the shell's 127/126 for a command that cannot
/// be run, 1 otherwise.
pub fn exit_code_for(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<RecordError>() {
        Some(RecordError::CommandNotFound(_)) => 127,
        Some(RecordError::CannotExecute { .. }) => 126,
        _ => 1,
    }
}

/// What the user can do about an error, when we know.
pub fn hint_for(err: &anyhow::Error) -> Option<String> {
    if let Some(e) = err.downcast_ref::<TraceError>() {
        return trace_hint(e);
    }
    if let Some(AnalyzeError::Archive(e)) = err.downcast_ref::<AnalyzeError>() {
        return trace_hint(e);
    }
    if let Some(e) = err.downcast_ref::<RecordError>() {
        return record_hint(e);
    }
    match err.downcast_ref::<ReportError>() {
        Some(ReportError::Analyze(AnalyzeError::Archive(e))) => trace_hint(e),
        Some(ReportError::Write { .. }) => Some(
            "give a writable file with -o FILE (the archive may be read-only, e.g. -o /tmp/report.html)"
                .into(),
        ),
        _ => None,
    }
}

fn trace_hint(err: &TraceError) -> Option<String> {
    Some(match err {
        TraceError::NotFound { .. } => {
            "record one with `sofa record -- CMD`, or pass the archive directory (default ./sofa-out)"
                .into()
        }
        TraceError::NotAnArchive { .. } => {
            "pass the directory `sofa record -o DIR` wrote; it contains meta.json".into()
        }
        TraceError::CorruptMeta { .. } => {
            "meta.json was damaged or edited; copy the archive again from where it was recorded"
                .into()
        }
        TraceError::NewerFormat { .. } => {
            "the archive was recorded by a newer sofa; upgrade sofa to read it".into()
        }
        TraceError::CorruptTable { .. } | TraceError::MissingTable { .. } => {
            "the archive is damaged or was copied incompletely; copy it again (e.g. rsync -a)"
                .into()
        }
        TraceError::Io { .. } => "check the path and its permissions".into(),
        TraceError::NotOurs { .. } => {
            "record into a new or empty directory with -o DIR; sofa replaces only its own archives"
                .into()
        }
        TraceError::Busy { .. } => {
            "wait for that recording to end, or record into another directory with -o DIR".into()
        }
        TraceError::Write { .. } => return None,
    })
}

fn record_hint(err: &RecordError) -> Option<String> {
    Some(match err {
        RecordError::CommandNotFound(_) => {
            "check the spelling and PATH, or give the program's path (e.g. ./train.sh)".into()
        }
        RecordError::CannotExecute { source, .. }
            if source.kind() == std::io::ErrorKind::IsADirectory =>
        {
            "give the program to run, not its directory (e.g. ./run/train.sh)".into()
        }
        RecordError::CannotExecute { .. } => {
            "make it executable (chmod +x) or run it through its interpreter (python3 script.py)"
                .into()
        }
        RecordError::PerfPermission(_) => {
            "allow profiling: `sudo sysctl kernel.perf_event_paranoid=1`, or run sofa with \
             CAP_PERFMON (sudo setcap cap_perfmon,cap_sys_ptrace+ep $(which sofa)); in a \
             container, allow the perf_event_open syscall"
                .into()
        }
        RecordError::UnknownEvent(_) => "omit --event to get cycles or cpu-clock".into(),
        RecordError::Perf { .. } => {
            "try `--event cpu-clock`; hardware events need a PMU, which VMs often lack".into()
        }
        RecordError::Archive(e) => return trace_hint(e),
        RecordError::Os { .. } | RecordError::Unsupported => return None,
    })
}
