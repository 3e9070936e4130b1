//! The backend trait and the in-process backend.

use std::future::Future;

use prost::Message;

use super::service::{QuoteService, QuotingEnclave};
use crate::proto::{Request, Response};

/// An answer ready to be framed, with the status code it carries (for the log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The encoded `aesm.message.Response`.
    pub payload: Vec<u8>,
    /// Its status code.
    pub code: u32,
}

impl Answer {
    /// Encodes a response.
    pub fn from_response(response: &Response) -> Self {
        let code = response.kind.as_ref().map_or(1, |k| k.error_code());
        Self {
            payload: response.encode_to_vec(),
            code,
        }
    }
}

/// Where the daemon gets its answers: the in-process simulated quoting enclave, or a real aesmd
/// behind a socket.
pub trait Backend: Send + Sync + 'static {
    /// A short name for logs (`sim`, `forward`).
    fn name(&self) -> &'static str;

    /// Answers one request. `raw` is the request payload as received (the forwarding backend
    /// relays it unchanged), `request` its decoding. Never fails: refusals are answers with a
    /// status code.
    fn answer(&self, raw: Vec<u8>, request: Request) -> impl Future<Output = Answer> + Send;
}

/// A backend answering from an in-process [`QuotingEnclave`].
#[derive(Debug)]
pub struct LocalBackend<Q> {
    service: QuoteService<Q>,
    name: &'static str,
}

impl<Q: QuotingEnclave> LocalBackend<Q> {
    /// Serves `qe`, logging under `name`.
    pub fn new(qe: Q, name: &'static str) -> Self {
        Self {
            service: QuoteService::new(qe),
            name,
        }
    }

    /// The protocol service.
    pub fn service(&self) -> &QuoteService<Q> {
        &self.service
    }
}

impl<Q: QuotingEnclave> Backend for LocalBackend<Q> {
    fn name(&self) -> &'static str {
        self.name
    }

    // Quote generation is a few tens of microseconds of CPU: it runs inline on the worker
    // thread, which is cheaper than a hop to the blocking pool.
    fn answer(&self, _raw: Vec<u8>, request: Request) -> impl Future<Output = Answer> + Send {
        let response = match request.kind.as_ref() {
            Some(kind) => self.service.handle(kind),
            None => Response::status_for(None, crate::AesmError::ServiceUnavailable.code()),
        };
        std::future::ready(Answer::from_response(&response))
    }
}
