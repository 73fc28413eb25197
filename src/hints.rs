//! One actionable hint and an exit status per kind of error.

use sofa_analyze::AnalyzeError;
use sofa_record::RecordError;
use sofa_trace::TraceError;

/// Exit status for an error: 2 for parts not built yet, 1 otherwise.
pub fn exit_code_for(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<RecordError>() {
        Some(RecordError::NotImplemented) => super::EXIT_NOT_BUILT,
        None => 1,
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
    if let Some(RecordError::NotImplemented) = err.downcast_ref::<RecordError>() {
        return Some(
            "sampling lands with the recorder issue; `sofa analyze` reads existing archives".into(),
        );
    }
    None
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
        TraceError::Write { .. } => return None,
    })
}
