//! Top functions by self and total samples.

use crate::AnalyzeError;
use crate::Samples;
use crate::fasthash::StackMap;
use serde::Serialize;
use sofa_trace::Archive;
use sofa_trace::FrameKind;
use sofa_trace::tables::{Binary, Frame, Mapping, StackNode, Symbol};
use std::collections::{HashMap, HashSet};

/// One function's share of the samples. Shares are fractions of all samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionRow {
    pub name: String,
    pub module: String,
    /// Samples whose innermost frame is in this function.
    pub self_samples: u64,
    pub self_share: f64,
    /// Samples with this function anywhere on the stack (counted once per sample).
    pub total_samples: u64,
    pub total_share: f64,
}

/// What a frame resolves to: innermost inlined function first.
pub(crate) struct Resolved {
    /// (function, module), innermost first.
    pub names: Vec<(String, String)>,
    pub address: u64,
}

fn module_name(path: &str) -> String {
    if path.starts_with('[') {
        return path.to_owned();
    }
    path.rsplit('/').next().unwrap_or(path).to_owned()
}

/// A JIT kernel's name without the instance counter its runtime appends
/// (oneDNN: `jit_avx512_common_conv_fwd_kernel_f32.3`, `….11`): instances
/// of one kernel are one function. Other names are kept as they are.
fn jit_name(function: String, module: &str) -> String {
    if module != "[jit]" {
        return function;
    }
    match function.rsplit_once('.') {
        Some((base, n))
            if !base.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) =>
        {
            base.to_owned()
        }
        _ => function,
    }
}

fn resolve_frames(archive: &Archive) -> Result<HashMap<u64, Resolved>, AnalyzeError> {
    let mappings: HashMap<u64, String> = archive
        .read_table::<Mapping>()?
        .into_iter()
        .map(|m| (m.mapping_id, module_name(&m.path)))
        .collect();
    let mut symbols: HashMap<u64, Vec<Symbol>> = HashMap::new();
    for s in archive.read_table::<Symbol>()? {
        symbols.entry(s.frame_id).or_default().push(s);
    }
    let mut resolved = HashMap::new();
    for frame in archive.read_table::<Frame>()? {
        let names = match symbols.remove(&frame.frame_id) {
            Some(mut syms) => {
                syms.sort_by_key(|s| std::cmp::Reverse(s.inline_depth));
                syms.into_iter()
                    .map(|s| (jit_name(s.function, &s.module), s.module))
                    .collect()
            }
            None => {
                let module = match (FrameKind::parse(&frame.kind), frame.mapping_id) {
                    (Some(FrameKind::Kernel), _) => "[kernel]".to_owned(),
                    (_, Some(id)) => mappings
                        .get(&id)
                        .cloned()
                        .unwrap_or_else(|| "[unknown]".to_owned()),
                    _ => "[unknown]".to_owned(),
                };
                vec![(format!("{:#x}", frame.address), module)]
            }
        };
        resolved.insert(
            frame.frame_id,
            Resolved {
                names,
                address: frame.address,
            },
        );
    }
    Ok(resolved)
}

/// The function table plus, for later per-sample work (steps, swarms), the
/// self function of every sampled stack.
pub struct Functions {
    pub rows: Vec<FunctionRow>,
    /// Index into `rows` of the self function of each stack (`None`: no stack).
    pub self_of_stack: StackMap<usize>,
    /// Index into `rows` of the innermost user-space function of each stack
    /// (`[0]`), of its caller (`[1]`), ... (`CALLER_DEPTHS` callers; the
    /// outermost function when the stack is shorter; kernel frames only for
    /// stacks with no user frame). Recursion counts once. A sample taken in
    /// the kernel — a system call, an interrupt, the scheduler — is labelled
    /// by the user code it served, so timer ticks and time slices do not
    /// read as a loop.
    pub user_chain_of_stack: Vec<StackMap<usize>>,
    /// Index into `rows` of the innermost Python function of each stack
    /// that has Python frames.
    pub python_of_stack: StackMap<usize>,
}

/// Levels of callers kept per stack (for step detection).
pub const CALLER_DEPTHS: usize = 3;

/// The archive's call-stack tree and what each frame resolves to, read once
/// for the function table and the report's flamegraphs.
pub(crate) struct CallStacks {
    pub nodes: HashMap<u64, StackNode>,
    pub frames: HashMap<u64, Resolved>,
}

impl CallStacks {
    /// The names of a stack's frames, innermost first (inlined functions
    /// before the function they were inlined into). Frames without a
    /// symbol row give none. Bounded: a corrupt archive with a cycle in its
    /// stack tree must not hang analysis.
    pub(crate) fn names(&self, stack: Option<u64>) -> impl Iterator<Item = &(String, String)> {
        self.frame_ids(stack)
            .filter_map(|frame| self.frames.get(&frame))
            .flat_map(|frame| &frame.names)
    }

    /// The frame ids of a stack, innermost first (bounded, as `names`).
    pub(crate) fn frame_ids(&self, stack: Option<u64>) -> impl Iterator<Item = u64> + '_ {
        std::iter::successors(stack.and_then(|id| self.nodes.get(&id)), |node| {
            node.parent_id.and_then(|id| self.nodes.get(&id))
        })
        .take(self.nodes.len())
        .map(|node| node.frame_id)
    }

    pub(crate) fn read(archive: &Archive) -> Result<CallStacks, AnalyzeError> {
        Ok(CallStacks {
            nodes: archive
                .read_table::<StackNode>()?
                .into_iter()
                .map(|n| (n.stack_id, n))
                .collect(),
            frames: resolve_frames(archive)?,
        })
    }
}

/// Call stacks from (function, module) lists, innermost first, one frame
/// per node: list i is stack i + 1 (for the unit tests).
/// Names longer than this are shortened in captions.
const SHORT_NAME: usize = 60;

/// A long C++ name for a caption: template arguments and parameter lists
/// collapsed to `<…>` and `(…)` (`void at::internal::invoke_parallel<…>(…)
/// [clone ._omp_fn.0]` instead of 1,500 characters); `(anonymous
/// namespace)` is kept. Short names, and names whose brackets do not pair
/// (`operator<`), are returned whole.
pub(crate) fn short_name(name: &str) -> String {
    if name.chars().count() <= SHORT_NAME {
        return name.to_owned();
    }
    const ANON: &str = "(anonymous namespace)";
    let mut out = String::with_capacity(SHORT_NAME);
    let mut depth: Vec<char> = Vec::new();
    let mut rest = name;
    while let Some(c) = rest.chars().next() {
        if depth.is_empty() && rest.starts_with(ANON) {
            out.push_str(ANON);
            rest = &rest[ANON.len()..];
            continue;
        }
        rest = &rest[c.len_utf8()..];
        match c {
            '<' | '(' => {
                if depth.is_empty() {
                    out.push(c);
                    out.push('…');
                }
                depth.push(if c == '<' { '>' } else { ')' });
            }
            '>' | ')' => {
                if depth.pop() != Some(c) {
                    return name.to_owned();
                }
                if depth.is_empty() {
                    out.push(c);
                }
            }
            _ if depth.is_empty() => out.push(c),
            _ => {}
        }
    }
    if depth.is_empty() {
        out
    } else {
        name.to_owned()
    }
}

#[cfg(test)]
pub(crate) fn test_stacks(list: &[&[(&str, &str)]]) -> CallStacks {
    let mut nodes = HashMap::new();
    let mut frames = HashMap::new();
    let mut next = 1000u64;
    for (i, list) in list.iter().enumerate() {
        let mut parent = None;
        for (k, (function, module)) in list.iter().rev().enumerate() {
            next += 1;
            frames.insert(
                next,
                Resolved {
                    names: vec![(function.to_string(), module.to_string())],
                    address: 0,
                },
            );
            // The innermost node is the stack's id; the others are apart.
            let id = if k + 1 == list.len() {
                i as u64 + 1
            } else {
                next + 500_000
            };
            nodes.insert(
                id,
                StackNode {
                    stack_id: id,
                    parent_id: parent,
                    frame_id: next,
                },
            );
            parent = Some(id);
        }
    }
    CallStacks { nodes, frames }
}

/// Self and total samples per function, most self samples first. Work is per
/// distinct stack, not per sample: samples are counted by stack first.
pub fn top_functions(archive: &Archive, samples: &Samples) -> Result<Functions, AnalyzeError> {
    Ok(functions_of(&CallStacks::read(archive)?, samples))
}

/// `top_functions` over stacks already read.
pub(crate) fn functions_of(stacks: &CallStacks, samples: &Samples) -> Functions {
    let per_stack = samples.tally().per_stack();
    let total = samples.len();
    let unknown = ("[unknown]".to_owned(), "[unknown]".to_owned());

    let mut counts: HashMap<(String, String), (u64, u64)> = HashMap::new();
    let mut self_names: HashMap<Option<u64>, (String, String)> = HashMap::new();
    // Self function first, then its callers, up to CALLER_DEPTHS of them.
    let mut chains: HashMap<Option<u64>, Vec<(String, String)>> = HashMap::new();
    let mut python_names: HashMap<Option<u64>, (String, String)> = HashMap::new();
    let mut stack_ids: Vec<_> = per_stack.into_iter().collect();
    stack_ids.sort();
    for (stack_id, n) in stack_ids {
        let mut seen: HashSet<&(String, String)> = HashSet::new();
        let mut self_name: Option<&(String, String)> = None;
        let mut chain: Vec<&(String, String)> = Vec::new();
        let mut user_chain: Vec<&(String, String)> = Vec::new();
        let mut python: Option<&(String, String)> = None;
        for name in stacks.names(stack_id) {
            self_name.get_or_insert(name);
            if python.is_none() && name.1.starts_with(crate::PY_MODULE_PREFIX) {
                python = Some(name);
            }
            seen.insert(name);
            if chain.len() <= CALLER_DEPTHS && chain.last() != Some(&name) {
                chain.push(name);
            }
            if name.1 != "[kernel]"
                && user_chain.len() <= CALLER_DEPTHS
                && user_chain.last() != Some(&name)
            {
                user_chain.push(name);
            }
        }
        let self_name = self_name.unwrap_or(&unknown);
        self_names.insert(stack_id, self_name.clone());
        if let Some(python) = python {
            python_names.insert(stack_id, python.clone());
        }
        let chain = if user_chain.is_empty() {
            chain
        } else {
            user_chain
        };
        chains.insert(stack_id, chain.into_iter().cloned().collect());
        seen.insert(self_name);
        counts.entry(self_name.clone()).or_default().0 += n;
        for name in seen {
            counts.entry(name.clone()).or_default().1 += n;
        }
    }
    let share = |n: u64| {
        if total == 0 {
            0.0
        } else {
            n as f64 / total as f64
        }
    };
    let mut rows: Vec<FunctionRow> = counts
        .into_iter()
        .map(
            |((name, module), (self_samples, total_samples))| FunctionRow {
                name,
                module,
                self_samples,
                self_share: share(self_samples),
                total_samples,
                total_share: share(total_samples),
            },
        )
        .collect();
    rows.sort_by(|a, b| {
        b.self_samples
            .cmp(&a.self_samples)
            .then(b.total_samples.cmp(&a.total_samples))
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| a.module.cmp(&b.module))
    });
    let position: HashMap<(&str, &str), usize> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| ((r.name.as_str(), r.module.as_str()), i))
        .collect();
    let self_of_stack: StackMap<usize> = self_names
        .into_iter()
        .map(|(stack, (name, module))| (stack, position[&(name.as_str(), module.as_str())]))
        .collect();
    let user_chain_of_stack = (0..=CALLER_DEPTHS)
        .map(|depth| {
            chains
                .iter()
                .map(|(stack, chain)| {
                    let label = chain
                        .get(depth)
                        .or(chain.last())
                        .map_or(self_of_stack[stack], |(name, module)| {
                            position[&(name.as_str(), module.as_str())]
                        });
                    (*stack, label)
                })
                .collect()
        })
        .collect();
    let python_of_stack = python_names
        .into_iter()
        .map(|(stack, (name, module))| (stack, position[&(name.as_str(), module.as_str())]))
        .collect();
    Functions {
        rows,
        self_of_stack,
        user_chain_of_stack,
        python_of_stack,
    }
}

/// Self samples per module (binary, library, `[kernel]`, `[jit]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModuleRow {
    pub module: String,
    pub self_samples: u64,
    pub self_share: f64,
    /// Where its function names came from (`binaries.symbols`: `symtab`,
    /// `dynsym`, `debuglink`, ...); null for kernel, JIT and Python code
    /// and in archives before 1.4.
    pub symbols: Option<String>,
}

/// Sums the function table's self samples per module, most first.
pub fn modules(functions: &[FunctionRow], binaries: &[Binary]) -> Vec<ModuleRow> {
    // Modules are named by file name; of two binaries with one name, the
    // first listed.
    let mut symbols: HashMap<&str, &str> = HashMap::new();
    for b in binaries {
        let module = b.path.rsplit('/').next().unwrap_or(&b.path);
        symbols.entry(module).or_insert(&b.symbols);
    }
    let mut per: HashMap<&str, (u64, f64)> = HashMap::new();
    for f in functions {
        let slot = per.entry(f.module.as_str()).or_default();
        slot.0 += f.self_samples;
        slot.1 += f.self_share;
    }
    let mut rows: Vec<ModuleRow> = per
        .into_iter()
        .filter(|(_, (n, _))| *n > 0)
        .map(|(module, (self_samples, self_share))| ModuleRow {
            module: module.to_owned(),
            self_samples,
            self_share,
            symbols: symbols.get(module).map(|s| (*s).to_owned()),
        })
        .collect();
    rows.sort_by(|a, b| {
        b.self_samples
            .cmp(&a.self_samples)
            .then_with(|| a.module.cmp(&b.module))
    });
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_cpp_names_are_shortened_for_captions() {
        let long = "void at::internal::invoke_parallel<void at::parallel_for<void at::native::\
                    (anonymous namespace)::cpu_max_pool<float, false>(at::Tensor const&)::\
                    {lambda(long, long)#1}>(long, long, long)>(long, long, long) [clone ._omp_fn.0]";
        assert_eq!(
            short_name(long),
            "void at::internal::invoke_parallel<…>(…) [clone ._omp_fn.0]"
        );
        let anon = "at::native::(anonymous namespace)::cpu_max_pool_kernel_impl_with_a_long_name<float>(at::Tensor&)";
        assert_eq!(
            short_name(anon),
            "at::native::(anonymous namespace)::cpu_max_pool_kernel_impl_with_a_long_name<…>(…)"
        );
        assert_eq!(short_name("Linear.forward"), "Linear.forward");
        let unpaired = format!("bool operator<({})", "x".repeat(70));
        assert_eq!(short_name(&unpaired), unpaired);
    }

    #[test]
    fn jit_instance_counters_are_one_function() {
        let name = |f: &str, m: &str| jit_name(f.to_owned(), m);
        assert_eq!(
            name("jit_avx512_common_conv_fwd_kernel_vmm_t.3", "[jit]"),
            "jit_avx512_common_conv_fwd_kernel_vmm_t"
        );
        assert_eq!(
            name("jit_single_blk_kernel.11", "[jit]"),
            "jit_single_blk_kernel"
        );
        // Only a counter, only JIT code.
        assert_eq!(
            name("py::train:/x/train.py", "[jit]"),
            "py::train:/x/train.py"
        );
        assert_eq!(name("memcpy.5", "libc.so.6"), "memcpy.5");
        assert_eq!(name(".7", "[jit]"), ".7");
    }
}
