//! A blocking, std-only AESM client: one Unix-socket connection per request, as aesmd expects.
//!
//! It is small on purpose (no async runtime) so the in-image launcher can link it. Every call has
//! a read/write timeout, response frames are capped before anything is allocated for them, the
//! response must answer the request's own kind, and a non-zero status comes back as
//! [`Error::Aesm`] with the code.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ccm_sgx::{AttKeyId, QeReportInfo, Quote, Report, TargetInfo};
use prost::Message;

use crate::frame::{self, MAX_RESPONSE_LEN};
use crate::proto::{
    GetQuoteExRequest, GetQuoteSizeExRequest, GetSupportedAttKeyIdNumRequest,
    GetSupportedAttKeyIdsRequest, InitQuoteExRequest, Request, RequestKind, Response, ResponseKind,
    SelectAttKeyIdRequest,
};
use crate::{AesmError, Error, keylist};

/// Where aesmd listens by default (and where `SGX_AESM_ADDR=1` clients connect).
pub const DEFAULT_SOCKET: &str = "/var/run/aesmd/aesm.socket";

/// Default time allowed for each read or write on the socket. Intel's aesmd may contact a
/// provisioning service on the first InitQuoteEx, hence the generous value.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Size of the public key id of ECDSA attestation keys (a SHA-256 hash).
pub const PUB_KEY_ID_LEN: usize = 32;

/// What InitQuoteEx returns: the quoting enclave's TARGETINFO (to target the application's
/// REPORT at it) and the id of its attestation public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QeTarget {
    /// The quoting enclave's TARGETINFO.
    pub target_info: TargetInfo,
    /// The attestation key's public id.
    pub pub_key_id: Vec<u8>,
}

/// What GetQuoteEx returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuoteResult {
    /// The quote, without the zero padding aesmd adds up to the buffer size.
    pub quote: Vec<u8>,
    /// The QE report info with the QE's REPORT for the application, when one was asked for.
    pub qe_report_info: Option<QeReportInfo>,
}

/// A client for one AESM socket.
#[derive(Clone, Debug)]
pub struct AesmClient {
    socket: PathBuf,
    timeout: Duration,
    max_response_len: u32,
}

impl AesmClient {
    /// A client for the socket at `socket`, with [`DEFAULT_TIMEOUT`] and a response cap of
    /// [`MAX_RESPONSE_LEN`].
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            timeout: DEFAULT_TIMEOUT,
            max_response_len: MAX_RESPONSE_LEN,
        }
    }

    /// Sets the time allowed for each read and write (zero is replaced by one millisecond, as
    /// the socket API cannot express "no time").
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Sets the largest response frame accepted.
    #[must_use]
    pub fn with_max_response_len(mut self, limit: u32) -> Self {
        self.max_response_len = limit;
        self
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one encoded request and returns the raw response payload (no checks beyond framing
    /// and the length cap).
    pub fn call_raw(&self, request: &[u8]) -> Result<Vec<u8>, Error> {
        let mut stream = UnixStream::connect(&self.socket)
            .map_err(|e| Error::io(format!("connect {}", self.socket.display()), e))?;
        let context = |e| Error::io(format!("configure {}", self.socket.display()), e);
        stream
            .set_read_timeout(Some(self.timeout))
            .map_err(context)?;
        stream
            .set_write_timeout(Some(self.timeout))
            .map_err(context)?;
        frame::write_frame(&mut stream, request, "request")?;
        frame::read_frame(&mut stream, self.max_response_len, "response")
    }

    /// Sends a request and returns its answer, which must be of the request's own kind and carry
    /// status 0. An `UnsupportedRequestResponse` or a non-zero status is [`Error::Aesm`].
    pub fn transact(&self, request: RequestKind) -> Result<ResponseKind, Error> {
        let field = request.field();
        let bytes = Request {
            kind: Some(request),
        }
        .encode_to_vec();
        let payload = self.call_raw(&bytes)?;
        let response = Response::decode(payload.as_slice()).map_err(|source| Error::Decode {
            what: "response",
            source,
        })?;
        let kind = response
            .kind
            .ok_or_else(|| Error::BadResponse("the response carries no answer".into()))?;
        if kind.field() != field && kind.field() != 20 {
            return Err(Error::BadResponse(format!(
                "request field {field} was answered in response field {}",
                kind.field()
            )));
        }
        if let Some(code) = AesmError::from_code(kind.error_code()) {
            return Err(Error::Aesm(code));
        }
        if kind.field() == 20 {
            return Err(Error::BadResponse(
                "the service does not support this request".into(),
            ));
        }
        Ok(kind)
    }

    /// InitQuoteEx the way `sgx_init_quote_ex` does it: first asks for the size of the public
    /// key id, then for the TARGETINFO and the key id itself.
    pub fn init_quote_ex(&self, att_key_id: &AttKeyId) -> Result<QeTarget, Error> {
        let size = match self.transact(RequestKind::InitQuoteEx(InitQuoteExRequest {
            att_key_id: Some(att_key_id.as_bytes().to_vec()),
            b_pub_key_id: Some(false),
            ..Default::default()
        }))? {
            ResponseKind::InitQuoteEx(r) => r.pub_key_id_size.ok_or_else(|| {
                Error::BadResponse("InitQuoteEx size query returned no pub_key_id_size".into())
            })?,
            _ => return Err(Error::BadResponse("unexpected response kind".into())),
        };
        let expected = u64::try_from(PUB_KEY_ID_LEN).unwrap_or(u64::MAX);
        if size != expected {
            return Err(Error::BadResponse(format!(
                "pub_key_id_size is {size}, ECDSA keys have {PUB_KEY_ID_LEN}"
            )));
        }
        let r = match self.transact(RequestKind::InitQuoteEx(InitQuoteExRequest {
            att_key_id: Some(att_key_id.as_bytes().to_vec()),
            b_pub_key_id: Some(true),
            buf_size: Some(size),
            ..Default::default()
        }))? {
            ResponseKind::InitQuoteEx(r) => r,
            _ => return Err(Error::BadResponse("unexpected response kind".into())),
        };
        let target_info = r
            .target_info
            .ok_or_else(|| Error::BadResponse("InitQuoteEx returned no target_info".into()))?;
        let pub_key_id = r
            .pub_key_id
            .ok_or_else(|| Error::BadResponse("InitQuoteEx returned no pub_key_id".into()))?;
        if pub_key_id.len() != PUB_KEY_ID_LEN {
            return Err(Error::BadResponse(format!(
                "pub_key_id has {} bytes, expected {PUB_KEY_ID_LEN}",
                pub_key_id.len()
            )));
        }
        Ok(QeTarget {
            target_info: TargetInfo::parse(&target_info)?,
            pub_key_id,
        })
    }

    /// GetQuoteSizeEx: the buffer size a quote with this key needs.
    pub fn get_quote_size_ex(&self, att_key_id: &AttKeyId) -> Result<u32, Error> {
        match self.transact(RequestKind::GetQuoteSizeEx(GetQuoteSizeExRequest {
            att_key_id: Some(att_key_id.as_bytes().to_vec()),
            timeout: None,
        }))? {
            ResponseKind::GetQuoteSizeEx(r) => r
                .quote_size
                .ok_or_else(|| Error::BadResponse("GetQuoteSizeEx returned no quote_size".into())),
            _ => Err(Error::BadResponse("unexpected response kind".into())),
        }
    }

    /// GetQuoteEx with a quote buffer of `buf_size` bytes. The returned quote has aesmd's zero
    /// padding removed (its length is taken from `signature_data_len`) and is checked to parse.
    pub fn get_quote_ex(
        &self,
        att_key_id: &AttKeyId,
        report: &Report,
        qe_report_info: Option<&QeReportInfo>,
        buf_size: u32,
    ) -> Result<QuoteResult, Error> {
        let r = match self.transact(RequestKind::GetQuoteEx(GetQuoteExRequest {
            report: Some(report.as_bytes().to_vec()),
            att_key_id: Some(att_key_id.as_bytes().to_vec()),
            qe_report_info: qe_report_info.map(|i| i.as_bytes().to_vec()),
            buf_size: Some(buf_size),
            timeout: None,
        }))? {
            ResponseKind::GetQuoteEx(r) => r,
            _ => return Err(Error::BadResponse("unexpected response kind".into())),
        };
        let quote = r
            .quote
            .ok_or_else(|| Error::BadResponse("GetQuoteEx returned no quote".into()))?;
        let quote = strip_padding(quote)?;
        let qe_report_info = match (qe_report_info, r.qe_report_info) {
            (None, _) => None,
            (Some(_), Some(bytes)) => Some(QeReportInfo::parse(&bytes)?),
            (Some(_), None) => {
                return Err(Error::BadResponse(
                    "GetQuoteEx returned no qe_report_info although one was sent".into(),
                ));
            }
        };
        Ok(QuoteResult {
            quote,
            qe_report_info,
        })
    }

    /// GetQuoteSizeEx followed by GetQuoteEx with exactly that buffer: what `sgx_get_quote_ex`
    /// callers do.
    pub fn get_quote(
        &self,
        att_key_id: &AttKeyId,
        report: &Report,
        qe_report_info: Option<&QeReportInfo>,
    ) -> Result<QuoteResult, Error> {
        let size = self.get_quote_size_ex(att_key_id)?;
        self.get_quote_ex(att_key_id, report, qe_report_info, size)
    }

    /// SelectAttKeyID: picks the service's key among `candidates` (all supported keys when
    /// `None`).
    pub fn select_att_key_id(&self, candidates: Option<&[AttKeyId]>) -> Result<AttKeyId, Error> {
        match self.transact(RequestKind::SelectAttKeyId(SelectAttKeyIdRequest {
            att_key_id_list: candidates.map(keylist::encode),
            timeout: None,
        }))? {
            ResponseKind::SelectAttKeyId(r) => {
                let id = r.selected_att_key_id.ok_or_else(|| {
                    Error::BadResponse("SelectAttKeyID returned no selected_att_key_id".into())
                })?;
                Ok(AttKeyId::parse(&id)?)
            }
            _ => Err(Error::BadResponse("unexpected response kind".into())),
        }
    }

    /// GetSupportedAttKeyIDNum.
    pub fn get_supported_att_key_id_num(&self) -> Result<u32, Error> {
        match self.transact(RequestKind::GetSupportedAttKeyIdNum(
            GetSupportedAttKeyIdNumRequest { timeout: None },
        ))? {
            ResponseKind::GetSupportedAttKeyIdNum(r) => r.att_key_id_num.ok_or_else(|| {
                Error::BadResponse("GetSupportedAttKeyIDNum returned no att_key_id_num".into())
            }),
            _ => Err(Error::BadResponse("unexpected response kind".into())),
        }
    }

    /// GetSupportedAttKeyIDNum followed by GetSupportedAttKeyIDs with the matching buffer.
    pub fn get_supported_att_key_ids(&self) -> Result<Vec<AttKeyId>, Error> {
        let count = self.get_supported_att_key_id_num()?;
        if count > keylist::MAX_IDS {
            return Err(Error::BadResponse(format!(
                "the service claims {count} attestation key ids, above the limit of {}",
                keylist::MAX_IDS
            )));
        }
        let buf_size = count.saturating_mul(256);
        let blob = match self.transact(RequestKind::GetSupportedAttKeyIds(
            GetSupportedAttKeyIdsRequest {
                buf_size: Some(buf_size),
                timeout: None,
            },
        ))? {
            ResponseKind::GetSupportedAttKeyIds(r) => r.att_key_ids.ok_or_else(|| {
                Error::BadResponse("GetSupportedAttKeyIDs returned no att_key_ids".into())
            })?,
            _ => return Err(Error::BadResponse("unexpected response kind".into())),
        };
        if u32::try_from(blob.len()).ok() != Some(buf_size) {
            return Err(Error::BadResponse(format!(
                "GetSupportedAttKeyIDs returned {} bytes for {count} ids",
                blob.len()
            )));
        }
        blob.chunks_exact(keylist::ID_LEN)
            .map(|c| AttKeyId::parse(c).map_err(Error::from))
            .collect()
    }
}

/// Removes the zero padding aesmd appends up to the caller's buffer size, after checking that
/// the quote parses (v3 or v4; the padding must be zeros).
fn strip_padding(mut quote: Vec<u8>) -> Result<Vec<u8>, Error> {
    let parsed = Quote::parse(&quote)?;
    let at = parsed.signed_len();
    let mut len = [0u8; 4];
    let field = quote
        .get(at..at.saturating_add(4))
        .ok_or_else(|| Error::BadResponse("quote too short for signature_data_len".into()))?;
    len.copy_from_slice(field);
    let total = usize::try_from(u32::from_le_bytes(len))
        .ok()
        .and_then(|sig| sig.checked_add(at)?.checked_add(4))
        .ok_or_else(|| Error::BadResponse("quote signature_data_len overflows".into()))?;
    quote.truncate(total);
    Ok(quote)
}
