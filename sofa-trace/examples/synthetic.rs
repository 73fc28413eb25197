//! Writes a generated archive (`sofa_trace::synthetic`) to look at or to
//! measure `sofa analyze` on outside a bench:
//!
//! ```text
//! cargo run --release -p sofa-trace --example synthetic -- 10000000 /tmp/syn7
//! ```
//!
//! Arguments: samples, the archive's directory, and optionally the number
//! of system calls (as many as samples by default; the other collectors'
//! tables are always written).

use sofa_trace::synthetic::Synthetic;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(n), Some(dir)) = (args.first().and_then(|n| n.parse().ok()), args.get(1)) else {
        eprintln!("usage: synthetic SAMPLES DIR [SYSCALLS]");
        std::process::exit(2);
    };
    let syscalls = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(n);
    let spec = Synthetic {
        samples: n,
        collectors: true,
        syscalls: Some(syscalls),
    };
    if let Err(e) = spec.write(std::path::Path::new(dir)) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
