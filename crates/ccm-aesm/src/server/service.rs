//! The AESM quote-ex semantics, written once over any quoting enclave.
//!
//! This follows Intel's aesmd (quote proxy service and ECDSA bundle) where clients can observe
//! it:
//!
//! * The attestation key id is required in InitQuoteEx, GetQuoteSizeEx and GetQuoteEx, must be
//!   256 bytes (else parameter error, 3), and must name this enclave's key in its first 158 bytes
//!   (else unsupported attestation key id, 38).
//! * InitQuoteEx is called twice by `sgx_init_quote_ex`: first with `b_pub_key_id = false`, which
//!   returns `pub_key_id_size = 32`; then with `b_pub_key_id = true` and `buf_size = 32`, which
//!   returns the TARGETINFO and the public key id. Any other `buf_size` in the second call is a
//!   parameter error. Intel's size query returns an all-zero TARGETINFO; this helper returns the
//!   real one in both calls, which no correct client can tell apart.
//! * GetQuoteEx checks the REPORT (432 bytes) and the QE report info (960 bytes when present),
//!   refuses buffers smaller than the quote (3) or above [`MAX_QUOTE_BUFFER`] (3), and pads the
//!   quote with zeros to the buffer size as aesmd does. When a QE report info was sent, it comes
//!   back with the QE's REPORT for the application.
//! * SelectAttKeyID without a list selects this key; with a list (header and 256-byte ids) it
//!   returns the first listed id naming this key, or 38 when none does; a malformed list is 3.
//! * GetSupportedAttKeyIDs needs a buffer of exactly count × 256 bytes.
//! * Legacy EPID, launch-token and platform-service requests are answered in their own response
//!   field with service unavailable (30).

use ccm_sgx::{AttKeyId, QeReportInfo, Report, TargetInfo};

use crate::AesmError;
use crate::frame::MAX_QUOTE_BUFFER;
use crate::keylist;
use crate::proto::{
    GetQuoteExRequest, GetQuoteExResponse, GetQuoteSizeExResponse, GetSupportedAttKeyIdNumResponse,
    GetSupportedAttKeyIdsResponse, InitQuoteExRequest, InitQuoteExResponse, RequestKind, Response,
    ResponseKind, SelectAttKeyIdResponse,
};

/// Size of a public key id.
pub const PUB_KEY_ID_LEN: u64 = 32;

/// A quoting enclave as the AESM service sees it: one attestation key, its TARGETINFO, and
/// quote generation from a REPORT targeted at it.
pub trait QuotingEnclave: Send + Sync + 'static {
    /// The enclave's TARGETINFO, for applications to target their REPORTs at it.
    fn target_info(&self) -> TargetInfo;
    /// The attestation key id this enclave serves.
    fn att_key_id(&self) -> AttKeyId;
    /// The 32-byte public id of the attestation key.
    fn pub_key_id(&self) -> [u8; 32];
    /// The exact size of the quotes it produces.
    fn quote_size(&self) -> u32;
    /// Checks the REPORT (MAC and target) and produces a quote; with a QE report info, also the
    /// QE's REPORT for the application with REPORTDATA\[0..32\] = SHA-256(nonce ‖ quote).
    fn get_quote(
        &self,
        report: &Report,
        qe_report_info: Option<&QeReportInfo>,
    ) -> Result<(Vec<u8>, Option<QeReportInfo>), AesmError>;
}

/// Answers decoded AESM requests from a [`QuotingEnclave`].
#[derive(Debug)]
pub struct QuoteService<Q> {
    qe: Q,
    att_key_id: AttKeyId,
    target_info: TargetInfo,
    pub_key_id: [u8; 32],
}

impl<Q: QuotingEnclave> QuoteService<Q> {
    /// Wraps a quoting enclave (its key id, TARGETINFO and key id are read once).
    pub fn new(qe: Q) -> Self {
        Self {
            att_key_id: qe.att_key_id(),
            target_info: qe.target_info(),
            pub_key_id: qe.pub_key_id(),
            qe,
        }
    }

    /// The wrapped enclave.
    pub fn enclave(&self) -> &Q {
        &self.qe
    }

    /// Answers one request. Never fails: every refusal is a response with a status code.
    pub fn handle(&self, request: &RequestKind) -> Response {
        let kind = match request {
            RequestKind::InitQuoteEx(r) => self.init_quote_ex(r),
            RequestKind::GetQuoteSizeEx(r) => match self.check_key(r.att_key_id.as_deref()) {
                Ok(()) => Ok(ResponseKind::GetQuoteSizeEx(GetQuoteSizeExResponse {
                    error_code: Some(0),
                    quote_size: Some(self.qe.quote_size()),
                })),
                Err(e) => Err(e),
            },
            RequestKind::GetQuoteEx(r) => self.get_quote_ex(r),
            RequestKind::SelectAttKeyId(r) => self.select(r.att_key_id_list.as_deref()),
            RequestKind::GetSupportedAttKeyIdNum(_) => Ok(ResponseKind::GetSupportedAttKeyIdNum(
                GetSupportedAttKeyIdNumResponse {
                    error_code: Some(0),
                    att_key_id_num: Some(1),
                },
            )),
            RequestKind::GetSupportedAttKeyIds(r) => {
                if r.buf_size != Some(256) {
                    Err(AesmError::Parameter)
                } else {
                    Ok(ResponseKind::GetSupportedAttKeyIds(
                        GetSupportedAttKeyIdsResponse {
                            error_code: Some(0),
                            att_key_ids: Some(self.att_key_id.as_bytes().to_vec()),
                        },
                    ))
                }
            }
            _ => Err(AesmError::ServiceUnavailable),
        };
        match kind {
            Ok(kind) => Response { kind: Some(kind) },
            Err(code) => Response::status_for(Some(request), code.code()),
        }
    }

    fn check_key(&self, att_key_id: Option<&[u8]>) -> Result<(), AesmError> {
        let bytes = att_key_id.ok_or(AesmError::Parameter)?;
        let id = AttKeyId::parse(bytes).map_err(|_| AesmError::Parameter)?;
        if id == self.att_key_id {
            Ok(())
        } else {
            Err(AesmError::UnsupportedAttKeyId)
        }
    }

    fn init_quote_ex(&self, r: &InitQuoteExRequest) -> Result<ResponseKind, AesmError> {
        self.check_key(r.att_key_id.as_deref())?;
        let pub_key_id = match r.b_pub_key_id.ok_or(AesmError::Parameter)? {
            false => None,
            true if r.buf_size == Some(PUB_KEY_ID_LEN) => Some(self.pub_key_id.to_vec()),
            true => return Err(AesmError::Parameter),
        };
        Ok(ResponseKind::InitQuoteEx(InitQuoteExResponse {
            error_code: Some(0),
            target_info: Some(self.target_info.as_bytes().to_vec()),
            pub_key_id_size: Some(PUB_KEY_ID_LEN),
            pub_key_id,
        }))
    }

    fn get_quote_ex(&self, r: &GetQuoteExRequest) -> Result<ResponseKind, AesmError> {
        let report = r.report.as_deref().ok_or(AesmError::Parameter)?;
        let report = Report::parse(report).map_err(|_| AesmError::Parameter)?;
        self.check_key(r.att_key_id.as_deref())?;
        let info = match r.qe_report_info.as_deref() {
            None => None,
            Some(b) => Some(QeReportInfo::parse(b).map_err(|_| AesmError::Parameter)?),
        };
        let buf_size = r.buf_size.ok_or(AesmError::Parameter)?;
        if buf_size > MAX_QUOTE_BUFFER || buf_size < self.qe.quote_size() {
            return Err(AesmError::Parameter);
        }
        let (mut quote, info_out) = self.qe.get_quote(&report, info.as_ref())?;
        let buf_len = usize::try_from(buf_size).map_err(|_| AesmError::Parameter)?;
        if quote.len() > buf_len {
            return Err(AesmError::Parameter);
        }
        quote.resize(buf_len, 0);
        let qe_report_info = match (info, info_out) {
            (None, _) => None,
            (Some(_), Some(out)) => Some(out.as_bytes().to_vec()),
            (Some(_), None) => return Err(AesmError::UnableToGenerateQeReport),
        };
        Ok(ResponseKind::GetQuoteEx(GetQuoteExResponse {
            error_code: Some(0),
            quote: Some(quote),
            qe_report_info,
        }))
    }

    fn select(&self, list: Option<&[u8]>) -> Result<ResponseKind, AesmError> {
        let selected = match list {
            None => self.att_key_id,
            Some(bytes) => {
                let ids = keylist::parse(bytes).map_err(|_| AesmError::Parameter)?;
                ids.into_iter()
                    .find(|id| *id == self.att_key_id)
                    .ok_or(AesmError::UnsupportedAttKeyId)?
            }
        };
        Ok(ResponseKind::SelectAttKeyId(SelectAttKeyIdResponse {
            error_code: Some(0),
            selected_att_key_id: Some(selected.as_bytes().to_vec()),
        }))
    }
}
