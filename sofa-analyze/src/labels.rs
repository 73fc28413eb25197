//! The samples as the later stages see them: each one's self function and
//! that function's swarm, beside the other event tables. One context for
//! the step breakdown, the swarms' overlaps and the report's views, so
//! "which swarm is this sample in" is answered in one place.

use crate::Samples;
use crate::fasthash::StackMap;
use crate::net::Packets;
use crate::syscalls::Calls;
use sofa_trace::tables::GpuCounter;

/// A row of the function table (`Analysis::functions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FunctionId(pub usize);

/// A swarm: its `Swarm::id`, the index into `Analysis::swarms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SwarmId(pub usize);

/// Samples, labelled, and what else was recorded beside them.
pub(crate) struct Labelled<'a> {
    pub samples: &'a Samples<'a>,
    /// Self function of each sampled stack (an index into the function table).
    self_of_stack: &'a StackMap<usize>,
    /// Swarm of each function of the table; `None`: in no swarm.
    swarm_of_function: &'a [Option<SwarmId>],
    /// Number of swarms.
    pub swarms: usize,
    pub syscalls: &'a Calls<'a>,
    /// Whether system calls were recorded (an empty table then means none made).
    pub syscalls_recorded: bool,
    pub gpu: &'a [GpuCounter],
    pub net: &'a Packets<'a>,
}

impl<'a> Labelled<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        samples: &'a Samples<'a>,
        self_of_stack: &'a StackMap<usize>,
        swarm_of_function: &'a [Option<SwarmId>],
        swarms: usize,
        syscalls: &'a Calls<'a>,
        syscalls_recorded: bool,
        gpu: &'a [GpuCounter],
        net: &'a Packets<'a>,
    ) -> Self {
        Labelled {
            samples,
            self_of_stack,
            swarm_of_function,
            swarms,
            syscalls,
            syscalls_recorded,
            gpu,
            net,
        }
    }

    /// The self function of a stack (`None`: an unsampled or empty stack).
    pub fn function_of(&self, stack: Option<u64>) -> Option<FunctionId> {
        self.self_of_stack.get(&stack).map(|&f| FunctionId(f))
    }

    /// The swarm of a function.
    pub fn swarm_of_function(&self, f: FunctionId) -> Option<SwarmId> {
        self.swarm_of_function
            .get(f.0)
            .copied()
            .flatten()
            .filter(|s| s.0 < self.swarms)
    }

    /// The swarm of a stack: its self function's.
    pub fn swarm_of(&self, stack: Option<u64>) -> Option<SwarmId> {
        self.swarm_of_function(self.function_of(stack)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stack_is_in_its_self_functions_swarm() {
        let self_of_stack: StackMap<usize> =
            [(Some(10), 0), (Some(11), 1), (Some(12), 2), (None, 3)]
                .into_iter()
                .collect();
        let swarm_of_function = [Some(SwarmId(1)), None, Some(SwarmId(5)), Some(SwarmId(0))];
        let packets = Packets::default();
        let calls = Calls::default();
        let samples = Samples::default();
        let l = Labelled::new(
            &samples,
            &self_of_stack,
            &swarm_of_function,
            2,
            &calls,
            false,
            &[],
            &packets,
        );
        assert_eq!(l.swarm_of(Some(10)), Some(SwarmId(1)));
        assert_eq!(l.swarm_of(Some(11)), None, "a function in no swarm");
        assert_eq!(l.swarm_of(Some(12)), None, "an id past the swarms");
        assert_eq!(l.swarm_of(Some(99)), None, "an unknown stack");
        assert_eq!(l.swarm_of(None), Some(SwarmId(0)));
        assert_eq!(l.function_of(Some(12)), Some(FunctionId(2)));
    }
}
