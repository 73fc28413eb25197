//! Writes a generated archive (the one the benchmarks and golden tests use):
//! a training-like loop with every collector, for trying `sofa analyze` and
//! `sofa report` at any size without recording.
//!
//! ```text
//! cargo run --release --example synthetic_archive -- /tmp/big 10000000
//! sofa report /tmp/big
//! cargo run --release --example synthetic_archive -- /tmp/calls 10000000 10000000  # + 10^7 syscalls
//! ```

use sofa_trace::synthetic::Synthetic;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(dir), Some(samples)) = (args.first(), args.get(1).and_then(|n| n.parse().ok()))
    else {
        eprintln!("usage: synthetic_archive DIR SAMPLES [SYSCALLS]");
        return ExitCode::from(2);
    };
    let synthetic = Synthetic {
        samples,
        // SOFA_SYNTHETIC_BARE=1: CPU samples only, as `analyze_throughput` uses.
        collectors: std::env::var_os("SOFA_SYNTHETIC_BARE").is_none(),
        syscalls: args.get(2).and_then(|n| n.parse().ok()),
    };
    match synthetic.write(std::path::Path::new(dir)) {
        Ok(()) => {
            println!("{dir}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("synthetic_archive: {e}");
            ExitCode::FAILURE
        }
    }
}
