//! The `system` collector: /proc sampled at a fixed rate (default 10 Hz) —
//! CPU time per CPU, memory, disk and network bytes, and CPU time, RSS and
//! threads of every process of the traced tree.

use super::collector::{Collector, OpenError, Outcome, Setup, Spec, nothing_skipped};
use crate::procfs::{self, PidStat};
use sofa_trace::tables::{ProcessCounter, SystemCounter};
use sofa_trace::{ArchiveWriter, CollectorName, Metric, TableWriter, TraceError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub const SPEC: Spec = Spec {
    name: CollectorName::System,
    what: "/proc counters",
    switch: "--no-system",
    enabled: |config| config.system,
    open: open_collector,
    skipped: nothing_skipped,
};

fn open_collector(setup: &mut Setup) -> Result<Box<dyn Collector>, OpenError> {
    Ok(Box::new(System {
        sampler: SystemSampler::new(setup.archive, setup.pid as u32)?,
        hz: setup.config.proc_hz,
    }))
}

struct System {
    sampler: SystemSampler,
    hz: u64,
}

impl Collector for System {
    /// Samples every `1/hz` seconds until `stop`, then once more at the end.
    fn run(&mut self, stop: &AtomicBool) -> Result<(), TraceError> {
        let period = Duration::from_nanos(1_000_000_000 / self.hz.max(1));
        let mut next = Instant::now();
        loop {
            self.sampler.sample()?;
            next += period;
            while Instant::now() < next {
                if stop.load(Ordering::Acquire) {
                    return self.sampler.sample();
                }
                std::thread::sleep((next - Instant::now()).min(Duration::from_millis(20)));
            }
            if stop.load(Ordering::Acquire) {
                return self.sampler.sample();
            }
        }
    }

    fn finish(self: Box<Self>, _: &ArchiveWriter) -> Result<Outcome, TraceError> {
        Ok(Outcome {
            rows: self.sampler.finish()?,
            ..Outcome::default()
        })
    }
}

pub struct SystemSampler {
    system: TableWriter<SystemCounter>,
    processes: TableWriter<ProcessCounter>,
    root: u32,
    ns_per_tick: u64,
    page_size: u64,
    pub samples: u64,
}

impl SystemSampler {
    pub fn new(archive: &ArchiveWriter, root: u32) -> Result<SystemSampler, TraceError> {
        let ticks = super::sys::clock_ticks_per_second();
        let page_size = super::sys::page_size();
        Ok(SystemSampler {
            system: archive.table()?,
            processes: archive.table()?,
            root,
            ns_per_tick: 1_000_000_000 / ticks,
            page_size,
            samples: 0,
        })
    }

    fn push(
        &mut self,
        time_ns: u64,
        metric: Metric,
        device: &str,
        value: f64,
    ) -> Result<(), TraceError> {
        self.system.push(SystemCounter {
            time_ns,
            metric: metric.as_str().to_owned(),
            device: device.to_owned(),
            value,
        })
    }

    /// Takes one sample of everything.
    pub fn sample(&mut self) -> Result<(), TraceError> {
        let t = super::host::monotonic_ns();
        let seconds = |ticks: u64, ns_per_tick: u64| (ticks * ns_per_tick) as f64 / 1e9;
        if let Ok(bytes) = std::fs::read("/proc/stat") {
            for c in procfs::parse_stat(&bytes) {
                let device = c
                    .cpu
                    .map_or_else(|| "all".to_owned(), |n| format!("cpu{n}"));
                let npt = self.ns_per_tick;
                for (metric, ticks) in [
                    (Metric::CpuUser, c.user + c.nice),
                    (Metric::CpuSystem, c.system + c.irq + c.softirq),
                    (Metric::CpuIowait, c.iowait),
                    (Metric::CpuIdle, c.idle),
                    (Metric::CpuSteal, c.steal),
                ] {
                    self.push(t, metric, &device, seconds(ticks, npt))?;
                }
            }
        }
        if let Ok(bytes) = std::fs::read("/proc/meminfo") {
            let m = procfs::parse_meminfo(&bytes);
            for (metric, value) in [
                (Metric::MemTotal, m.total),
                (Metric::MemUsed, m.used()),
                (Metric::MemAvailable, m.available),
                (Metric::MemCached, m.cached + m.buffers),
            ] {
                self.push(t, metric, "all", value as f64)?;
            }
        }
        if let Ok(bytes) = std::fs::read("/proc/diskstats") {
            for d in procfs::parse_diskstats(&bytes) {
                self.push(t, Metric::DiskRead, &d.name, d.read_bytes as f64)?;
                self.push(t, Metric::DiskWrite, &d.name, d.write_bytes as f64)?;
            }
        }
        if let Ok(bytes) = std::fs::read("/proc/net/dev") {
            for n in procfs::parse_net_dev(&bytes) {
                self.push(t, Metric::NetRxBytes, &n.name, n.rx_bytes as f64)?;
                self.push(t, Metric::NetTxBytes, &n.name, n.tx_bytes as f64)?;
                self.push(t, Metric::NetRxPackets, &n.name, n.rx_packets as f64)?;
                self.push(t, Metric::NetTxPackets, &n.name, n.tx_packets as f64)?;
            }
        }
        // A process that is exiting has released its memory (rss 0) before it
        // becomes a zombie waiting to be reaped: neither is still running.
        for p in traced_tree(self.root)
            .into_iter()
            .filter(|p| p.state != 'Z' && p.rss > 0)
        {
            self.processes.push(ProcessCounter {
                time_ns: t,
                pid: p.pid,
                utime_ns: p.utime * self.ns_per_tick,
                stime_ns: p.stime * self.ns_per_tick,
                rss_bytes: p.rss * self.page_size,
                threads: p.threads,
            })?;
        }
        self.samples += 1;
        self.system.flush_if_due()?;
        self.processes.flush_if_due()
    }

    pub fn finish(self) -> Result<u64, TraceError> {
        self.system.finish()?;
        self.processes.finish()?;
        Ok(self.samples)
    }
}

/// `root` and all its descendants that are alive now.
pub(super) fn traced_tree(root: u32) -> Vec<PidStat> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let all: Vec<PidStat> = entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| procfs::parse_pid_stat(&std::fs::read(e.path().join("stat")).ok()?))
        .collect();
    let mut children: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, p) in all.iter().enumerate() {
        children.entry(p.ppid).or_default().push(i);
    }
    let mut out = Vec::new();
    let mut queue: Vec<usize> = all.iter().position(|p| p.pid == root).into_iter().collect();
    while let Some(i) = queue.pop() {
        out.push(all[i]);
        if let Some(kids) = children.get(&all[i].pid) {
            queue.extend(kids);
        }
    }
    out.sort_by_key(|p| p.pid);
    out
}

/// Whether `pid` is `root` or one of its descendants (walks /proc/PID/stat parents).
pub fn in_tree(pid: u32, root: u32) -> bool {
    let mut current = pid;
    for _ in 0..64 {
        if current == root {
            return true;
        }
        if current <= 1 {
            return false;
        }
        let Some(stat) = std::fs::read(format!("/proc/{current}/stat"))
            .ok()
            .and_then(|b| procfs::parse_pid_stat(&b))
        else {
            return false;
        };
        current = stat.ppid;
    }
    false
}
