//! End-of-recording symbolization time on a library with many C++ symbols.
//!
//! Generates (at bench time, nothing committed) a shared library with
//! `SOFA_BENCH_SYMBOLS` (default 500 000) mangled C++ functions — as
//! assembly, so it builds in seconds — plus a driver that spends its time in
//! 64 of them, records the driver with `sofa record --no-syscalls`, and
//! reports the time from the driver's exit to sofa's (wall minus the
//! driver's own time), next to the same driver on a library of only its 64
//! functions: the difference is what the library's size costs.
//!
//! ```text
//! cargo bench --bench finalize_symbols
//! SOFA_BENCH_SYMBOLS=1000000 SOFA_BENCH_RUNS=5 cargo bench --bench finalize_symbols
//! ```

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `_ZN5ns<k>7Class<i>6methodEid`-style names: ns<k>::Class<i>::method(int, double).
fn mangled(i: usize) -> String {
    let ns = format!("ns{}", i / 1000);
    let class = format!("Class{i}");
    format!("_ZN{}{ns}{}{class}6methodEid", ns.len(), class.len())
}

fn build(dir: &Path, symbols: usize) {
    let mut asm = String::from(".section .note.GNU-stack,\"\",@progbits\n.text\n");
    for i in 0..symbols {
        let name = mangled(i);
        // The first 64 spin; the rest return at once.
        let body = if i < 64 {
            "    mov $20000, %ecx\n1:  dec %ecx\n    jnz 1b\n    ret\n"
        } else {
            "    ret\n"
        };
        let _ = write!(
            asm,
            ".globl {name}\n.type {name}, @function\n{name}:\n{body}.size {name}, .-{name}\n"
        );
    }
    std::fs::write(dir.join("gen.s"), asm).unwrap();
    let ok = Command::new("cc")
        .args(["-shared", "-o"])
        .arg(dir.join("libgen.so"))
        .arg(dir.join("gen.s"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "building the generated library");
    let mut driver = String::from("#include <stdio.h>\n#include <time.h>\n");
    for i in 0..64 {
        let _ = writeln!(driver, "void {}(int, double);", mangled(i));
    }
    driver.push_str(
        "static double ms(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); \
         return t.tv_sec * 1e3 + t.tv_nsec / 1e6; }\n\
         int main(void) { double start = ms();\n for (int r = 0; r < 4000; r++) {\n",
    );
    for i in 0..64 {
        let _ = writeln!(driver, "  {}(r, 0.0);", mangled(i));
    }
    driver.push_str(" }\n fprintf(stderr, \"driver: %.3f ms\\n\", ms() - start);\n return 0; }\n");
    std::fs::write(dir.join("driver.c"), driver).unwrap();
    let ok = Command::new("cc")
        .args(["-O1", "-fno-omit-frame-pointer", "-o"])
        .arg(dir.join("driver"))
        .arg(dir.join("driver.c"))
        .arg(format!("-L{}", dir.display()))
        .arg(format!("-Wl,-rpath,{}", dir.display()))
        .arg("-lgen")
        .status()
        .unwrap()
        .success();
    assert!(ok, "building the driver");
}

fn main() {
    if let Some(filter) = std::env::args().skip(1).find(|a| !a.starts_with('-'))
        && !"finalize_symbols".contains(&filter)
    {
        return;
    }
    let symbols = env_or("SOFA_BENCH_SYMBOLS", 500_000);
    let runs = env_or("SOFA_BENCH_RUNS", 3);
    let big = tempfile::tempdir().unwrap();
    let small = tempfile::tempdir().unwrap();
    let t = Instant::now();
    build(big.path(), symbols);
    build(small.path(), 64);
    println!(
        "finalize_symbols: library of {symbols} C++ symbols built in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let sofa = env!("CARGO_BIN_EXE_sofa");
    let mut after = [Vec::new(), Vec::new()];
    for run in 0..runs {
        for (k, (name, dir)) in [("64 symbols", small.path()), ("big", big.path())]
            .into_iter()
            .enumerate()
        {
            let archive = dir.join(format!("run{run}"));
            let start = Instant::now();
            let out = Command::new(sofa)
                .args(["record", "--no-syscalls", "-o"])
                .arg(&archive)
                .arg("--")
                .arg(dir.join("driver"))
                .output()
                .unwrap();
            let wall = start.elapsed().as_secs_f64() * 1e3;
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{stderr}");
            let own: f64 = stderr
                .lines()
                .find_map(|l| {
                    l.strip_prefix("driver: ")?
                        .strip_suffix(" ms")?
                        .parse()
                        .ok()
                })
                .expect("driver's own time");
            let samples = stderr
                .lines()
                .find_map(|l| l.strip_prefix("sofa: recorded ")?.split(' ').next())
                .unwrap_or("?")
                .to_owned();
            println!(
                "  run {run}, {name}: {samples} samples; driver {own:.0} ms; after the driver {:.0} ms",
                wall - own
            );
            after[k].push(wall - own);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (small_ms, big_ms) = (median(&mut after[0]), median(&mut after[1]));
    println!(
        "  medians after the driver: {small_ms:.0} ms (64 symbols), {big_ms:.0} ms ({symbols} symbols): \
         {:.0} ms for the library's size",
        big_ms - small_ms
    );
}
