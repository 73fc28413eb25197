//! `sofa report`: one self-contained HTML file. Everything is inline — CSS,
//! script, data and the flamegraph SVGs — and a Content-Security-Policy
//! forbids the page any network request. The report renders what
//! `sofa-analyze` computed (`analyze_with_views`); it computes nothing itself.
//!
//! Layout of the file: a static shell, then `<script type="application/json"
//! id="sofa-data">` (the *data part*: analysis tables and the aggregated
//! views, deterministic for a given archive), then `id="sofa-flamegraphs"`
//! (a JSON list of SVG documents), then the script that draws it all.

mod flame;

use serde::Serialize;
use sofa_analyze::{Analysis, AnalyzeError, Options, Views};
use sofa_trace::Archive;
use std::io::Write;
use std::path::{Path, PathBuf};

const CSS: &str = include_str!("../assets/report.css");
const JS: &str = include_str!("../assets/report.js");

/// Version of the data part's layout (the `report_format` field).
pub const REPORT_FORMAT: u32 = 1;
/// Rows of the function table embedded (the busiest).
pub const MAX_FUNCTIONS: usize = 1000;
/// Rows of the per-step breakdown embedded (the first steps).
pub const MAX_STEP_ROWS: usize = 1000;

/// Nothing but an inline script and inline styles may run or load; frames
/// only from `blob:` (the flamegraph SVGs, made by the page itself).
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; \
style-src 'unsafe-inline'; img-src data: blob:; frame-src blob:; child-src blob:";

/// Where `sofa report ARCHIVE` writes when no `-o` is given.
pub fn default_output(archive: &Path) -> PathBuf {
    archive.join("report.html")
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Analyze(#[from] AnalyzeError),
    #[error("cannot draw a flamegraph: {0}")]
    Flamegraph(std::io::Error),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A rendered report.
pub struct Report {
    pub html: String,
    /// Flamegraphs drawn (whole run plus one per swarm with samples).
    pub flamegraphs: usize,
    pub samples: u64,
}

#[derive(Serialize)]
struct Omitted {
    functions: usize,
    step_breakdown: usize,
}

#[derive(Serialize)]
struct FlameInfo {
    title: String,
    samples: u64,
    stacks: usize,
    dropped_samples: u64,
}

/// The data part: what the page draws, as JSON.
#[derive(Serialize)]
struct Data<'a> {
    report_format: u32,
    analysis: &'a Analysis,
    /// Rows of long tables left out of `analysis`.
    omitted: Omitted,
    timeline: &'a sofa_analyze::Timeline,
    scatter: &'a sofa_analyze::Scatter,
    /// Index `i` describes `sofa-flamegraphs[i]` (null there when empty).
    flamegraphs: Vec<FlameInfo>,
}

/// JSON that can sit inside a `<script>` element: every `<` is escaped, so
/// no `</script>` or `<!--` can end or confuse it.
fn script_json<T: Serialize>(value: &T) -> String {
    let json = serde_json::to_string(value).expect("report data serializes");
    json.replace('<', "\\u003c")
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Analyses the archive and renders its report.
pub fn render(archive: &Archive, options: &Options) -> Result<Report, ReportError> {
    let (analysis, views) = sofa_analyze::analyze_with_views(archive, options)?;
    render_analysis(analysis, &views)
}

/// Renders a report from an analysis and its views.
pub fn render_analysis(mut analysis: Analysis, views: &Views) -> Result<Report, ReportError> {
    let omitted = Omitted {
        functions: analysis.functions.len().saturating_sub(MAX_FUNCTIONS),
        step_breakdown: analysis.step_breakdown.len().saturating_sub(MAX_STEP_ROWS),
    };
    analysis.functions.truncate(MAX_FUNCTIONS);
    analysis.step_breakdown.truncate(MAX_STEP_ROWS);
    let mut svgs: Vec<Option<String>> = Vec::with_capacity(views.flamegraphs.len());
    for folded in &views.flamegraphs {
        svgs.push(flame::svg(folded).map_err(ReportError::Flamegraph)?);
    }
    let data = Data {
        report_format: REPORT_FORMAT,
        analysis: &analysis,
        omitted,
        timeline: &views.timeline,
        scatter: &views.scatter,
        flamegraphs: views
            .flamegraphs
            .iter()
            .map(|f| FlameInfo {
                title: f.title.clone(),
                samples: f.samples,
                stacks: f.stacks.len(),
                dropped_samples: f.dropped_samples,
            })
            .collect(),
    };
    let command = analysis.run.command.join(" ");
    let mut html = String::new();
    html.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    html.push_str(&format!(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n"
    ));
    html.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    html.push_str(&format!(
        "<meta name=\"generator\" content=\"sofa {}\">\n",
        env!("CARGO_PKG_VERSION")
    ));
    html.push_str(&format!(
        "<title>sofa report: {}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n",
        escape_html(&command)
    ));
    html.push_str(&format!(
        "<header><h1>sofa report</h1><p class=\"command\"><code>{}</code></p></header>\n",
        escape_html(&command)
    ));
    html.push_str(concat!(
        "<nav><a href=\"#summary\">Summary</a><a href=\"#hints\">Hints</a>",
        "<a href=\"#flamegraph\">Flamegraph</a><a href=\"#timeline\">Timeline</a>",
        "<a href=\"#scatter\">Swarm scatter</a><a href=\"#tables\">Tables</a></nav>\n",
        "<main>\n",
        "<section id=\"summary\"><h2>Run summary</h2><div class=\"body\"></div></section>\n",
        "<section id=\"hints\"><h2>Hints</h2><div class=\"body\"></div></section>\n",
        "<section id=\"flamegraph\"><h2>Flamegraph</h2><div class=\"body\"></div></section>\n",
        "<section id=\"timeline\"><h2>Timeline</h2>",
        "<p class=\"help\">Wheel: zoom · drag: pan · double-click: whole run. ",
        "The swarm scatter below follows the same time window.</p>",
        "<div class=\"body\"></div></section>\n",
        "<section id=\"scatter\"><h2>Swarm scatter: time × address</h2>",
        "<div class=\"body\"></div></section>\n",
        "<section id=\"tables\"><h2>Tables</h2>",
        "<p class=\"help\">Click a column header to sort.</p><div class=\"body\"></div></section>\n",
        "<div id=\"sofa-errors\" hidden></div>\n",
        "</main>\n",
        "<noscript><p>This report draws its charts with JavaScript; ",
        "enable it to see them.</p></noscript>\n",
    ));
    html.push_str("<script type=\"application/json\" id=\"sofa-data\">");
    html.push_str(&script_json(&data));
    html.push_str("</script>\n<script type=\"application/json\" id=\"sofa-flamegraphs\">");
    html.push_str(&script_json(&svgs));
    html.push_str("</script>\n<script>\n");
    html.push_str(JS);
    html.push_str("</script>\n</body>\n</html>\n");
    Ok(Report {
        html,
        flamegraphs: svgs.iter().filter(|s| s.is_some()).count(),
        samples: analysis.run.samples,
    })
}

/// The data part of a rendered report (the JSON text of `sofa-data`).
pub fn data_part(html: &str) -> Option<&str> {
    let open = "<script type=\"application/json\" id=\"sofa-data\">";
    let start = html.find(open)? + open.len();
    let len = html[start..].find("</script>")?;
    Some(&html[start..start + len])
}

/// Writes the report atomically (a temporary file renamed into place).
pub fn write(report: &Report, path: &Path) -> Result<(), ReportError> {
    let err = |source| ReportError::Write {
        path: path.to_owned(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report.html".to_owned());
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(err)?;
    file.write_all(report.html.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_json_cannot_close_the_script() {
        let text = script_json(&vec!["</script><!-- x"]);
        assert!(!text.contains('<'));
        let back: Vec<String> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, vec!["</script><!-- x".to_owned()]);
    }

    #[test]
    fn html_escapes() {
        assert_eq!(
            escape_html("a<b & \"c\" 'd'>"),
            "a&lt;b &amp; &quot;c&quot; &#39;d&#39;&gt;"
        );
    }
}
