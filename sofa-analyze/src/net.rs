//! Network traffic per interface, from the packet events.

use crate::AnalyzeError;
use serde::Serialize;
use sofa_trace::Archive;
use sofa_trace::tables::NetEvent;
use std::collections::{BTreeMap, HashMap};

/// Window for peak throughput.
const PEAK_WINDOW_NS: u64 = 100_000_000;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NetSummary {
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    pub interfaces: Vec<InterfaceTraffic>,
    /// Host-to-host flows; filled by header capture (not recorded yet).
    pub flows: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InterfaceTraffic {
    pub name: String,
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub rx_packets: u64,
    /// Over the recording.
    pub tx_mean_bytes_per_s: f64,
    pub rx_mean_bytes_per_s: f64,
    /// Busiest 100 ms window.
    pub tx_peak_bytes_per_s: f64,
    pub rx_peak_bytes_per_s: f64,
}

/// `None` when no packet was recorded.
pub fn net_summary(
    archive: &Archive,
    duration_ns: Option<u64>,
) -> Result<Option<NetSummary>, AnalyzeError> {
    let events = archive.read_table::<NetEvent>()?;
    if events.is_empty() {
        return Ok(None);
    }
    let mut per: BTreeMap<String, InterfaceTraffic> = BTreeMap::new();
    let mut windows: HashMap<(String, bool, u64), u64> = HashMap::new();
    for e in events {
        let name = e.ifname.unwrap_or_else(|| "?".to_owned());
        let tx = e.source != "recv";
        let slot = per.entry(name.clone()).or_insert_with(|| InterfaceTraffic {
            name: name.clone(),
            ..Default::default()
        });
        let len = u64::from(e.len);
        if tx {
            slot.tx_bytes += len;
            slot.tx_packets += 1;
        } else {
            slot.rx_bytes += len;
            slot.rx_packets += 1;
        }
        *windows
            .entry((name, tx, e.time_ns / PEAK_WINDOW_NS))
            .or_default() += len;
    }
    let per_s = 1e9 / PEAK_WINDOW_NS as f64;
    for ((name, tx, _), bytes) in windows {
        let slot = per.get_mut(&name).expect("seen above");
        let peak = if tx {
            &mut slot.tx_peak_bytes_per_s
        } else {
            &mut slot.rx_peak_bytes_per_s
        };
        *peak = peak.max(bytes as f64 * per_s);
    }
    let seconds = duration_ns.map(|d| d as f64 / 1e9).filter(|s| *s > 0.0);
    let mut interfaces: Vec<InterfaceTraffic> = per.into_values().collect();
    for i in &mut interfaces {
        if let Some(s) = seconds {
            i.tx_mean_bytes_per_s = i.tx_bytes as f64 / s;
            i.rx_mean_bytes_per_s = i.rx_bytes as f64 / s;
        }
    }
    interfaces.sort_by(|a, b| {
        (b.tx_bytes + b.rx_bytes)
            .cmp(&(a.tx_bytes + a.rx_bytes))
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(Some(NetSummary {
        tx_bytes: interfaces.iter().map(|i| i.tx_bytes).sum(),
        rx_bytes: interfaces.iter().map(|i| i.rx_bytes).sum(),
        interfaces,
        flows: Vec::new(),
    }))
}
