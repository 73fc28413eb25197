//! Phases of a training step in a framework's own terms — forward,
//! backward, optimizer, data loading, communication — from the frames of
//! each sample (native and merged Python), innermost first: the first
//! frame that belongs to a phase decides (a convolution's kernel under
//! `Conv2d.forward` is forward; under `ConvolutionBackward0::apply`,
//! backward). A sample with no such frame is `other`: unknown stays
//! unknown, never guessed.
//!
//! The main process's thread-pool workers (OpenMP, OpenBLAS, TBB, the
//! frameworks' own pools) run the main thread's parallel regions and have
//! no frames of their own to tell the phase: their samples take the main
//! thread's phase at the time, from its nearest sample within
//! `LEND_WINDOW_NS` (`other` when it has none that near).

use crate::breakdown::ByName;
use crate::fasthash::{FastMap, StackMap};
use crate::functions::CallStacks;
use crate::{Sample, Samples};
use serde::Serialize;
use sofa_trace::TraceError;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Forward,
    Backward,
    Optimizer,
    DataLoading,
    Communication,
    Other,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Forward => "forward",
            Phase::Backward => "backward",
            Phase::Optimizer => "optimizer",
            Phase::DataLoading => "data loading",
            Phase::Communication => "communication",
            Phase::Other => "other",
        }
    }
}

/// The phase a frame belongs to, if any. Python frames' modules are
/// `py:PATH` (the file, from its package root for installed packages).
fn phase_of(function: &str, module: &str) -> Option<Phase> {
    let py = module.strip_prefix("py:");
    let in_py = |prefix: &str| py.is_some_and(|m| m.starts_with(prefix) || m.contains(prefix));
    // PyTorch's autograd: the engine, its nodes (`AddmmBackward0::apply`)
    // and the Python calls into it.
    if function.starts_with("torch::autograd::Engine::")
        || function.starts_with("torch::autograd::python::PythonEngine::")
        || function.starts_with("THPEngine_run_backward")
        // A node's apply; its constructor runs in the forward pass (it
        // records the graph) and its destructor wherever the graph is freed.
        || (function.starts_with("torch::autograd::generated::")
            && function.contains("Backward")
            && function.contains("apply"))
        || (in_py("torch/autograd/") && function.contains("backward"))
        || (in_py("torch/_tensor.py") && function.ends_with("backward"))
    {
        return Some(Phase::Backward);
    }
    if in_py("torch/optim/") || in_py("optax/") {
        return Some(Phase::Optimizer);
    }
    if in_py("torch/distributed/")
        || function.starts_with("c10d::")
        || function.starts_with("gloo::")
        || function.starts_with("nccl")
    {
        return Some(Phase::Communication);
    }
    if in_py("torch/utils/data/") || in_py("torchvision/transforms/") {
        return Some(Phase::DataLoading);
    }
    if in_py("torch/nn/") {
        return Some(Phase::Forward);
    }
    None
}

/// The phase of a stack: its innermost frame that has one. A stack under
/// an import (`importlib`'s frames) has none: `import torch` runs code of
/// `torch/distributed/` and `torch/nn/`, which is no step's communication
/// or forward pass.
fn stack_phase(stacks: &CallStacks, stack: Option<u64>) -> Phase {
    let mut found = None;
    for (function, module) in stacks.names(stack) {
        if module.starts_with("py:<frozen importlib") {
            return Phase::Other;
        }
        if found.is_none() {
            found = phase_of(function, module);
        }
    }
    found.unwrap_or(Phase::Other)
}

/// How far (either way) the main thread's nearest sample may be from a
/// pool worker's sample to lend it its phase: a few sampling intervals at
/// the default rate; further, the main thread was not running (waiting for
/// a batch, say) and what the pool did then is not known.
const LEND_WINDOW_NS: u64 = 5_000_000;

/// Outermost frames searched for a thread pool's thread function.
const POOL_ROOT_FRAMES: usize = 6;

/// Whether a stack's thread was started by a thread pool: one of its
/// outermost frames is a pool's thread function — in a pool library whose
/// spinning `spin` knows (libgomp's `gomp_thread_start`, OpenBLAS's
/// `blas_thread_server`, Intel/LLVM OpenMP, TBB), PyTorch's
/// `c10::ThreadPool` or XLA's Eigen pool.
fn pool_rooted(stacks: &CallStacks, stack: Option<u64>) -> bool {
    let names: Vec<&(String, String)> = stacks.names(stack).collect();
    names
        .iter()
        .rev()
        .take(POOL_ROOT_FRAMES)
        .any(|(function, module)| {
            // OpenBLAS's library also runs on its callers' threads: its
            // pool's thread function is `blas_thread_server`.
            let library = crate::spin::pool_library(&module.to_ascii_lowercase());
            library.is_some_and(|p| p != crate::spin::Pool::Openblas)
                || function == "blas_thread_server"
                || function.contains("EigenEnvironment")
                // LLVM's pool compiles (JAX's first step), it runs no
                // step's work.
                || (function.contains("ThreadPool") && !function.starts_with("llvm::"))
        })
}

/// The phase of each sample of a process (all when `None`): its stack's,
/// or for a pool worker's sample without one, the main thread's at the
/// time. Sized by the stacks and the main thread's samples (only where
/// the process has pool workers), not by all samples.
pub(crate) struct SamplePhases {
    by_stack: StackMap<Phase>,
    pid: Option<u32>,
    /// The process's pool workers: threads started by a pool, with no
    /// Python frame in any of their stacks.
    workers: rustc_hash::FxHashSet<u32>,
    /// The main thread's samples (time, phase), by time, when there are
    /// workers.
    main: Vec<(u64, Phase)>,
}

impl SamplePhases {
    /// A sample's phase (`Other` outside the map's process).
    pub(crate) fn phase(&self, s: &Sample) -> Phase {
        if self.pid.is_some_and(|p| s.pid != p) {
            return Phase::Other;
        }
        let phase = self
            .by_stack
            .get(&s.stack_id())
            .copied()
            .unwrap_or(Phase::Other);
        if phase != Phase::Other || !self.workers.contains(&s.tid) {
            return phase;
        }
        let at = self.main.partition_point(|&(t, _)| t < s.time_ns);
        let near = [at.checked_sub(1), Some(at)]
            .into_iter()
            .flatten()
            .filter_map(|i| self.main.get(i))
            .map(|&(t, p)| (t.abs_diff(s.time_ns), p))
            .filter(|&(d, _)| d <= LEND_WINDOW_NS)
            .min_by_key(|&(d, _)| d);
        near.map_or(phase, |(_, p)| p)
    }

    /// Calls `f` with each sample of its process and the sample's phase.
    fn for_each(
        &self,
        samples: &Samples,
        mut f: impl FnMut(&Sample, Phase),
    ) -> Result<(), TraceError> {
        samples.for_each(|s| {
            if self.pid.is_none_or(|p| s.pid == p) {
                f(s, self.phase(s));
            }
        })
    }
}

/// The phase of every sample of the main process (all processes when
/// `pid` is `None`), worked out once for the summary, the steps and the
/// swarms: its stack's, or for a pool worker's sample without one, the
/// main thread's at the time.
pub(crate) fn phase_map(
    samples: &Samples,
    stacks: &CallStacks,
    pid: Option<u32>,
) -> Result<SamplePhases, TraceError> {
    let mut by_stack: StackMap<Phase> = StackMap::default();
    // Pool workers: threads of the process (not its main thread) started
    // by a pool, with no Python frame in any of their stacks.
    let mut seen: StackMap<(bool, bool)> = StackMap::default();
    let mut threads: FastMap<u32, (bool, bool)> = FastMap::default();
    for ((stack, p, tid), _) in samples.tally().per_stack_thread() {
        if pid.is_none_or(|pid| p == pid) {
            by_stack
                .entry(stack)
                .or_insert_with(|| stack_phase(stacks, stack));
        }
        if pid.is_none_or(|pid| p != pid || tid == pid) {
            continue;
        }
        let (pool, python) = *seen.entry(stack).or_insert_with(|| {
            (
                pool_rooted(stacks, stack),
                stacks
                    .names(stack)
                    .any(|(_, m)| m.starts_with(crate::PY_MODULE_PREFIX)),
            )
        });
        let t = threads.entry(tid).or_default();
        t.0 |= pool;
        t.1 |= python;
    }
    let workers: rustc_hash::FxHashSet<u32> = threads
        .into_iter()
        .filter(|(_, (pool, python))| *pool && !python)
        .map(|(tid, _)| tid)
        .collect();
    let mut main = Vec::new();
    if let Some(pid) = pid.filter(|_| !workers.is_empty()) {
        samples.for_each(|s| {
            if s.pid == pid && s.tid == pid {
                let phase = by_stack.get(&s.stack_id()).copied();
                main.push((s.time_ns, phase.unwrap_or(Phase::Other)));
            }
        })?;
        main.sort_unstable_by_key(|&(t, _)| t);
    }
    Ok(SamplePhases {
        by_stack,
        pid,
        workers,
        main,
    })
}

/// The map's process's samples per phase and timeline bin (`bin_of` a
/// time's bin, `None` outside): phases with any, in the enum's order.
pub(crate) fn per_bin(
    samples: &Samples,
    phases_of: &SamplePhases,
    bin_of: impl Fn(u64) -> Option<usize>,
    bins: usize,
) -> Result<Vec<(Phase, Vec<u32>)>, TraceError> {
    let mut rows: BTreeMap<Phase, Vec<u32>> = BTreeMap::new();
    phases_of.for_each(samples, |s, phase| {
        if let Some(b) = bin_of(s.time_ns).filter(|&b| b < bins) {
            let row = rows.entry(phase).or_insert_with(|| vec![0; bins]);
            row[b] = row[b].saturating_add(1);
        }
    })?;
    Ok(rows.into_iter().collect())
}

/// CPU samples per phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PhaseSummary {
    /// Samples of the main process in the training loop (the steps' span),
    /// or in the whole run when no steps were found.
    pub samples: u64,
    /// Whether `samples` are the loop's (else the whole run's).
    pub in_loop: bool,
    /// Per phase, in the enum's order, with their share; `other` last.
    /// Empty when no sample has a framework phase (not a training job of
    /// a framework sofa knows).
    pub phases: Vec<PhaseRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseRow {
    pub phase: Phase,
    pub name: String,
    pub samples: u64,
    pub share: f64,
}

/// The map's process's samples per phase, counted in one pass: in the
/// loop's span, per stack (for the swarms) and per step.
pub(crate) struct PhaseCounts {
    span: Option<(u64, u64)>,
    in_span: FastMap<Phase, u64>,
    per_stack: FastMap<(Option<u64>, Phase), u64>,
    per_step: Vec<ByName>,
}

/// Counts the map's process's samples per phase: in the loop's `span`
/// (all when `None`), per stack, and per step between `boundaries`.
pub(crate) fn count(
    samples: &Samples,
    phases_of: &SamplePhases,
    span: Option<(u64, u64)>,
    boundaries: &[u64],
) -> Result<PhaseCounts, TraceError> {
    let inside = |t: u64| span.is_none_or(|(a, b)| t >= a && t < b);
    let steps = boundaries.len().saturating_sub(1);
    let mut c = PhaseCounts {
        span,
        in_span: FastMap::default(),
        per_stack: FastMap::default(),
        per_step: vec![ByName::default(); steps],
    };
    phases_of.for_each(samples, |s, phase| {
        if inside(s.time_ns) {
            *c.in_span.entry(phase).or_default() += 1;
        }
        *c.per_stack.entry((s.stack_id(), phase)).or_default() += 1;
        if steps > 0 && s.time_ns >= boundaries[0] && s.time_ns < boundaries[steps] {
            let step = boundaries.partition_point(|&b| b <= s.time_ns) - 1;
            c.per_step[step].add(phase.name(), 1);
        }
    })?;
    Ok(c)
}

/// Phases of the map's process's samples in the loop's span when there
/// is one.
pub(crate) fn phase_summary(c: &PhaseCounts) -> PhaseSummary {
    let span = c.span;
    let per_phase = &c.in_span;
    let total: u64 = per_phase.values().sum();
    if per_phase.keys().all(|p| *p == Phase::Other) {
        return PhaseSummary {
            samples: total,
            in_loop: span.is_some(),
            phases: Vec::new(),
        };
    }
    let mut phases: Vec<PhaseRow> = per_phase
        .iter()
        .map(|(&phase, &n)| PhaseRow {
            phase,
            name: phase.name().to_owned(),
            samples: n,
            share: n as f64 / total.max(1) as f64,
        })
        .collect();
    phases.sort_by_key(|r| r.phase);
    PhaseSummary {
        samples: total,
        in_loop: span.is_some(),
        phases,
    }
}

/// The map's process's samples of each step, per phase name.
pub(crate) fn per_step(c: PhaseCounts) -> Vec<ByName> {
    c.per_step
}

/// Each of `swarms` swarms' phase of most of the map's process's samples
/// in it, with their share.
pub(crate) fn per_swarm(
    c: &PhaseCounts,
    swarm_of: impl Fn(Option<u64>) -> Option<usize>,
    swarms: usize,
) -> Vec<Option<(Phase, f64)>> {
    let mut counts: Vec<FastMap<Phase, u64>> = vec![FastMap::default(); swarms];
    for (&(stack, phase), &n) in &c.per_stack {
        if let Some(swarm) = swarm_of(stack).filter(|&w| w < swarms) {
            *counts[swarm].entry(phase).or_default() += n;
        }
    }
    counts
        .into_iter()
        .map(|by| {
            let total: u64 = by.values().sum();
            by.into_iter()
                .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
                .map(|(phase, n)| (phase, n as f64 / total as f64))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::functions::test_stacks as stacks;

    #[test]
    fn phases_of_a_step_add_up_and_imports_are_none() {
        let s = stacks(&[
            // 1: a convolution kernel in the forward pass.
            &[
                ("mkldnn_convolution", "libtorch_cpu.so"),
                ("Conv2d.forward", "py:torch/nn/modules/conv.py"),
                ("train", "py:train.py"),
            ],
            // 2: the same kernel under its backward node.
            &[
                ("mkldnn_convolution", "libtorch_cpu.so"),
                (
                    "torch::autograd::generated::ConvolutionBackward0::apply()",
                    "libtorch_cpu.so",
                ),
                ("Tensor.backward", "py:torch/_tensor.py"),
            ],
            // 3: Adam.
            &[("_single_tensor_adam", "py:torch/optim/adam.py")],
            // 4: `import torch` running torch/nn's code.
            &[
                ("<module>", "py:torch/nn/modules/conv.py"),
                ("_find_and_load", "py:<frozen importlib._bootstrap>"),
            ],
            // 5: nothing of a framework.
            &[("memcpy", "libc.so.6")],
        ]);
        let rows: Vec<Sample> = [1, 1, 2, 2, 2, 3, 4, 5]
            .iter()
            .enumerate()
            .map(|(i, &stack)| crate::test_sample(i as u64 * 1_000_000, stack))
            .collect();
        let samples = Samples::from_rows(rows.clone());
        let phases_of = phase_map(&samples, &s, Some(1)).unwrap();
        let steps_at = [0, 3_000_000, 7_000_000];
        let counts = count(&samples, &phases_of, None, &steps_at).unwrap();
        let sum = phase_summary(&counts);
        let shares: Vec<(Phase, u64)> = sum.phases.iter().map(|p| (p.phase, p.samples)).collect();
        assert_eq!(
            shares,
            [
                (Phase::Forward, 2),
                (Phase::Backward, 3),
                (Phase::Optimizer, 1),
                (Phase::Other, 2)
            ]
        );
        assert!((sum.phases.iter().map(|p| p.share).sum::<f64>() - 1.0).abs() < 1e-9);
        // The loop's span only; a job of no known framework has none.
        assert_eq!(
            phase_summary(&count(&samples, &phases_of, Some((0, 2_000_000)), &[]).unwrap()).samples,
            2
        );
        let tail = Samples::from_rows(rows[6..].to_vec());
        let tail_phases = phase_map(&tail, &s, Some(1)).unwrap();
        assert!(
            phase_summary(&count(&tail, &tail_phases, None, &[]).unwrap())
                .phases
                .is_empty()
        );
        // Per step: samples at 0..8 ms in steps [0, 3) and [3, 7) ms; the
        // last sample is after the loop.
        let swarms = per_swarm(&counts, |k| k.map(|k| usize::from(k > 3)), 2);
        let steps = per_step(counts);
        let names = |m: &ByName| -> Vec<(String, u64)> {
            m.iter().map(|(k, v)| (k.to_owned(), v)).collect()
        };
        assert_eq!(
            names(&steps[0]),
            [("backward".to_owned(), 1), ("forward".to_owned(), 2)]
        );
        // Per swarm (stacks 1-3 one swarm, 4-5 another): the phase of most
        // of its samples, with their share.
        assert_eq!(swarms[0], Some((Phase::Backward, 0.5)));
        assert_eq!(swarms[1], Some((Phase::Other, 1.0)));
        assert_eq!(
            names(&steps[1]),
            [
                ("backward".to_owned(), 2),
                ("optimizer".to_owned(), 1),
                ("other".to_owned(), 1)
            ]
        );
    }

    #[test]
    fn pool_workers_take_the_main_threads_phase_at_the_time() {
        let s = stacks(&[
            // 1: the main thread in the forward pass.
            &[
                ("GOMP_parallel", "libgomp-a34b3233.so.1"),
                ("Linear.forward", "py:torch/nn/modules/linear.py"),
            ],
            // 2: the main thread in the optimizer.
            &[("_single_tensor_sgd", "py:torch/optim/sgd.py")],
            // 3: an OpenMP worker running a kernel.
            &[
                ("mkl_blas_sgemm_omp_driver_v1._omp_fn.0", "libtorch_cpu.so"),
                ("gomp_thread_start", "libgomp-a34b3233.so.1"),
                ("start_thread", "libc.so.6"),
                ("clone3", "libc.so.6"),
            ],
            // 4: the same worker, its stack cut short.
            &[("mkl_blas_def_sgemm_kernel_0_zen", "libtorch_cpu.so")],
            // 5: a thread of the program's own, not a pool's.
            &[
                ("write", "libc.so.6"),
                ("start_thread", "libc.so.6"),
                ("clone3", "libc.so.6"),
            ],
        ]);
        let at = |ms: u64, tid: u32, stack: u64| Sample::new(ms * 1_000_000, Some(stack), 1, tid);
        let samples = vec![
            at(10, 1, 1),                           // 0: main, forward
            at(11, 7, 3),                           // 1: worker, 1 ms after forward
            at(13, 7, 4),                           // 2: worker, cut short
            at(20, 1, 2),                           // 3: main, optimizer
            at(22, 7, 4),                           // 4: worker, 2 ms after the optimizer
            at(40, 7, 3),                           // 5: worker, 20 ms from the main thread
            at(21, 9, 5),                           // 6: own thread
            Sample::new(12_000_000, Some(3), 2, 2), // 7: another process
        ];
        let phases_of = |rows: &[Sample]| {
            let rows = Samples::from_rows(rows.to_vec());
            let map = phase_map(&rows, &s, Some(1)).unwrap();
            let mut got = Vec::new();
            rows.for_each(|s| got.push(map.phase(s))).unwrap();
            got
        };
        let got = phases_of(&samples);
        use Phase::*;
        assert_eq!(
            got,
            [
                Forward, Forward, Forward, Optimizer, Optimizer, Other, Other, Other
            ]
        );
        // A thread with Python frames of its own is no pool worker.
        let mut python = samples.clone();
        python.push(at(30, 7, 2));
        let got = phases_of(&python);
        assert_eq!(got[1], Other);
        assert_eq!(got[8], Optimizer);
    }

    #[test]
    fn the_innermost_framework_frame_decides() {
        let f = |function: &str, module: &str| phase_of(function, module);
        assert_eq!(
            f("forward", "py:torch/nn/modules/conv.py"),
            Some(Phase::Forward)
        );
        assert_eq!(
            f(
                "torch::autograd::generated::ConvolutionBackward0::apply(std::vector<at::Tensor>&&)",
                "libtorch_cpu.so"
            ),
            Some(Phase::Backward)
        );
        assert_eq!(
            f(
                "torch::autograd::Engine::thread_main(std::shared_ptr<torch::autograd::GraphTask> const&)",
                "libtorch_cpu.so"
            ),
            Some(Phase::Backward)
        );
        assert_eq!(
            f("Tensor.backward", "py:torch/_tensor.py"),
            Some(Phase::Backward)
        );
        assert_eq!(
            f("_single_tensor_adam", "py:torch/optim/adam.py"),
            Some(Phase::Optimizer)
        );
        assert_eq!(
            f(
                "_MultiProcessingDataLoaderIter._next_data",
                "py:torch/utils/data/dataloader.py"
            ),
            Some(Phase::DataLoading)
        );
        assert_eq!(
            f("all_reduce", "py:torch/distributed/distributed_c10d.py"),
            Some(Phase::Communication)
        );
        assert_eq!(
            f(
                "torch::autograd::generated::ConvolutionBackward0::ConvolutionBackward0()",
                "libtorch_cpu.so"
            ),
            None
        );
        // A user's own function named forward is not taken on its name.
        assert_eq!(f("forward", "py:train_numpy.py"), None);
        assert_eq!(f("dgemm_kernel_SKYLAKEX", "libopenblas.so"), None);
    }
}
