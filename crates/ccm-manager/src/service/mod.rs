//! The service layer: where the manager decides (DESIGN.md section 12).
//!
//! Adapters (REST routes in `routes/`, console pages in `console/`, the agent-facing routes)
//! parse input, call a service function and render its answer; they never decide. Services
//! authorize beyond "is a member", run workflow effects and the issuance and enrollment steps,
//! and return a [`ServiceError`]; `error.rs` maps it to an HTTP status (and the console to a
//! message) in one place. The store ([`ccm_store::Store`]) runs what a service decided inside
//! one transaction and knows no workflow.
//!
//! One module per domain. Dependencies point one way: adapters → services → store; a service
//! never names an adapter type.

pub mod accounts;
pub mod apikeys;
pub mod apps;
pub mod attest;
pub(crate) mod audit;
pub mod auth;
pub mod caller;
pub mod cascade;
pub mod certificates;
pub mod collateral;
pub mod conversions;
pub mod enrollment;
mod error;
pub mod housekeeping;
pub(crate) mod images;
pub mod invitations;
pub mod issuance;
pub mod node_identity;
pub mod nodes;
mod notify;
pub mod paging;
pub mod passwords;
mod refusal;
pub mod registries;
pub mod system;
pub mod tasks;
#[cfg(test)]
pub(crate) mod testing;
pub mod users;
pub mod validate;
pub mod zones;

pub use error::{ServiceError, ServiceResult};

/// Runs blocking work (zone CA keys and certificates) off the async workers. Password hashing
/// has its own thread ([`crate::service::caller::PasswordWorker`]).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> ServiceResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ServiceError::internal)
}
pub use refusal::{Refusal, RefusalCode};
