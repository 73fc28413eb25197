//! Off-CPU: where the command's threads wait. The kernel's switch records
//! (out, with "still runnable", and in) for every context switch of the
//! command's threads give the intervals, exactly. A `context-switches`
//! counter per CPU takes the stack at switch-outs, about [`STACK_HZ`] a
//! second per CPU (frequency mode: the kernel adjusts the period to the
//! rate, and to bursts, so some switch-outs go without a stack even at
//! lower rates; analysis lends them their thread's nearest one). A stack
//! at each of 3x10^5 switches a second made
//! a ping-pong of two threads 3.2x slower (perf's `sched:sched_switch -g`
//! 2.5x), a stack at 10^4 of them 1.5x (docs/performance.md). A stack is
//! kernel frames and frame-pointer user frames and, when stacks are
//! unwound (`--call-graph auto|dwarf`), a small copy of the user stack:
//! enough for the frames that say why a thread waits (`take_gil` above
//! the futex wait), while a waiting thread's outer frames, which do not
//! change while it waits, are read from the live process as the unwinder
//! needs them. The CPU collector drains these rings with its own, so the
//! stacks share one table and one symbolization; rows go to `switches`.

use super::collector::Setup;
use super::duty::{Turn, Windows, switch, untraced};
use super::events::Event;
use super::perf::{CpuSampler, Stacks};
use perf_event_open::config::{Cpu, ExtraRecord, Opts, Proc, SampleOn};
use perf_event_open::count::Counter;
use perf_event_open::event::sw::Software;
use sofa_trace::tables::Untraced;
use sofa_trace::{CollectorName, CollectorState, CollectorStatus};

/// Set in the tag of an off-CPU ring (the CPU number is in the low bits),
/// so the rows worker tells its records from the CPU samples'.
pub const TAG: u32 = 1 << 31;

/// What `off_cpu` says when off.
const SWITCH: &str = "--no-off-cpu";
const WHAT: &str = "off-CPU waits";

/// 2^9 pages (2 MiB) per CPU: between two drains (10 ms), the switch
/// records of 3x10^5 switches a second (~50 bytes, two per switch) and
/// [`STACK_HZ`] stacks (~2.4 KiB with the copy), twice over.
const RING_PAGES_EXP: u8 = 9;

/// User stack bytes copied per switch-out (with `auto` and `dwarf`).
pub const STACK_BYTES: u32 = 2048;

/// Switch-outs a second per CPU that get a stack (the kernel's target).
pub const STACK_HZ: u64 = 10_000;

fn opts(kernel: bool, stacks: Stacks) -> Opts {
    let mut opts = super::perf::base_opts(kernel, SampleOn::Freq(STACK_HZ), false);
    super::perf::with_stack_copy(&mut opts, stacks.copies_user_stack().then_some(STACK_BYTES));
    opts.extra_record = ExtraRecord {
        ctx_switch: true,
        ..Default::default()
    };
    opts
}

fn open_all(
    pid: libc::pid_t,
    cpus: u32,
    kernel: bool,
    stacks: Stacks,
) -> std::io::Result<Vec<CpuSampler>> {
    let opts = opts(kernel, stacks);
    (0..cpus)
        .map(|cpu| {
            let counter = Counter::new(Software::CtxSwitch, (Proc(pid as u32), Cpu(cpu)), &opts)?;
            let sampler = counter.sampler(RING_PAGES_EXP)?;
            Ok(CpuSampler {
                cpu: cpu | TAG,
                counter,
                sampler,
            })
        })
        .collect()
}

/// Opens the counters when the configuration asks for them and sets the
/// `off_cpu` status; no counters (and a note) where the kernel refuses.
pub fn open(setup: &mut Setup, kernel: bool, stacks: Stacks) -> Vec<CpuSampler> {
    if !setup.config.off_cpu {
        setup.set_status(
            CollectorName::OffCpu,
            CollectorStatus::with(CollectorState::Disabled, SWITCH),
        );
        return Vec::new();
    }
    match open_all(setup.pid, setup.cpus, kernel, stacks) {
        Ok(samplers) => {
            setup.set_status(CollectorName::OffCpu, CollectorStatus::ok());
            samplers
        }
        Err(e) => {
            setup.unavailable(
                CollectorName::OffCpu,
                WHAT,
                format!("context-switches: {e}"),
            );
            Vec::new()
        }
    }
}

/// Records read between two looks at the switch budget within a pass.
const CHECK_EVERY: u64 = 1024;

/// Switch records in windows ([`Windows`]): above `--switch-rate`
/// switch-outs a second on a CPU, the off-CPU counters go off for a while
/// (the kernel then writes no switch record and takes no stack), so a
/// thread pair that hands work back and forth 10^5 times a second is not
/// slowed by its recording; every wait is still whole where it is
/// traced, and the analysis reads shares over the traced time.
pub struct Duty<'a> {
    windows: Windows,
    /// The off-CPU counters, one per CPU.
    counters: Vec<&'a Counter>,
    /// Switch-outs read per CPU.
    outs: Vec<u64>,
    /// Off-CPU records read: every [`CHECK_EVERY`] the budget is looked at.
    handled: u64,
    gaps: Vec<Untraced>,
}

impl<'a> Duty<'a> {
    /// The duty of the off-CPU counters among `samplers` (none: nothing
    /// to do); `limit` switch-outs a second per CPU, 0: every switch.
    pub fn new(limit: u64, samplers: &'a [CpuSampler], cpus: usize) -> Duty<'a> {
        Duty {
            windows: Windows::new(limit),
            counters: samplers
                .iter()
                .filter(|s| s.cpu & TAG != 0)
                .map(|s| &s.counter)
                .collect(),
            outs: vec![0; cpus],
            handled: 0,
            gaps: Vec::new(),
        }
    }

    /// A record of the ring tagged `tag`: switch-outs are counted.
    pub fn saw(&mut self, tag: u32, event: &Event) {
        if tag & TAG == 0 || self.counters.is_empty() {
            return;
        }
        if let Event::Switch { out: true, .. } = event
            && let Some(n) = self.outs.get_mut((tag & !TAG) as usize)
        {
            *n += 1;
        }
        self.handled += 1;
        if self.handled.is_multiple_of(CHECK_EVERY) {
            self.check();
        }
    }

    /// Looks at the budget (after every pass over the rings, and every
    /// [`CHECK_EVERY`] records within one).
    pub fn check(&mut self) {
        if self.counters.is_empty() {
            return;
        }
        let counters = &self.counters;
        match self
            .windows
            .look(&self.outs, |on| switch(counters.iter().copied(), on))
        {
            Turn::Within | Turn::NewWindow => {}
            Turn::Resumed { since, end, rate } => self.gap(since, end, rate),
            Turn::Overspent { off_ns, rate, .. } => {
                let counters = &self.counters;
                self.windows
                    .go_off(off_ns, rate, |on| switch(counters.iter().copied(), on));
            }
        }
    }

    fn gap(&mut self, since: u64, end: u64, rate: u64) {
        self.gaps
            .push(untraced(CollectorName::OffCpu, since, end, rate));
    }

    /// The recording has ended (the counters are off): the spans off, and
    /// what the `off_cpu` status says if there were any.
    pub fn end(mut self) -> (Vec<Untraced>, Option<String>) {
        if let Some((since, end, rate)) = self.windows.end() {
            self.gap(since, end, rate);
        }
        let said = self.windows.said("switches").map(|said| {
            format!(
                "{said}: above --switch-rate {} (0 records every switch)",
                self.windows.limit()
            )
        });
        (self.gaps, said)
    }
}
