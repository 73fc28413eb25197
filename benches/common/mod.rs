//! Shared by the benchmarks.

/// The process's peak resident memory so far (VmHWM), MiB.
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Hands the heap's free pages back to the kernel (glibc keeps them) and
/// resets the peak (VmHWM) to the memory in use then (`clear_refs` 5,
/// Linux 4.0+), so a later [`peak_rss_mib`] is of what came after, not of
/// what a generator freed before; false where the kernel does not take it.
#[allow(dead_code)]
pub fn reset_peak_rss() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it
    // touches no memory the program holds.
    unsafe {
        libc::malloc_trim(0);
    }
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}
