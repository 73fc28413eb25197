//! Golden tests of `sofa analyze` on a recorded archive committed under
//! `fixtures/archives/` (see its README): the text tables and the JSON, so
//! that a change to the analysis shows up as a reviewable diff without a
//! live recording. `SOFA_BLESS=1 cargo test -p sofa-analyze --test golden`
//! rewrites them.

use sofa_trace::Archive;
use sofa_trace::golden::assert_golden;
use std::path::{Path, PathBuf};

fn here(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The analysis of the archive, its path replaced so outputs do not
/// depend on where the checkout is.
fn analysis(name: &str) -> sofa_analyze::Analysis {
    let archive = Archive::open(here("../fixtures/archives").join(name)).unwrap();
    let mut analysis = sofa_analyze::analyze(&archive).unwrap();
    analysis.run.archive = format!("fixtures/archives/{name}");
    analysis
}

#[test]
fn analyze_text_and_json_of_the_hotspots_archive() {
    let analysis = analysis("hotspots");
    let text = sofa_analyze::render_text(&analysis, 20);
    let json = serde_json::to_string_pretty(&analysis).unwrap() + "\n";
    assert_eq!(
        json,
        serde_json::to_string_pretty(&self::analysis("hotspots")).unwrap() + "\n",
        "the analysis is not deterministic"
    );
    assert_golden(&here("tests/golden/hotspots-analyze.txt"), &text);
    assert_golden(&here("tests/golden/hotspots-analyze.json"), &json);
}

/// `sofa analyze A B`: two ranks (here the same recording twice).
#[test]
fn analyze_text_of_two_archives() {
    let multi = sofa_analyze::merge(vec![analysis("hotspots"), analysis("hotspots")]);
    let text = sofa_analyze::render_multi_text(&multi, 10);
    assert_golden(&here("tests/golden/hotspots-twice-analyze.txt"), &text);
}

/// The committed archive is a real recording of the fixture: what the
/// golden files hold is what the fixture is known to do.
#[test]
fn the_hotspots_archive_shows_the_fixtures_known_facts() {
    let a = analysis("hotspots");
    let share = |name: &str| {
        a.functions
            .iter()
            .find(|f| f.name == name)
            .map_or(0.0, |f| f.self_share)
    };
    let ratio = share("compute_heavy") / share("compute_light");
    assert!((2.4..3.6).contains(&ratio), "heavy:light = {ratio}");
    assert_eq!(a.steps.count, 20);
    let reads = a.syscalls.iter().find(|s| s.name == "read").unwrap();
    assert!(reads.count >= 20 * 200, "{}", reads.count);
}
