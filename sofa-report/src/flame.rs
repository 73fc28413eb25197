//! Flamegraph SVGs through inferno, made safe to show inside the report.

use inferno::flamegraph::color::{Color, PaletteMap};
use inferno::flamegraph::{self, Direction, Options};
use sofa_analyze::Folded;

/// Inferno's script records zoom and search in the page URL with
/// `history.replaceState`; inside the report the SVG is a `blob:` document,
/// where that call may be refused. This guard, placed before inferno's own
/// script, keeps a refusal from breaking zoom and search.
const HISTORY_GUARD: &str = "<script type=\"text/ecmascript\"><![CDATA[\
try{var sofaReplace=history.replaceState.bind(history);\
history.replaceState=function(s,t,u){try{sofaReplace(s,t,u)}catch(e){}}}catch(e){}\
]]></script>";

/// Renders one flamegraph; `None` when there is nothing to draw.
pub fn svg(folded: &Folded) -> Result<Option<String>, std::io::Error> {
    if folded.stacks.is_empty() {
        return Ok(None);
    }
    let mut options = Options::default();
    options.title = folded.title.clone();
    options.count_name = "samples".to_owned();
    options.name_type = "Function:".to_owned();
    // Roots on top: the wide frames that matter stay in view however deep
    // the thinnest towers (Python imports, recursion) go.
    options.direction = Direction::Inverted;
    // Same colours for the same function in every run and every graph.
    options.hash = true;
    options.deterministic = true;
    // Frames under 0.05 % of the graph's samples (half a pixel of its
    // 1,200) are left out: a PyTorch job's deep stacks of long C++ names
    // made 40,000 frames, 9.5 MB per graph and a 30 MB report at inferno's
    // 0.01 %; 7 MB in all at 0.05 %.
    options.min_width = 0.05;
    if folded.dropped_samples > 0 {
        options.subtitle = Some(format!(
            "{} samples of the rarest stacks not drawn",
            folded.dropped_samples
        ));
    }
    let lines: Vec<String> = folded
        .stacks
        .iter()
        .map(|(stack, n)| format!("{} {n}", xml_chars(stack)))
        .collect();
    let mut python = python_palette(folded);
    options.palette_map = Some(&mut python);
    let mut out = Vec::new();
    flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut out)?;
    let svg = String::from_utf8(out)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok(Some(guard_history(svg)))
}

/// `text` with the characters XML 1.0 does not allow (control characters;
/// inferno escapes only markup) replaced: a frame name read from a running
/// interpreter can hold garbage, and one such byte makes the whole SVG
/// unparseable (a report test saw "flamegraph 0 is not valid SVG" once).
fn xml_chars(text: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| (c < ' ' && c != '\t') || c == '\u{FFFE}' || c == '\u{FFFF}';
    if text.contains(bad) {
        text.replace(bad, "\u{FFFD}").into()
    } else {
        text.into()
    }
}

/// Python frames (`function (file.py)`, as sofa-analyze folds them) in
/// shades of blue, so Python code stands out from the native frames
/// around it (inferno's warm colours). The shade is a hash of the name:
/// the same function has the same colour in every graph and every run.
fn python_palette(folded: &Folded) -> PaletteMap {
    let mut map = PaletteMap::default();
    for (stack, _) in &folded.stacks {
        for frame in stack.split(';') {
            if !is_python_frame(frame) {
                continue;
            }
            let hash = frame.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
            let shade = (hash % 64) as u8;
            map.insert(
                frame,
                Color {
                    r: 70 + shade,
                    g: 130 + shade,
                    b: 235,
                },
            );
        }
    }
    map
}

/// `function (file.py)`, also `<module> (<frozen runpy>)`.
fn is_python_frame(frame: &str) -> bool {
    frame.ends_with(')')
        && frame
            .rsplit_once(" (")
            .is_some_and(|(_, file)| file.ends_with(".py)") || file.starts_with('<'))
}

/// Inserts `HISTORY_GUARD` right after the opening `<svg ...>` tag.
fn guard_history(svg: String) -> String {
    let Some(open) = svg.find("<svg") else {
        return svg;
    };
    let Some(close) = svg[open..].find('>') else {
        return svg;
    };
    let at = open + close + 1;
    let mut out = String::with_capacity(svg.len() + HISTORY_GUARD.len());
    out.push_str(&svg[..at]);
    out.push_str(HISTORY_GUARD);
    out.push_str(&svg[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_names_do_not_reach_the_svg() {
        let folded = Folded {
            title: "whole run".into(),
            samples: 10,
            stacks: vec![("main;gar\u{1}bage\u{7f};x\u{FFFF}".into(), 10)],
            dropped_samples: 0,
        };
        let svg = svg(&folded).unwrap().unwrap();
        assert!(!svg.contains(|c: char| c < ' ' && !"\t\n\r".contains(c)));
        assert!(!svg.contains('\u{FFFF}'));
        assert!(svg.contains("gar\u{FFFD}bage"));
    }

    #[test]
    fn python_frames_are_blue() {
        let folded = Folded {
            title: "whole run".into(),
            samples: 30,
            stacks: vec![
                (
                    "<module> (train.py);forward (train.py);sgemm_kernel".into(),
                    20,
                ),
                ("main;compute".into(), 10),
            ],
            dropped_samples: 0,
        };
        let map = python_palette(&folded);
        let colors: Vec<_> = ["<module> (train.py)", "forward (train.py)"]
            .iter()
            .map(|f| map.get(f).expect("python frame coloured"))
            .collect();
        assert!(colors.iter().all(|c| c.b == 235 && c.r < c.b && c.g < c.b));
        assert!(map.get("sgemm_kernel").is_none());
        assert!(map.get("compute").is_none());
        assert!(!is_python_frame("operator() (int)"));
        let svg = svg(&folded).unwrap().unwrap();
        assert!(svg.contains("forward (train.py)"));
    }

    #[test]
    fn renders_frames_with_the_guard() {
        let folded = Folded {
            title: "whole run".into(),
            samples: 30,
            stacks: vec![("main;compute".into(), 20), ("main;read_input".into(), 10)],
            dropped_samples: 0,
        };
        let svg = svg(&folded).unwrap().unwrap();
        assert!(svg.contains("compute"));
        assert!(svg.contains("read_input"));
        let guard = svg.find("sofaReplace").unwrap();
        let inferno_script = svg.find("function init(evt)").unwrap();
        assert!(guard < inferno_script);
        // Deterministic: the same input gives the same bytes.
        assert_eq!(svg, super::svg(&folded).unwrap().unwrap());
    }

    #[test]
    fn nothing_to_draw() {
        let folded = Folded {
            title: "empty".into(),
            samples: 0,
            stacks: vec![],
            dropped_samples: 0,
        };
        assert!(svg(&folded).unwrap().is_none());
    }
}
