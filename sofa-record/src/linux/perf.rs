//! perf_event_open counters: one sampling counter per CPU, inherited by every
//! thread and process the command creates, enabled by the kernel at exec.

use crate::CallGraph;
use crate::RecordError;
use perf_event_open::config::{
    CallChain, Clock, Cpu, ExtraRecord, Inherit, Mmap, OnExecve, Opts, Proc, RecordIdFormat,
    RegsMask, SampleFormat, SampleOn, Size, UseBuildId,
};
use perf_event_open::count::Counter;
use perf_event_open::event::hw::Hardware;
use perf_event_open::event::sw::Software;
use perf_event_open::sample::Sampler;

/// The event chosen, and why if it is not the one asked for.
pub struct Chosen {
    pub name: &'static str,
    pub period_unit: &'static str,
    pub fallback: Option<String>,
}

/// One CPU's counter and its ring buffer.
pub struct CpuSampler {
    pub cpu: u32,
    pub counter: Counter,
    pub sampler: Sampler,
}

/// Entries of a call chain the kernel records at most (addresses and the
/// markers between kernel and user parts): the default of
/// `kernel.perf_event_max_stack`, which a request may not exceed.
pub const MAX_STACK: u16 = 127;

/// Ring buffer size per CPU, as a power of two of pages: 2^7 = 128 pages
/// (512 KiB), several seconds of 999 Hz stacks between two drains.
const RING_PAGES_EXP: u8 = 7;
/// With user stack copies (up to 64 KiB a sample): 2^10 pages (4 MiB),
/// at least 64 samples, 64 ms of 999 Hz, while the rings are drained every
/// 10 ms (the rows are made in another thread); 2 MiB per CPU on machines
/// of more than 32 CPUs, so the rings stay under 256 MiB in all.
const RING_PAGES_EXP_STACKS: u8 = 10;

/// Set when the large rings could not be locked and small ones were used.
static SMALL_RINGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// x86-64 user registers sampled for unwinding (`PERF_REG_X86_*`): BP (6),
/// SP (7), IP (8); the record lists them in that order.
pub const USER_REGS: u64 = (1 << 6) | (1 << 7) | (1 << 8);

/// How call stacks are sampled.
#[derive(Debug, Clone, Copy)]
pub struct Stacks {
    pub call_graph: CallGraph,
    pub stack_bytes: u32,
}

impl Stacks {
    pub fn copies_user_stack(self) -> bool {
        self.call_graph != CallGraph::Fp && cfg!(target_arch = "x86_64")
    }
}

/// An event sofa knows how to sample, by perf's name for it.
#[derive(Clone)]
enum Kind {
    Hw(Hardware),
    Sw(Software),
}

fn event_by_name(name: &str) -> Option<(Kind, &'static str, &'static str)> {
    Some(match name {
        "cycles" | "cpu-cycles" => (Kind::Hw(Hardware::CpuCycle), "cycles", "count"),
        "instructions" => (Kind::Hw(Hardware::Instr), "instructions", "count"),
        "cpu-clock" => (Kind::Sw(Software::CpuClock), "cpu-clock", "ns"),
        "task-clock" => (Kind::Sw(Software::TaskClock), "task-clock", "ns"),
        "page-faults" | "faults" => (Kind::Sw(Software::PageFault), "page-faults", "count"),
        "context-switches" | "cs" => (Kind::Sw(Software::CtxSwitch), "context-switches", "count"),
        _ => return None,
    })
}

impl Kind {
    fn counter(&self, pid: libc::pid_t, cpu: u32, opts: &Opts) -> std::io::Result<Counter> {
        let target = (Proc(pid as u32), Cpu(cpu));
        match self {
            Kind::Hw(e) => Counter::new(e.clone(), target, opts),
            Kind::Sw(e) => Counter::new(*e, target, opts),
        }
    }
}

/// What every counter on the command shares: inherited by what it starts,
/// enabled by the kernel at its exec, kernel frames where permitted,
/// records stamped with CPU, task and CLOCK_MONOTONIC time (the archive's
/// clock), and a call chain of kernel and user frames (`exclude_user`: the
/// user part comes from a stack copy instead).
pub fn base_opts(kernel: bool, sample_on: SampleOn, exclude_user: bool) -> Opts {
    let mut opts = Opts::default();
    opts.exclude.kernel = !kernel;
    opts.exclude.hv = true;
    opts.inherit = Some(Inherit::NewChild);
    opts.on_execve = Some(OnExecve::Enable);
    opts.enable = false;
    opts.sample_on = sample_on;
    opts.sample_format = SampleFormat {
        call_chain: Some(CallChain {
            exclude_user,
            exclude_kernel: !kernel,
            defer_user: false,
            max_stack_frames: MAX_STACK,
        }),
        ..Default::default()
    };
    opts.record_id_all = true;
    opts.record_id_format = RecordIdFormat {
        cpu: true,
        task: true,
        time: true,
        ..Default::default()
    };
    opts.timer = Some(Clock::Monotonic);
    opts
}

/// User registers and `bytes` of user stack copied per sample, for
/// unwinding; `None` for frame-pointer chains only.
pub fn with_stack_copy(opts: &mut Opts, bytes: Option<u32>) {
    // The kernel rounds the size down to a multiple of 8.
    opts.sample_format.user_regs = bytes.map(|_| RegsMask(USER_REGS));
    opts.sample_format.user_stack = bytes.map(|b| Size(b & !7));
}

fn opts(frequency_hz: u64, kernel: bool, stacks: Stacks) -> Opts {
    // With `dwarf` the user part comes from the stack copy.
    let exclude_user = stacks.call_graph == CallGraph::Dwarf && stacks.copies_user_stack();
    let mut opts = base_opts(kernel, SampleOn::Freq(frequency_hz), exclude_user);
    opts.sample_format.period = true;
    with_stack_copy(
        &mut opts,
        stacks.copies_user_stack().then_some(stacks.stack_bytes),
    );
    opts.extra_record = ExtraRecord {
        task: true,
        comm: true,
        mmap: Mmap {
            code: true,
            data: false,
            ext: Some(UseBuildId(true)),
        },
        ..Default::default()
    };
    opts
}

fn is_permission(err: &std::io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM))
}

/// Counters opened for the command.
pub struct Opened {
    pub samplers: Vec<CpuSampler>,
    pub chosen: Chosen,
    /// Degradations worth telling the user (e.g. no kernel stacks).
    pub notes: Vec<String>,
    /// Whether kernel call stacks are permitted.
    pub kernel: bool,
}

/// Opens the counters for `pid` (which must not have exec'd yet). Without an
/// explicit event, hardware cycles are tried first and cpu-clock replaces
/// them where there is no PMU (as in most VMs); the archive says which.
pub fn open(
    pid: libc::pid_t,
    frequency_hz: u64,
    event: Option<&str>,
    stacks: Stacks,
) -> Result<Opened, RecordError> {
    let open_event = |name, fallback| open_event(pid, frequency_hz, name, fallback, stacks);
    match event {
        Some(name) => open_event(name, None),
        None => match open_event("cycles", None) {
            Err(RecordError::Perf { source, .. }) => {
                let errno = source
                    .raw_os_error()
                    .map_or_else(|| source.to_string(), |n| format!("os error {n}"));
                let why = format!("no hardware PMU (cycles: {errno}); cpu-clock used");
                open_event("cpu-clock", Some(why))
            }
            other => other,
        },
    }
}

fn open_event(
    pid: libc::pid_t,
    frequency_hz: u64,
    name: &str,
    fallback: Option<String>,
    stacks: Stacks,
) -> Result<Opened, RecordError> {
    let (event, canonical, unit) =
        event_by_name(name).ok_or_else(|| RecordError::UnknownEvent(name.to_owned()))?;
    let perf_err = |source| RecordError::Perf {
        what: canonical.to_owned(),
        source,
    };
    let mut notes = Vec::new();
    let mut kernel = true;
    let samplers = match open_all(pid, frequency_hz, &event, true, stacks) {
        Ok(samplers) => samplers,
        // perf_event_paranoid 2 forbids kernel stacks to unprivileged users; keep user ones.
        Err(e) if is_permission(&e) => match open_all(pid, frequency_hz, &event, false, stacks) {
            Ok(samplers) => {
                kernel = false;
                notes.push(
                    "kernel call stacks not permitted (kernel.perf_event_paranoid >= 2): \
                     user stacks only"
                        .to_owned(),
                );
                samplers
            }
            Err(e) if is_permission(&e) => return Err(RecordError::PerfPermission(e.to_string())),
            Err(e) => return Err(perf_err(e)),
        },
        Err(e) => return Err(perf_err(e)),
    };
    if SMALL_RINGS.load(std::sync::atomic::Ordering::Relaxed) {
        notes.push(
            "ring buffers for stack copies limited to 512 KiB per CPU (kernel.perf_event_mlock_kb): \
             samples may be lost; raise the limit or record with --call-graph fp"
                .to_owned(),
        );
    }
    Ok(Opened {
        samplers,
        chosen: Chosen {
            name: canonical,
            period_unit: unit,
            fallback,
        },
        notes,
        kernel,
    })
}

fn open_all(
    pid: libc::pid_t,
    frequency_hz: u64,
    event: &Kind,
    kernel: bool,
    stacks: Stacks,
) -> std::io::Result<Vec<CpuSampler>> {
    let opts = opts(frequency_hz, kernel, stacks);
    let cpus = super::sys::online_cpus();
    let pages = match (stacks.copies_user_stack(), cpus > 32) {
        (true, false) => RING_PAGES_EXP_STACKS,
        (true, true) => RING_PAGES_EXP_STACKS - 1,
        (false, _) => RING_PAGES_EXP,
    };
    let mut out = Vec::new();
    for cpu in 0..cpus {
        let counter = event.counter(pid, cpu, &opts)?;
        // Unprivileged users may lock only kernel.perf_event_mlock_kb of
        // ring buffers: the small rings then, and a note.
        let sampler = match counter.sampler(pages) {
            Err(e)
                if pages > RING_PAGES_EXP
                    && matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::ENOMEM)) =>
            {
                SMALL_RINGS.store(true, std::sync::atomic::Ordering::Relaxed);
                counter.sampler(RING_PAGES_EXP)?
            }
            other => other?,
        };
        out.push(CpuSampler {
            cpu,
            counter,
            sampler,
        });
    }
    Ok(out)
}
