//! Issuance nonces for local workloads (`POST /v1/enclave/nonce`).
//!
//! A workload's quote carries a manager-issued nonce in REPORTDATA[32..64] (DESIGN.md section
//! 13): single use, bound to this node, valid for a few minutes. So that an issuance costs no
//! extra manager round trip in the steady state, the agent keeps a small pool fetched in
//! batches (`POST /v1/node-agent/nonces`):
//!
//! - each nonce leaves the pool when it is handed out, so none is handed out twice;
//! - nonces within [`PoolSettings::min_remaining_secs`] of their expiry are dropped, so a
//!   workload always gets one it has time to use;
//! - when fewer than [`PoolSettings::low_water`] usable nonces remain, one background fetch
//!   refills the pool; a request that finds the pool empty waits for a fetch (at most one
//!   fetch runs at a time, and the waiting requests share its batch).
//!
//! When the manager cannot be reached the pool cannot be refilled, and a request that finds it
//! empty gets the manager's error ([`CallError`]), which the local API answers with 503.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use ccm_api::nodes::{IssuanceNonce, MAX_NONCE_BATCH};

use crate::manager::CallError;

/// How the pool is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Nonces asked for in one fetch (1 to [`MAX_NONCE_BATCH`]).
    pub batch: u32,
    /// A background fetch starts when fewer usable nonces remain.
    pub low_water: usize,
    /// A nonce expiring within this many seconds is dropped instead of handed out.
    pub min_remaining_secs: i64,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            batch: MAX_NONCE_BATCH,
            low_water: 16,
            min_remaining_secs: 60,
        }
    }
}

/// The nonces on hand, oldest first. Pure data: time comes in as `now` (Unix seconds).
#[derive(Debug, Default)]
pub struct Pool {
    nonces: VecDeque<IssuanceNonce>,
}

impl Pool {
    /// Drops the nonces that expire within `min_remaining` seconds of `now`.
    fn drop_stale(&mut self, now: i64, min_remaining: i64) {
        self.nonces
            .retain(|n| n.expires_at.saturating_sub(now) > min_remaining);
    }

    /// Takes a usable nonce out of the pool (never to be handed out again).
    pub fn take(&mut self, now: i64, min_remaining: i64) -> Option<IssuanceNonce> {
        self.drop_stale(now, min_remaining);
        self.nonces.pop_front()
    }

    /// Adds fetched nonces; a value already on hand is not added twice.
    pub fn add(&mut self, fetched: Vec<IssuanceNonce>) {
        for n in fetched {
            if !self.nonces.iter().any(|o| o.nonce == n.nonce) {
                self.nonces.push_back(n);
            }
        }
    }

    /// Usable nonces on hand at `now`.
    pub fn usable(&self, now: i64, min_remaining: i64) -> usize {
        self.nonces
            .iter()
            .filter(|n| n.expires_at.saturating_sub(now) > min_remaining)
            .count()
    }
}

/// Where fresh nonces come from (the manager; a seam for tests).
pub trait NonceSource: Send + Sync {
    /// Fetches `count` fresh nonces.
    fn fetch(
        &self,
        count: u32,
    ) -> impl std::future::Future<Output = Result<Vec<IssuanceNonce>, CallError>> + Send;
}

/// The pool with its refill policy.
#[derive(Debug, Default)]
pub struct NoncePool {
    settings: PoolSettings,
    pool: Mutex<Pool>,
    /// Held while a fetch runs: at most one at a time.
    fetching: tokio::sync::Mutex<()>,
    /// Whether the last [`NoncePool::refill_tracked`] failed.
    refill_failing: AtomicBool,
}

/// What a background refill found, told as a change from the last one, so that a manager
/// refusing nonces is logged once when it starts and once when it ends, not at every heartbeat.
#[derive(Debug)]
pub enum RefillOutcome {
    /// The pool has nonces, or got them; `recovered` when the last refill had failed.
    Available {
        /// Whether the last refill had failed.
        recovered: bool,
    },
    /// The fetch failed; `first` when the last refill had not.
    Failed {
        /// Why.
        error: CallError,
        /// Whether the last refill had succeeded (this failure is news).
        first: bool,
    },
}

impl NoncePool {
    /// An empty pool kept with `settings` (`batch` is clamped to 1..=[`MAX_NONCE_BATCH`]).
    pub fn new(settings: PoolSettings) -> Self {
        Self {
            settings: PoolSettings {
                batch: settings.batch.clamp(1, MAX_NONCE_BATCH),
                ..settings
            },
            pool: Mutex::new(Pool::default()),
            fetching: tokio::sync::Mutex::new(()),
            refill_failing: AtomicBool::new(false),
        }
    }

    fn take_now(&self, now: i64) -> Option<IssuanceNonce> {
        self.pool
            .lock()
            .ok()
            .and_then(|mut p| p.take(now, self.settings.min_remaining_secs))
    }

    /// Whether the pool is below its low-water mark at `now`.
    pub fn needs_refill(&self, now: i64) -> bool {
        self.pool
            .lock()
            .map(|p| p.usable(now, self.settings.min_remaining_secs) < self.settings.low_water)
            .unwrap_or(true)
    }

    /// One fetch into the pool (the caller holds `fetching`).
    async fn fetch_into<S: NonceSource>(&self, source: &S) -> Result<(), CallError> {
        let fetched = source.fetch(self.settings.batch).await?;
        if let Ok(mut p) = self.pool.lock() {
            p.add(fetched);
        }
        Ok(())
    }

    /// A nonce for a workload: from the pool, else from a fetch (shared with whoever else is
    /// waiting). `now` gives the time (Unix seconds).
    pub async fn take<S: NonceSource>(
        &self,
        source: &S,
        now: impl Fn() -> i64,
    ) -> Result<IssuanceNonce, CallError> {
        if let Some(n) = self.take_now(now()) {
            return Ok(n);
        }
        let _fetching = self.fetching.lock().await;
        // Whoever held the lock before may have filled the pool.
        if let Some(n) = self.take_now(now()) {
            return Ok(n);
        }
        self.fetch_into(source).await?;
        self.take_now(now()).ok_or_else(|| {
            CallError::Unavailable("the manager sent no usable nonce (all near expiry)".into())
        })
    }

    /// Refills the pool when it is below its low-water mark and no fetch is running. Returns
    /// whether a fetch ran.
    pub async fn refill<S: NonceSource>(
        &self,
        source: &S,
        now: impl Fn() -> i64,
    ) -> Result<bool, CallError> {
        if !self.needs_refill(now()) {
            return Ok(false);
        }
        let Ok(_fetching) = self.fetching.try_lock() else {
            return Ok(false);
        };
        if !self.needs_refill(now()) {
            return Ok(false);
        }
        self.fetch_into(source).await.map(|()| true)
    }

    /// [`NoncePool::refill`], with its outcome told against the last call's (see
    /// [`RefillOutcome`]).
    pub async fn refill_tracked<S: NonceSource>(
        &self,
        source: &S,
        now: impl Fn() -> i64,
    ) -> RefillOutcome {
        let result = self.refill(source, now).await;
        let was_failing = self.refill_failing.swap(result.is_err(), Ordering::Relaxed);
        match result {
            Ok(_) => RefillOutcome::Available {
                recovered: was_failing,
            },
            Err(error) => RefillOutcome::Failed {
                error,
                first: !was_failing,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

    use super::*;

    /// Hands out numbered nonces valid for `ttl` seconds from the shared clock, or fails.
    struct Counter {
        next: AtomicU32,
        fetches: AtomicU32,
        clock: Arc<AtomicI64>,
        ttl: i64,
        fail: bool,
    }

    impl Counter {
        fn new(clock: Arc<AtomicI64>, ttl: i64) -> Self {
            Self {
                next: AtomicU32::new(0),
                fetches: AtomicU32::new(0),
                clock,
                ttl,
                fail: false,
            }
        }
    }

    impl NonceSource for Counter {
        async fn fetch(&self, count: u32) -> Result<Vec<IssuanceNonce>, CallError> {
            if self.fail {
                return Err(CallError::Unavailable("connection refused".into()));
            }
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let now = self.clock.load(Ordering::SeqCst);
            Ok((0..count)
                .map(|_| IssuanceNonce {
                    nonce: self.next.fetch_add(1, Ordering::SeqCst).to_string(),
                    expires_at: now + self.ttl,
                })
                .collect())
        }
    }

    fn settings(batch: u32, low_water: usize) -> PoolSettings {
        PoolSettings {
            batch,
            low_water,
            min_remaining_secs: 60,
        }
    }

    #[tokio::test]
    async fn never_hands_out_the_same_nonce_twice_even_to_concurrent_callers() {
        let clock = Arc::new(AtomicI64::new(1_000));
        let source = Arc::new(Counter::new(clock.clone(), 300));
        let pool = Arc::new(NoncePool::new(settings(8, 2)));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (pool, source, clock) = (pool.clone(), source.clone(), clock.clone());
            tasks.push(tokio::spawn(async move {
                pool.take(&*source, || clock.load(Ordering::SeqCst))
                    .await
                    .unwrap()
                    .nonce
            }));
        }
        let mut seen = HashSet::new();
        for t in tasks {
            assert!(
                seen.insert(t.await.unwrap()),
                "a nonce was handed out twice"
            );
        }
        assert_eq!(seen.len(), 50);
        // Batches of 8 for 50 takers: 7 fetches, not one per taker.
        assert_eq!(source.fetches.load(Ordering::SeqCst), 7);
    }

    #[tokio::test]
    async fn refills_below_the_low_water_mark_only() {
        let clock = Arc::new(AtomicI64::new(1_000));
        let source = Counter::new(clock.clone(), 300);
        let pool = NoncePool::new(settings(10, 4));
        let now = || clock.load(Ordering::SeqCst);
        assert!(
            pool.refill(&source, now).await.unwrap(),
            "empty pool fetches"
        );
        assert!(!pool.refill(&source, now).await.unwrap(), "10 on hand");
        for _ in 0..6 {
            pool.take(&source, now).await.unwrap();
        }
        assert!(!pool.refill(&source, now).await.unwrap(), "4 on hand");
        pool.take(&source, now).await.unwrap();
        assert!(pool.refill(&source, now).await.unwrap(), "3 on hand");
        assert_eq!(source.fetches.load(Ordering::SeqCst), 2);
        assert_eq!(pool.pool.lock().unwrap().usable(now(), 60), 13);
    }

    #[tokio::test]
    async fn drops_nonces_close_to_expiry() {
        let clock = Arc::new(AtomicI64::new(1_000));
        let source = Counter::new(clock.clone(), 300);
        let pool = NoncePool::new(settings(5, 1));
        let now = || clock.load(Ordering::SeqCst);
        assert_eq!(pool.take(&source, now).await.unwrap().nonce, "0");
        // 240 s later the four left have 60 s to go: too close, dropped; a fresh batch comes.
        clock.store(1_240, Ordering::SeqCst);
        assert!(pool.needs_refill(now()));
        let n = pool.take(&source, now).await.unwrap();
        assert_eq!(n.nonce, "5");
        assert_eq!(n.expires_at, 1_540);
        assert_eq!(source.fetches.load(Ordering::SeqCst), 2);
        // A manager whose nonces are all near expiry on arrival gives none.
        let short = Counter::new(clock.clone(), 30);
        let pool = NoncePool::new(settings(5, 1));
        assert!(matches!(
            pool.take(&short, now).await,
            Err(CallError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn manager_away_is_an_error_and_the_pool_is_still_used_up_first() {
        let clock = Arc::new(AtomicI64::new(1_000));
        let now = || clock.load(Ordering::SeqCst);
        let up = Counter::new(clock.clone(), 300);
        let pool = NoncePool::new(settings(2, 1));
        pool.refill(&up, now).await.unwrap();
        let mut down = Counter::new(clock.clone(), 300);
        down.fail = true;
        assert_eq!(pool.take(&down, now).await.unwrap().nonce, "0");
        assert_eq!(pool.take(&down, now).await.unwrap().nonce, "1");
        assert!(matches!(
            pool.take(&down, now).await,
            Err(CallError::Unavailable(_))
        ));
        assert!(pool.refill(&down, now).await.is_err());
    }

    #[tokio::test]
    async fn a_refusing_manager_is_news_once_and_its_return_once() {
        let clock = Arc::new(AtomicI64::new(1_000));
        let now = || clock.load(Ordering::SeqCst);
        let up = Counter::new(clock.clone(), 300);
        let mut down = Counter::new(clock.clone(), 300);
        down.fail = true;
        let pool = NoncePool::new(settings(2, 1));
        let failed = |o: RefillOutcome| match o {
            RefillOutcome::Failed { first, .. } => Some(first),
            RefillOutcome::Available { .. } => None,
        };
        let available = |o: RefillOutcome| match o {
            RefillOutcome::Available { recovered } => Some(recovered),
            RefillOutcome::Failed { .. } => None,
        };
        assert_eq!(failed(pool.refill_tracked(&down, now).await), Some(true));
        for _ in 0..3 {
            assert_eq!(failed(pool.refill_tracked(&down, now).await), Some(false));
        }
        assert_eq!(available(pool.refill_tracked(&up, now).await), Some(true));
        // Full: nothing fetched, still no news.
        assert_eq!(available(pool.refill_tracked(&up, now).await), Some(false));
        pool.take(&up, now).await.unwrap();
        pool.take(&up, now).await.unwrap();
        assert_eq!(failed(pool.refill_tracked(&down, now).await), Some(true));
    }

    #[test]
    fn a_nonce_sent_twice_is_kept_once() {
        let n = |s: &str| IssuanceNonce {
            nonce: s.into(),
            expires_at: 2_000,
        };
        let mut p = Pool::default();
        p.add(vec![n("a"), n("b"), n("a")]);
        p.add(vec![n("b")]);
        assert_eq!(p.usable(1_000, 60), 2);
        assert_eq!(p.take(1_000, 60).unwrap().nonce, "a");
        assert_eq!(p.take(1_000, 60).unwrap().nonce, "b");
        assert!(p.take(1_000, 60).is_none());
    }
}
