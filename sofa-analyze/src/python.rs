//! Python frames merged into the CPU samples' stacks.
//!
//! Each CPU sample takes the Python snapshot of its thread nearest in time,
//! if one is within one snapshot period (either side). Its native frames
//! are kept from the leaf down to the interpreter's eval loop; the Python
//! frames take the place of the interpreter's own frames below. Where the
//! native chain runs through several eval-loop calls (Python → C → Python),
//! the Python stack is split at its entry frames, one group per eval call,
//! and the native frames between them (the C extension) stay in place.
//!
//! A chain that stops before reaching the eval loop (code built without
//! frame pointers) keeps its frames up to the first interpreter function
//! and the interpreter functions it called; the Python frames follow. What
//! can be wrong: a Python function shorter than the snapshot period may be
//! shown under the caller that was on the stack at the nearest snapshot.

use crate::AnalyzeError;
use crate::fasthash::{FastMap, StackMap};
use crate::functions::{CallStacks, Resolved};
use crate::sample::Tally;
use crate::steps::pyloop::MainThreads;
use crate::{Sample, Samples};
use serde::Serialize;
use sofa_trace::tables::{PyFrame, PyOuter, PySample, PyStackNode, StackNode};
use sofa_trace::{Archive, TraceError};

use std::collections::HashMap;

/// What the merge did, for the summary and `--json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PythonSummary {
    /// Python snapshots (thread stacks) in the archive.
    pub snapshots: u64,
    /// CPU samples of threads that had Python snapshots.
    pub samples_of_python_threads: u64,
    /// Of those, samples given Python frames.
    pub merged: u64,
    /// Of those, samples whose native stack already named Python functions
    /// (CPython 3.12+ perf trampolines), kept as they are.
    pub trampolined: u64,
    /// Samples of Python threads with no snapshot close enough in time.
    pub without_snapshot: u64,
    /// The window a snapshot may be away from a sample, ns.
    pub window_ns: u64,
}

/// Per thread (pid, tid): Python snapshots, and those holding the GIL.
pub(crate) type GilByThread = FastMap<(u32, u32), (u64, u64)>;

/// Snapshots of one thread: (middle of the read, Python stack), by time.
type Timeline = Vec<(u64, Option<u64>)>;
type PerThread = FastMap<(u32, u32), Timeline>;

/// Module names of Python frames start with this, so that every view can
/// tell them from native ones.
pub const PY_MODULE_PREFIX: &str = "py:";

/// Merges Python frames into the stacks of `samples`: the merged stacks
/// are added to `stacks`, and `samples` rewrites each sample's stack id to
/// its merged stack as it is read from now on. `also` (the stacks of
/// threads leaving a CPU, each with the end of its wait) get Python frames
/// the same way, without counting in the summary, from a snapshot taken
/// while they waited, where there is one.
pub(crate) fn merge(
    archive: &Archive,
    samples: &mut Samples,
    also: &mut [(Sample, u64)],
    stacks: &mut CallStacks,
) -> Result<Option<(PythonSummary, GilByThread, MainThreads)>, AnalyzeError> {
    let snapshots = archive.read_table::<PySample>()?;
    if snapshots.is_empty() {
        return Ok(None);
    }
    let mut gil = GilByThread::default();
    for s in snapshots.iter().filter(|s| s.tid != 0) {
        let slot = gil.entry((s.pid, s.tid)).or_default();
        slot.0 += 1;
        slot.1 += u64::from(s.owns_gil);
    }
    let py_nodes: HashMap<u64, PyStackNode> = archive
        .read_table::<PyStackNode>()?
        .into_iter()
        .map(|n| (n.stack_id, n))
        .collect();
    let py_frames: HashMap<u64, PyFrame> = archive
        .read_table::<PyFrame>()?
        .into_iter()
        .map(|f| (f.frame_id, f))
        .collect();
    let outer = archive.read_table::<PyOuter>()?;
    let main_threads =
        crate::steps::pyloop::main_threads(&snapshots, &outer, &py_nodes, &py_frames);
    let (summary, merged, tally) =
        merge_with(snapshots, &py_nodes, &py_frames, samples, also, stacks)?;
    samples.set_merge(merged, tally);
    Ok(Some((summary, gil, main_threads)))
}

/// (native stack, Python stack) → (merged stack, whether the native one
/// was kept because trampolines already named its Python frames).
type MergedOf = FastMap<(Option<u64>, Option<u64>), (Option<u64>, bool)>;

/// What a sample's stack becomes with Python frames: its thread's
/// snapshot nearest in time, and the merged stack of the two.
#[derive(Debug, Default)]
pub(crate) struct Merged {
    per_thread: PerThread,
    window: u64,
    merged_of: MergedOf,
}

impl Merged {
    /// Rewrites the stack of a sample the merge saw.
    pub(crate) fn apply(&self, sample: &mut Sample) {
        let Some(list) = self.per_thread.get(&(sample.pid, sample.tid)) else {
            return;
        };
        if let Some(py_stack) = nearest(list, sample.time_ns, self.window)
            && let Some(&(merged, _)) = self.merged_of.get(&(sample.stack_id(), py_stack))
        {
            sample.set_stack_id(merged);
        }
    }
}

/// Builds the merged stacks as the merge meets them, sharing nodes.
struct Merging<'s> {
    stacks: &'s CallStacks,
    py_nodes: &'s HashMap<u64, PyStackNode>,
    py_frames: &'s HashMap<u64, PyFrame>,
    frame_of_py: HashMap<u64, u64>,
    built: NewStacks,
    merged_of: MergedOf,
}

impl Merging<'_> {
    /// The merged stack of a native and a Python stack, and whether the
    /// native one was kept.
    fn merged(&mut self, native_stack: Option<u64>, py_stack: Option<u64>) -> (Option<u64>, bool) {
        let Merging {
            stacks,
            py_nodes,
            py_frames,
            frame_of_py,
            built,
            merged_of,
        } = self;
        *merged_of
            .entry((native_stack, py_stack))
            .or_insert_with(|| {
                let native: Vec<u64> = stacks.frame_ids(native_stack).collect();
                if native.iter().any(|f| is_trampoline(stacks, *f)) {
                    return (native_stack, true);
                }
                let python = python_groups(py_stack, py_nodes, py_frames, frame_of_py);
                (built.add(&interleave(stacks, &native, &python)), false)
            })
    }
}

fn merge_with(
    snapshots: Vec<PySample>,
    py_nodes: &HashMap<u64, PyStackNode>,
    py_frames: &HashMap<u64, PyFrame>,
    samples: &Samples,
    also: &mut [(Sample, u64)],
    stacks: &mut CallStacks,
) -> Result<(PythonSummary, Merged, Tally), TraceError> {
    let mut summary = PythonSummary {
        snapshots: snapshots.len() as u64,
        ..PythonSummary::default()
    };
    // Snapshots per thread, by the middle of their read.
    let mut per_thread: PerThread = FastMap::default();
    for s in snapshots.iter().filter(|s| s.tid != 0) {
        per_thread
            .entry((s.pid, s.tid))
            .or_default()
            .push((s.time_ns + s.read_ns / 2, s.stack_id));
    }
    drop(snapshots);
    for list in per_thread.values_mut() {
        list.sort_unstable_by_key(|s| s.0);
    }
    let window = snapshot_period(&per_thread);
    summary.window_ns = window;

    // Python frames become frames of the call-stack tree, with new ids.
    let first_frame = stacks.frames.keys().max().map_or(0, |m| m + 1);
    let mut frame_of_py: HashMap<u64, u64> = HashMap::new();
    let mut ids: Vec<&u64> = py_frames.keys().collect();
    ids.sort();
    for (next_frame, id) in (first_frame..).zip(ids) {
        let f = &py_frames[id];
        stacks.frames.insert(
            next_frame,
            Resolved {
                names: vec![(f.function.clone(), python_module(&f.file))],
                address: 0,
            },
        );
        frame_of_py.insert(*id, next_frame);
    }
    let mut m = Merging {
        stacks: &*stacks,
        py_nodes,
        py_frames,
        frame_of_py,
        built: NewStacks::after(stacks),
        merged_of: MergedOf::default(),
    };
    // The samples as they will be read, tallied in the same pass.
    let mut tally = Tally::default();
    samples.for_each(|sample| {
        let mut rewritten = *sample;
        if let Some(list) = per_thread.get(&(sample.pid, sample.tid)) {
            summary.samples_of_python_threads += 1;
            match nearest(list, sample.time_ns, window) {
                None => summary.without_snapshot += 1,
                Some(py_stack) => {
                    let (merged, kept) = m.merged(sample.stack_id(), py_stack);
                    match kept {
                        true => summary.trampolined += 1,
                        false => summary.merged += 1,
                    }
                    rewritten.set_stack_id(merged);
                }
            }
        }
        tally.add(&rewritten);
    })?;
    // A wait takes only a snapshot of its own: the ones either side may
    // show the code before and after it (a short sleep between two busy
    // calls), so without one it keeps its native frames.
    for (sample, end) in also.iter_mut() {
        if let Some(py_stack) = per_thread
            .get(&(sample.pid, sample.tid))
            .and_then(|list| during(list, sample.time_ns, *end))
        {
            sample.set_stack_id(m.merged(sample.stack_id(), py_stack).0);
        }
    }
    let Merging {
        built, merged_of, ..
    } = m;
    built.insert_into(stacks);
    let merged = Merged {
        per_thread,
        window,
        merged_of,
    };
    Ok((summary, merged, tally))
}

/// Stacks added to a call-stack tree, with ids after its own.
struct NewStacks {
    next: u64,
    nodes: HashMap<(Option<u64>, u64), u64>,
}

impl NewStacks {
    fn after(stacks: &CallStacks) -> NewStacks {
        NewStacks {
            next: stacks.nodes.keys().max().map_or(0, |m| m + 1),
            nodes: HashMap::new(),
        }
    }

    /// The innermost node of a stack of `frames` (innermost first), built
    /// from its root, sharing the nodes added before.
    fn add(&mut self, frames: &[u64]) -> Option<u64> {
        let mut parent = None;
        for &frame_id in frames.iter().rev() {
            let node = *self.nodes.entry((parent, frame_id)).or_insert_with(|| {
                self.next += 1;
                self.next - 1
            });
            parent = Some(node);
        }
        parent
    }

    fn insert_into(self, stacks: &mut CallStacks) {
        for ((parent_id, frame_id), stack_id) in self.nodes {
            stacks.nodes.insert(
                stack_id,
                StackNode {
                    stack_id,
                    parent_id,
                    frame_id,
                },
            );
        }
    }
}

/// Reduces every stack that has Python frames to those frames alone (the
/// "my code only" view); stacks without any keep their native frames.
/// `samples` read so from now on.
pub(crate) fn python_only(
    samples: &mut Samples,
    stacks: &mut CallStacks,
) -> Result<(), TraceError> {
    let is_python = |frame: u64| {
        names(stacks, frame)
            .iter()
            .any(|(_, module)| module.starts_with(PY_MODULE_PREFIX))
    };
    let mut built = NewStacks::after(stacks);
    let mut reduced: StackMap<Option<u64>> = StackMap::default();
    let mut tally = Tally::default();
    samples.for_each(|sample| {
        let stack = sample.stack_id();
        let python_stack = *reduced.entry(stack).or_insert_with(|| {
            let python: Vec<u64> = stacks.frame_ids(stack).filter(|&f| is_python(f)).collect();
            if python.is_empty() {
                stack
            } else {
                built.add(&python)
            }
        });
        let mut rewritten = *sample;
        rewritten.set_stack_id(python_stack);
        tally.add(&rewritten);
    })?;
    built.insert_into(stacks);
    samples.set_reduced(reduced, tally);
    Ok(())
}

/// The module a Python frame is shown in: `py:` and the file, shortened to
/// what follows `site-packages/` (a library) or the file name.
fn python_module(file: &str) -> String {
    let short = ["/site-packages/", "/dist-packages/"]
        .iter()
        .find_map(|marker| file.rsplit_once(marker).map(|(_, rest)| rest))
        .unwrap_or_else(|| file.rsplit('/').next().unwrap_or(file));
    format!("{PY_MODULE_PREFIX}{short}")
}

/// The median time between consecutive snapshots of a thread: how far a
/// snapshot may be from a sample and still describe it.
fn snapshot_period(per_thread: &PerThread) -> u64 {
    let mut gaps: Vec<u64> = per_thread
        .values()
        .flat_map(|list| list.windows(2).map(|w| w[1].0 - w[0].0))
        .filter(|&g| g > 0)
        .collect();
    if gaps.is_empty() {
        return 10_000_000;
    }
    let mid = gaps.len() / 2;
    *gaps.select_nth_unstable(mid).1
}

/// The Python stack of the first snapshot from `start` to `end`.
fn during(list: &[(u64, Option<u64>)], start: u64, end: u64) -> Option<Option<u64>> {
    let i = list.partition_point(|s| s.0 < start);
    list.get(i).filter(|s| s.0 <= end).map(|s| s.1)
}

/// The Python stack of the snapshot nearest `time` within `window`.
fn nearest(list: &[(u64, Option<u64>)], time: u64, window: u64) -> Option<Option<u64>> {
    let i = list.partition_point(|s| s.0 < time);
    [i.checked_sub(1), Some(i)]
        .into_iter()
        .flatten()
        .filter_map(|j| list.get(j))
        .map(|s| (s.0.abs_diff(time), s.1))
        .filter(|(d, _)| *d <= window)
        .min_by_key(|(d, _)| *d)
        .map(|(_, stack)| stack)
}

/// The Python frames of a snapshot, innermost first, in groups: each group
/// is what one eval-loop call runs (it ends at an entry frame).
fn python_groups(
    stack: Option<u64>,
    nodes: &HashMap<u64, PyStackNode>,
    frames: &HashMap<u64, PyFrame>,
    frame_of_py: &HashMap<u64, u64>,
) -> Vec<Vec<u64>> {
    let mut groups: Vec<Vec<u64>> = Vec::new();
    let mut current = Vec::new();
    let chain = std::iter::successors(stack.and_then(|id| nodes.get(&id)), |node| {
        node.parent_id.and_then(|id| nodes.get(&id))
    })
    .take(nodes.len());
    for node in chain {
        let Some(&frame) = frame_of_py.get(&node.frame_id) else {
            continue;
        };
        current.push(frame);
        if frames.get(&node.frame_id).is_some_and(|f| f.entry) {
            groups.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

fn names(stacks: &CallStacks, frame: u64) -> &[(String, String)] {
    stacks
        .frames
        .get(&frame)
        .map_or(&[], |r| r.names.as_slice())
}

/// The interpreter's bytecode loop: where Python frames run.
fn is_eval_loop(stacks: &CallStacks, frame: u64) -> bool {
    names(stacks, frame).iter().any(|(function, _)| {
        matches!(
            function.as_str(),
            "_PyEval_EvalFrameDefault" | "PyEval_EvalFrameEx" | "_PyEval_EvalFrame"
        )
    })
}

/// Code of the interpreter itself (`python3.11`, `libpython3.12.so.1.0`).
fn is_interpreter(stacks: &CallStacks, frame: u64) -> bool {
    names(stacks, frame).iter().any(|(_, module)| {
        module.starts_with("libpython")
            || (module.starts_with("python")
                && module[6..].chars().all(|c| c.is_ascii_digit() || c == '.'))
    })
}

/// A CPython 3.12+ perf trampoline (`py::function:file`).
fn is_trampoline(stacks: &CallStacks, frame: u64) -> bool {
    names(stacks, frame)
        .iter()
        .any(|(function, _)| function.starts_with("py::"))
}

fn is_unresolved(stacks: &CallStacks, frame: u64) -> bool {
    names(stacks, frame)
        .first()
        .is_none_or(|(function, _)| function.starts_with("0x"))
}

/// One merged stack, innermost first: see the module's documentation.
fn interleave(stacks: &CallStacks, native: &[u64], python: &[Vec<u64>]) -> Vec<u64> {
    let mut out = Vec::with_capacity(native.len() + python.iter().map(Vec::len).sum::<usize>());
    let mut groups = python.iter();
    let reaches_eval = native.iter().any(|&f| is_eval_loop(stacks, f));
    if reaches_eval {
        let mut seen_eval = false;
        for &frame in native {
            if is_eval_loop(stacks, frame) {
                seen_eval = true;
                match groups.next() {
                    Some(group) => out.extend(group),
                    // More eval calls than Python groups: the snapshot is
                    // from a moment with fewer frames; stop here.
                    None => break,
                }
            } else if !seen_eval || !is_interpreter(stacks, frame) {
                // Before the first eval call everything is what the code
                // was doing; after it only extensions' frames matter, the
                // interpreter's call machinery does not.
                out.push(frame);
            }
        }
    } else {
        let mut in_interpreter = false;
        for &frame in native {
            let interpreter = is_interpreter(stacks, frame);
            if is_unresolved(stacks, frame) || (in_interpreter && !interpreter) {
                // Past where the chain can be trusted.
                break;
            }
            in_interpreter |= interpreter;
            out.push(frame);
        }
    }
    for group in groups {
        out.extend(group);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call-stack tree with one chain per named stack, frames named
    /// `function@module`, innermost first.
    struct Fixture {
        stacks: CallStacks,
    }

    impl Fixture {
        fn new(chains: &[&[&str]]) -> Fixture {
            let mut stacks = CallStacks {
                nodes: HashMap::new(),
                frames: HashMap::new(),
            };
            let mut frame_ids: HashMap<String, u64> = HashMap::new();
            for (i, chain) in chains.iter().enumerate() {
                // Each chain gets its own nodes: stack id of the leaf = 100 * (i + 1).
                let base = 100 * (i as u64 + 1);
                for (depth, name) in chain.iter().enumerate() {
                    let next = frame_ids.len() as u64;
                    let frame = *frame_ids.entry(name.to_string()).or_insert(next);
                    let (function, module) = name.split_once('@').unwrap();
                    stacks.frames.insert(
                        frame,
                        Resolved {
                            names: vec![(function.to_owned(), module.to_owned())],
                            address: 0x1000 + frame,
                        },
                    );
                    let id = base + depth as u64;
                    let parent = (depth + 1 < chain.len()).then_some(id + 1);
                    stacks.nodes.insert(
                        id,
                        StackNode {
                            stack_id: id,
                            parent_id: parent,
                            frame_id: frame,
                        },
                    );
                }
            }
            Fixture { stacks }
        }
    }

    /// Python frames (innermost first) as `py_stacks`/`py_frames`, with
    /// their entry flags; the innermost node's id is 1000 + len.
    fn python(frames: &[(&str, bool)]) -> (HashMap<u64, PyStackNode>, HashMap<u64, PyFrame>) {
        let mut nodes = HashMap::new();
        let mut table = HashMap::new();
        for (i, (name, entry)) in frames.iter().enumerate() {
            table.insert(
                i as u64,
                PyFrame {
                    frame_id: i as u64,
                    function: name.to_string(),
                    file: "/src/train.py".into(),
                    line: 1,
                    entry: *entry,
                },
            );
            let id = 1000 + (frames.len() - i) as u64;
            nodes.insert(
                id,
                PyStackNode {
                    stack_id: id,
                    parent_id: (i + 1 < frames.len()).then_some(id - 1),
                    frame_id: i as u64,
                },
            );
        }
        (nodes, table)
    }

    /// `merge_with` over samples in memory, rewritten as read after it.
    fn merge_rows(
        snapshots: Vec<PySample>,
        nodes: &HashMap<u64, PyStackNode>,
        frames: &HashMap<u64, PyFrame>,
        samples: &mut Vec<Sample>,
        also: &mut [(Sample, u64)],
        stacks: &mut CallStacks,
    ) -> PythonSummary {
        let mut rows = Samples::from_rows(samples.clone());
        let (summary, merged, tally) =
            merge_with(snapshots, nodes, frames, &rows, also, stacks).unwrap();
        rows.set_merge(merged, tally);
        samples.clear();
        rows.for_each(|s| samples.push(*s)).unwrap();
        // The merge's tally is that of the samples as they are read now.
        let mut again = Tally::default();
        samples.iter().for_each(|s| again.add(s));
        assert_eq!(rows.tally().per_stack(), again.per_stack());
        assert_eq!(rows.tally().per_thread(), again.per_thread());
        summary
    }

    fn snapshot(time_ns: u64, stack_id: Option<u64>) -> PySample {
        PySample {
            time_ns,
            read_ns: 0,
            pid: 1,
            tid: 1,
            stack_id,
            owns_gil: true,
            active: true,
        }
    }

    fn merged_names(f: &Fixture, stack: Option<u64>) -> Vec<String> {
        f.stacks
            .names(stack)
            .map(|(function, module)| format!("{function}@{module}"))
            .collect()
    }

    #[test]
    fn python_frames_replace_the_eval_loop_and_split_at_entries() {
        // sgemm called from numpy's C code called from Python `step`,
        // itself called (via the interpreter's call machinery) from
        // Python `main`; `main` and `<module>` run in one eval call
        // (3.11+: one entry frame ends the group).
        let f = Fixture::new(&[&[
            "sgemm@libopenblas.so",
            "matmul@_multiarray_umath.so",
            "_PyEval_EvalFrameDefault@libpython3.11.so",
            "_PyObject_Call@libpython3.11.so",
            "array_call@_multiarray_umath.so",
            "_PyEval_EvalFrameDefault@libpython3.11.so",
            "PyEval_EvalCode@libpython3.11.so",
            "main@python3.11",
        ]]);
        let (nodes, frames) = python(&[("step", true), ("main", false), ("<module>", true)]);
        let mut f = f;
        let mut samples = vec![crate::test_sample(1_000_000, 100)];
        let summary = merge_rows(
            vec![snapshot(1_004_000, Some(1003)), snapshot(11_000_000, None)],
            &nodes,
            &frames,
            &mut samples,
            &mut [],
            &mut f.stacks,
        );
        assert_eq!(summary.merged, 1);
        assert_eq!(
            merged_names(&f, samples[0].stack_id()),
            [
                "sgemm@libopenblas.so",
                "matmul@_multiarray_umath.so",
                "step@py:train.py",
                "array_call@_multiarray_umath.so",
                "main@py:train.py",
                "<module>@py:train.py",
            ]
        );
    }

    #[test]
    fn a_chain_cut_short_keeps_interpreter_leaves_then_python() {
        // No frame pointers in the interpreter: the chain runs into garbage.
        let mut f = Fixture::new(&[&[
            "pymalloc_alloc@python3.11",
            "_PyObject_Malloc@python3.11",
            "0x7f00@[unknown]",
            "looks_real@libc.so.6",
        ]]);
        let (nodes, frames) = python(&[("hot_a", true), ("<module>", true)]);
        let mut samples = vec![crate::test_sample(5_000_000, 100)];
        merge_rows(
            vec![snapshot(0, Some(1002)), snapshot(10_000_000, Some(1002))],
            &nodes,
            &frames,
            &mut samples,
            &mut [],
            &mut f.stacks,
        );
        assert_eq!(
            merged_names(&f, samples[0].stack_id()),
            [
                "pymalloc_alloc@python3.11",
                "_PyObject_Malloc@python3.11",
                "hot_a@py:train.py",
                "<module>@py:train.py",
            ]
        );
        // Interpreter code calling back out without an eval call between
        // is not trusted either.
        let mut f = Fixture::new(&[&[
            "memcpy@libc.so.6",
            "list_extend@python3.11",
            "junk@libfoo.so",
        ]]);
        let mut samples = vec![crate::test_sample(5_000_000, 100)];
        merge_rows(
            vec![snapshot(0, Some(1002)), snapshot(10_000_000, Some(1002))],
            &nodes,
            &frames,
            &mut samples,
            &mut [],
            &mut f.stacks,
        );
        assert_eq!(
            merged_names(&f, samples[0].stack_id()),
            [
                "memcpy@libc.so.6",
                "list_extend@python3.11",
                "hot_a@py:train.py",
                "<module>@py:train.py",
            ]
        );
    }

    #[test]
    fn samples_far_from_snapshots_or_of_other_threads_are_untouched() {
        let mut f = Fixture::new(&[&["work@app"], &["py::hot_a:/t.py@[jit]", "x@python3.12"]]);
        let (nodes, frames) = python(&[("hot_a", true)]);
        let mut other_thread = crate::test_sample(1_000_000, 100);
        other_thread.tid = 2;
        let mut samples = vec![
            // Snapshots every 10 ms: 50 ms away is too far.
            crate::test_sample(70_000_000, 100),
            other_thread,
            // Already named by the 3.12 trampoline.
            crate::test_sample(10_000_000, 200),
            crate::test_sample(0, 100),
        ];
        let summary = merge_rows(
            vec![
                snapshot(0, Some(1001)),
                snapshot(10_000_000, Some(1001)),
                snapshot(20_000_000, Some(1001)),
            ],
            &nodes,
            &frames,
            &mut samples,
            &mut [],
            &mut f.stacks,
        );
        assert_eq!(summary.window_ns, 10_000_000);
        assert_eq!(summary.samples_of_python_threads, 3);
        assert_eq!(summary.without_snapshot, 1);
        assert_eq!(summary.trampolined, 1);
        assert_eq!(summary.merged, 1);
        assert_eq!(samples[0].stack_id(), Some(100));
        assert_eq!(samples[1].stack_id(), Some(100));
        assert_eq!(samples[2].stack_id(), Some(200));
        assert_eq!(
            merged_names(&f, samples[3].stack_id()),
            ["work@app", "hot_a@py:train.py"]
        );
    }

    #[test]
    fn python_modules_are_short() {
        assert_eq!(
            python_module("/v/lib/python3.11/site-packages/torch/nn/modules/module.py"),
            "py:torch/nn/modules/module.py"
        );
        assert_eq!(python_module("/home/me/train.py"), "py:train.py");
        assert_eq!(
            python_module("<frozen importlib._bootstrap>"),
            "py:<frozen importlib._bootstrap>"
        );
    }
}
