//! Network traffic per interface, from the packet events.

use serde::Serialize;
use sofa_trace::NetSource;
use sofa_trace::tables::NetEvent;
use std::collections::{BTreeMap, HashMap};

/// Window for peak throughput.
const PEAK_WINDOW_NS: u64 = 100_000_000;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NetSummary {
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    pub interfaces: Vec<InterfaceTraffic>,
    /// Flows from captured headers (`sofa record --net-capture`), most bytes first.
    pub flows: Vec<Flow>,
    /// Host-to-host traffic matrix from the same headers, most bytes first.
    pub hosts: Vec<HostPair>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flow {
    pub protocol: String,
    pub src: String,
    pub src_port: Option<u32>,
    pub dst: String,
    pub dst_port: Option<u32>,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostPair {
    pub src: String,
    pub dst: String,
    pub packets: u64,
    pub bytes: u64,
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
pub fn net_summary(events: &[NetEvent], duration_ns: Option<u64>) -> Option<NetSummary> {
    if events.is_empty() {
        return None;
    }
    let mut per: BTreeMap<String, InterfaceTraffic> = BTreeMap::new();
    let mut windows: HashMap<(String, bool, u64), u64> = HashMap::new();
    type FlowKey = (String, String, Option<u32>, String, Option<u32>);
    let mut flows: BTreeMap<FlowKey, (u64, u64)> = BTreeMap::new();
    let mut hosts: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for e in events {
        if e.source == NetSource::Capture {
            // Captured headers describe the same packets as the tracepoints:
            // they feed flows, not the per-interface totals.
            let src = e.src_addr.clone().unwrap_or_default();
            let dst = e.dst_addr.clone().unwrap_or_default();
            let len = u64::from(e.len);
            let proto = e.protocol.clone().unwrap_or_default();
            let flow = flows
                .entry((proto, src.clone(), e.src_port, dst.clone(), e.dst_port))
                .or_default();
            flow.0 += 1;
            flow.1 += len;
            let pair = hosts.entry((src, dst)).or_default();
            pair.0 += 1;
            pair.1 += len;
            continue;
        }
        let name = e.ifname.clone().unwrap_or_else(|| "?".to_owned());
        let tx = e.source != NetSource::Recv;
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
    let mut flows: Vec<Flow> = flows
        .into_iter()
        .map(
            |((protocol, src, src_port, dst, dst_port), (packets, bytes))| Flow {
                protocol,
                src,
                src_port,
                dst,
                dst_port,
                packets,
                bytes,
            },
        )
        .collect();
    flows.sort_by_key(|f| std::cmp::Reverse(f.bytes));
    let mut hosts: Vec<HostPair> = hosts
        .into_iter()
        .map(|((src, dst), (packets, bytes))| HostPair {
            src,
            dst,
            packets,
            bytes,
        })
        .collect();
    hosts.sort_by_key(|h| std::cmp::Reverse(h.bytes));
    Some(NetSummary {
        tx_bytes: interfaces.iter().map(|i| i.tx_bytes).sum(),
        rx_bytes: interfaces.iter().map(|i| i.rx_bytes).sum(),
        interfaces,
        flows,
        hosts,
    })
}
