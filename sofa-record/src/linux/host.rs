//! Facts about the recording host and its clocks, for meta.json.

use super::sys::{self, Clock};
use sofa_trace::{ClockInfo, HostInfo};

pub fn host_info() -> HostInfo {
    let uname = sys::uname();
    HostInfo {
        hostname: uname
            .as_ref()
            .map(|u| u.nodename.clone())
            .unwrap_or_default(),
        kernel: uname.map(|u| u.release).unwrap_or_default(),
        os: std::env::consts::OS.to_owned(),
        arch: std::env::consts::ARCH.to_owned(),
        cpus: sys::online_cpus(),
    }
}

/// CLOCK_MONOTONIC now, ns: the archive's time base.
pub fn monotonic_ns() -> u64 {
    sys::clock_ns(Clock::Monotonic)
}

pub fn clock_info() -> ClockInfo {
    let mono = monotonic_ns();
    let real = sys::clock_ns(Clock::Realtime);
    ClockInfo {
        start_ns: mono,
        realtime_offset_ns: real as i64 - mono as i64,
    }
}
