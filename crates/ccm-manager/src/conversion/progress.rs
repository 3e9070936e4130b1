//! The progress of a running job: fed by `ccm_image`'s progress events (called for every chunk,
//! so the byte counters are atomics), read by the heartbeat that writes it to the database.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ccm_api::builds::ConversionLogEntry;
use ccm_image::{Progress, ProgressEvent};
use ccm_store::log_line;

use crate::Clock;

/// Phases and the completion they start at. Layer copying fills 5..85 by bytes.
const PHASES: &[(&str, i64)] = &[
    ("starting", 0),
    ("preparing", 1),
    ("resolving the input image", 3),
    ("copying layers", 5),
    ("building the enclave manifest", 86),
    ("signing", 90),
    ("pushing the enclave layer", 92),
    ("pushing the manifest", 95),
    ("verifying the output image", 98),
];
const COPY_START: i64 = 5;
const COPY_SPAN: i64 = 80;

struct Inner {
    phase: String,
    floor: i64,
    layers: usize,
    log: Vec<ConversionLogEntry>,
}

/// Progress and log of one job.
pub(crate) struct Tracker {
    clock: Arc<dyn Clock>,
    bytes_done: AtomicU64,
    bytes_total: AtomicU64,
    inner: Mutex<Inner>,
}

/// A copy of the progress at one moment.
pub(crate) struct Snapshot {
    pub phase: String,
    pub progress: i64,
    pub bytes_done: i64,
    pub bytes_total: Option<i64>,
    pub log: Vec<ConversionLogEntry>,
}

impl Snapshot {
    /// The snapshot as the store writes it.
    pub fn update(&self) -> ccm_store::ProgressUpdate<'_> {
        ccm_store::ProgressUpdate {
            phase: &self.phase,
            progress: self.progress,
            bytes_done: self.bytes_done,
            bytes_total: self.bytes_total,
            log: &self.log,
        }
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Tracker {
    /// A tracker continuing `log` (earlier attempts).
    pub(crate) fn new(clock: Arc<dyn Clock>, log: Vec<ConversionLogEntry>) -> Self {
        Self {
            clock,
            bytes_done: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                phase: "starting".into(),
                floor: 0,
                layers: 0,
                log,
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> Option<R> {
        self.inner.lock().ok().map(|mut g| f(&mut g))
    }

    /// Appends a log line.
    pub(crate) fn log(&self, message: impl Into<String>) {
        let line = log_line(self.clock.now(), message);
        self.with(|i| {
            i.log.push(line);
            let excess = i
                .log
                .len()
                .saturating_sub(ccm_api::builds::MAX_CONVERSION_LOG_ENTRIES);
            i.log.drain(..excess);
        });
    }

    /// Enters a phase (logged).
    pub(crate) fn phase(&self, phase: &str) {
        let start = PHASES
            .iter()
            .find(|(p, _)| *p == phase)
            .map(|(_, pct)| *pct);
        self.with(|i| {
            i.phase = phase.to_owned();
            if let Some(pct) = start {
                i.floor = i.floor.max(pct);
            }
        });
        self.log(phase);
    }

    /// The progress now.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let done = self.bytes_done.load(Ordering::Relaxed);
        let total = self.bytes_total.load(Ordering::Relaxed);
        let (phase, floor, log) = self
            .with(|i| (i.phase.clone(), i.floor, i.log.clone()))
            .unwrap_or_else(|| ("unknown".into(), 0, Vec::new()));
        let copying = if phase == "copying layers" && total > 0 {
            let fraction = (done.min(total) as f64) / (total as f64);
            COPY_START + (fraction * COPY_SPAN as f64) as i64
        } else {
            0
        };
        Snapshot {
            phase,
            progress: floor.max(copying).clamp(0, 100),
            bytes_done: to_i64(done),
            bytes_total: (total > 0).then(|| to_i64(total)),
            log,
        }
    }

    /// The log now.
    pub(crate) fn log_lines(&self) -> Vec<ConversionLogEntry> {
        self.with(|i| i.log.clone()).unwrap_or_default()
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

impl Progress for Tracker {
    fn event(&self, event: ProgressEvent) {
        match event {
            ProgressEvent::Resolved {
                layers,
                total_bytes,
            } => {
                self.bytes_total.store(total_bytes, Ordering::Relaxed);
                self.with(|i| i.layers = layers);
                self.log(format!(
                    "input resolved: {layers} layers, {} compressed",
                    mib(total_bytes)
                ));
                self.phase("copying layers");
            }
            ProgressEvent::LayerBytes { bytes, .. } => {
                self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
            }
            ProgressEvent::LayerDone {
                index,
                already_present,
            } => {
                let layers = self.with(|i| i.layers).unwrap_or(0);
                self.log(format!(
                    "layer {} of {layers} {}",
                    index.saturating_add(1),
                    if already_present {
                        "read (already at the destination)"
                    } else {
                        "read and pushed"
                    }
                ));
            }
            ProgressEvent::Step(step) => self.phase(step),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;

    #[test]
    fn progress_is_monotonic_and_bounded() {
        let t = Tracker::new(Arc::new(ManualClock::new(5)), Vec::new());
        assert_eq!(t.snapshot().progress, 0);
        t.phase("resolving the input image");
        assert_eq!(t.snapshot().progress, 3);
        t.event(ProgressEvent::Resolved {
            layers: 2,
            total_bytes: 1000,
        });
        assert_eq!(t.snapshot().progress, 5);
        t.event(ProgressEvent::LayerBytes {
            index: 0,
            bytes: 500,
        });
        let s = t.snapshot();
        assert_eq!(
            (s.progress, s.bytes_done, s.bytes_total),
            (45, 500, Some(1000))
        );
        t.event(ProgressEvent::LayerBytes {
            index: 1,
            bytes: 5000,
        });
        assert_eq!(t.snapshot().progress, 85, "never past the copy span");
        t.event(ProgressEvent::Step("signing"));
        assert_eq!(t.snapshot().progress, 90);
        t.phase("resolving the input image");
        assert_eq!(t.snapshot().progress, 90, "never goes back");
        let log = t.log_lines();
        assert!(
            log.iter()
                .any(|l| l.message == "input resolved: 2 layers, 0.0 MiB compressed")
        );
        assert!(log.iter().all(|l| l.at == 5));
    }

    #[test]
    fn log_is_bounded() {
        let t = Tracker::new(Arc::new(ManualClock::new(0)), Vec::new());
        for i in 0..ccm_api::builds::MAX_CONVERSION_LOG_ENTRIES + 10 {
            t.log(format!("line {i}"));
        }
        t.log("x".repeat(10_000));
        let log = t.log_lines();
        assert_eq!(log.len(), ccm_api::builds::MAX_CONVERSION_LOG_ENTRIES);
        assert_eq!(log[0].message, "line 11");
        assert_eq!(
            log.last().unwrap().message.chars().count(),
            ccm_api::builds::MAX_CONVERSION_LOG_LINE + 1
        );
    }
}
