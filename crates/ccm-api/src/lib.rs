//! Request and response types of the manager REST API and the node agent's local API.
//!
//! These types are the wire contract shared by the manager (`ccm-manager`), the `ccm` CLI client
//! and the node agent. Names, paths and status values follow the resource model operators already
//! know (see `specs/ccm-api-reference.md`): ids are UUIDs in fields named `acct_id`, `app_id`,
//! `build_id`, `node_id`, `task_id`, `zone_id`; timestamps are Unix seconds (`i64`); `mem_size`
//! is in MB.
//!
//! Design choices:
//! - Request types reject unknown fields (`deny_unknown_fields`), so a typo in a script is an
//!   error naming the field instead of a silently ignored setting. The exceptions are optional
//!   fields of the reference's schemas that ccm does not implement: each request type lists
//!   them with what ccm does (ignore them, or refuse those that would change security
//!   behaviour), see [`compat`].
//! - Enumerations that the manager stores and returns are Rust enums with the exact wire spelling
//!   (`PENDING`, `WHITELISTED`, ...). The manager is the only producer of these values, so clients
//!   built from the same version never meet an unknown one.
//! - Every error the API returns has one shape, [`ErrorBody`].
//! - Two values are computed here because client and server must agree on them byte for byte:
//!   the audit-log entry hash ([`audit::entry_hash`]) and the join-token string format
//!   ([`zones::JoinToken`]).
#![deny(missing_docs)]

pub mod accounts;
pub mod agent;
pub mod apps;
pub mod audit;
pub mod auth;
pub mod builds;
pub mod certificates;
pub mod collateral;
pub mod compat;
pub mod error;
pub mod list;
pub mod nodes;
pub mod registries;
pub mod sys;
pub mod tasks;
pub mod users;
pub mod zones;

pub use error::{Error, ErrorBody, FieldError};
