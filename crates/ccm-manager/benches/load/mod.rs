//! A load generator for the manager benchmarks: concurrent workers, throughput, p50 and p99.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// Throughput and latency of one measurement.
pub struct Stats {
    /// Requests that succeeded.
    pub requests: usize,
    /// Requests that failed.
    pub errors: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
}

impl Stats {
    /// A Markdown table row: what, req/s, p50 ms, p99 ms, requests, errors.
    pub fn line(&self, what: &str) -> String {
        format!(
            "| {what} | {:.0} | {:.2} | {:.2} | {} | {} |",
            self.requests as f64 / self.elapsed.as_secs_f64(),
            self.p50.as_secs_f64() * 1000.0,
            self.p99.as_secs_f64() * 1000.0,
            self.requests,
            self.errors
        )
    }
}

fn stats(mut lat: Vec<Duration>, errors: usize, elapsed: Duration) -> Stats {
    lat.sort();
    let pick = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Stats {
        requests: lat.len(),
        errors,
        elapsed,
        p50: pick(0.50),
        p99: pick(0.99),
    }
}

/// Runs `make(i)` requests from `conc` workers until `duration` has passed or `total` requests
/// were made.
pub async fn load<F, Fut>(conc: usize, duration: Duration, total: Option<usize>, make: F) -> Stats
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let make = Arc::new(make);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..conc {
        let (make, next) = (make.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if total.is_some_and(|t| i >= t) || (total.is_none() && start.elapsed() >= duration)
                {
                    break;
                }
                let t = Instant::now();
                if make(i).await {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for h in handles {
        if let Ok((l, e)) = h.await {
            all.extend(l);
            errors += e;
        }
    }
    stats(all, errors, start.elapsed())
}
