//! Prometheus metrics (`GET /metrics`, text exposition format).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::AppState;
use crate::error::InternalCause;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

/// The method label: one of a fixed set, so a client inventing methods cannot create series.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConversionLabels {
    result: &'static str,
}

/// One collateral set: its platform, TEE, TCB evaluation set and root kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CollateralLabels {
    fmspc: String,
    ca_type: &'static str,
    tee: &'static str,
    update: &'static str,
    root: &'static str,
}

/// The manager's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    conversions: Family<ConversionLabels, Counter>,
    conversion_seconds: Histogram,
    collateral_valid_until: Family<CollateralLabels, Gauge>,
    collateral_updated_at: Family<CollateralLabels, Gauge>,
    collateral_evaluation: Family<CollateralLabels, Gauge>,
    collateral_refresh_failures: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("ccm");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        let conversions = Family::<ConversionLabels, Counter>::default();
        let conversion_seconds = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        registry.register(
            "conversions",
            "Image conversion attempts by result (succeeded, failed, requeued, released, abandoned)",
            conversions.clone(),
        );
        registry.register(
            "conversion_duration_seconds",
            "Wall time of image conversion attempts that succeeded or failed",
            conversion_seconds.clone(),
        );
        let collateral_valid_until = Family::<CollateralLabels, Gauge>::default();
        let collateral_updated_at = Family::<CollateralLabels, Gauge>::default();
        let collateral_evaluation = Family::<CollateralLabels, Gauge>::default();
        let collateral_refresh_failures = Counter::default();
        registry.register(
            "collateral_valid_until_seconds",
            "When each current collateral set expires (Unix seconds)",
            collateral_valid_until.clone(),
        );
        registry.register(
            "collateral_updated_at_seconds",
            "When each current collateral set became current (Unix seconds)",
            collateral_updated_at.clone(),
        );
        registry.register(
            "collateral_tcb_evaluation_data_number",
            "The TCB evaluation data number of each current collateral set",
            collateral_evaluation.clone(),
        );
        registry.register(
            "collateral_refresh_failures",
            "Collateral fetches by the refresher that failed",
            collateral_refresh_failures.clone(),
        );
        Arc::new(Self {
            registry,
            requests,
            latency,
            conversions,
            conversion_seconds,
            collateral_valid_until,
            collateral_updated_at,
            collateral_evaluation,
            collateral_refresh_failures,
        })
    }

    /// Records a current collateral set's expiry, age and evaluation number.
    pub fn collateral_set(&self, r: &ccm_store::CollateralRecord) {
        let labels = CollateralLabels {
            fmspc: r.key.fmspc.clone(),
            ca_type: r.key.ca_type.as_str(),
            tee: r.key.tee.as_str(),
            update: r.key.update.as_str(),
            root: if r.simulated { "simulated" } else { "intel" },
        };
        self.collateral_valid_until
            .get_or_create(&labels)
            .set(r.valid_until);
        self.collateral_updated_at
            .get_or_create(&labels)
            .set(r.updated_at);
        self.collateral_evaluation
            .get_or_create(&labels)
            .set(r.ages.tcb_evaluation_data_number);
    }

    /// Counts a failed refresh.
    pub fn collateral_refresh_failed(&self) {
        self.collateral_refresh_failures.inc();
    }

    /// Counts an ended conversion attempt; `seconds` is its wall time when it ran to an end.
    pub fn conversion_ended(&self, result: &'static str, seconds: Option<f64>) {
        self.conversions
            .get_or_create(&ConversionLabels { result })
            .inc();
        if let Some(s) = seconds {
            self.conversion_seconds.observe(s);
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Middleware: counts and times requests by matched route (not raw path, so ids do not explode
/// the label space) and logs the cause of 5xx responses.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = method_label(req.method());
    let start = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    if let Some(cause) = resp.extensions().get::<InternalCause>() {
        tracing::error!(%method, %route, status, cause = %cause.0, "request failed");
    }
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route: route.clone(),
            status,
        })
        .inc();
    state
        .metrics
        .latency
        .get_or_create(&RouteLabels { method, route })
        .observe(start.elapsed().as_secs_f64());
    resp
}

#[cfg(test)]
mod tests {
    use axum::http::Method;

    use super::*;

    #[test]
    fn invented_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::OPTIONS), "OPTIONS");
        for m in ["BREW", "PROPFIND", "get", "X-ANYTHING"] {
            let m = Method::from_bytes(m.as_bytes()).unwrap();
            assert_eq!(method_label(&m), "OTHER", "{m}");
        }
    }
}
