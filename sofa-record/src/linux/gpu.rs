//! The `gpu` collector: NVIDIA GPU counters through NVML, loaded at run time
//! (`libnvidia-ml.so.1` from the driver). No driver, no GPU, or a field the
//! driver does not report: recording goes on and the status says what was
//! missing.

use super::collector::{Collector, OpenError, Outcome, Setup, Spec, nothing_skipped};
use super::host::monotonic_ns;
use super::system::in_tree;
use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::{Clock, PcieUtilCounter, TemperatureSensor};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use sofa_trace::tables::{GpuCounter, GpuProcessCounter};
use sofa_trace::{
    ArchiveWriter, CollectorName, CollectorState, CollectorStatus, GpuInfo, TableWriter, TraceError,
};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// One device's readings in NVML's own units; `None` = not reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    pub util_gpu_pct: Option<u32>,
    pub util_mem_pct: Option<u32>,
    pub mem_used_bytes: Option<u64>,
    pub mem_total_bytes: Option<u64>,
    pub power_mw: Option<u32>,
    pub temperature_c: Option<u32>,
    pub sm_clock_mhz: Option<u32>,
    pub mem_clock_mhz: Option<u32>,
    pub pcie_tx_kb_s: Option<u32>,
    pub pcie_rx_kb_s: Option<u32>,
}

impl Reading {
    /// The archive row: watts, bytes per second.
    pub fn row(&self, time_ns: u64, gpu: u32) -> GpuCounter {
        GpuCounter {
            time_ns,
            gpu,
            util_gpu: self.util_gpu_pct.map(f64::from),
            util_mem: self.util_mem_pct.map(f64::from),
            mem_used_bytes: self.mem_used_bytes,
            mem_total_bytes: self.mem_total_bytes,
            power_w: self.power_mw.map(|mw| f64::from(mw) / 1000.0),
            temperature_c: self.temperature_c.map(f64::from),
            sm_clock_mhz: self.sm_clock_mhz,
            mem_clock_mhz: self.mem_clock_mhz,
            pcie_tx_bytes_per_s: self.pcie_tx_kb_s.map(|kb| u64::from(kb) * 1024),
            pcie_rx_bytes_per_s: self.pcie_rx_kb_s.map(|kb| u64::from(kb) * 1024),
            nvlink_tx_bytes_per_s: None,
            nvlink_rx_bytes_per_s: None,
        }
    }
}

/// Why NVML could not be used, in words a user can act on.
pub fn explain(err: &NvmlError) -> String {
    match err {
        NvmlError::LibloadingError(_) => {
            "NVML library libnvidia-ml.so.1 not found: no NVIDIA driver installed".to_owned()
        }
        NvmlError::DriverNotLoaded => "the NVIDIA driver is not loaded".to_owned(),
        NvmlError::NoPermission => "no permission to query the NVIDIA driver".to_owned(),
        other => format!("NVML failed: {other}"),
    }
}

pub struct GpuSampler {
    nvml: Nvml,
    count: u32,
    out: TableWriter<GpuCounter>,
    procs: TableWriter<GpuProcessCounter>,
    /// Fields some device did not report, named as in the `gpu` table.
    pub missing: BTreeSet<&'static str>,
    last_process_sample_us: Option<u64>,
    pub samples: u64,
}

/// Opens NVML and lists the GPUs; `Err` is the reason the collector is unavailable.
pub fn open() -> Result<(Nvml, Vec<GpuInfo>), String> {
    let nvml = Nvml::init().map_err(|e| explain(&e))?;
    let count = nvml.device_count().map_err(|e| explain(&e))?;
    if count == 0 {
        return Err("NVML reports no NVIDIA GPU".to_owned());
    }
    let mut gpus = Vec::new();
    for index in 0..count {
        let device = nvml.device_by_index(index).map_err(|e| explain(&e))?;
        gpus.push(GpuInfo {
            index,
            name: device.name().unwrap_or_else(|_| "NVIDIA GPU".to_owned()),
            uuid: device.uuid().ok(),
            memory_bytes: device.memory_info().ok().map(|m| m.total),
        });
    }
    Ok((nvml, gpus))
}

impl GpuSampler {
    pub fn new(archive: &ArchiveWriter, nvml: Nvml, count: u32) -> Result<GpuSampler, TraceError> {
        Ok(GpuSampler {
            nvml,
            count,
            out: archive.table()?,
            procs: archive.table()?,
            missing: BTreeSet::new(),
            last_process_sample_us: None,
            samples: 0,
        })
    }

    /// One reading of every GPU, plus the GPU use of the processes for
    /// which `traced(pid)` holds.
    pub fn sample(&mut self, time_ns: u64, traced: &dyn Fn(u32) -> bool) -> Result<(), TraceError> {
        let mut rows = Vec::new();
        let mut proc_rows = Vec::new();
        let mut newest_us = self.last_process_sample_us;
        for index in 0..self.count {
            let Ok(device) = self.nvml.device_by_index(index) else {
                self.missing.insert("device");
                continue;
            };
            let mut note = |name: &'static str, present: bool| {
                if !present {
                    self.missing.insert(name);
                }
            };
            let util = device.utilization_rates().ok();
            let mem = device.memory_info().ok();
            let reading = Reading {
                util_gpu_pct: util.as_ref().map(|u| u.gpu),
                util_mem_pct: util.as_ref().map(|u| u.memory),
                mem_used_bytes: mem.as_ref().map(|m| m.used),
                mem_total_bytes: mem.as_ref().map(|m| m.total),
                power_mw: device.power_usage().ok(),
                temperature_c: device.temperature(TemperatureSensor::Gpu).ok(),
                sm_clock_mhz: device.clock_info(Clock::SM).ok(),
                mem_clock_mhz: device.clock_info(Clock::Memory).ok(),
                pcie_tx_kb_s: device.pcie_throughput(PcieUtilCounter::Send).ok(),
                pcie_rx_kb_s: device.pcie_throughput(PcieUtilCounter::Receive).ok(),
            };
            note("util_gpu", reading.util_gpu_pct.is_some());
            note("mem_used_bytes", reading.mem_used_bytes.is_some());
            note("power_w", reading.power_mw.is_some());
            note("temperature_c", reading.temperature_c.is_some());
            note("sm_clock_mhz", reading.sm_clock_mhz.is_some());
            note("pcie_tx_bytes_per_s", reading.pcie_tx_kb_s.is_some());
            rows.push(reading.row(time_ns, index));

            let sm_by_pid: Vec<(u32, u32)> =
                match device.process_utilization_stats(self.last_process_sample_us) {
                    Ok(samples) => samples
                        .into_iter()
                        .map(|s| {
                            newest_us = newest_us.max(Some(s.timestamp));
                            (s.pid, s.sm_util)
                        })
                        .collect(),
                    Err(_) => Vec::new(),
                };
            if let Ok(processes) = device.running_compute_processes() {
                for p in processes.into_iter().filter(|p| traced(p.pid)) {
                    proc_rows.push(GpuProcessCounter {
                        time_ns,
                        gpu: index,
                        pid: p.pid,
                        mem_used_bytes: match p.used_gpu_memory {
                            UsedGpuMemory::Used(bytes) => Some(bytes),
                            UsedGpuMemory::Unavailable => None,
                        },
                        sm_util: sm_by_pid
                            .iter()
                            .find(|(pid, _)| *pid == p.pid)
                            .map(|(_, u)| f64::from(*u)),
                    });
                }
            }
        }
        self.last_process_sample_us = newest_us;
        for row in rows {
            self.out.push(row)?;
        }
        for row in proc_rows {
            self.procs.push(row)?;
        }
        self.samples += 1;
        self.out.flush_if_due()?;
        self.procs.flush_if_due()
    }

    pub fn finish(self) -> Result<(u64, BTreeSet<&'static str>), TraceError> {
        self.out.finish()?;
        self.procs.finish()?;
        Ok((self.samples, self.missing))
    }
}

pub const SPEC: Spec = Spec {
    name: CollectorName::Gpu,
    what: "GPU counters",
    switch: "--no-gpu",
    enabled: |config| config.gpu,
    open: open_collector,
    skipped: nothing_skipped,
};

fn open_collector(setup: &mut Setup) -> Result<Box<dyn Collector>, OpenError> {
    let (nvml, gpus) = open().map_err(OpenError::Unavailable)?;
    let count = gpus.len() as u32;
    setup.archive.meta_mut().gpus = gpus;
    Ok(Box::new(Gpu {
        sampler: GpuSampler::new(setup.archive, nvml, count)?,
        hz: setup.config.gpu_hz.max(1),
        root: setup.pid as u32,
    }))
}

struct Gpu {
    sampler: GpuSampler,
    hz: u64,
    /// The command: GPU use of its process tree is recorded per process.
    root: u32,
}

impl Collector for Gpu {
    fn run(&mut self, stop: &AtomicBool) -> Result<(), TraceError> {
        let period = Duration::from_nanos(1_000_000_000 / self.hz);
        let root = self.root;
        let traced = |pid| in_tree(pid, root);
        while !stop.load(Ordering::Acquire) {
            let started = Instant::now();
            self.sampler.sample(monotonic_ns(), &traced)?;
            std::thread::sleep(period.saturating_sub(started.elapsed()));
        }
        self.sampler.sample(monotonic_ns(), &traced)
    }

    /// Says which fields this driver or GPU did not report.
    fn finish(self: Box<Self>, _: &ArchiveWriter) -> Result<Outcome, TraceError> {
        let (rows, missing) = self.sampler.finish()?;
        let mut outcome = Outcome {
            rows,
            ..Outcome::default()
        };
        if !missing.is_empty() {
            let fields: Vec<&str> = missing.into_iter().collect();
            let reason = format!("not reported by this driver/GPU: {}", fields.join(", "));
            outcome.notes.push(format!("GPU counters: {reason}"));
            outcome.status = Some(CollectorStatus::with(CollectorState::Ok, reason));
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_convert_to_archive_units() {
        let r = Reading {
            util_gpu_pct: Some(87),
            util_mem_pct: Some(40),
            mem_used_bytes: Some(30 << 30),
            mem_total_bytes: Some(80 << 30),
            power_mw: Some(312_500),
            temperature_c: Some(61),
            sm_clock_mhz: Some(1980),
            mem_clock_mhz: Some(2619),
            pcie_tx_kb_s: Some(2048),
            pcie_rx_kb_s: None,
        };
        let row = r.row(5, 1);
        assert_eq!((row.time_ns, row.gpu), (5, 1));
        assert_eq!(row.util_gpu, Some(87.0));
        assert_eq!(row.power_w, Some(312.5));
        assert_eq!(row.pcie_tx_bytes_per_s, Some(2 << 20));
        assert_eq!(row.pcie_rx_bytes_per_s, None, "missing stays missing");
        assert_eq!(row.nvlink_tx_bytes_per_s, None);
        assert_eq!(Reading::default().row(0, 0).util_gpu, None);
    }

    #[test]
    fn absent_driver_is_reported_not_fatal() {
        // This machine has no NVIDIA driver (CI neither); on a GPU host the
        // test checks that NVML opens and lists at least one device.
        match open() {
            Err(reason) => assert!(
                reason.contains("libnvidia-ml.so.1")
                    || reason.contains("driver")
                    || reason.contains("no NVIDIA GPU"),
                "{reason}"
            ),
            Ok((_, gpus)) => assert!(!gpus.is_empty()),
        }
        // The missing-library path, on any machine: a library that does not exist.
        let Err(err) = Nvml::builder()
            .lib_path(std::ffi::OsStr::new("libsofa-no-such-nvml.so"))
            .init()
        else {
            panic!("a library that does not exist loaded");
        };
        assert!(
            explain(&err).contains("no NVIDIA driver installed"),
            "{}",
            explain(&err)
        );
        assert_eq!(
            explain(&NvmlError::DriverNotLoaded),
            "the NVIDIA driver is not loaded"
        );
    }
}
