//! How an analysis is shown: terminal text, JSON, exported tables. The
//! analysis itself knows nothing of these.

mod export;
mod multi;
mod table;
mod text;

pub use export::{ExportError, export};
pub use multi::render_multi_text;
pub use text::render_text;

/// `sofa analyze --json`: the analysis as one pretty-printed JSON object
/// (its field names are the interface scripts rely on).
pub fn render_json<T: serde::Serialize>(analysis: &T) -> String {
    serde_json::to_string_pretty(analysis).expect("analysis types serialize to JSON")
}
