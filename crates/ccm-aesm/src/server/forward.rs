//! The forwarding backend: relays each request to a real aesmd socket, one connection per
//! request as aesmd expects, and checks the framing both ways.
//!
//! Requests reach this backend only after the server has read them within the request cap and
//! decoded them as `aesm.message.Request`, so garbage never reaches the real aesmd. Responses are
//! read within [`MAX_RESPONSE_LEN`] and must decode as `aesm.message.Response` with an answer;
//! otherwise the client gets unexpected error (1) in its request's response field. An aesmd
//! that cannot be reached, or does not answer in time, gives service unavailable (30).

use std::path::{Path, PathBuf};
use std::time::Duration;

use prost::Message;
use tokio::net::UnixStream;

use super::backend::{Answer, Backend};
use crate::frame::{MAX_RESPONSE_LEN, tokio_io};
use crate::proto::{Request, Response};
use crate::{AesmError, Error};

/// Default time allowed for the real aesmd to answer (it may contact a provisioning service on
/// the first InitQuoteEx).
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// Relays requests to the aesmd socket at a path.
#[derive(Clone, Debug)]
pub struct ForwardBackend {
    upstream: PathBuf,
    timeout: Duration,
}

impl ForwardBackend {
    /// Forwards to the socket at `upstream` with [`DEFAULT_UPSTREAM_TIMEOUT`].
    pub fn new(upstream: impl Into<PathBuf>) -> Self {
        Self {
            upstream: upstream.into(),
            timeout: DEFAULT_UPSTREAM_TIMEOUT,
        }
    }

    /// Sets the time allowed for one round trip to the upstream aesmd.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The upstream socket.
    pub fn upstream(&self) -> &Path {
        &self.upstream
    }

    async fn round_trip(&self, raw: &[u8]) -> Result<Vec<u8>, Error> {
        let mut stream = UnixStream::connect(&self.upstream)
            .await
            .map_err(|e| Error::io(format!("connect {}", self.upstream.display()), e))?;
        tokio_io::write_frame(&mut stream, raw, "forwarded request").await?;
        tokio_io::read_frame(&mut stream, MAX_RESPONSE_LEN, "upstream response").await
    }
}

impl Backend for ForwardBackend {
    fn name(&self) -> &'static str {
        "forward"
    }

    async fn answer(&self, raw: Vec<u8>, request: Request) -> Answer {
        let refuse = |code: AesmError| {
            Answer::from_response(&Response::status_for(request.kind.as_ref(), code.code()))
        };
        let payload = match tokio::time::timeout(self.timeout, self.round_trip(&raw)).await {
            Ok(Ok(payload)) => payload,
            Ok(Err(e)) => {
                tracing::warn!(upstream = %self.upstream.display(), error = %e, "upstream aesmd failed");
                return match e {
                    Error::FrameTooLarge { .. } | Error::Truncated { .. } => {
                        refuse(AesmError::Unexpected)
                    }
                    _ => refuse(AesmError::ServiceUnavailable),
                };
            }
            Err(_) => {
                tracing::warn!(upstream = %self.upstream.display(), timeout = ?self.timeout, "upstream aesmd timed out");
                return refuse(AesmError::ServiceUnavailable);
            }
        };
        match Response::decode(payload.as_slice()) {
            Ok(Response { kind: Some(kind) }) => Answer {
                code: kind.error_code(),
                payload,
            },
            Ok(Response { kind: None }) => {
                tracing::warn!(upstream = %self.upstream.display(), "upstream response carries no answer");
                refuse(AesmError::Unexpected)
            }
            Err(e) => {
                tracing::warn!(upstream = %self.upstream.display(), error = %e, "upstream response is not an AESM response");
                refuse(AesmError::Unexpected)
            }
        }
    }
}
