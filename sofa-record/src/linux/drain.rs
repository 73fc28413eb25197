//! The reader loop shared by the collectors that read perf ring buffers.

use perf_event_open::sample::Sampler;
use perf_event_open::sample::record::Record;
use sofa_trace::TraceError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What a collector does with the records of its ring buffers.
pub trait Sink {
    /// Called before each pass over the buffers.
    fn begin_pass(&mut self) {}
    /// One record from the buffer tagged `tag` (the collector's own numbering).
    fn handle(&mut self, tag: u32, record: Record) -> Result<(), TraceError>;
    /// Called after every pass over the buffers: flush what is due.
    fn tick(&mut self) -> Result<(), TraceError>;
}

/// Drains the ring buffers into `sink` until `stop` is set, then once more
/// so nothing the kernel wrote is left behind. Sleeps briefly only when a
/// pass found nothing, so a busy collector keeps up and an idle one costs
/// ~100 wake-ups a second.
pub fn drain<S: Sink>(
    sources: &[(u32, &Sampler)],
    sink: &mut S,
    stop: &AtomicBool,
    mut after_pass: impl FnMut(&mut S),
) -> Result<(), TraceError> {
    let mut iters: Vec<_> = sources
        .iter()
        .map(|(tag, s)| (*tag, s.iter().expect("each sampler is iterated once")))
        .collect();
    loop {
        let stopping = stop.load(Ordering::Acquire);
        let mut records = 0usize;
        sink.begin_pass();
        for (tag, iter) in iters.iter_mut() {
            for (_, record) in iter.by_ref() {
                sink.handle(*tag, record)?;
                records += 1;
            }
        }
        sink.tick()?;
        after_pass(&mut *sink);
        if stopping {
            return Ok(());
        }
        if records == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
