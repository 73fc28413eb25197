//! The `sofa` binary: flags in, plain config structs out, errors printed with a hint.

mod hints;

use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

const EXAMPLES: &str = "\
Examples:
  sofa record -- python train.py        record into ./sofa-out
  sofa record -o run1 -F 499 -- ./app   another archive, lower sampling rate
  sofa analyze sofa-out                 summary tables in the terminal
  sofa analyze sofa-out --json | jq .run
  sofa report sofa-out                  write sofa-out/report.html";

/// Low-overhead profiler and swarm analyzer for machine-learning training jobs.
///
/// `sofa record` runs a command and samples its call stacks, system calls, system and
/// GPU counters into an archive directory; `sofa analyze` and `sofa report` read that
/// archive, on this machine or on any other.
#[derive(Debug, Parser)]
#[command(name = "sofa", version, after_help = EXAMPLES, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a command and record its profile into an archive.
    #[command(
        override_usage = "sofa record [OPTIONS] -- <CMD> [ARGS]...",
        after_help = "Example:\n  sofa record -o sofa-out -- python train.py --epochs 1"
    )]
    Record(RecordArgs),
    /// Summarize an archive: run, collectors, top functions.
    #[command(after_help = "Example:\n  sofa analyze sofa-out --json")]
    Analyze(AnalyzeArgs),
    /// Write the archive's HTML report.
    #[command(after_help = "Example:\n  sofa report sofa-out -o /tmp/run.html")]
    Report(ReportArgs),
}

/// `--call-graph` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CallGraphArg {
    Fp,
    Dwarf,
    Auto,
}

#[derive(Debug, Args)]
struct RecordArgs {
    /// Archive directory to write. An earlier sofa archive there is replaced once the new
    /// one is complete; a directory holding anything else is refused, untouched.
    #[arg(short, long, value_name = "DIR", default_value = "sofa-out")]
    output: PathBuf,
    /// Samples per second per CPU.
    #[arg(short = 'F', long = "freq", value_name = "HZ", default_value_t = 999,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    frequency: u64,
    /// Sampling event, e.g. `cycles` or `cpu-clock` [default: cycles where the CPU has a PMU,
    /// else cpu-clock].
    #[arg(short, long, value_name = "EVENT")]
    event: Option<String>,
    /// Do not set PYTHONPERFSUPPORT=1 for the command (CPython 3.12+ function names in
    /// frame-pointer chains; set only with --call-graph fp).
    #[arg(long)]
    no_python_perf: bool,
    /// Do not ask this JIT runtime for a perf map of its code (`onednn`, or `all`); by
    /// default sofa sets ONEDNN_JIT_PROFILE=2 (oneDNN's perf map only) in the command's
    /// environment unless it is already set, and removes the /tmp/perf-PID.map files it
    /// caused once copied into the archive.
    #[arg(long = "no-jit-map", value_name = "NAME", value_parser = ["onednn", "all"])]
    no_jit_map: Vec<String>,
    /// Do not read Python stacks from CPython interpreters of the recorded tree.
    #[arg(long)]
    no_python: bool,
    /// Python stack snapshots per second per Python process.
    #[arg(long, value_name = "HZ", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=1000))]
    py_hz: u64,
    /// Reads per second of the main thread's outermost Python frames (the
    /// training loop's line, for step detection; CPython 3.11-3.13); 0 turns
    /// them off.
    #[arg(long, value_name = "HZ", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(0..=10000))]
    py_loop_hz: u64,
    /// Also look for detached debug files (build-id and .gnu_debuglink layouts)
    /// under DIR, before /usr/lib/debug; repeatable.
    #[arg(long, value_name = "DIR")]
    debug_dir: Vec<PathBuf>,
    /// How user call stacks are taken: fp (frame pointers, cheapest; stops in
    /// code built without them), dwarf (copies of the user stack unwound with
    /// the binaries' .eh_frame), auto (both; per sample the one that reaches
    /// the thread's root, else the deeper).
    #[arg(long, value_name = "MODE", default_value = "auto")]
    call_graph: CallGraphArg,
    /// Bytes of user stack copied per sample for --call-graph dwarf|auto
    /// (at most 65528).
    #[arg(long, value_name = "BYTES", default_value_t = sofa_record::DEFAULT_STACK_BYTES,
          value_parser = clap::value_parser!(u32).range(64..=65528))]
    stack_size: u32,
    /// Do not record system calls.
    #[arg(long)]
    no_syscalls: bool,
    /// Calls a second on one CPU up to which every system call is traced
    /// (bursts of up to this many calls too). Above it, the call that makes
    /// most of them (a spin loop's sched_yield) is left out, or, where that
    /// is no cheaper, all are traced in windows that keep to this rate, so
    /// tracing does not slow a call-heavy program and distort its profile;
    /// the archive and `sofa analyze` say which. 0 traces every call.
    #[arg(long, value_name = "CALLS", default_value_t = sofa_record::DEFAULT_SYSCALL_RATE)]
    syscall_rate: u64,
    /// Do not record context switches (where threads wait off the CPU,
    /// with their stacks then).
    #[arg(long)]
    no_off_cpu: bool,
    /// Context switches a second on one CPU (switch-outs) up to which
    /// every switch is recorded (bursts of up to this many too). Above it
    /// (threads handing work back and forth 10^5 times a second), switches
    /// are recorded in windows that keep to this rate, so recording them
    /// does not slow the program; waits are then shares of the recorded
    /// time. 0 records every switch.
    #[arg(long, value_name = "SWITCHES", default_value_t = sofa_record::DEFAULT_SWITCH_RATE)]
    switch_rate: u64,
    /// Do not record network packets.
    #[arg(long)]
    no_net: bool,
    /// Also capture packet headers (addresses, ports; no payload) for the flow table.
    #[arg(long)]
    net_capture: bool,
    /// Do not sample NVIDIA GPU counters.
    #[arg(long)]
    no_gpu: bool,
    /// GPU samples per second.
    #[arg(long, value_name = "HZ", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..=1000))]
    gpu_hz: u64,
    /// Do not sample /proc (CPU, memory, disk and network counters, traced processes).
    #[arg(long)]
    no_system: bool,
    /// /proc samples per second.
    #[arg(long, value_name = "HZ", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=1000))]
    proc_hz: u64,
    /// The command to profile, after `--`.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    command: Vec<OsString>,
}

#[derive(Debug, Args)]
struct AnalyzeArgs {
    /// Archive directories; several (e.g. one per rank or host) are lined up
    /// on the wall clock.
    #[arg(value_name = "ARCHIVE", default_value = "sofa-out", num_args = 1..)]
    archives: Vec<PathBuf>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Functions to list in the terminal tables.
    #[arg(long, value_name = "N", default_value_t = 20)]
    top: usize,
    /// Also write every table (functions, steps, swarms, syscalls, ...) as CSV and Parquet into DIR.
    #[arg(long, value_name = "DIR")]
    export: Option<PathBuf>,
    /// Also write every sampled stack, Python frames merged in, as folded lines
    /// (`root;...;leaf COUNT`, for inferno, flamegraph.pl or speedscope) into FILE.
    #[arg(long, value_name = "FILE")]
    folded: Option<PathBuf>,
    /// Known number of training steps: a hint says if detection disagrees by more than 5%.
    #[arg(long, value_name = "N")]
    steps: Option<u64>,
    /// A function (native or Python; `forward` also matches `Net.forward`) or
    /// system call that runs once per training step: steps start at its first
    /// sample or call in each step instead of being detected.
    #[arg(long, value_name = "NAME")]
    step_marker: Option<String>,
    /// Number of swarms to form [default: chosen by silhouette, 2 to 8].
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..=64))]
    swarms: Option<u64>,
    /// Show only the Python frames of stacks that have any (your code, not the
    /// interpreter's or libraries' native frames).
    #[arg(long)]
    python_only: bool,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// Archive directory.
    #[arg(value_name = "ARCHIVE", default_value = "sofa-out")]
    archive: PathBuf,
    /// Output file [default: ARCHIVE/report.html].
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Known number of training steps (as for `sofa analyze --steps`).
    #[arg(long, value_name = "N")]
    steps: Option<u64>,
    /// A function or system call that runs once per step (as for `sofa analyze --step-marker`).
    #[arg(long, value_name = "NAME")]
    step_marker: Option<String>,
    /// Number of swarms to form [default: chosen by silhouette, 2 to 8].
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..=64))]
    swarms: Option<u64>,
    /// Show only the Python frames of stacks that have any (as for `sofa analyze`).
    #[arg(long)]
    python_only: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Record(args) => record(args),
        Command::Analyze(args) => analyze(args),
        Command::Report(args) => report(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("sofa: error: {err:#}");
            if let Some(hint) = hints::hint_for(&err) {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(hints::exit_code_for(&err))
        }
    }
}

/// Sampling rates above this cost the command noticeably: every sample is
/// an interrupt, and the kernel's share of the run grows with the rate (a
/// 0.6 s program took 15 s at -F 100000 on a 2-CPU VM; so did `perf record`).
const HIGH_RATE_HZ: u64 = 10_000;

fn record(args: RecordArgs) -> anyhow::Result<ExitCode> {
    if args.frequency > HIGH_RATE_HZ {
        eprintln!(
            "sofa: warning: -F {}: every sample interrupts the command; above {HIGH_RATE_HZ} Hz \
             sampling can slow it down several times over (default 999; 4999 for short steps)",
            args.frequency
        );
    }
    let config = sofa_record::RecordConfig {
        output: args.output,
        frequency_hz: args.frequency,
        event: args.event,
        python_perf: !args.no_python_perf,
        no_jit_maps: args.no_jit_map,
        python: !args.no_python,
        py_hz: args.py_hz,
        py_loop_hz: args.py_loop_hz,
        call_graph: match args.call_graph {
            CallGraphArg::Fp => sofa_record::CallGraph::Fp,
            CallGraphArg::Dwarf => sofa_record::CallGraph::Dwarf,
            CallGraphArg::Auto => sofa_record::CallGraph::Auto,
        },
        stack_bytes: args.stack_size,
        debug_dirs: args
            .debug_dir
            .into_iter()
            .chain([PathBuf::from("/usr/lib/debug")])
            .collect(),
        progress: true,
        syscalls: !args.no_syscalls,
        syscall_rate: args.syscall_rate,
        off_cpu: !args.no_off_cpu,
        switch_rate: args.switch_rate,
        system: !args.no_system,
        gpu: !args.no_gpu,
        net: !args.no_net,
        net_capture: args.net_capture,
        gpu_hz: args.gpu_hz,
        proc_hz: args.proc_hz,
        command: args.command,
    };
    let summary = sofa_record::record(&config)?;
    for note in &summary.notes {
        eprintln!("sofa: note: {note}");
    }
    eprintln!(
        "sofa: recorded {} samples, {} system calls ({} lost) in {:.2} s into {} ({})",
        summary.samples,
        summary.syscalls,
        summary.lost,
        summary.duration_ns as f64 / 1e9,
        summary.output.display(),
        sofa_record::human_bytes(summary.archive_bytes)
    );
    Ok(ExitCode::from(summary.exit_status.clamp(0, 255) as u8))
}

/// `--swarms K`, `--steps N`, `--step-marker NAME` and `--python-only`,
/// shared by `analyze` and `report`.
fn analysis_options(
    swarms: Option<u64>,
    steps: Option<u64>,
    step_marker: Option<String>,
    python_only: bool,
) -> sofa_analyze::Options {
    sofa_analyze::Options {
        swarms: swarms.map(|k| k as usize),
        expected_steps: steps,
        step_marker,
        python_only,
    }
}

fn write_folded(
    archive: &sofa_trace::Archive,
    options: &sofa_analyze::Options,
    file: &std::path::Path,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    let stacks = sofa_analyze::folded_stacks(archive, options)?;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(file).with_context(|| format!("cannot write {}", file.display()))?,
    );
    for (stack, n) in &stacks {
        writeln!(out, "{stack} {n}")?;
    }
    out.flush()
        .with_context(|| format!("cannot write {}", file.display()))?;
    eprintln!(
        "sofa: wrote {} stacks as folded lines into {}",
        stacks.len(),
        file.display()
    );
    Ok(())
}

fn analyze(args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let options = analysis_options(
        args.swarms,
        args.steps,
        args.step_marker.clone(),
        args.python_only,
    );
    if args.folded.is_some() && args.archives.len() > 1 {
        anyhow::bail!(
            "--folded writes the stacks of one archive; {} were given",
            args.archives.len()
        );
    }
    let mut analyses = Vec::new();
    for path in &args.archives {
        let archive = sofa_trace::Archive::open(path)?;
        if !args.json {
            for warning in archive.warnings() {
                eprintln!("sofa: warning: {warning}");
            }
        }
        if let Some(file) = &args.folded {
            write_folded(&archive, &options, file)?;
        }
        analyses.push(sofa_analyze::analyze_with(&archive, &options)?);
    }
    if let Some(dir) = &args.export {
        for (i, analysis) in analyses.iter().enumerate() {
            // One sub-directory per archive when there are several.
            let dir = if analyses.len() == 1 {
                dir.clone()
            } else {
                dir.join(format!("archive-{i}"))
            };
            let written = sofa_analyze::export(analysis, &dir)?;
            eprintln!(
                "sofa: wrote {} tables as CSV and Parquet into {}",
                written.len(),
                dir.display()
            );
        }
    }
    if analyses.len() == 1 {
        let analysis = &analyses[0];
        if args.json {
            println!("{}", sofa_analyze::render_json(analysis));
        } else {
            print!("{}", sofa_analyze::render_text(analysis, args.top));
        }
    } else {
        let multi = sofa_analyze::merge(analyses);
        if args.json {
            println!("{}", sofa_analyze::render_json(&multi));
        } else {
            print!("{}", sofa_analyze::render_multi_text(&multi, args.top));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let output = args
        .output
        .unwrap_or_else(|| sofa_report::default_output(&args.archive));
    let started = std::time::Instant::now();
    let archive = sofa_trace::Archive::open(&args.archive)?;
    for warning in archive.warnings() {
        eprintln!("sofa: warning: {warning}");
    }
    let options = analysis_options(
        args.swarms,
        args.steps,
        args.step_marker.clone(),
        args.python_only,
    );
    let report = sofa_report::render(&archive, &options)?;
    sofa_report::write(&report, &output)?;
    eprintln!(
        "sofa report: {} samples, {} flamegraphs, {:.1} MiB in {:.1} s",
        report.samples,
        report.flamegraphs,
        report.html.len() as f64 / (1024.0 * 1024.0),
        started.elapsed().as_secs_f64()
    );
    println!("{}", output.display());
    Ok(ExitCode::SUCCESS)
}
