//! Generated archives for benchmarks and golden tests: deterministic (fixed
//! seed, fixed host and clock), any size, shaped like a training job.
//!
//! Two threads take turns, 0.5 ms apart; a step is 80 samples (40 ms) through
//! five phases, each with its own functions (`phaseN::function_M`) and stack
//! depths, plus 10 % noise. 400 frames with symbols in `libtrain.so`. With
//! `collectors`, the other tables are filled too: a `read` every 2 ms that
//! takes longer in phase 0 (input), /proc counters at 10 Hz, one GPU at
//! 20 Hz busy outside phase 0, and 64 KiB sent and received in phase 4.

use crate::tables::{
    Frame, GpuCounter, Mapping, NetEvent, Sample, StackNode, Switch, Symbol, Syscall,
    SystemCounter, TaskEvent,
};
use crate::{
    ArchiveWriter, ClockInfo, CollectorState, CollectorStatus, ExitInfo, FlushPolicy, GpuInfo,
    HostInfo, Meta, SamplingInfo, TraceError,
};
use std::path::Path;
use std::time::Duration;

const FRAMES: u64 = 400;
const STACKS: u64 = 200;
const START_NS: u64 = 1_000_000_000;
const SAMPLE_NS: u64 = 500_000;
/// Samples per step (both threads).
pub const STEP_SAMPLES: u64 = 80;

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct Synthetic {
    pub samples: u64,
    /// Also syscalls, system counters, a GPU and network packets.
    pub collectors: bool,
    /// System calls to generate, spread evenly over the run (with
    /// `collectors`); `None`: one every 2 ms.
    pub syscalls: Option<u64>,
}

/// Phase (0..5) of the step at time `t`.
fn step_phase(t: u64) -> u64 {
    ((t - START_NS) / SAMPLE_NS / 2) % (STEP_SAMPLES / 2) / 8
}

impl Synthetic {
    /// Writes the archive into `dir` (created; must not hold an archive).
    pub fn write(&self, dir: &Path) -> Result<(), TraceError> {
        let end = START_NS + self.samples * SAMPLE_NS;
        let mut meta = Meta::new(vec!["python".into(), "train.py".into()]);
        meta.host = HostInfo {
            hostname: "synthetic".into(),
            kernel: "6.0.0".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            cpus: 2,
        };
        meta.clock = ClockInfo {
            start_ns: START_NS,
            realtime_offset_ns: 1_767_225_600_000_000_000 - START_NS as i64,
        };
        meta.sampling = Some(SamplingInfo {
            event: "cpu-clock".into(),
            frequency_hz: 999,
            fallback: None,
            ..Default::default()
        });
        meta.collectors.insert("cpu".into(), CollectorStatus::ok());
        if self.collectors {
            for name in ["syscalls", "system", "net", "gpu", "off_cpu"] {
                meta.collectors.insert(name.into(), CollectorStatus::ok());
            }
            meta.gpus.push(GpuInfo {
                index: 0,
                name: "Synthetic GPU".into(),
                uuid: None,
                memory_bytes: Some(16 << 30),
            });
        } else {
            meta.collectors.insert(
                "gpu".into(),
                CollectorStatus::with(CollectorState::Unavailable, "not generated"),
            );
        }
        let policy = FlushPolicy {
            max_rows: 1 << 20,
            max_age: Duration::from_secs(3600),
        };
        let mut w = ArchiveWriter::create_with_policy(dir, meta, policy)?;
        let mut t = w.table::<Mapping>()?;
        t.push(Mapping {
            mapping_id: 0,
            pid: 100,
            time_ns: 0,
            start: 0x1000,
            end: 0x1000 + FRAMES * 0x100,
            pgoff: 0,
            path: "/usr/lib/libtrain.so".into(),
            build_id: None,
        })?;
        t.finish()?;
        let mut t = w.table::<Frame>()?;
        let mut s = w.table::<Symbol>()?;
        for f in 0..FRAMES {
            t.push(Frame {
                frame_id: f,
                pid: 100,
                address: 0x1000 + f * 0x100,
                kind: "user".into(),
                mapping_id: Some(0),
                file_offset: Some(f * 0x100),
            })?;
            s.push(Symbol {
                frame_id: f,
                inline_depth: 0,
                function: format!("phase{}::function_{f}", f % 5),
                module: "libtrain.so".into(),
                file: Some("train.cc".into()),
                line: Some(f as u32),
            })?;
        }
        t.finish()?;
        s.finish()?;
        // Stacks: chains of up to 2 frames; stack i's leaf is frame 7i % FRAMES.
        let mut t = w.table::<StackNode>()?;
        for i in 0..STACKS {
            t.push(StackNode {
                stack_id: i,
                parent_id: (i >= 5).then_some(i % 5),
                frame_id: (i * 7) % FRAMES,
            })?;
        }
        t.finish()?;
        let mut t = w.table::<TaskEvent>()?;
        t.push(TaskEvent {
            time_ns: 0,
            kind: "exec".into(),
            pid: 100,
            tid: 100,
            ppid: None,
            ptid: None,
            comm: Some("python3".into()),
        })?;
        t.finish()?;
        let mut t = w.table::<Sample>()?;
        let mut x = 0x9e3779b97f4a7c15u64;
        for i in 0..self.samples {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let step_pos = (i / 2) % (STEP_SAMPLES / 2); // two threads interleaved
            let phase = step_pos / 8;
            // Mostly the phase's own stacks, some noise.
            let stack = if x.is_multiple_of(10) {
                (x >> 16) % STACKS
            } else {
                phase + 5 * ((x >> 8) % (STACKS / 5))
            };
            t.push(Sample {
                time_ns: START_NS + i * SAMPLE_NS,
                pid: 100,
                tid: if i % 2 == 0 { 100 } else { 101 },
                cpu: (i % 2) as u32,
                stack_id: Some(stack),
                event: 0,
                period: 1_001_001,
            })?;
        }
        t.finish()?;
        if self.collectors {
            write_collectors(&w, end, self.syscalls)?;
        }
        w.meta_mut().end_ns = Some(end);
        w.meta_mut().exit = Some(ExitInfo {
            code: Some(0),
            signal: None,
        });
        w.finish()?;
        Ok(())
    }
}

fn write_collectors(w: &ArchiveWriter, end: u64, syscalls: Option<u64>) -> Result<(), TraceError> {
    let mut t = w.table::<Syscall>()?;
    let every = match syscalls {
        Some(n) => ((end - START_NS) / n.max(1)).max(1),
        None => 2_000_000,
    };
    let mut time = START_NS;
    while time < end {
        let input = step_phase(time) == 0;
        t.push(Syscall {
            time_ns: time,
            duration_ns: Some(if input { 400_000 } else { 20_000 }),
            pid: 100,
            tid: 100,
            nr: 0,
            name: "read".into(),
            ret: Some(4096),
            arg0: 3,
            arg1: 0,
            arg2: 4096,
        })?;
        time += every;
    }
    t.finish()?;
    // The main thread (samples at even indices) leaves its CPU for 0.4 ms
    // after each of its samples in a step's input phase, the other (odd
    // indices) after every fifth of its samples, preempted for 0.9 ms:
    // between two samples of the thread, as a thread sampled running
    // cannot be waiting.
    let mut t = w.table::<Switch>()?;
    let samples = (end - START_NS) / SAMPLE_NS;
    for i in 0..samples {
        let time = START_NS + i * SAMPLE_NS + 50_000;
        let (tid, wait, preempted) = match i % 2 {
            0 if step_phase(time) == 0 => (100, 400_000, false),
            1 if i % 10 == 1 => (101, 900_000, true),
            _ => continue,
        };
        for (at, out) in [(time, true), (time + wait, false)] {
            t.push(Switch {
                time_ns: at,
                pid: 100,
                tid,
                cpu: 0,
                out,
                preempted: out && preempted,
                stack_id: out.then_some(0),
            })?;
        }
    }
    t.finish()?;
    let mut t = w.table::<SystemCounter>()?;
    let mut time = START_NS;
    let mut k = 0u64;
    while time <= end {
        let kf = k as f64;
        for (metric, value) in [
            ("cpu.user_s", 0.17 * kf),
            ("cpu.system_s", 0.02 * kf),
            ("cpu.iowait_s", 0.002 * kf),
            ("cpu.idle_s", 0.008 * kf),
            ("cpu.steal_s", 0.0),
            ("mem.total_bytes", 8e9),
            ("mem.used_bytes", 2e9 + 1e6 * (k % 50) as f64),
        ] {
            t.push(SystemCounter {
                time_ns: time,
                metric: metric.into(),
                device: "all".into(),
                value,
            })?;
        }
        k += 1;
        time += 100_000_000;
    }
    t.finish()?;
    let mut t = w.table::<GpuCounter>()?;
    let mut time = START_NS;
    while time <= end {
        let busy = step_phase(time) != 0;
        t.push(GpuCounter {
            time_ns: time,
            gpu: 0,
            util_gpu: Some(if busy { 92.0 } else { 5.0 }),
            util_mem: Some(if busy { 40.0 } else { 2.0 }),
            mem_used_bytes: Some(6 << 30),
            mem_total_bytes: Some(16 << 30),
            power_w: Some(if busy { 250.0 } else { 60.0 }),
            temperature_c: Some(60.0),
            sm_clock_mhz: Some(1800),
            mem_clock_mhz: Some(5000),
            pcie_tx_bytes_per_s: None,
            pcie_rx_bytes_per_s: None,
            nvlink_tx_bytes_per_s: None,
            nvlink_rx_bytes_per_s: None,
        })?;
        time += 50_000_000;
    }
    t.finish()?;
    let mut t = w.table::<NetEvent>()?;
    let mut time = START_NS;
    while time < end {
        if step_phase(time) == 4 {
            for source in ["xmit", "recv"] {
                t.push(NetEvent {
                    time_ns: time,
                    source: source.into(),
                    ifname: Some("eth0".into()),
                    len: 8192,
                    pid: Some(100),
                    protocol: None,
                    src_addr: None,
                    dst_addr: None,
                    src_port: None,
                    dst_port: None,
                })?;
            }
        }
        time += 500_000;
    }
    t.finish()?;
    Ok(())
}
