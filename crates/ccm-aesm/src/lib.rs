//! Intel's AESM protocol, the `ccm aesmd` quote helper, and a client for it.
//!
//! Enclave containers get quotes the way Intel's SDK does it: they talk to an AESM service over a
//! Unix socket (`/var/run/aesmd/aesm.socket`, selected with `SGX_AESM_ADDR=1`). This crate speaks
//! that protocol on both ends:
//!
//! * [`proto`] holds the protobuf messages (`aesm.message.Request` / `Response`, proto2) derived
//!   by hand with prost, so no protoc runs at build time; [`frame`] the framing (4-byte
//!   little-endian length, one request per connection) with a length cap checked before any
//!   allocation.
//! * [`AesmClient`] is a blocking, std-only client with timeouts and capped responses; it is what
//!   the in-image launcher links, so it pulls in no async runtime.
//! * With the default `server` feature, [`server`] is the daemon: a tokio Unix-socket server that
//!   logs every caller's pid and uid, can restrict callers by uid, and answers from a backend:
//!   the simulated quoting enclave of a `ccm sim init` platform ([`server::SimBackend`]) or a
//!   real aesmd it relays frames to ([`server::ForwardBackend`]).
//!
//! The protocol semantics (two-call InitQuoteEx, attestation key id checks, quote padding, QE
//! report info, legacy requests) are documented on [`server::QuoteService`].

#![deny(missing_docs)]
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

mod client;
mod error;
pub mod frame;
pub mod keylist;
pub mod proto;
#[cfg(feature = "server")]
pub mod server;

pub use client::{
    AesmClient, DEFAULT_SOCKET, DEFAULT_TIMEOUT, PUB_KEY_ID_LEN, QeTarget, QuoteResult,
};
pub use error::{AesmError, Error};
