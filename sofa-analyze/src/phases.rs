//! Phases of a training step in a framework's own terms — forward,
//! backward, optimizer, data loading, communication — from the frames of
//! each sample (native and merged Python), innermost first: the first
//! frame that belongs to a phase decides (a convolution's kernel under
//! `Conv2d.forward` is forward; under `ConvolutionBackward0::apply`,
//! backward). A sample with no such frame is `other`: unknown stays
//! unknown, never guessed.

use crate::fasthash::{FastMap, StackMap};
use crate::functions::CallStacks;
use serde::Serialize;
use sofa_trace::tables::Sample;
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

/// The phase of every stack the main process's samples (all when `pid`
/// is `None`) were taken in, worked out once for the summary, the steps
/// and the swarms.
pub(crate) fn phase_map(
    samples: &[Sample],
    stacks: &CallStacks,
    pid: Option<u32>,
) -> StackMap<Phase> {
    let mut out: StackMap<Phase> = StackMap::default();
    for s in samples.iter().filter(|s| pid.is_none_or(|p| s.pid == p)) {
        out.entry(s.stack_id)
            .or_insert_with(|| stack_phase(stacks, s.stack_id));
    }
    out
}

/// A stack's phase in `phases` (`other` when it is not there).
fn phase_in(phases: &StackMap<Phase>, stack: Option<u64>) -> Phase {
    phases.get(&stack).copied().unwrap_or(Phase::Other)
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

/// Phases of the main process's samples (all samples when `pid` is
/// `None`) in the loop's `span` when there is one.
pub(crate) fn phase_summary(
    samples: &[Sample],
    phases_of: &StackMap<Phase>,
    pid: Option<u32>,
    span: Option<(u64, u64)>,
) -> PhaseSummary {
    let mut per_stack: StackMap<u64> = StackMap::default();
    let inside = |t: u64| span.is_none_or(|(a, b)| t >= a && t < b);
    for s in samples
        .iter()
        .filter(|s| pid.is_none_or(|p| s.pid == p) && inside(s.time_ns))
    {
        *per_stack.entry(s.stack_id).or_default() += 1;
    }
    let mut per_phase: FastMap<Phase, u64> = FastMap::default();
    for (&stack, &n) in &per_stack {
        *per_phase.entry(phase_in(phases_of, stack)).or_default() += n;
    }
    let total: u64 = per_stack.values().sum();
    if per_phase.keys().all(|p| *p == Phase::Other) {
        return PhaseSummary {
            samples: total,
            in_loop: span.is_some(),
            phases: Vec::new(),
        };
    }
    let mut phases: Vec<PhaseRow> = per_phase
        .into_iter()
        .map(|(phase, n)| PhaseRow {
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

/// The main process's samples (all when `pid` is `None`) of each step
/// between `boundaries`, per phase name.
pub(crate) fn per_step(
    samples: &[Sample],
    phases_of: &StackMap<Phase>,
    pid: Option<u32>,
    boundaries: &[u64],
) -> Vec<BTreeMap<String, u64>> {
    let steps = boundaries.len().saturating_sub(1);
    let mut out = vec![BTreeMap::new(); steps];
    if steps == 0 {
        return out;
    }
    for s in samples.iter().filter(|s| {
        pid.is_none_or(|p| s.pid == p)
            && s.time_ns >= boundaries[0]
            && s.time_ns < boundaries[steps]
    }) {
        let step = boundaries.partition_point(|&b| b <= s.time_ns) - 1;
        let phase = phase_in(phases_of, s.stack_id);
        *out[step].entry(phase.name().to_owned()).or_default() += 1;
    }
    out
}

/// Each of `swarms` swarms' phase of most of the main process's samples
/// (all when `pid` is `None`) in it, with their share.
pub(crate) fn per_swarm(
    samples: &[Sample],
    phases_of: &StackMap<Phase>,
    pid: Option<u32>,
    swarm_of: impl Fn(Option<u64>) -> Option<usize>,
    swarms: usize,
) -> Vec<Option<(Phase, f64)>> {
    let mut per_stack: StackMap<u64> = StackMap::default();
    for s in samples.iter().filter(|s| pid.is_none_or(|p| s.pid == p)) {
        *per_stack.entry(s.stack_id).or_default() += 1;
    }
    let mut counts: Vec<FastMap<Phase, u64>> = vec![FastMap::default(); swarms];
    for (&stack, &n) in &per_stack {
        if let Some(swarm) = swarm_of(stack).filter(|&w| w < swarms) {
            *counts[swarm].entry(phase_in(phases_of, stack)).or_default() += n;
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
        let samples: Vec<Sample> = [1, 1, 2, 2, 2, 3, 4, 5]
            .iter()
            .enumerate()
            .map(|(i, &stack)| crate::test_sample(i as u64 * 1_000_000, stack))
            .collect();
        let phases_of = phase_map(&samples, &s, Some(1));
        let sum = phase_summary(&samples, &phases_of, Some(1), None);
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
            phase_summary(&samples, &phases_of, Some(1), Some((0, 2_000_000))).samples,
            2
        );
        assert!(
            phase_summary(&samples[6..], &phases_of, Some(1), None)
                .phases
                .is_empty()
        );
        // Per step: samples at 0..8 ms in steps [0, 3) and [3, 7) ms; the
        // last sample is after the loop.
        let steps = per_step(&samples, &phases_of, Some(1), &[0, 3_000_000, 7_000_000]);
        let names = |m: &BTreeMap<String, u64>| -> Vec<(String, u64)> {
            m.iter().map(|(k, v)| (k.clone(), *v)).collect()
        };
        assert_eq!(
            names(&steps[0]),
            [("backward".to_owned(), 1), ("forward".to_owned(), 2)]
        );
        // Per swarm (stacks 1-3 one swarm, 4-5 another): the phase of most
        // of its samples, with their share.
        let swarms = per_swarm(
            &samples,
            &phases_of,
            Some(1),
            |k| k.map(|k| usize::from(k > 3)),
            2,
        );
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
