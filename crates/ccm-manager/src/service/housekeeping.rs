//! Housekeeping: expired sessions and REJECTED certificate requests past their retention are
//! deleted on a schedule (`housekeeping_interval_secs`), by the background sweep.

use std::time::{Duration, Instant};

use crate::AppState;
use crate::service::ServiceResult;

/// What one housekeeping run deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Purged {
    /// Sessions past their session lifetime.
    pub sessions: u64,
    /// REJECTED certificate requests older than `rejected_retention_days`.
    pub rejected_requests: u64,
}

/// Deletes expired sessions and REJECTED certificate requests last updated more than
/// `rejected_retention_days` ago (by the state's clock).
pub async fn purge(s: &AppState) -> ServiceResult<Purged> {
    let now = s.clock.now();
    let sessions = s.store.purge_expired_sessions(now).await?;
    let cutoff = now.saturating_sub(s.config.rejected_retention_days.saturating_mul(86_400));
    let rejected_requests = s.store.purge_rejected_requests(cutoff).await?;
    Ok(Purged {
        sessions,
        rejected_requests,
    })
}

/// When the next housekeeping run is due (the first one an interval after start).
#[derive(Debug)]
pub struct Schedule {
    every: Duration,
    last: Option<Instant>,
}

impl Schedule {
    /// The schedule of the configured interval.
    pub fn new(s: &AppState) -> Self {
        Self {
            every: Duration::from_secs(s.config.housekeeping_interval_secs.max(1)),
            last: Some(Instant::now()),
        }
    }

    /// Runs [`purge`] if the interval has passed since the last run; logs the outcome.
    pub async fn run_if_due(&mut self, s: &AppState) {
        if self.last.is_some_and(|l| l.elapsed() < self.every) {
            return;
        }
        self.last = Some(Instant::now());
        match purge(s).await {
            Ok(Purged {
                sessions: 0,
                rejected_requests: 0,
            }) => {}
            Ok(p) => tracing::info!(
                sessions = p.sessions,
                rejected_requests = p.rejected_requests,
                "housekeeping: purged expired sessions and old rejected requests"
            ),
            Err(e) => tracing::warn!(error = %e, "housekeeping failed"),
        }
    }
}
