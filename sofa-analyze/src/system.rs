//! Summary of the /proc counters: CPU utilisation, memory, disk and network.

use crate::AnalyzeError;
use serde::Serialize;
use sofa_trace::Archive;
use sofa_trace::Metric;
use sofa_trace::tables::SystemCounter;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SystemSummary {
    /// Fractions of all CPUs' time over the recording (they add up to ~1).
    pub cpu_user: f64,
    pub cpu_system: f64,
    pub cpu_iowait: f64,
    pub cpu_idle: f64,
    pub cpu_steal: f64,
    pub mem_total_bytes: u64,
    pub mem_used_max_bytes: u64,
    pub disks: Vec<DiskRow>,
    pub interfaces: Vec<InterfaceRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiskRow {
    pub device: String,
    pub read_bytes: u64,
    pub write_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InterfaceRow {
    pub device: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

/// First and last (time, value) and the maximum of one (metric, device) series.
struct Extremes {
    first: (u64, f64),
    last: (u64, f64),
    max: f64,
}

/// `None` when the system collector recorded nothing. Read a slice at a
/// time: the counters are not kept.
pub fn system_summary(archive: &Archive) -> Result<Option<SystemSummary>, AnalyzeError> {
    let mut series = Series::default();
    archive.for_each_rows(|rows: Vec<SystemCounter>| series.add(&rows))?;
    Ok(series.summary())
}

/// Each (metric, device) series' extremes, from rows in the table's order.
#[derive(Default)]
struct Series(BTreeMap<(String, String), Extremes>);

impl Series {
    fn add(&mut self, rows: &[SystemCounter]) {
        for r in rows {
            let point = (r.time_ns, r.value);
            let key = (r.metric.clone(), r.device.clone());
            let slot = self.0.entry(key).or_insert(Extremes {
                first: point,
                last: point,
                max: r.value,
            });
            if point.0 < slot.first.0 {
                slot.first = point;
            }
            if point.0 >= slot.last.0 {
                slot.last = point;
            }
            slot.max = slot.max.max(r.value);
        }
    }

    fn summary(&self) -> Option<SystemSummary> {
        let series = &self.0;
        if series.is_empty() {
            return None;
        }
        let get = |metric: Metric, device: &str| {
            series.get(&(metric.as_str().to_owned(), device.to_owned()))
        };
        // Counters are cumulative: what happened during the run is last minus first.
        let delta = |metric: Metric, device: &str| {
            get(metric, device).map_or(0.0, |s| (s.last.1 - s.first.1).max(0.0))
        };
        let max = |metric: Metric, device: &str| get(metric, device).map_or(0.0, |s| s.max);
        let parts = Metric::CPU_TIMES.map(|m| delta(m, "all"));
        let total: f64 = parts.iter().sum();
        let share = |x: f64| if total > 0.0 { x / total } else { 0.0 };
        let devices = |metric: Metric| -> Vec<String> {
            series
                .keys()
                .filter(|(m, _)| *m == metric)
                .map(|(_, d)| d.clone())
                .collect()
        };
        let disks = devices(Metric::DiskRead)
            .into_iter()
            .map(|d| DiskRow {
                read_bytes: delta(Metric::DiskRead, &d) as u64,
                write_bytes: delta(Metric::DiskWrite, &d) as u64,
                device: d,
            })
            .collect();
        let interfaces = devices(Metric::NetRxBytes)
            .into_iter()
            .map(|d| InterfaceRow {
                rx_bytes: delta(Metric::NetRxBytes, &d) as u64,
                tx_bytes: delta(Metric::NetTxBytes, &d) as u64,
                rx_packets: delta(Metric::NetRxPackets, &d) as u64,
                tx_packets: delta(Metric::NetTxPackets, &d) as u64,
                device: d,
            })
            .collect();
        Some(SystemSummary {
            cpu_user: share(parts[0]),
            cpu_system: share(parts[1]),
            cpu_iowait: share(parts[2]),
            cpu_idle: share(parts[3]),
            cpu_steal: share(parts[4]),
            mem_total_bytes: max(Metric::MemTotal, "all") as u64,
            mem_used_max_bytes: max(Metric::MemUsed, "all") as u64,
            disks,
            interfaces,
        })
    }
}
