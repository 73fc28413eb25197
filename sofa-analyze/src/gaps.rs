//! Spans in which a collector recorded nothing: its events came faster
//! than its rate (`--syscall-rate`, `--switch-rate`), so the recorder
//! turned it off for a while (the `untraced` table). What such a
//! collector says is then a share of the time it was on.

use sofa_trace::tables::Untraced;
use sofa_trace::{Archive, CollectorName, TraceError};

/// The spans one collector was off, in time order, not overlapping.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Gaps(Vec<(u64, u64)>);

impl From<Vec<(u64, u64)>> for Gaps {
    /// Sorts the spans and merges those that overlap.
    fn from(mut spans: Vec<(u64, u64)>) -> Gaps {
        spans.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(spans.len());
        for (start, end) in spans {
            let end = end.max(start);
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        Gaps(merged)
    }
}

impl Gaps {
    /// The spans `collector` was off (its rows of `untraced` without a
    /// call of their own: left-out calls are no gap).
    pub fn read(archive: &Archive, collector: CollectorName) -> Result<Gaps, TraceError> {
        Ok(Gaps::from(
            archive
                .read_table::<Untraced>()?
                .into_iter()
                .filter(|s| s.collector == collector.as_str() && s.call.is_none())
                .map(|s| (s.start_ns, s.end_ns))
                .collect::<Vec<_>>(),
        ))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn spans(&self) -> &[(u64, u64)] {
        &self.0
    }

    /// The first gap that ends after `t`, by index.
    fn index_after(&self, t: u64) -> usize {
        self.0.partition_point(|&(_, end)| end <= t)
    }

    /// The parts of `from..to` outside every gap, in order.
    pub fn pieces(&self, from: u64, to: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut at = from;
        let mut gaps = self.0[self.index_after(from)..].iter();
        let mut done = from >= to;
        std::iter::from_fn(move || {
            while !done {
                match gaps.next() {
                    Some(&(start, end)) if start < to => {
                        let piece = (at, start.max(at));
                        at = at.max(end);
                        if piece.1 > piece.0 {
                            return Some(piece);
                        }
                    }
                    _ => {
                        done = true;
                        if to > at {
                            return Some((at, to));
                        }
                    }
                }
            }
            None
        })
    }

    /// The time of `from..to` outside every gap, ns.
    pub fn covered(&self, from: u64, to: u64) -> u64 {
        if self.0.is_empty() {
            return to.saturating_sub(from);
        }
        self.pieces(from, to).map(|(a, b)| b - a).sum()
    }

    /// When the first gap that begins inside `from..to` begins.
    pub fn first_start_in(&self, from: u64, to: u64) -> Option<u64> {
        let i = self.0.partition_point(|&(start, _)| start <= from);
        self.0.get(i).map(|g| g.0).filter(|&s| s < to)
    }

    /// When the last gap that ends inside `from..to` ends.
    pub fn last_end_in(&self, from: u64, to: u64) -> Option<u64> {
        let i = self.0.partition_point(|&(_, end)| end < to);
        i.checked_sub(1).map(|j| self.0[j].1).filter(|&e| e > from)
    }

    /// From when on nothing was left untraced, if that is most of the
    /// recording (`start_ns`..`end_ns`): 0 with no gap, the end of the last
    /// gap when at least half of the recording comes after it (a burst at
    /// start-up, such as an interpreter's imports), else `None`.
    pub fn complete_since(&self, start_ns: u64, end_ns: u64) -> Option<u64> {
        let Some(&(_, last)) = self.0.last() else {
            return Some(0);
        };
        (end_ns > last && 2 * (end_ns - last) >= end_ns.saturating_sub(start_ns)).then_some(last)
    }

    /// The share of `duration_ns` traced (1 when nothing was off).
    pub fn traced_share(&self, duration_ns: u64) -> f64 {
        let off: u64 = self.0.iter().map(|(a, b)| b - a).sum();
        if duration_ns == 0 {
            return 1.0;
        }
        (1.0 - off as f64 / duration_ns as f64).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_what_the_gaps_leave() {
        let gaps = Gaps::from(vec![(500, 600), (100, 200), (150, 250)]);
        assert_eq!(gaps.spans(), &[(100, 250), (500, 600)], "sorted, merged");
        let pieces: Vec<_> = gaps.pieces(0, 1000).collect();
        assert_eq!(pieces, vec![(0, 100), (250, 500), (600, 1000)]);
        assert_eq!(gaps.covered(0, 1000), 750);
        // Inside a gap: nothing; across its end: the rest.
        assert_eq!(gaps.pieces(120, 240).count(), 0);
        assert_eq!(gaps.pieces(120, 300).collect::<Vec<_>>(), vec![(250, 300)]);
        assert_eq!(gaps.pieces(260, 400).collect::<Vec<_>>(), vec![(260, 400)]);
        assert_eq!(gaps.covered(300, 300), 0);
        assert_eq!(Gaps::default().covered(10, 30), 20);
    }

    #[test]
    fn the_gaps_around_a_span() {
        let gaps = Gaps::from(vec![(100, 200), (500, 600)]);
        assert_eq!(gaps.first_start_in(50, 700), Some(100));
        assert_eq!(gaps.first_start_in(300, 700), Some(500));
        assert_eq!(gaps.first_start_in(300, 450), None);
        assert_eq!(gaps.last_end_in(50, 700), Some(600));
        assert_eq!(gaps.last_end_in(50, 550), Some(200));
        assert_eq!(gaps.last_end_in(250, 550), None);
    }

    #[test]
    fn complete_after_a_burst_at_the_start() {
        let gaps = Gaps::from(vec![(100, 400)]);
        assert_eq!(gaps.complete_since(0, 1000), Some(400));
        assert_eq!(Gaps::from(vec![(100, 700)]).complete_since(0, 1000), None);
        assert_eq!(Gaps::default().complete_since(0, 1000), Some(0));
        assert!((gaps.traced_share(1000) - 0.7).abs() < 1e-9);
    }
}
