//! Tracing in windows, for collectors whose events can come faster than
//! recording each costs nothing: every [`WINDOW_NS`] the events each CPU
//! read are charged to its [`Budget`]; a CPU that overspent turns the
//! collector's counters off until its budget is back to zero (up to
//! [`MAX_OFF_NS`]), so a sustained storm is traced at the limit and a
//! short burst whole. The system-call and the off-CPU collectors use it.

use super::host::monotonic_ns;
use perf_event_open::count::Counter;
use sofa_trace::CollectorName;
use sofa_trace::tables::Untraced;

/// How long tracing stays on between decisions: 20 ms.
pub const WINDOW_NS: u64 = 20_000_000;
/// The longest span off, so a rate that drops is seen within two seconds.
pub const MAX_OFF_NS: u64 = 2_000_000_000;
/// A CPU may save up this many seconds' worth of the limit: a burst of up
/// to `limit` events is traced whole (PyTorch's imports: ~45 000 system
/// calls in 2-3 s; a quarter of a second's worth had `newfstatat` left
/// out there).
const BURST_S: f64 = 1.0;
/// A window whose busiest CPU ran at this many times the limit or more is
/// a storm, not a burst: it spends no more of what was saved (the span
/// off that follows lasts until its events are paid at the limit).
/// PyTorch's imports stay under it (~45 000 system calls in 2-3 s); a loop
/// of small reads (1.3 M a second) or a ping-pong is far above.
const STORM: f64 = 10.0;

/// The events each CPU may still have traced: `limit` a second, at most
/// [`BURST_S`] seconds' worth saved up (a token bucket per CPU).
pub struct Budget {
    limit: f64,
    tokens: Vec<f64>,
}

impl Budget {
    pub fn new(limit: u64) -> Budget {
        Budget {
            limit: limit as f64,
            tokens: Vec::new(),
        }
    }

    /// A window of `elapsed_ns` in which CPU i saw `events[i]` events: how
    /// long tracing must now stay off, if some CPU spent more than it had:
    /// until its budget is back at zero, and where the window was a
    /// [`STORM`], until its events are paid at the limit (what was saved
    /// is forfeit).
    pub fn spend(&mut self, elapsed_ns: u64, events: &[u64]) -> Option<u64> {
        let full = self.limit * BURST_S;
        self.tokens.resize(events.len(), full);
        self.refill(elapsed_ns);
        let window_s = elapsed_ns as f64 / 1e9;
        let mut owed_s = 0.0f64;
        for (tokens, &n) in self.tokens.iter_mut().zip(events) {
            *tokens -= n as f64;
            if *tokens >= 0.0 {
                continue;
            }
            let mut owed = -*tokens / self.limit;
            if n as f64 >= STORM * self.limit * window_s {
                owed = owed.max(n as f64 / self.limit - window_s);
                *tokens = -owed * self.limit;
            }
            owed_s = owed_s.max(owed);
        }
        (owed_s > 0.0).then(|| ((owed_s * 1e9) as u64).clamp(1, MAX_OFF_NS))
    }

    /// What was overspent is written off (the events that overspent it are
    /// no longer traced).
    pub fn forgive(&mut self) {
        for tokens in &mut self.tokens {
            *tokens = tokens.max(0.0);
        }
    }

    /// `elapsed_ns` passed: every CPU earns its share of the limit.
    pub fn refill(&mut self, elapsed_ns: u64) {
        let full = self.limit * BURST_S;
        let earned = self.limit * elapsed_ns as f64 / 1e9;
        for tokens in &mut self.tokens {
            *tokens = (*tokens + earned).min(full);
        }
    }
}

/// What a look at the budget found.
#[derive(Debug, PartialEq)]
pub enum Turn {
    /// The window (or the span off) goes on.
    Within,
    /// A new window began: the last one kept within the budget, or it is
    /// the first.
    NewWindow,
    /// Tracing is on again after a span off (`since`..`end`, turned off
    /// at `rate` events a second); a new window began.
    Resumed { since: u64, end: u64, rate: u64 },
    /// A CPU overspent in the window of `elapsed_ns`, the busiest at
    /// `rate` events a second: the caller leaves something out (then
    /// [`Windows::forgive`]) or turns tracing off for `off_ns`
    /// ([`Windows::go_off`]).
    Overspent {
        off_ns: u64,
        rate: u64,
        elapsed_ns: u64,
    },
}

/// The windows of one collector: when tracing is on or off, and what to
/// say about it.
pub struct Windows {
    /// Events a second per CPU; 0: always on.
    limit: u64,
    budget: Budget,
    /// When the current window began (0 before the first look).
    window_ns: u64,
    /// Events per CPU read by then.
    counts: Vec<u64>,
    /// Tracing is off: (since, until, the rate that turned it off).
    off: Option<(u64, u64, u64)>,
    first_ns: u64,
    last_ns: u64,
    off_ns: u64,
    spans: u64,
    peak: u64,
}

impl Windows {
    pub fn new(limit: u64) -> Windows {
        Windows {
            limit,
            budget: Budget::new(limit),
            window_ns: 0,
            counts: Vec::new(),
            off: None,
            first_ns: 0,
            last_ns: 0,
            off_ns: 0,
            spans: 0,
            peak: 0,
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Looks at `counts` (events read per CPU so far): turns tracing back
    /// on with `switch(true)` when a span off is over, and says whether a
    /// CPU overspent its budget in the window that just ended.
    pub fn look(&mut self, counts: &[u64], mut switch: impl FnMut(bool)) -> Turn {
        if self.limit == 0 {
            return Turn::Within;
        }
        let now = monotonic_ns();
        if self.first_ns == 0 {
            self.first_ns = now;
        }
        self.last_ns = now;
        if let Some((since, until, rate)) = self.off {
            if now < until {
                return Turn::Within;
            }
            let end = monotonic_ns();
            self.off_ns += end - since;
            self.budget.refill(end - since);
            switch(true);
            self.off = None;
            self.restart(counts, monotonic_ns());
            return Turn::Resumed { since, end, rate };
        }
        if self.window_ns == 0 {
            self.restart(counts, now);
            return Turn::NewWindow;
        }
        let elapsed_ns = now - self.window_ns;
        if elapsed_ns < WINDOW_NS {
            return Turn::Within;
        }
        let events: Vec<u64> = counts
            .iter()
            .zip(self.counts.iter().chain(std::iter::repeat(&0)))
            .map(|(now, then)| now - then)
            .collect();
        let Some(off_ns) = self.budget.spend(elapsed_ns, &events) else {
            self.restart(counts, now);
            return Turn::NewWindow;
        };
        let rate = per_second(events.iter().copied().max().unwrap_or(0), elapsed_ns);
        self.peak = self.peak.max(rate);
        Turn::Overspent {
            off_ns,
            rate,
            elapsed_ns,
        }
    }

    /// After [`Turn::Overspent`]: what overspent is no longer traced (the
    /// caller left it out), so the budget forgets it; a new window begins.
    pub fn forgive(&mut self, counts: &[u64], now: u64) {
        self.budget.forgive();
        self.restart(counts, now);
    }

    /// After [`Turn::Overspent`]: turns tracing off with `switch(false)`
    /// for `off_ns`; returns when.
    pub fn go_off(&mut self, off_ns: u64, rate: u64, mut switch: impl FnMut(bool)) -> u64 {
        switch(false);
        let since = monotonic_ns();
        self.spans += 1;
        self.off = Some((since, since + off_ns, rate));
        since
    }

    fn restart(&mut self, counts: &[u64], now: u64) {
        self.window_ns = now;
        self.counts.clear();
        self.counts.extend_from_slice(counts);
    }

    /// Traced time so far: since the first look, less the spans off.
    pub fn traced_ns(&self) -> u64 {
        self.last_ns.saturating_sub(self.first_ns + self.off_ns)
    }

    /// The recording has ended (the counters are off): a span still open
    /// ends now; returns it (since, end, rate).
    pub fn end(&mut self) -> Option<(u64, u64, u64)> {
        let (since, _, rate) = self.off.take()?;
        let end = monotonic_ns().max(since);
        self.off_ns += end - since;
        self.last_ns = end;
        Some((since, end, rate))
    }

    /// When tracing was ever off: "traced in windows, P % of the time (N
    /// untraced spans, up to R UNIT/s on a CPU)".
    pub fn said(&self, unit: &str) -> Option<String> {
        if self.spans == 0 {
            return None;
        }
        let span = self.last_ns.saturating_sub(self.first_ns).max(1);
        let traced = 100.0 * (1.0 - self.off_ns as f64 / span as f64);
        Some(format!(
            "traced in windows, {traced:.1} % of the time ({} untraced spans, up to {} {unit}/s \
             on a CPU)",
            self.spans, self.peak
        ))
    }
}

/// `events` in `ns` nanoseconds, a second.
pub fn per_second(events: u64, ns: u64) -> u64 {
    (events as u128 * 1_000_000_000 / ns.max(1) as u128) as u64
}

/// The `untraced` row of a span `collector` was off (`since`..`end`,
/// turned off at `rate` events a second on a CPU).
pub fn untraced(collector: CollectorName, since: u64, end: u64, rate: u64) -> Untraced {
    Untraced {
        collector: collector.as_str().to_owned(),
        start_ns: since,
        end_ns: end,
        rate_per_s: rate,
        call: None,
    }
}

/// Turns `counters` on or off (a counter the kernel refuses stays as it
/// is: the spans off are recorded as planned either way).
pub fn switch<'c>(counters: impl IntoIterator<Item = &'c Counter>, on: bool) {
    for counter in counters {
        let _ = if on {
            counter.enable()
        } else {
            counter.disable()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Windows of 20 ms with `rate` events a second on CPU 0: the share of
    /// `seconds` traced, and the events traced.
    fn traced(limit: u64, rate: u64, seconds: f64) -> (f64, f64) {
        let mut budget = Budget::new(limit);
        let (mut t, mut on, mut events) = (0u64, 0u64, 0.0);
        let end = (seconds * 1e9) as u64;
        while t < end {
            let n = rate * WINDOW_NS / 1_000_000_000;
            t += WINDOW_NS;
            on += WINDOW_NS;
            events += n as f64;
            if let Some(off) = budget.spend(WINDOW_NS, &[n, 0]) {
                assert!(off <= MAX_OFF_NS);
                t += off;
                budget.refill(off);
            }
        }
        (on as f64 / t as f64, events / t as f64 * 1e9)
    }

    #[test]
    fn a_storm_is_traced_at_the_limit_and_a_slow_stream_whole() {
        // 1.5 M events a second: ~20 000 a second traced, ~1.3 % of the time.
        let (share, rate) = traced(20_000, 1_500_000, 60.0);
        assert!((0.008..0.02).contains(&share), "{share}");
        assert!((15_000.0..25_000.0).contains(&rate), "{rate}");
        // Under the limit: never off.
        assert_eq!(traced(20_000, 19_000, 60.0).0, 1.0);
        // 100 000 a second: off 80 % of the time.
        let (share, _) = traced(20_000, 100_000, 60.0);
        assert!((0.15..0.25).contains(&share), "{share}");
    }

    #[test]
    fn a_burst_within_the_budget_is_traced_whole() {
        let mut budget = Budget::new(20_000);
        // An interpreter's imports: 15 000 calls in 100 ms, then quiet.
        for _ in 0..5 {
            assert_eq!(budget.spend(WINDOW_NS, &[3_000, 10]), None);
        }
        // Left: 20 000 - 5 x 3 000 + 4 x 400 earned (the first window's
        // 400 above the cap is not kept) = 6 600. A second burst at
        // 175 000 a second (under a storm's rate) overspends in its third
        // window by 2 700 calls: off for 135 ms, until the budget is back
        // at zero.
        for _ in 0..2 {
            assert_eq!(budget.spend(WINDOW_NS, &[3_500, 0]), None);
        }
        let off = budget.spend(WINDOW_NS, &[3_500, 0]).unwrap();
        let expected = 2_700.0 / 20_000.0 * 1e9;
        assert!((off as f64 - expected).abs() < 1e6, "{off} vs {expected}");
    }

    #[test]
    fn a_storm_spends_no_more_of_the_saved_budget() {
        let mut budget = Budget::new(20_000);
        // 30 000 calls in the first 20 ms (a loop of small reads): the
        // saved second would pay 20 000 of them, but a storm is off until
        // all are paid at the limit, 1.5 s from the window's start.
        let off = budget.spend(WINDOW_NS, &[30_000, 0]).unwrap();
        let expected = 1.5e9 - WINDOW_NS as f64;
        assert!((off as f64 - expected).abs() < 1e6, "{off} vs {expected}");
        // Nothing saved when it resumes: the next window is paid alike.
        budget.refill(off);
        let again = budget.spend(WINDOW_NS, &[30_000, 0]).unwrap();
        assert!(
            (again as f64 - expected).abs() < 1e6,
            "{again} vs {expected}"
        );
        // A window at 9 times the limit with the budget full stays a burst.
        let mut budget = Budget::new(20_000);
        assert_eq!(budget.spend(WINDOW_NS, &[3_600, 0]), None);
    }

    #[test]
    fn windows_go_off_when_overspent_and_back_on_after() {
        let mut w = Windows::new(1_000);
        let mut on = true;
        assert_eq!(w.look(&[0, 0], |s| on = s), Turn::NewWindow);
        std::thread::sleep(std::time::Duration::from_millis(25));
        // 5 000 events in ~25 ms on CPU 1, a storm: 5 s owed.
        let Turn::Overspent { off_ns, rate, .. } = w.look(&[0, 5_000], |s| on = s) else {
            panic!("overspent")
        };
        assert!(rate > 100_000, "{rate}");
        assert_eq!(off_ns, MAX_OFF_NS, "5 s owed: at most 2 s off");
        let since = w.go_off(1_000_000, rate, |s| on = s);
        assert!(!on);
        assert_eq!(
            w.look(&[0, 5_000], |s| on = s),
            Turn::Within,
            "off for 1 ms"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
        let Turn::Resumed { since: s, end, .. } = w.look(&[0, 5_000], |s| on = s) else {
            panic!("resumed")
        };
        assert!(on);
        assert_eq!(s, since);
        assert!(end >= since + 1_000_000);
        assert!(w.said("events").unwrap().contains("1 untraced spans"));
        assert_eq!(w.end(), None, "nothing open at the end");
    }
}
