//! The `net` collector: every packet the kernel sends or receives, from the
//! `net:net_dev_xmit` and `net:netif_receive_skb` tracepoints, system-wide
//! (received packets are handled in softirq context, not in the receiving
//! process, so a per-process counter would miss them).

use super::collector::{Collector, Losses, OpenError, Outcome, Setup, Spec};
use super::drain::Sink;
use super::tracepoint::{FinishSink, Scope, Source, Tracepoints, event_format, open_pair};
use crate::tracefs::{self, Field};
use perf_event_open::sample::record::Record;
use sofa_trace::tables::NetEvent;
use sofa_trace::{
    ArchiveWriter, CollectorName, CollectorState, CollectorStatus, NetSource, TableWriter,
    TraceError,
};

pub const SPEC: Spec = Spec {
    name: CollectorName::Net,
    what: "network traffic",
    switch: "--no-net",
    enabled: |config| config.net,
    open: open_collector,
    skipped: capture_skipped,
};

/// What `net_capture` (packet headers, `--net-capture`) says when off.
const CAPTURE_SWITCH: &str = "off by default; --net-capture";
const CAPTURE_WHAT: &str = "packet headers";

/// System-wide counters, enabled by the collector's thread; packet headers
/// too when asked for (they go into the same table).
fn open_collector(setup: &mut Setup) -> Result<Box<dyn Collector>, OpenError> {
    let counters = open(setup.cpus).map_err(OpenError::Unavailable)?;
    let capture = if setup.config.net_capture {
        match super::capture::open() {
            Ok(capture) => {
                setup.set_status(CollectorName::NetCapture, CollectorStatus::ok());
                Some(capture)
            }
            Err(reason) => {
                setup.unavailable(CollectorName::NetCapture, CAPTURE_WHAT, reason);
                None
            }
        }
    } else {
        capture_skipped(setup);
        None
    };
    let sink = NetSink::new(setup.archive, counters.layouts, capture)?;
    Ok(Box::new(Tracepoints::new(counters.sources, sink, true)))
}

/// Packet headers ride on the net collector.
fn capture_skipped(setup: &mut Setup) {
    if setup.config.net_capture {
        setup.unavailable(
            CollectorName::NetCapture,
            CAPTURE_WHAT,
            "needs the net collector".to_owned(),
        );
    } else {
        setup.set_status(
            CollectorName::NetCapture,
            CollectorStatus::with(CollectorState::Disabled, CAPTURE_SWITCH),
        );
    }
}

/// 2^8 pages (1 MiB) per CPU and event.
const RING_PAGES_EXP: u8 = 8;

struct Layout {
    len: Field,
    name: Field,
}

pub struct Layouts([Layout; 2]);

pub struct NetCounters {
    /// (tag, counter, sampler); tag = 2 * cpu + (0 xmit | 1 receive).
    pub sources: Vec<Source>,
    pub layouts: Layouts,
}

fn layout(group: &str, name: &str) -> Result<(u64, Layout), String> {
    let format = event_format(group, name)?;
    let get = |f: &str| {
        format
            .field(f)
            .cloned()
            .ok_or_else(|| format!("{group}:{name} lacks `{f}`"))
    };
    Ok((
        format.id,
        Layout {
            len: get("len")?,
            name: get("name")?,
        },
    ))
}

/// Opens both tracepoints on every CPU, disabled until the reader enables them.
pub fn open(cpus: u32) -> Result<NetCounters, String> {
    let (xmit_id, xmit) = layout("net", "net_dev_xmit")?;
    let (recv_id, recv) = layout("net", "netif_receive_skb")?;
    let sources = open_pair(
        [xmit_id, recv_id],
        Scope::System,
        cpus,
        RING_PAGES_EXP,
        "net tracepoints, system-wide",
    )?;
    Ok(NetCounters {
        sources,
        layouts: Layouts([xmit, recv]),
    })
}

pub struct NetSink {
    out: TableWriter<NetEvent>,
    capture: Option<super::capture::Capture>,
    pub captured: u64,
    layouts: Layouts,
    pub packets: u64,
    pub losses: Losses,
}

impl NetSink {
    pub fn new(
        archive: &ArchiveWriter,
        layouts: Layouts,
        capture: Option<super::capture::Capture>,
    ) -> Result<NetSink, TraceError> {
        Ok(NetSink {
            out: archive.table()?,
            capture,
            captured: 0,
            layouts,
            packets: 0,
            losses: Losses::new(CollectorName::Net),
        })
    }
}

impl FinishSink for NetSink {
    fn finish(self) -> Result<Outcome, TraceError> {
        let summary = self.out.finish()?;
        Ok(Outcome {
            rows: summary.rows,
            losses: Some(self.losses),
            ..Outcome::default()
        })
    }
}

impl Sink for NetSink {
    fn handle(&mut self, tag: u32, record: Record) -> Result<(), TraceError> {
        let receive = tag % 2 == 1;
        match record {
            Record::Sample(s) => {
                let Some(raw) = s.raw.as_deref() else {
                    return Ok(());
                };
                let layout = &self.layouts.0[usize::from(receive)];
                let Some(len) = tracefs::read_int(raw, &layout.len) else {
                    return Ok(());
                };
                self.packets += 1;
                self.out.push(NetEvent {
                    time_ns: s.record_id.time.unwrap_or(0),
                    source: if receive {
                        NetSource::Recv
                    } else {
                        NetSource::Xmit
                    }
                    .as_str()
                    .into(),
                    ifname: tracefs::read_data_loc_str(raw, &layout.name),
                    len: len as u32,
                    // Sends run in the sending task; receives in whatever softirq context.
                    pid: if receive {
                        None
                    } else {
                        s.record_id.task.as_ref().map(|t| t.pid).filter(|&p| p != 0)
                    },
                    protocol: None,
                    src_addr: None,
                    dst_addr: None,
                    src_port: None,
                    dst_port: None,
                })?;
            }
            other => self.losses.count(tag / 2, &other),
        }
        Ok(())
    }

    fn tick(&mut self) -> Result<(), TraceError> {
        if let Some(capture) = self.capture.as_mut() {
            self.captured += capture.poll(&mut self.out)?;
        }
        self.out.flush_if_due()
    }
}
