//! Network traffic per interface, from the packet events.

use serde::Serialize;
use sofa_trace::tables::NetEvent;
use sofa_trace::{Archive, NetSource, PacketRef, Table, TraceError};
use std::collections::{BTreeMap, HashMap};

/// A packet the kernel sent or received (a `net` tracepoint row), as the
/// analysis keeps it: 16 bytes against ~220 for a full row with its strings
/// (4 M packets: 61 MiB instead of 880 MB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub time_ns: u64,
    pub len: u32,
    /// Index into the interface names of its [`Packets`].
    interface: u16,
    /// Sent (`xmit`), else received.
    pub tx: bool,
}

/// The `net` table: tracepoint packets read again, compact and one at a
/// time, by each pass that needs them ([`Packets::for_each`]), so memory
/// does not grow with them; captured headers (`--net-capture`, for flows)
/// as full rows.
#[derive(Debug, Default)]
pub struct Packets<'a> {
    /// Where the packets are read again from; `None` for packets given in
    /// memory ([`Packets::from_rows`]), kept in `kept`.
    archive: Option<&'a Archive>,
    kept: Vec<Packet>,
    /// Tracepoint packets.
    count: u64,
    /// Rows of the table at the first read, captured headers included.
    rows: u64,
    pub captured: Vec<NetEvent>,
    interfaces: Vec<String>,
}

impl<'a> Packets<'a> {
    /// Reads the table once, keeping the interfaces' names, the count and
    /// the captured headers.
    pub fn read(archive: &'a Archive) -> Result<Packets<'a>, TraceError> {
        let mut packets = Packets {
            archive: Some(archive),
            ..Packets::default()
        };
        let mut captures = false;
        packets.rows = archive.for_each_packet(None, |row| {
            if row.source == NetSource::Capture.as_str() {
                captures = true;
            } else {
                packets.compact(row);
                packets.count += 1;
            }
        })?;
        if captures {
            archive.for_each_rows(|rows: Vec<NetEvent>| {
                let captured = rows.into_iter().filter(|e| e.source == NetSource::Capture);
                packets.captured.extend(captured);
            })?;
        }
        Ok(packets)
    }

    /// From full rows, kept in memory (tests, callers that have them).
    pub fn from_rows(rows: Vec<NetEvent>) -> Packets<'static> {
        let mut packets = Packets::default();
        for e in rows {
            if e.source == NetSource::Capture {
                packets.captured.push(e);
                continue;
            }
            let packet = packets.compact(&PacketRef {
                time_ns: e.time_ns,
                source: &e.source,
                ifname: e.ifname.as_deref(),
                len: e.len,
            });
            packets.kept.push(packet);
            packets.count += 1;
        }
        packets
    }

    /// Calls `f` with every tracepoint packet, in the table's order: read
    /// again from the archive, or from memory. Of an archive still being
    /// recorded, the packets of the first read.
    pub fn for_each(&self, mut f: impl FnMut(&Packet)) -> Result<(), TraceError> {
        let Some(archive) = self.archive else {
            self.kept.iter().for_each(f);
            return Ok(());
        };
        let mut read = 0u64;
        let mut unknown: Option<String> = None;
        archive.for_each_packet(Some(self.rows), |row| {
            if row.source == NetSource::Capture.as_str() {
                return;
            }
            read += 1;
            let name = row.ifname.unwrap_or("?");
            match self.interfaces.iter().position(|n| n == name) {
                Some(i) => f(&packet(row, i)),
                None => {
                    unknown.get_or_insert_with(|| name.to_owned());
                }
            }
        })?;
        if read < self.count || unknown.is_some() {
            return Err(crate::changed_while_analysed(
                archive.dir().join(NetEvent::NAME),
                (read, self.count),
                "packets",
                unknown.map(|n| format!("interface `{n}`")),
            ));
        }
        Ok(())
    }

    /// The row compact, its interface named in `interfaces`.
    fn compact(&mut self, row: &PacketRef) -> Packet {
        let name = row.ifname.unwrap_or("?");
        let interface = match self.interfaces.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                self.interfaces.push(name.to_owned());
                self.interfaces.len() - 1
            }
        };
        packet(row, interface)
    }

    /// The packet's interface as an index (0.. the number of interfaces).
    pub(crate) fn interface_index(&self, packet: &Packet) -> u16 {
        packet.interface
    }

    /// How many interfaces the packets went through.
    pub(crate) fn interface_count(&self) -> usize {
        self.interfaces.len()
    }

    pub fn interface(&self, packet: &Packet) -> &str {
        self.interfaces
            .get(usize::from(packet.interface))
            .map_or("?", String::as_str)
    }

    /// Tracepoint packets (captured headers not counted).
    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0 && self.captured.is_empty()
    }
}

fn packet(row: &PacketRef, interface: usize) -> Packet {
    Packet {
        time_ns: row.time_ns,
        len: row.len,
        interface: u16::try_from(interface).unwrap_or(u16::MAX),
        tx: row.source != NetSource::Recv.as_str(),
    }
}

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

/// `None` when no packet was recorded; fails only where the packets, read
/// again, fail to read.
pub fn net_summary(
    packets: &Packets,
    duration_ns: Option<u64>,
) -> Result<Option<NetSummary>, TraceError> {
    if packets.is_empty() {
        return Ok(None);
    }
    let mut per: BTreeMap<String, InterfaceTraffic> = BTreeMap::new();
    let mut windows: HashMap<(u16, bool, u64), u64> = HashMap::new();
    type FlowKey = (String, String, Option<u32>, String, Option<u32>);
    let mut flows: BTreeMap<FlowKey, (u64, u64)> = BTreeMap::new();
    let mut hosts: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    // Captured headers describe the same packets as the tracepoints: they
    // feed flows, not the per-interface totals.
    for e in &packets.captured {
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
    }
    packets.for_each(|p| {
        let name = packets.interface(p);
        let slot = per
            .entry(name.to_owned())
            .or_insert_with(|| InterfaceTraffic {
                name: name.to_owned(),
                ..Default::default()
            });
        let len = u64::from(p.len);
        if p.tx {
            slot.tx_bytes += len;
            slot.tx_packets += 1;
        } else {
            slot.rx_bytes += len;
            slot.rx_packets += 1;
        }
        *windows
            .entry((p.interface, p.tx, p.time_ns / PEAK_WINDOW_NS))
            .or_default() += len;
    })?;
    let per_s = 1e9 / PEAK_WINDOW_NS as f64;
    for ((interface, tx, _), bytes) in windows {
        let name = packets
            .interfaces
            .get(usize::from(interface))
            .map_or("?", String::as_str);
        let slot = per.get_mut(name).expect("seen above");
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
    Ok(Some(NetSummary {
        tx_bytes: interfaces.iter().map(|i| i.tx_bytes).sum(),
        rx_bytes: interfaces.iter().map(|i| i.rx_bytes).sum(),
        interfaces,
        flows,
        hosts,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(time_ns: u64, source: NetSource, ifname: &str, len: u32) -> NetEvent {
        NetEvent {
            time_ns,
            source: source.as_str().to_owned(),
            ifname: Some(ifname.to_owned()),
            len,
            pid: None,
            protocol: (source == NetSource::Capture).then(|| "tcp".to_owned()),
            src_addr: (source == NetSource::Capture).then(|| "10.0.0.1".to_owned()),
            dst_addr: (source == NetSource::Capture).then(|| "10.0.0.2".to_owned()),
            src_port: None,
            dst_port: None,
        }
    }

    #[test]
    fn packets_read_again_from_the_archive_are_the_packets_kept_in_memory() {
        let sources = [NetSource::Xmit, NetSource::Recv, NetSource::Capture];
        let ifnames = ["eth0", "lo", "ib0"];
        let rows: Vec<NetEvent> = (0..500u64)
            .map(|i| {
                let mut e = event(
                    i * 1_000_000,
                    sources[(i % 3) as usize],
                    ifnames[(i / 7 % 3) as usize],
                    60 + i as u32,
                );
                if i % 11 == 0 {
                    e.ifname = None;
                }
                e
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let writer =
            sofa_trace::ArchiveWriter::create(dir.path(), sofa_trace::Meta::new(vec![])).unwrap();
        let mut table = writer.table::<NetEvent>().unwrap();
        for row in &rows {
            table.push(row.clone()).unwrap();
        }
        table.finish().unwrap();
        writer.finish().unwrap();
        let archive = Archive::open(dir.path()).unwrap();
        let read = Packets::read(&archive).unwrap();
        let kept = Packets::from_rows(rows);
        let all = |packets: &Packets| {
            let mut all = Vec::new();
            packets
                .for_each(|p| all.push((*p, packets.interface(p).to_owned())))
                .unwrap();
            all
        };
        assert_eq!(all(&read).len(), 334);
        assert_eq!(all(&read), all(&kept));
        assert_eq!(read.captured, kept.captured);
        assert_eq!((read.len(), read.captured.len()), (334, 166));
        assert_eq!(read.interface_count(), 4, "eth0, lo, ib0 and ?");
        assert_eq!(
            net_summary(&read, Some(1_000_000_000)).unwrap(),
            net_summary(&kept, Some(1_000_000_000)).unwrap()
        );
    }

    #[test]
    fn packets_are_kept_compact_and_captures_feed_only_flows() {
        let packets = Packets::from_rows(vec![
            event(0, NetSource::Xmit, "eth0", 1000),
            event(50_000_000, NetSource::Xmit, "eth0", 500),
            event(60_000_000, NetSource::Recv, "lo", 64),
            event(60_000_000, NetSource::Capture, "eth0", 1000),
        ]);
        assert_eq!(std::mem::size_of::<Packet>(), 16);
        assert_eq!((packets.kept.len(), packets.captured.len()), (3, 1));
        assert_eq!(packets.interface(&packets.kept[2]), "lo");
        let s = net_summary(&packets, Some(1_000_000_000)).unwrap().unwrap();
        assert_eq!(
            (s.tx_bytes, s.rx_bytes),
            (1500, 64),
            "captures not counted twice"
        );
        let eth0 = &s.interfaces[0];
        assert_eq!((eth0.name.as_str(), eth0.tx_packets), ("eth0", 2));
        // Both sends in one 100 ms window: 1500 B / 0.1 s.
        assert!((eth0.tx_peak_bytes_per_s - 15_000.0).abs() < 1e-6);
        assert_eq!((s.flows.len(), s.flows[0].bytes), (1, 1000));
        assert!(net_summary(&Packets::default(), None).unwrap().is_none());
    }
}
