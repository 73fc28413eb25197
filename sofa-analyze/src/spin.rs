//! Thread pools that busy-wait, and more runnable threads than CPUs.
//!
//! BLAS and OpenMP pools keep their workers spinning between parallel
//! regions (OpenBLAS's `blas_thread_server` loop, libgomp's barrier waits
//! for `GOMP_SPINCOUNT` iterations, Intel OpenMP's `KMP_BLOCKTIME`, TBB's
//! `spin_wait_*`), which `cpu-clock` samples count as work. A sample spins
//! when, from its leaf outwards, it reaches a pool's wait function through
//! nothing but yields and kernel frames: a worker that runs a kernel
//! (`blas_thread_server` → `inner_thread` → `dgemm_kernel`) is working.

use crate::Samples;
use crate::WaitList;
use crate::fasthash::{FastMap, StackMap};
use crate::functions::CallStacks;
use serde::Serialize;
use sofa_trace::{TraceError, WaitReason};

/// A thread pool's spin loops: the library (file name test) and the
/// functions in it (name test) that wait.
struct SpinLoop {
    pool: Pool,
    module: fn(&str) -> bool,
    function: fn(&str) -> bool,
}

/// The pools whose spin-waits are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pool {
    /// OpenBLAS (numpy, scipy, PyTorch builds that use it).
    Openblas,
    /// GNU OpenMP (gcc; PyTorch's Linux wheels).
    Libgomp,
    /// Intel/LLVM OpenMP (MKL, conda builds).
    IntelOpenmp,
    /// oneTBB.
    Tbb,
}

impl Pool {
    pub fn name(self) -> &'static str {
        match self {
            Pool::Openblas => "OpenBLAS",
            Pool::Libgomp => "OpenMP (libgomp)",
            Pool::IntelOpenmp => "OpenMP (Intel/LLVM libomp)",
            Pool::Tbb => "TBB",
        }
    }

    /// What stops the spinning, for the hint.
    pub fn remedy(self) -> &'static str {
        match self {
            Pool::Openblas => {
                "OPENBLAS_NUM_THREADS=1 (or fewer threads) where the matrices are small; \
                 its idle workers spin for the next call"
            }
            Pool::Libgomp => {
                "OMP_WAIT_POLICY=passive (or GOMP_SPINCOUNT=0) lets idle workers sleep; \
                 fewer threads: OMP_NUM_THREADS, torch.set_num_threads"
            }
            Pool::IntelOpenmp => {
                "KMP_BLOCKTIME=0 (or OMP_WAIT_POLICY=passive) lets idle workers sleep; \
                 fewer threads: OMP_NUM_THREADS, MKL_NUM_THREADS, torch.set_num_threads"
            }
            Pool::Tbb => "fewer TBB threads (tbb::global_control max_allowed_parallelism)",
        }
    }
}

const SPIN_LOOPS: &[SpinLoop] = &[
    SpinLoop {
        pool: Pool::Openblas,
        module: |m| m.contains("openblas"),
        function: |f| f == "blas_thread_server",
    },
    SpinLoop {
        pool: Pool::Libgomp,
        module: |m| m.contains("libgomp"),
        // An OpenMP runtime runs no user work itself (the parallel region
        // is the program's outlined function): its own time is waiting, in
        // barriers that spin (do_spin, inlined) before they sleep. Distro
        // builds name only the exported entry points, so any function of
        // the library counts.
        function: |_| true,
    },
    SpinLoop {
        pool: Pool::IntelOpenmp,
        module: |m| m.starts_with("libiomp") || m.starts_with("libomp"),
        function: |_| true,
    },
    SpinLoop {
        pool: Pool::Tbb,
        module: |m| m.starts_with("libtbb"),
        function: |f| {
            f.contains("spin_wait")
                || f.contains("prolonged_pause")
                || f.contains("machine_pause")
                || f.contains("receive_or_steal_task")
        },
    },
];

/// The pool whose library `module` (lower case) is, if any.
pub(crate) fn pool_library(module: &str) -> Option<Pool> {
    SPIN_LOOPS
        .iter()
        .find(|l| (l.module)(module))
        .map(|l| l.pool)
}

/// Frames a spinning thread passes through to yield the CPU.
fn yields(function: &str, module: &str) -> bool {
    module.starts_with('[')
        || matches!(
            function,
            "sched_yield"
                | "__sched_yield"
                | "__GI___sched_yield"
                | "syscall"
                | "pthread_yield"
                | "nanosleep"
                | "__nanosleep"
                | "usleep"
        )
}

/// Whose spin loop a stack is in, if it is in one.
fn spinning(stacks: &CallStacks, stack: Option<u64>) -> Option<(Pool, &str)> {
    for (function, module) in stacks.names(stack).take(64) {
        let module = module.to_ascii_lowercase();
        if let Some(l) = SPIN_LOOPS
            .iter()
            .find(|l| (l.module)(&module) && (l.function)(function))
        {
            // Addresses without a symbol are one "function".
            let name = if function.starts_with("0x") {
                "(no symbol)"
            } else {
                function.as_str()
            };
            return Some((l.pool, name));
        }
        if !yields(function, &module) {
            return None;
        }
    }
    None
}

/// Samples in pools' spin loops.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SpinSummary {
    /// CPU samples of the recording.
    pub samples: u64,
    /// Of them, in a pool's spin loop.
    pub spinning: u64,
    pub share: f64,
    /// Per pool, most spinning first.
    pub pools: Vec<PoolSpin>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolSpin {
    pub pool: Pool,
    /// `Pool::name`.
    pub name: String,
    pub samples: u64,
    /// Of all CPU samples.
    pub share: f64,
    /// The spin functions seen, most samples first.
    pub functions: Vec<(String, u64)>,
    /// Threads seen spinning, most first: (pid, tid, spinning samples,
    /// share of the thread's samples).
    pub threads: Vec<SpinThread>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpinThread {
    pub pid: u32,
    pub tid: u32,
    pub samples: u64,
    /// Of the thread's CPU samples.
    pub share: f64,
}

/// A pool's spinning samples: in all, per function, per (pid, tid).
type PoolCounts = (u64, FastMap<String, u64>, FastMap<(u32, u32), u64>);

/// Spinning samples per pool, function and thread.
pub(crate) fn spin_summary(samples: &Samples, stacks: &CallStacks) -> SpinSummary {
    let tally = samples.tally();
    let per_stack = tally.per_stack();
    let per_thread = tally.per_thread();
    let spin_of: StackMap<(Pool, String)> = per_stack
        .keys()
        .filter_map(|&id| spinning(stacks, id).map(|(p, f)| (id, (p, f.to_owned()))))
        .collect();
    let mut pools: FastMap<Pool, PoolCounts> = FastMap::default();
    for ((stack, pid, tid), n) in tally.per_stack_thread() {
        if let Some((pool, function)) = spin_of.get(&stack) {
            let entry = pools.entry(*pool).or_default();
            entry.0 += n;
            *entry.1.entry(function.clone()).or_default() += n;
            *entry.2.entry((pid, tid)).or_default() += n;
        }
    }
    let total = samples.len();
    let share = |n: u64, of: u64| n as f64 / of.max(1) as f64;
    let mut pools: Vec<PoolSpin> = pools
        .into_iter()
        .map(|(pool, (n, functions, threads))| {
            let mut functions: Vec<(String, u64)> = functions.into_iter().collect();
            functions.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let mut threads: Vec<SpinThread> = threads
                .into_iter()
                .map(|((pid, tid), k)| SpinThread {
                    pid,
                    tid,
                    samples: k,
                    share: share(k, per_thread[&(pid, tid)]),
                })
                .collect();
            threads.sort_by(|a, b| b.samples.cmp(&a.samples).then(a.tid.cmp(&b.tid)));
            PoolSpin {
                pool,
                name: pool.name().to_owned(),
                samples: n,
                share: share(n, total),
                functions,
                threads,
            }
        })
        .collect();
    pools.sort_by(|a, b| b.samples.cmp(&a.samples).then(a.pool.cmp(&b.pool)));
    let spinning = pools.iter().map(|p| p.samples).sum();
    SpinSummary {
        samples: total,
        spinning,
        share: share(spinning, total),
        pools,
    }
}

/// More of the job's threads runnable than CPUs: per 10 ms bin of the
/// job's span, the threads sampled running plus those preempted (waiting
/// for a CPU, from the context switches).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Oversubscription {
    /// CPUs of the recording machine.
    pub cpus: u32,
    /// Bins in which some thread of the job ran or waited for a CPU.
    pub bins: u64,
    /// Of them, bins with more runnable threads than CPUs.
    pub over_bins: u64,
    /// `over_bins / bins`.
    pub share: f64,
    /// Mean runnable threads in the oversubscribed bins.
    pub runnable: f64,
    /// Most threads sampled running in one bin (threads taking turns
    /// within a bin can outnumber the CPUs).
    pub peak_running: u32,
}

/// Bin width of [`oversubscription`].
const BIN_NS: u64 = 10_000_000;

/// Runnable threads over time; `None` without context switches (a
/// preempted thread is invisible to CPU samples).
pub(crate) fn oversubscription(
    samples: &Samples,
    waits: Option<&WaitList>,
    cpus: u32,
) -> Result<Option<Oversubscription>, TraceError> {
    let Some(waits) = waits else {
        return Ok(None);
    };
    if samples.is_empty() || cpus == 0 {
        return Ok(None);
    }
    let Some((first, last)) = samples.tally().span() else {
        return Ok(None);
    };
    let n = ((last - first) / BIN_NS + 1) as usize;
    // The threads waiting for a CPU, (tid, bin) once each: only a wait
    // covering half the bin counts (a thread preempted for a moment is not
    // a thread that wanted a CPU all along).
    let mut queued: Vec<(u32, u32)> = Vec::new();
    for w in waits.iter().filter(|w| w.reason == WaitReason::Preempted) {
        let (lo, hi) = (w.start_ns.max(first), w.end_ns.min(last + 1));
        if hi <= lo {
            continue;
        }
        let (from, to) = ((lo - first) / BIN_NS, (hi - 1 - first) / BIN_NS);
        for b in from..=to {
            let (start, end) = (first + b * BIN_NS, first + (b + 1) * BIN_NS);
            if hi.min(end) - lo.max(start) >= BIN_NS / 2 {
                queued.push((w.tid, b as u32));
            }
        }
    }
    queued.sort_unstable();
    queued.dedup();
    // Per bin, the threads seen running: counted at a thread's first
    // sample in the bin where its samples come in order (else its bins
    // are kept and sorted); a queued thread seen running is not queued.
    let mut ran = vec![false; queued.len()];
    let mut running = vec![0u32; n];
    let in_order = samples.tally().tids_in_order();
    let mut last_bin: FastMap<u32, usize> = FastMap::default();
    let mut unordered: FastMap<u32, Vec<u32>> = FastMap::default();
    samples.for_each(|s| {
        let b = ((s.time_ns - first) / BIN_NS) as usize;
        if in_order.get(&s.tid).copied().unwrap_or(true) {
            if last_bin.insert(s.tid, b) == Some(b) {
                return;
            }
            running[b] += 1;
        } else {
            unordered.entry(s.tid).or_default().push(b as u32);
        }
        if let Ok(i) = queued.binary_search(&(s.tid, b as u32)) {
            ran[i] = true;
        }
    })?;
    for bins in unordered.values_mut() {
        bins.sort_unstable();
        bins.dedup();
        for &b in bins.iter() {
            running[b as usize] += 1;
        }
    }
    drop(unordered);
    let mut waiting = vec![0u32; n];
    for (&(_, b), _) in queued.iter().zip(&ran).filter(|(_, ran)| !**ran) {
        waiting[b as usize] += 1;
    }
    let (mut bins, mut over, mut runnable_sum, mut peak) = (0u64, 0u64, 0usize, 0u32);
    for (&run, &queue) in running.iter().zip(&waiting) {
        if run == 0 && queue == 0 {
            continue;
        }
        bins += 1;
        peak = peak.max(run);
        let runnable = (run + queue) as usize;
        if runnable > cpus as usize {
            over += 1;
            runnable_sum += runnable;
        }
    }
    Ok(Some(Oversubscription {
        cpus,
        bins,
        over_bins: over,
        share: over as f64 / bins.max(1) as f64,
        runnable: runnable_sum as f64 / over.max(1) as f64,
        peak_running: peak,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Sample;
    use crate::Wait;

    use crate::functions::test_stacks as stacks;

    const BLAS: &str = "libscipy_openblas64_-32a4b2a6.so";

    #[test]
    fn spinning_is_a_pool_wait_reached_through_yields_only() {
        let s = stacks(&[
            // 1: OpenBLAS worker's own loop.
            &[("blas_thread_server", BLAS), ("start_thread", "libc.so.6")],
            // 2: its yield, in the kernel.
            &[
                ("do_sched_yield", "[kernel]"),
                ("__sched_yield", "libc.so.6"),
                ("blas_thread_server", BLAS),
            ],
            // 3: the worker at work.
            &[
                ("dgemm_kernel_SKYLAKEX", BLAS),
                ("inner_thread", BLAS),
                ("blas_thread_server", BLAS),
            ],
            // 4: libgomp barrier in PyTorch's bundled copy.
            &[
                ("gomp_team_barrier_wait_end", "libgomp-a34b3233.so.1"),
                ("gomp_thread_start", "libgomp-a34b3233.so.1"),
            ],
            // 5: a function of that name elsewhere is not a pool.
            &[("blas_thread_server", "mylib.so")],
            // 6: Intel OpenMP.
            &[("__kmp_wait_template<kmp_flag_64>", "libiomp5.so")],
            // 7: a distro libgomp without symbols, under the program's
            // parallel region: spinning; the region itself is work.
            &[
                ("0x7f1cbaa46622", "libgomp.so.1.0.0"),
                ("main._omp_fn.0", "ompspin"),
            ],
            &[
                ("main._omp_fn.0", "ompspin"),
                ("0x7f1cbaa46000", "libgomp.so.1.0.0"),
            ],
        ]);
        let pool = |id: u64| spinning(&s, Some(id)).map(|(p, _)| p);
        assert_eq!(pool(1), Some(Pool::Openblas));
        assert_eq!(pool(2), Some(Pool::Openblas));
        assert_eq!(pool(3), None);
        assert_eq!(pool(4), Some(Pool::Libgomp));
        assert_eq!(pool(5), None);
        assert_eq!(pool(6), Some(Pool::IntelOpenmp));
        assert_eq!(spinning(&s, Some(7)), Some((Pool::Libgomp, "(no symbol)")));
        assert_eq!(pool(8), None);
        assert_eq!(pool(9), None);

        let samples: Vec<Sample> = [(1, 2), (2, 2), (3, 2), (3, 2), (4, 3), (1, 1)]
            .iter()
            .enumerate()
            .map(|(i, &(stack, tid))| Sample::new(i as u64, Some(stack), 1, tid))
            .collect();
        let sum = spin_summary(&Samples::from_rows(samples), &s);
        assert_eq!(sum.samples, 6);
        assert_eq!(sum.spinning, 4);
        assert_eq!(sum.pools[0].pool, Pool::Openblas);
        assert_eq!(sum.pools[0].samples, 3);
        assert_eq!(sum.pools[0].threads[0].tid, 2);
        assert_eq!(sum.pools[0].threads[0].share, 0.5);
        assert_eq!(sum.pools[1].functions[0].0, "gomp_team_barrier_wait_end");
    }

    fn wait(tid: u32, start_ms: u64, end_ms: u64) -> Wait {
        Wait {
            pid: 1,
            tid,
            start_ns: start_ms * 1_000_000,
            end_ns: end_ms * 1_000_000,
            reason: WaitReason::Preempted,
            stack_id: None,
            own_stack: true,
        }
    }

    #[test]
    fn more_runnable_threads_than_cpus() {
        // Two threads sampled every ms for a second on two CPUs; a third
        // preempted through the second half.
        let samples = Samples::from_rows(
            (0..1000u64)
                .flat_map(|ms| [1, 2].map(|tid| Sample::new(ms * 1_000_000, Some(1), 1, tid)))
                .collect(),
        );
        let over = oversubscription(&samples, Some(&[wait(3, 500, 1000)][..].into()), 2)
            .unwrap()
            .unwrap();
        assert_eq!(over.bins, 100);
        assert_eq!(over.over_bins, 50);
        assert_eq!(over.runnable, 3.0);
        assert_eq!(over.peak_running, 2);
        // On four CPUs it is not; short preemptions do not count.
        assert_eq!(
            oversubscription(&samples, Some(&[wait(3, 500, 1000)][..].into()), 4)
                .unwrap()
                .unwrap()
                .over_bins,
            0
        );
        let blips: Vec<Wait> = (0..100).map(|i| wait(3, i * 10 + 1, i * 10 + 3)).collect();
        assert_eq!(
            oversubscription(&samples, Some(&blips[..].into()), 2)
                .unwrap()
                .unwrap()
                .over_bins,
            0
        );
        assert_eq!(oversubscription(&samples, None, 2).unwrap(), None);
    }

    #[test]
    fn a_queued_thread_seen_running_in_a_bin_is_counted_once_in_order_or_not() {
        // As above, and the third thread also runs in 700-759 ms (six bins
        // where it is running, not waiting too): samples in time order, then
        // each thread's backwards.
        let mut rows: Vec<Sample> = (0..1000u64)
            .flat_map(|ms| [1, 2].map(|tid| Sample::new(ms * 1_000_000, Some(1), 1, tid)))
            .chain((700..760u64).map(|ms| Sample::new(ms * 1_000_000 + 500_000, Some(1), 1, 3)))
            .collect();
        for _ in 0..2 {
            let samples = Samples::from_rows(rows.clone());
            let over = oversubscription(&samples, Some(&[wait(3, 500, 1000)][..].into()), 2)
                .unwrap()
                .unwrap();
            assert_eq!((over.bins, over.over_bins), (100, 50));
            assert_eq!(over.runnable, 3.0);
            assert_eq!(over.peak_running, 3);
            rows.reverse();
        }
    }
}
