//! Glue between async byte streams and the blocking layer readers.

use std::io::{self, Read};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;

use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::oci::Descriptor;
use crate::registry::ByteStream;

/// Wraps a blob stream so it fails unless exactly `desc.size` bytes with digest `desc.digest`
/// arrive; the failure is the stream's last item.
pub fn verified(inner: ByteStream, desc: &Descriptor, what: String) -> ByteStream {
    struct State {
        inner: ByteStream,
        hasher: Option<Hasher>,
        expected: Digest,
        size: u64,
        what: String,
    }
    let state = State {
        inner,
        hasher: Some(Hasher::new()),
        expected: desc.digest,
        size: desc.size,
        what,
    };
    Box::pin(futures_util::stream::unfold(state, |mut st| async move {
        let hasher = st.hasher.as_mut()?;
        match st.inner.next().await {
            Some(Ok(chunk)) => {
                hasher.update(&chunk);
                if hasher.len() > st.size {
                    let err = Error::SizeMismatch {
                        what: st.what.clone(),
                        expected: st.size,
                        actual: hasher.len(),
                    };
                    st.hasher = None;
                    return Some((Err(err), st));
                }
                Some((Ok(chunk), st))
            }
            Some(Err(e)) => {
                st.hasher = None;
                Some((Err(e), st))
            }
            None => {
                let h = st.hasher.take()?;
                let len = h.len();
                if len != st.size {
                    let err = Error::SizeMismatch {
                        what: st.what.clone(),
                        expected: st.size,
                        actual: len,
                    };
                    return Some((Err(err), st));
                }
                let actual = h.finish();
                if actual != st.expected {
                    let err = Error::DigestMismatch {
                        what: st.what.clone(),
                        expected: st.expected.to_string(),
                        actual: actual.to_string(),
                    };
                    return Some((Err(err), st));
                }
                None
            }
        }
    }))
}

/// A blocking reader fed by a channel of chunks (the consumer side of a layer pipeline, run on a
/// blocking thread). An `Err` item ends the stream with that error.
pub struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl ChannelReader {
    /// A reader over `rx`.
    pub fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> Self {
        ChannelReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        let chunk = self.current.split_to(n);
        if let Some(dst) = buf.get_mut(..n) {
            dst.copy_from_slice(&chunk);
        }
        Ok(n)
    }
}

/// A stream of the items sent to `rx`.
pub fn receiver_stream<T: Send + 'static>(
    rx: mpsc::Receiver<T>,
) -> impl Stream<Item = T> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// Turns a crate error into an I/O error for a blocking reader, keeping the message.
pub fn to_io(e: &Error) -> io::Error {
    io::Error::other(e.to_string())
}

/// Reads a whole (small) stream into memory, refusing more than `limit` bytes.
pub async fn collect(mut s: ByteStream, limit: u64, what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        let chunk = chunk?;
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(Error::TooLarge {
                what: what.to_owned(),
                limit,
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
