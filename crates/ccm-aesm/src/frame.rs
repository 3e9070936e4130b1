//! Framing: a 4-byte little-endian length, then that many bytes of protobuf. One request and one
//! response per connection.
//!
//! Lengths are checked against a cap before anything is allocated for the body, so a peer that
//! announces four gigabytes costs four bytes of reading.

use std::io::{self, Read, Write};

use crate::Error;

/// The largest request frame the daemon reads. The biggest legitimate request (GetQuoteEx with a
/// REPORT, a key id and a QE report info) is under 2 KiB; a SelectAttKeyID list of many ids
/// stays far below this.
pub const MAX_REQUEST_LEN: u32 = 64 * 1024;

/// The largest response frame the client (and the forwarding backend) reads. A DCAP quote with
/// its PCK chain is about 5 KiB; aesmd pads quotes to the caller's buffer size, which is bounded
/// by [`MAX_QUOTE_BUFFER`].
pub const MAX_RESPONSE_LEN: u32 = 1024 * 1024;

/// The largest quote buffer (`buf_size` of GetQuoteEx) the daemon accepts; larger requests are
/// answered with a parameter error so a response frame always fits in [`MAX_RESPONSE_LEN`].
pub const MAX_QUOTE_BUFFER: u32 = 512 * 1024;

/// Length of the frame header.
pub const HEADER_LEN: usize = 4;

/// Builds a complete frame (header and payload) in one buffer, so it goes out in one write.
///
/// Fails only if the payload is longer than `u32::MAX`, which no AESM message is.
pub fn encode_frame(payload: &[u8]) -> Result<Vec<u8>, Error> {
    let len = u32::try_from(payload.len()).map_err(|_| Error::FrameTooLarge {
        what: "outgoing",
        declared: u32::MAX,
        limit: u32::MAX,
    })?;
    let mut out = Vec::with_capacity(payload.len().saturating_add(HEADER_LEN));
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Checks a frame header against the cap and returns the body length.
pub fn body_len(header: [u8; HEADER_LEN], limit: u32, what: &'static str) -> Result<usize, Error> {
    let declared = u32::from_le_bytes(header);
    if declared > limit {
        return Err(Error::FrameTooLarge {
            what,
            declared,
            limit,
        });
    }
    usize::try_from(declared).map_err(|_| Error::FrameTooLarge {
        what,
        declared,
        limit,
    })
}

/// A frame cut short before its first byte is a connection closed without a message.
fn closed_if_empty(e: Error) -> Error {
    match e {
        Error::Truncated {
            what, received: 0, ..
        } => Error::Closed { what },
        other => other,
    }
}

/// Writes one frame to a blocking stream.
pub fn write_frame<W: Write>(w: &mut W, payload: &[u8], what: &'static str) -> Result<(), Error> {
    let frame = encode_frame(payload)?;
    w.write_all(&frame)
        .and_then(|()| w.flush())
        .map_err(|e| Error::io(format!("write {what}"), e))
}

/// Reads exactly `buf.len()` bytes, telling a clean end of stream inside the frame
/// ([`Error::Truncated`]) from an I/O error or a timeout.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8], what: &'static str) -> Result<(), Error> {
    let mut filled = 0usize;
    while let Some(rest) = buf.get_mut(filled..) {
        if rest.is_empty() {
            break;
        }
        match r.read(rest) {
            Ok(0) => {
                return Err(Error::Truncated {
                    what,
                    expected: buf.len(),
                    received: filled,
                });
            }
            Ok(n) => filled = filled.saturating_add(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(format!("read {what}"), e)),
        }
    }
    Ok(())
}

/// Reads one frame from a blocking stream, refusing bodies above `limit` before allocating.
pub fn read_frame<R: Read>(r: &mut R, limit: u32, what: &'static str) -> Result<Vec<u8>, Error> {
    let mut header = [0u8; HEADER_LEN];
    read_full(r, &mut header, what).map_err(closed_if_empty)?;
    let len = body_len(header, limit, what)?;
    let mut body = vec![0u8; len];
    read_full(r, &mut body, what)?;
    Ok(body)
}

/// Asynchronous framing for the daemon and the forwarding backend.
#[cfg(feature = "server")]
pub mod tokio_io {
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    use super::{HEADER_LEN, body_len, encode_frame};
    use crate::Error;

    async fn read_full<R: AsyncRead + Unpin>(
        r: &mut R,
        buf: &mut [u8],
        what: &'static str,
    ) -> Result<(), Error> {
        let mut filled = 0usize;
        while let Some(rest) = buf.get_mut(filled..) {
            if rest.is_empty() {
                break;
            }
            match r.read(rest).await {
                Ok(0) => {
                    return Err(Error::Truncated {
                        what,
                        expected: buf.len(),
                        received: filled,
                    });
                }
                Ok(n) => filled = filled.saturating_add(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(format!("read {what}"), e)),
            }
        }
        Ok(())
    }

    /// Reads one frame, refusing bodies above `limit` before allocating. The caller bounds the
    /// time it may take.
    pub async fn read_frame<R: AsyncRead + Unpin>(
        r: &mut R,
        limit: u32,
        what: &'static str,
    ) -> Result<Vec<u8>, Error> {
        let mut header = [0u8; HEADER_LEN];
        read_full(r, &mut header, what)
            .await
            .map_err(super::closed_if_empty)?;
        let len = body_len(header, limit, what)?;
        let mut body = vec![0u8; len];
        read_full(r, &mut body, what).await?;
        Ok(body)
    }

    /// Writes one frame in a single write and flushes it.
    pub async fn write_frame<W: AsyncWrite + Unpin>(
        w: &mut W,
        payload: &[u8],
        what: &'static str,
    ) -> Result<(), Error> {
        let frame = encode_frame(payload)?;
        w.write_all(&frame)
            .await
            .map_err(|e| Error::io(format!("write {what}"), e))?;
        w.flush()
            .await
            .map_err(|e| Error::io(format!("write {what}"), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_truncation() {
        let frame = encode_frame(b"hello").unwrap();
        assert_eq!(&frame[..4], &[5, 0, 0, 0]);
        assert_eq!(
            read_frame(&mut frame.as_slice(), 16, "t").unwrap(),
            b"hello"
        );
        let err = read_frame(&mut &frame[..0], 16, "t").unwrap_err();
        assert!(matches!(err, Error::Closed { .. }), "{err}");
        for cut in 1..frame.len() {
            let err = read_frame(&mut &frame[..cut], 16, "t").unwrap_err();
            assert!(matches!(err, Error::Truncated { .. }), "{cut}: {err}");
        }
    }

    #[test]
    fn oversize_is_refused_from_the_header() {
        // Only the header exists: the body is never read or allocated.
        let header = u32::MAX.to_le_bytes();
        let err = read_frame(&mut header.as_slice(), MAX_REQUEST_LEN, "request").unwrap_err();
        assert!(
            matches!(
                err,
                Error::FrameTooLarge {
                    declared: u32::MAX,
                    limit: MAX_REQUEST_LEN,
                    ..
                }
            ),
            "{err}"
        );
        let at_limit = (MAX_REQUEST_LEN).to_le_bytes();
        let err = read_frame(&mut at_limit.as_slice(), MAX_REQUEST_LEN, "request").unwrap_err();
        assert!(matches!(err, Error::Truncated { .. }), "{err}");
    }
}
