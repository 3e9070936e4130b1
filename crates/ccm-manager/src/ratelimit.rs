//! Rate limits: token buckets per key (client address, e-mail, node), in memory, bounded.
//!
//! A [`KeyedLimiter`] keeps one bucket per key. A bucket holds up to `burst` tokens and refills
//! continuously at `per_second`; a request takes a token or is refused with the time until the
//! next one ([`Limited`], rendered as 429 with `Retry-After`). Time is a parameter of every call,
//! so the decisions are tested without sleeping.
//!
//! Memory is bounded: at most `max_keys` buckets. When a new key arrives at a full table, the
//! buckets that have refilled completely (they decide exactly as a missing bucket would) are
//! dropped first; if that frees nothing, the least recently used half goes. A flood of distinct
//! keys therefore costs a bounded table and, at worst, forgets the older half of the limits.
//!
//! The limits are per replica: with several replicas behind a load balancer, each enforces its
//! own (docs/security.md says so).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// A refusal: the key has no token left; one will be there after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Time until the next token.
    pub retry_after: Duration,
}

impl Limited {
    /// Whole seconds for a `Retry-After` header (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs();
        let secs = if self.retry_after.subsec_nanos() > 0 {
            secs.saturating_add(1)
        } else {
            secs
        };
        secs.max(1)
    }
}

/// How fast a bucket refills and how many tokens it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens a full bucket holds (requests that may come at once).
    pub burst: f64,
    /// Tokens added per second.
    pub per_second: f64,
}

impl Rate {
    /// `n` per minute, with a burst of `n`.
    pub fn per_minute(n: u32) -> Self {
        Self {
            burst: f64::from(n.max(1)),
            per_second: f64::from(n.max(1)) / 60.0,
        }
    }

    /// `n` per hour, with a burst of `n`.
    pub fn per_hour(n: u32) -> Self {
        Self {
            burst: f64::from(n.max(1)),
            per_second: f64::from(n.max(1)) / 3600.0,
        }
    }

    /// `n` per second, with a burst of `burst`.
    pub fn per_second(n: u32, burst: u32) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            per_second: f64::from(n.max(1)),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    /// The tokens at `now` (refilled since the last update, capped at the burst).
    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.updated = now;
    }

    fn wait_for_one(&self, rate: Rate) -> Duration {
        let missing = (1.0 - self.tokens).max(0.0);
        Duration::from_secs_f64(missing / rate.per_second)
    }
}

/// Token buckets per key, bounded in number. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct KeyedLimiter<K> {
    rate: Rate,
    max_keys: usize,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// A limiter with `rate` per key, remembering at most `max_keys` keys.
    pub fn new(rate: Rate, max_keys: usize) -> Self {
        Self {
            rate,
            max_keys: max_keys.max(2),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key`, or says how long until one is there.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Limited> {
        self.with_bucket(key, now, |b, rate| {
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
                Ok(())
            } else {
                Err(Limited {
                    retry_after: b.wait_for_one(rate),
                })
            }
        })
    }

    /// Whether `key` has a token, without taking it (for limits charged only on failure).
    pub fn peek(&self, key: &K, now: Instant) -> Result<(), Limited> {
        let Ok(mut map) = self.buckets.lock() else {
            return Ok(());
        };
        match map.get_mut(key) {
            Some(b) => {
                b.refill(self.rate, now);
                if b.tokens >= 1.0 {
                    Ok(())
                } else {
                    Err(Limited {
                        retry_after: b.wait_for_one(self.rate),
                    })
                }
            }
            None => Ok(()),
        }
    }

    /// Takes a token for `key` if there is one (a failure that counts against the key).
    pub fn charge(&self, key: &K, now: Instant) {
        let _ = self.with_bucket(key, now, |b, _| {
            b.tokens = (b.tokens - 1.0).max(0.0);
            Ok(())
        });
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.buckets.lock().map_or(0, |m| m.len())
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn with_bucket(
        &self,
        key: &K,
        now: Instant,
        f: impl FnOnce(&mut Bucket, Rate) -> Result<(), Limited>,
    ) -> Result<(), Limited> {
        // A poisoned lock means a panic elsewhere while holding it; the map is still usable
        // data, so keep limiting with it.
        let mut map = match self.buckets.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if !map.contains_key(key) && map.len() >= self.max_keys {
            self.evict(&mut map, now);
        }
        let rate = self.rate;
        let bucket = map.entry(key.clone()).or_insert(Bucket {
            tokens: rate.burst,
            updated: now,
        });
        bucket.refill(rate, now);
        f(bucket, rate)
    }

    fn evict(&self, map: &mut HashMap<K, Bucket>, now: Instant) {
        let rate = self.rate;
        map.retain(|_, b| {
            let mut b = *b;
            b.refill(rate, now);
            b.tokens < rate.burst
        });
        if map.len() < self.max_keys {
            return;
        }
        let mut ages: Vec<Instant> = map.values().map(|b| b.updated).collect();
        ages.sort_unstable();
        if let Some(cut) = ages.get(ages.len() / 2).copied() {
            map.retain(|_, b| b.updated > cut);
        }
        if map.len() >= self.max_keys {
            map.clear();
        }
    }
}

/// The address a request came from (the TCP peer), put into the request's extensions by the
/// server loop. Requests built in tests without a server have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Extractor: the client address of a request, if the server loop recorded one.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<ClientAddr>().map(|a| a.0)))
    }
}

/// The limits on password logins and sign-ups.
#[derive(Debug)]
pub struct AuthLimits {
    /// Attempts per client address (every attempt takes a token).
    pub per_address: KeyedLimiter<IpAddr>,
    /// Failed logins and sign-up attempts per e-mail (lower-cased).
    pub per_email: KeyedLimiter<String>,
    /// Password reset requests (`forgot_password`) per e-mail (lower-cased).
    pub forgot_per_email: KeyedLimiter<String>,
}

impl AuthLimits {
    /// Limits from the configuration.
    pub fn new(config: &crate::Config) -> Self {
        Self {
            per_address: KeyedLimiter::new(
                Rate::per_minute(config.auth_attempts_per_minute_per_address),
                MAX_KEYS,
            ),
            per_email: KeyedLimiter::new(
                Rate::per_minute(config.auth_failures_per_minute_per_email),
                MAX_KEYS,
            ),
            forgot_per_email: KeyedLimiter::new(
                Rate::per_hour(config.forgot_password_per_hour_per_email),
                MAX_KEYS,
            ),
        }
    }
}

/// How many keys each limiter remembers.
pub const MAX_KEYS: usize = 10_000;

/// The per-address limit of the PCCS API the manager serves.
#[derive(Debug)]
pub struct PccsLimit(KeyedLimiter<IpAddr>);

impl PccsLimit {
    /// The limit from the configuration (`pccs_api_requests_per_second`, burst twice that).
    pub fn new(config: &crate::Config) -> Self {
        let n = config.pccs_api_requests_per_second;
        Self(KeyedLimiter::new(
            Rate::per_second(n, n.saturating_mul(2)),
            MAX_KEYS,
        ))
    }

    /// Takes a token for `ip`, or says when one will be there.
    pub fn check(&self, ip: &IpAddr, now: Instant) -> Result<(), Limited> {
        self.0.check(ip, now)
    }
}

/// The per-node limit of the agent-facing routes, keyed by SHA-256 of the node's client
/// certificate.
#[derive(Debug, Clone)]
pub struct NodeLimit(pub Arc<KeyedLimiter<[u8; 32]>>);

impl NodeLimit {
    /// The limit from the configuration.
    pub fn new(config: &crate::Config) -> Self {
        Self(Arc::new(KeyedLimiter::new(
            Rate::per_second(config.node_requests_per_second, config.node_request_burst),
            MAX_KEYS,
        )))
    }
}

/// Middleware of the agent-facing router (`/v1/node-agent/...`): each node (its TLS client
/// certificate) gets [`NodeLimit`]'s rate, then 429 with `Retry-After`. Requests without a
/// client certificate pass to the handlers, which refuse them. Needs the limit in the request
/// extensions ([`crate::app`] puts it there).
pub async fn per_node(req: Request, next: Next) -> Response {
    let limit = req.extensions().get::<NodeLimit>().cloned();
    let cert = req
        .extensions()
        .get::<crate::node_auth::PeerCertificate>()
        .cloned();
    if let (Some(limit), Some(cert)) = (limit, cert) {
        let key: [u8; 32] = Sha256::digest(cert.0.as_slice()).into();
        if let Err(l) = limit.0.check(&key, Instant::now()) {
            return ApiError::too_many_requests(l.retry_after_secs()).into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let l = KeyedLimiter::new(Rate::per_minute(3), 100);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check(&"a", t0).is_ok());
        }
        let e = l.check(&"a", t0).unwrap_err();
        assert_eq!(e.retry_after_secs(), 20, "{e:?}");
        // Another key is not affected.
        assert!(l.check(&"b", t0).is_ok());
        // 19 s later still nothing; 20 s later one token.
        assert!(l.check(&"a", at(t0, 19_000)).is_err());
        assert!(l.check(&"a", at(t0, 20_000)).is_ok());
        assert!(l.check(&"a", at(t0, 20_001)).is_err());
    }

    #[test]
    fn peek_does_not_take_and_charge_takes() {
        let l = KeyedLimiter::new(Rate::per_minute(2), 100);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(l.peek(&"x", t0).is_ok());
        }
        l.charge(&"x", t0);
        l.charge(&"x", t0);
        l.charge(&"x", t0);
        let e = l.peek(&"x", t0).unwrap_err();
        assert_eq!(e.retry_after_secs(), 30);
        assert!(l.peek(&"x", at(t0, 30_000)).is_ok());
    }

    #[test]
    fn the_table_stays_bounded_and_forgets_refilled_buckets_first() {
        let l = KeyedLimiter::new(Rate::per_minute(1), 10);
        let t0 = Instant::now();
        // An exhausted key, then a flood of distinct keys.
        assert!(l.check(&0u32, t0).is_ok());
        for k in 1..10_000u32 {
            let _ = l.check(&k, at(t0, u64::from(k)));
            assert!(l.len() <= 10, "{} keys", l.len());
        }
        // Refilled buckets are dropped before anything else: after a minute every key is full
        // again, so one new key makes room by dropping them all.
        let later = at(t0, 120_000);
        assert!(l.check(&99_999u32, later).is_ok());
        assert!(l.len() <= 2);
    }

    #[test]
    fn an_exhausted_key_survives_eviction_of_refilled_ones() {
        let l = KeyedLimiter::new(Rate::per_minute(1), 4);
        let t0 = Instant::now();
        // Keys 1..3 take a token at t0 and are refilled after 60 s.
        for k in 1..4u32 {
            assert!(l.check(&k, t0).is_ok());
        }
        // Key 0 is exhausted at 59 s.
        let t = at(t0, 59_000);
        assert!(l.check(&0, t).is_ok());
        // At 61 s keys 1..3 are full again; a new key evicts them, not key 0.
        let t = at(t0, 61_000);
        assert!(l.check(&100, t).is_ok());
        assert!(l.check(&0, t).is_err(), "key 0 was forgotten");
    }

    /// The per-node layer as the node-agent router uses it: each client certificate has its
    /// own budget; requests without one pass to the handler.
    #[tokio::test]
    async fn each_node_certificate_has_its_own_budget() {
        use axum::body::Body;
        use tower::ServiceExt as _;
        let limit = NodeLimit(Arc::new(KeyedLimiter::new(Rate::per_second(1, 2), 100)));
        let app = axum::Router::new()
            .route("/x", axum::routing::post(|| async { "ok" }))
            .route_layer(axum::middleware::from_fn(per_node))
            .layer(axum::Extension(limit));
        let call = |cert: Option<Vec<u8>>| {
            let app = app.clone();
            async move {
                let mut req = axum::http::Request::post("/x").body(Body::empty()).unwrap();
                if let Some(c) = cert {
                    req.extensions_mut()
                        .insert(crate::node_auth::PeerCertificate(Arc::new(c)));
                }
                let r = app.oneshot(req).await.unwrap();
                (
                    r.status().as_u16(),
                    r.headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_string()),
                )
            }
        };
        assert_eq!(call(Some(vec![1])).await.0, 200);
        assert_eq!(call(Some(vec![1])).await.0, 200);
        assert_eq!(call(Some(vec![1])).await, (429, Some("1".into())));
        assert_eq!(call(Some(vec![2])).await.0, 200, "another node");
        for _ in 0..5 {
            assert_eq!(
                call(None).await.0,
                200,
                "no certificate: the handler decides"
            );
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let l = Limited {
            retry_after: Duration::from_millis(1),
        };
        assert_eq!(l.retry_after_secs(), 1);
        let l = Limited {
            retry_after: Duration::from_millis(2_500),
        };
        assert_eq!(l.retry_after_secs(), 3);
    }
}
