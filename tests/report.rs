//! `sofa report` loaded in headless Chromium (`scripts/setup.sh --tests`
//! installs Debian's `chromium`): the page renders its flamegraph, timeline,
//! scatter and tables with no console message, no script error and no network
//! request.

mod common;

use common::{hotspots, record, sofa};
use std::path::{Path, PathBuf};

fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = std::process::Command::new("which").arg(name).output()
            && out.status.success()
        {
            return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        }
    }
    panic!("no chromium found: run `scripts/setup.sh --tests` (installs Debian's chromium)");
}

/// What a page did in the browser.
struct Loaded {
    /// The DOM after the page's scripts ran.
    dom: String,
    /// Console messages Chromium logged for the page.
    console: Vec<String>,
    /// URLs the page itself asked the network for.
    page_requests: Vec<String>,
}

/// Loads `html` in headless Chromium and records its DOM, console and requests.
///
/// Requests come from Chromium's net log: its `CORS_REQUEST` events cover both
/// the page's requests and Chromium's own background ones (time, dictionaries,
/// accounts); only a renderer's requests carry the page's `User-Agent` header.
fn load(html: &Path, scratch: &Path) -> Loaded {
    let netlog = scratch.join("netlog.json");
    let out = std::process::Command::new("timeout")
        .arg("120")
        .arg(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--net-log-capture-mode=Everything",
            "--window-size=1400,2400",
        ])
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg(format!(
            "--user-data-dir={}",
            scratch.join("profile").display()
        ))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let console = stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect();
    let log: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&netlog).expect("chromium wrote its net log"))
            .expect("net log is JSON");
    let cors = log["constants"]["logEventTypes"]["CORS_REQUEST"]
        .as_u64()
        .expect("net log knows CORS_REQUEST");
    let page_requests = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"].as_u64() == Some(cors))
        .filter(|e| {
            e["params"]["request_headers"]["headers"]
                .as_array()
                .is_some_and(|h| {
                    h.iter()
                        .any(|h| h.as_str().is_some_and(|h| h.starts_with("User-Agent:")))
                })
        })
        .filter_map(|e| e["params"]["url"].as_str().map(str::to_owned))
        .collect();
    Loaded {
        dom: String::from_utf8_lossy(&out.stdout).into_owned(),
        console,
        page_requests,
    }
}

/// The value of the first `name="..."` attribute in the DOM.
fn attribute(dom: &str, name: &str) -> Option<String> {
    let key = format!("{name}=\"");
    let start = dom.find(&key)? + key.len();
    let len = dom[start..].find('"')?;
    Some(dom[start..start + len].to_owned())
}

fn number(dom: &str, name: &str) -> u64 {
    attribute(dom, name)
        .unwrap_or_else(|| panic!("no {name} in the rendered page"))
        .parse()
        .unwrap()
}

fn assert_clean(page: &Loaded) {
    assert_eq!(
        attribute(&page.dom, "data-rendered").as_deref(),
        Some("true"),
        "the report script did not finish"
    );
    assert_eq!(
        attribute(&page.dom, "data-errors"),
        None,
        "the page reported errors: {}",
        page.dom
            .split("id=\"sofa-errors\"")
            .nth(1)
            .unwrap_or("")
            .chars()
            .take(600)
            .collect::<String>()
    );
    assert!(page.console.is_empty(), "console: {:#?}", page.console);
    assert!(
        page.page_requests.is_empty(),
        "network requests: {:?}",
        page.page_requests
    );
}

#[test]
fn report_of_a_recorded_fixture_renders_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("run");
    let fixture = hotspots();
    let out = record(&archive, &[fixture.to_str().unwrap(), "30", "200", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = sofa().arg("report").arg(&archive).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = archive.join("report.html");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        html.to_str().unwrap()
    );
    let text = std::fs::read_to_string(&html).unwrap();
    assert!(text.contains("Content-Security-Policy"));
    assert!(!text.contains("src=\"http"), "external script or image");

    let page = load(&html, dir.path());
    assert_clean(&page);
    let dom = &page.dom;
    // Flamegraph: a valid SVG with frames, one per swarm besides the whole run.
    assert!(number(dom, "data-flamegraphs") >= 2);
    assert!(number(dom, "data-frames") >= 3);
    assert!(dom.contains("<iframe class=\"flame\""));
    // Timeline tracks drawn on canvases; the missing GPU says why.
    for track in ["swarms", "cpu", "syscalls", "axis"] {
        assert!(
            dom.contains(&format!("data-track=\"{track}\" data-drawn=\"true\"")),
            "timeline track {track} not drawn"
        );
    }
    assert!(dom.contains(">not recorded: gpu unavailable"));
    // Swarm scatter and sortable tables.
    assert!(number(dom, "data-marks") > 10);
    assert!(dom.matches("data-sortable=\"true\"").count() >= 6);
    assert!(dom.contains("compute_heavy"));
}

#[test]
fn report_with_gpu_and_network_draws_their_tracks() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("synthetic");
    sofa_trace::synthetic::Synthetic {
        samples: 20_000,
        collectors: true,
        syscalls: None,
    }
    .write(&archive)
    .unwrap();
    let html = dir.path().join("out.html");
    sofa()
        .arg("report")
        .arg(&archive)
        .arg("-o")
        .arg(&html)
        .assert()
        .success();
    let page = load(&html, dir.path());
    assert_clean(&page);
    for track in ["gpu0-util", "gpu0-power_w", "net", "memory", "swarms"] {
        assert!(
            page.dom
                .contains(&format!("data-track=\"{track}\" data-drawn=\"true\"")),
            "timeline track {track} not drawn"
        );
    }
    let missing: Vec<&str> = page
        .dom
        .match_indices(">not recorded")
        .map(|(i, _)| &page.dom[i..(i + 120).min(page.dom.len())])
        .collect();
    assert!(missing.is_empty(), "{missing:#?}");
}

/// The request check must be able to fail: a page that loads from the
/// network (no CSP) is caught.
#[test]
fn request_check_catches_a_page_that_loads_from_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("leak.html");
    std::fs::write(
        &html,
        "<html><body><img src=\"http://example.invalid/x.png\">\
         <script>fetch('https://example.invalid/y').catch(function () {})</script></body></html>",
    )
    .unwrap();
    let page = load(&html, dir.path());
    assert!(
        page.page_requests
            .iter()
            .any(|u| u.starts_with("http://example.invalid/")),
        "{:?}",
        page.page_requests
    );
}

#[test]
fn report_of_a_python_job_names_python_frames_and_offers_a_python_only_graph() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("py");
    let script = common::root().join("fixtures/workloads/py_hot.py");
    let out = record(&archive, &["python3", script.to_str().unwrap(), "1"]);
    common::assert_success(&out);
    let out = sofa().arg("report").arg(&archive).output().unwrap();
    common::assert_success(&out);
    let html = archive.join("report.html");
    let text = std::fs::read_to_string(&html).unwrap();
    // Python frames in the flamegraph SVGs, as py-spy names them.
    assert!(text.contains("hot_a (py_hot.py)"));
    let page = load(&html, dir.path());
    assert_clean(&page);
    assert!(
        page.dom.contains("whole run, Python frames only"),
        "no Python-only flamegraph to choose"
    );
    // Python functions in the tables, with their files as modules.
    assert!(page.dom.contains("py:py_hot.py"));
}

#[test]
fn report_of_a_job_that_waits_draws_thread_states_and_off_cpu_graphs() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("waits");
    let script = common::root().join("fixtures/workloads/waits.py");
    let py = common::python();
    let out = record(
        &archive,
        &[py.as_str(), script.to_str().unwrap(), "sleep", "60"],
    );
    common::assert_success(&out);
    let out = sofa().arg("report").arg(&archive).output().unwrap();
    common::assert_success(&out);
    let html = archive.join("report.html");
    let text = std::fs::read_to_string(&html).unwrap();
    // The sleep's stacks end in a frame naming the reason.
    assert!(text.contains("[off-CPU: sleep]"));
    let page = load(&html, dir.path());
    assert_clean(&page);
    let dom = &page.dom;
    assert!(dom.contains("off-CPU waits (1 sample = 1 sampling interval waited)"));
    assert!(dom.contains("wall clock: CPU samples and off-CPU waits"));
    assert!(
        dom.contains("data-track=\"threads\" data-drawn=\"true\""),
        "thread state lanes not drawn"
    );
    assert!(dom.contains("Waits per thread (off the CPU)"));
    assert!(dom.contains("time_sleep") || dom.contains("pysleep") || dom.contains("main"));
}

/// Framework phases on a stand-in for a PyTorch loop (CI has no torch):
/// `framework_phases.py` runs the same product 4, 8 and 4 times under
/// `torch/nn`, `torch/autograd` and `torch/optim` paths, on OpenBLAS's
/// workers too. The shares come out near 25/50/25 % only if the workers'
/// samples (no Python frames) take the main thread's phase; the report
/// draws the phases track and its legend.
#[test]
fn report_of_a_framework_loop_draws_its_phases() {
    let _alone = common::alone();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("phases");
    let script = common::root().join("fixtures/workloads/framework_phases.py");
    let py = common::python();
    let out = record(
        &archive,
        &[
            "env",
            "OPENBLAS_NUM_THREADS=2",
            py.as_str(),
            script.to_str().unwrap(),
        ],
    );
    common::assert_success(&out);
    let json = common::analyze_json(&archive);
    let share = |name: &str| -> f64 {
        json["phases"]["phases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map_or(0.0, |p| p["share"].as_f64().unwrap())
    };
    // Of the work: 1/4, 1/2, 1/4; the Python between the calls and the
    // start (numpy's import, before any phase) are other.
    let truth = [("forward", 0.25), ("backward", 0.5), ("optimizer", 0.25)];
    let other = share("other");
    for (name, part) in truth {
        let expected = part * (1.0 - other);
        assert!(
            (share(name) - expected).abs() < 0.05,
            "{name}: {:.3}, expected {expected:.3}: {}",
            share(name),
            json["phases"]
        );
    }
    assert!(other < 0.15, "other {other:.3}: {}", json["phases"]);
    let out = sofa().arg("report").arg(&archive).output().unwrap();
    common::assert_success(&out);
    let page = load(&archive.join("report.html"), dir.path());
    assert_clean(&page);
    assert!(
        page.dom
            .contains("data-track=\"phases\" data-drawn=\"true\""),
        "phases track not drawn"
    );
    assert!(page.dom.contains("Phases (share of the steps):") || page.dom.contains("Phases:"));
}
