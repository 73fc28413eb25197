//! Facts about the recording host and its clocks, for meta.json.

use sofa_trace::{ClockInfo, HostInfo};

fn field(chars: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

pub fn host_info() -> HostInfo {
    // SAFETY: uname fills a zeroed struct.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::uname(&mut uts) } == 0;
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as u32;
    HostInfo {
        hostname: if ok {
            field(&uts.nodename)
        } else {
            String::new()
        },
        kernel: if ok {
            field(&uts.release)
        } else {
            String::new()
        },
        os: std::env::consts::OS.to_owned(),
        arch: std::env::consts::ARCH.to_owned(),
        cpus,
    }
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_MONOTONIC now, ns: the archive's time base.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

pub fn clock_info() -> ClockInfo {
    let mono = monotonic_ns();
    let real = clock_ns(libc::CLOCK_REALTIME);
    ClockInfo {
        start_ns: mono,
        realtime_offset_ns: real as i64 - mono as i64,
    }
}
