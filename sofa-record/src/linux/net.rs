//! The `net` collector: every packet the kernel sends or receives, from the
//! `net:net_dev_xmit` and `net:netif_receive_skb` tracepoints, system-wide
//! (received packets are handled in softirq context, not in the receiving
//! process, so a per-process counter would miss them).

use super::drain::Sink;
use super::syscalls::{event_format, tracefs_dir};
use crate::tracefs::{self, Field};
use perf_event_open::config::{Clock, Cpu, Opts, Proc, RecordIdFormat, SampleFormat, SampleOn};
use perf_event_open::count::Counter;
use perf_event_open::event::tp::Tracepoint;
use perf_event_open::sample::Sampler;
use perf_event_open::sample::record::Record;
use sofa_trace::tables::{LostEvents, NetEvent};
use sofa_trace::{ArchiveWriter, TableWriter, TraceError};

/// 2^8 pages (1 MiB) per CPU and event.
const RING_PAGES_EXP: u8 = 8;

struct Layout {
    len: Field,
    name: Field,
}

pub struct Layouts([Layout; 2]);

pub struct NetCounters {
    /// (tag, counter, sampler); tag = 2 * cpu + (0 xmit | 1 receive).
    pub sources: Vec<(u32, Counter, Sampler)>,
    pub layouts: Layouts,
}

fn layout(group: &str, name: &str) -> Result<(u64, Layout), String> {
    let tracefs = tracefs_dir()?;
    let format = event_format(&tracefs, group, name)?;
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
    let opts = Opts {
        enable: false,
        sample_on: SampleOn::Count(1),
        sample_format: SampleFormat {
            raw: true,
            ..Default::default()
        },
        record_id_all: true,
        record_id_format: RecordIdFormat {
            task: true,
            time: true,
            ..Default::default()
        },
        timer: Some(Clock::Monotonic),
        ..Default::default()
    };
    let mut sources = Vec::new();
    for cpu in 0..cpus {
        for (kind, id) in [(0, xmit_id), (1, recv_id)] {
            let counter = Counter::new(Tracepoint { id }, (Cpu(cpu), Proc::ALL), &opts)
                .map_err(|e| format!("perf_event_open(net tracepoints, system-wide): {e}"))?;
            let sampler = counter
                .sampler(RING_PAGES_EXP)
                .map_err(|e| format!("ring buffer for net tracepoints: {e}"))?;
            sources.push((2 * cpu + kind, counter, sampler));
        }
    }
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
    pub lost: u64,
    pub lost_rows: Vec<LostEvents>,
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
            lost: 0,
            lost_rows: Vec::new(),
        })
    }

    pub fn finish(self) -> Result<(u64, Vec<LostEvents>), TraceError> {
        let summary = self.out.finish()?;
        Ok((summary.rows, self.lost_rows))
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
                    source: if receive { "recv" } else { "xmit" }.into(),
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
            Record::LostRecords(l) => {
                self.record_lost(tag, l.lost_records, l.record_id.and_then(|r| r.time))
            }
            Record::LostSamples(l) => {
                self.record_lost(tag, l.lost_samples, l.record_id.and_then(|r| r.time))
            }
            _ => {}
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

impl NetSink {
    fn record_lost(&mut self, tag: u32, count: u64, time_ns: Option<u64>) {
        self.lost += count;
        self.lost_rows.push(LostEvents {
            time_ns: time_ns.unwrap_or(0),
            collector: "net".into(),
            cpu: Some(tag / 2),
            count,
        });
    }
}
