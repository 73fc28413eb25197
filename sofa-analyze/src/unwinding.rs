//! How complete the recorded call stacks are: with `--call-graph dwarf` or
//! `auto`, how each sample's unwound user stack ended (`stack_ends`).

use crate::Samples;
use serde::Serialize;
use sofa_trace::StackEnd;
use sofa_trace::tables::StackEndRow;
use std::collections::{BTreeMap, HashMap};

/// How the user parts of the sampled stacks were taken and how they ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StackSummary {
    /// `fp` (the kernel's frame-pointer chains), `dwarf` or `auto`; `fp` for
    /// archives before 1.4.
    pub call_graph: String,
    /// Bytes of user stack copied per sample (`dwarf`, `auto`).
    pub stack_bytes: Option<u32>,
    /// Samples whose stack's end is recorded (`dwarf`, `auto`; 0 with `fp`).
    pub unwound: u64,
    /// Share of those that reached the thread's root (`root`, `root-late`).
    pub root_share: Option<f64>,
    /// Samples per way their stack ended (`root`, `stack-copy`, ...), most first.
    pub ends: Vec<(String, u64)>,
    /// Share of samples whose outer frames lie outside every known module
    /// (`[incomplete stack]` in flamegraphs), in any mode.
    pub incomplete_share: f64,
}

impl StackSummary {
    /// Samples that ended so.
    pub fn count(&self, end: StackEnd) -> u64 {
        self.ends
            .iter()
            .find(|(e, _)| *e == end)
            .map_or(0, |(_, n)| *n)
    }
}

/// Counts the ends of the samples' stacks (ids as recorded, before any
/// Python merge renumbers them).
pub fn summarize(
    call_graph: Option<&str>,
    stack_bytes: Option<u32>,
    samples: &Samples,
    ends: &[StackEndRow],
) -> StackSummary {
    let end_of: HashMap<u64, &str> = ends.iter().map(|e| (e.stack_id, e.end.as_str())).collect();
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for (stack, n) in samples.tally().per_stack() {
        if let Some(end) = stack.and_then(|id| end_of.get(&id)) {
            *counts.entry(end).or_default() += n;
        }
    }
    let unwound: u64 = counts.values().sum();
    let mut ends: Vec<(String, u64)> = counts.into_iter().map(|(e, n)| (e.to_owned(), n)).collect();
    ends.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut summary = StackSummary {
        call_graph: call_graph.unwrap_or("fp").to_owned(),
        stack_bytes,
        unwound,
        root_share: None,
        ends,
        incomplete_share: 0.0,
    };
    if unwound > 0 {
        let complete: u64 = summary
            .ends
            .iter()
            .filter(|(end, _)| StackEnd::parse(end).is_some_and(StackEnd::reached_root))
            .map(|(_, n)| n)
            .sum();
        summary.root_share = Some(complete as f64 / unwound as f64);
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Sample;

    fn sample(stack_id: Option<u64>) -> Sample {
        Sample::new(0, stack_id, 1, 1)
    }

    #[test]
    fn ends_are_counted_per_sample() {
        let ends = vec![
            StackEndRow {
                stack_id: 1,
                end: "root".into(),
            },
            StackEndRow {
                stack_id: 2,
                end: "stack-copy".into(),
            },
        ];
        let samples = Samples::from_rows(vec![
            sample(Some(1)),
            sample(Some(1)),
            sample(Some(1)),
            sample(Some(2)),
            sample(Some(3)),
            sample(None),
        ]);
        let s = summarize(Some("dwarf"), Some(16384), &samples, &ends);
        assert_eq!(s.unwound, 4);
        assert_eq!(s.root_share, Some(0.75));
        assert_eq!(s.ends[0], ("root".to_owned(), 3));
        assert_eq!(s.count(StackEnd::StackCopy), 1);
        let fp = summarize(None, None, &samples, &[]);
        assert_eq!(fp.call_graph, "fp");
        assert_eq!(fp.root_share, None);
    }
}
