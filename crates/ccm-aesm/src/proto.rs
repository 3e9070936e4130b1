//! The protobuf messages of Intel's AESM protocol (`aesm.message.Request` / `Response`, proto2),
//! written out by hand so no protoc runs at build time.
//!
//! Intel's `messages.proto` declares one optional field per request kind. Exactly one is set in a
//! well-formed message, which on the wire is indistinguishable from a `oneof`; this module models
//! it as one (`Request::kind`, `Response::kind`) so a message has exactly one kind by
//! construction. Field numbers are those of Intel's file:
//!
//! | kind | request / response field |
//! |---|---|
//! | InitQuoteEx | 15 |
//! | GetQuoteSizeEx | 16 |
//! | GetQuoteEx | 17 |
//! | SelectAttKeyID | 19 |
//! | UnsupportedRequestResponse | 20 (response only) |
//! | GetSupportedAttKeyIDNum | 21 |
//! | GetSupportedAttKeyIDs | 22 |
//! | legacy EPID, launch token, platform services | 1–14, 18 |
//!
//! Intel marks some fields `required`; here every field is optional so that a message missing one
//! still decodes and gets a well-formed parameter-error answer instead of a dropped connection.
//! The legacy requests are kept as their raw bytes: this helper never serves them, it only needs
//! to know which kind was asked for so it can answer in the matching response field.

// The derive macros generate the field accessors; the fields themselves are documented.
#![allow(missing_docs)]

use prost::{Message, Oneof};

/// `aesm.message.Request`.
#[derive(Clone, PartialEq, Message)]
pub struct Request {
    /// The one request this message carries.
    #[prost(
        oneof = "RequestKind",
        tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22"
    )]
    pub kind: Option<RequestKind>,
}

/// The request kinds. The quote-ex family is decoded; legacy kinds are kept as raw bytes.
#[derive(Clone, PartialEq, Oneof)]
pub enum RequestKind {
    /// Field 15: `initQuoteExReq`.
    #[prost(message, tag = "15")]
    InitQuoteEx(InitQuoteExRequest),
    /// Field 16: `getQuoteSizeExReq`.
    #[prost(message, tag = "16")]
    GetQuoteSizeEx(GetQuoteSizeExRequest),
    /// Field 17: `getQuoteExReq`.
    #[prost(message, tag = "17")]
    GetQuoteEx(GetQuoteExRequest),
    /// Field 19: `selectAttKeyIDReq`.
    #[prost(message, tag = "19")]
    SelectAttKeyId(SelectAttKeyIdRequest),
    /// Field 21: `getSupportedAttKeyIDNumReq`.
    #[prost(message, tag = "21")]
    GetSupportedAttKeyIdNum(GetSupportedAttKeyIdNumRequest),
    /// Field 22: `getSupportedAttKeyIDsReq`.
    #[prost(message, tag = "22")]
    GetSupportedAttKeyIds(GetSupportedAttKeyIdsRequest),
    /// Field 1: `initQuoteReq` (EPID).
    #[prost(bytes = "vec", tag = "1")]
    InitQuote(Vec<u8>),
    /// Field 2: `getQuoteReq` (EPID).
    #[prost(bytes = "vec", tag = "2")]
    GetQuote(Vec<u8>),
    /// Field 3: `getLicTokenReq` (launch token).
    #[prost(bytes = "vec", tag = "3")]
    GetLaunchToken(Vec<u8>),
    /// Field 4: `reportErrReq` (EPID attestation error report).
    #[prost(bytes = "vec", tag = "4")]
    ReportAttestationError(Vec<u8>),
    /// Field 5: `createSessionReq` (platform services).
    #[prost(bytes = "vec", tag = "5")]
    CreateSession(Vec<u8>),
    /// Field 6: `invokeServiceReq` (platform services).
    #[prost(bytes = "vec", tag = "6")]
    InvokeService(Vec<u8>),
    /// Field 7: `exchangeReportReq` (platform services).
    #[prost(bytes = "vec", tag = "7")]
    ExchangeReport(Vec<u8>),
    /// Field 8: `closeSessionReq` (platform services).
    #[prost(bytes = "vec", tag = "8")]
    CloseSession(Vec<u8>),
    /// Field 9: `getPsCapReq` (platform services).
    #[prost(bytes = "vec", tag = "9")]
    GetPsCap(Vec<u8>),
    /// Field 10: `getWhiteListSizeReq` (launch enclave white list).
    #[prost(bytes = "vec", tag = "10")]
    GetWhiteListSize(Vec<u8>),
    /// Field 11: `getWhiteListReq` (launch enclave white list).
    #[prost(bytes = "vec", tag = "11")]
    GetWhiteList(Vec<u8>),
    /// Field 12: `sgxGetExtendedEpidGroupIdReq` (EPID).
    #[prost(bytes = "vec", tag = "12")]
    SgxGetExtendedEpidGroupId(Vec<u8>),
    /// Field 13: `sgxSwitchExtendedEpidGroupReq` (EPID).
    #[prost(bytes = "vec", tag = "13")]
    SgxSwitchExtendedEpidGroup(Vec<u8>),
    /// Field 14: `sgxRegisterReq` (EPID registration).
    #[prost(bytes = "vec", tag = "14")]
    SgxRegister(Vec<u8>),
    /// Field 18: `checkUpdateStatusReq` (EPID platform update).
    #[prost(bytes = "vec", tag = "18")]
    CheckUpdateStatus(Vec<u8>),
}

impl RequestKind {
    /// The field number of this kind in `Request` (and of its answer in `Response`).
    pub fn field(&self) -> u32 {
        match self {
            Self::InitQuote(_) => 1,
            Self::GetQuote(_) => 2,
            Self::GetLaunchToken(_) => 3,
            Self::ReportAttestationError(_) => 4,
            Self::CreateSession(_) => 5,
            Self::InvokeService(_) => 6,
            Self::ExchangeReport(_) => 7,
            Self::CloseSession(_) => 8,
            Self::GetPsCap(_) => 9,
            Self::GetWhiteListSize(_) => 10,
            Self::GetWhiteList(_) => 11,
            Self::SgxGetExtendedEpidGroupId(_) => 12,
            Self::SgxSwitchExtendedEpidGroup(_) => 13,
            Self::SgxRegister(_) => 14,
            Self::InitQuoteEx(_) => 15,
            Self::GetQuoteSizeEx(_) => 16,
            Self::GetQuoteEx(_) => 17,
            Self::CheckUpdateStatus(_) => 18,
            Self::SelectAttKeyId(_) => 19,
            Self::GetSupportedAttKeyIdNum(_) => 21,
            Self::GetSupportedAttKeyIds(_) => 22,
        }
    }

    /// A short name for logs (`GetQuoteEx`, `InitQuote(legacy)`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Self::InitQuoteEx(_) => "InitQuoteEx",
            Self::GetQuoteSizeEx(_) => "GetQuoteSizeEx",
            Self::GetQuoteEx(_) => "GetQuoteEx",
            Self::SelectAttKeyId(_) => "SelectAttKeyID",
            Self::GetSupportedAttKeyIdNum(_) => "GetSupportedAttKeyIDNum",
            Self::GetSupportedAttKeyIds(_) => "GetSupportedAttKeyIDs",
            Self::InitQuote(_) => "InitQuote(legacy)",
            Self::GetQuote(_) => "GetQuote(legacy)",
            Self::GetLaunchToken(_) => "GetLaunchToken(legacy)",
            Self::ReportAttestationError(_) => "ReportAttestationError(legacy)",
            Self::CreateSession(_) => "CreateSession(legacy)",
            Self::InvokeService(_) => "InvokeService(legacy)",
            Self::ExchangeReport(_) => "ExchangeReport(legacy)",
            Self::CloseSession(_) => "CloseSession(legacy)",
            Self::GetPsCap(_) => "GetPsCap(legacy)",
            Self::GetWhiteListSize(_) => "GetWhiteListSize(legacy)",
            Self::GetWhiteList(_) => "GetWhiteList(legacy)",
            Self::SgxGetExtendedEpidGroupId(_) => "SGXGetExtendedEpidGroupId(legacy)",
            Self::SgxSwitchExtendedEpidGroup(_) => "SGXSwitchExtendedEpidGroup(legacy)",
            Self::SgxRegister(_) => "SGXRegister(legacy)",
            Self::CheckUpdateStatus(_) => "CheckUpdateStatus(legacy)",
        }
    }
}

/// `Request.InitQuoteExRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct InitQuoteExRequest {
    /// 1: the 256-byte attestation key id.
    #[prost(bytes = "vec", optional, tag = "1")]
    pub att_key_id: Option<Vec<u8>>,
    /// 3: whether the caller wants the public key id (second call of the two-call pattern).
    #[prost(bool, optional, tag = "3")]
    pub b_pub_key_id: Option<bool>,
    /// 4: size of the caller's public key id buffer.
    #[prost(uint64, optional, tag = "4")]
    pub buf_size: Option<u64>,
    /// 9: client-side timeout (informational).
    #[prost(uint32, optional, tag = "9")]
    pub timeout: Option<u32>,
}

/// `Request.GetQuoteSizeExRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct GetQuoteSizeExRequest {
    /// 1: the 256-byte attestation key id.
    #[prost(bytes = "vec", optional, tag = "1")]
    pub att_key_id: Option<Vec<u8>>,
    /// 9: client-side timeout (informational).
    #[prost(uint32, optional, tag = "9")]
    pub timeout: Option<u32>,
}

/// `Request.GetQuoteExRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct GetQuoteExRequest {
    /// 1: the application's 432-byte REPORT targeted at the quoting enclave.
    #[prost(bytes = "vec", optional, tag = "1")]
    pub report: Option<Vec<u8>>,
    /// 2: the 256-byte attestation key id.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub att_key_id: Option<Vec<u8>>,
    /// 3: the 960-byte `sgx_ql_qe_report_info_t` (nonce and application TARGETINFO in).
    #[prost(bytes = "vec", optional, tag = "3")]
    pub qe_report_info: Option<Vec<u8>>,
    /// 4: size of the caller's quote buffer.
    #[prost(uint32, optional, tag = "4")]
    pub buf_size: Option<u32>,
    /// 9: client-side timeout (informational).
    #[prost(uint32, optional, tag = "9")]
    pub timeout: Option<u32>,
}

/// `Request.SelectAttKeyIDRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct SelectAttKeyIdRequest {
    /// 1: `sgx_ql_att_key_id_list_t`: header (id u16, version u16, count u32) and 256-byte ids.
    #[prost(bytes = "vec", optional, tag = "1")]
    pub att_key_id_list: Option<Vec<u8>>,
    /// 2: client-side timeout (informational; field 2 in Intel's file, not 9).
    #[prost(uint32, optional, tag = "2")]
    pub timeout: Option<u32>,
}

/// `Request.GetSupportedAttKeyIDNumRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct GetSupportedAttKeyIdNumRequest {
    /// 9: client-side timeout (informational).
    #[prost(uint32, optional, tag = "9")]
    pub timeout: Option<u32>,
}

/// `Request.GetSupportedAttKeyIDsRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct GetSupportedAttKeyIdsRequest {
    /// 1: size of the caller's buffer (count × 256).
    #[prost(uint32, optional, tag = "1")]
    pub buf_size: Option<u32>,
    /// 9: client-side timeout (informational).
    #[prost(uint32, optional, tag = "9")]
    pub timeout: Option<u32>,
}

/// `aesm.message.Response`.
#[derive(Clone, PartialEq, Message)]
pub struct Response {
    /// The one answer this message carries.
    #[prost(
        oneof = "ResponseKind",
        tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22"
    )]
    pub kind: Option<ResponseKind>,
}

/// The response kinds. Legacy answers carry only their status code.
#[derive(Clone, PartialEq, Oneof)]
pub enum ResponseKind {
    /// Field 15: `initQuoteExRes`.
    #[prost(message, tag = "15")]
    InitQuoteEx(InitQuoteExResponse),
    /// Field 16: `getQuoteSizeExRes`.
    #[prost(message, tag = "16")]
    GetQuoteSizeEx(GetQuoteSizeExResponse),
    /// Field 17: `getQuoteExRes`.
    #[prost(message, tag = "17")]
    GetQuoteEx(GetQuoteExResponse),
    /// Field 19: `selectAttKeyIDRes`.
    #[prost(message, tag = "19")]
    SelectAttKeyId(SelectAttKeyIdResponse),
    /// Field 20: `unsupportedRequestResponse`: the answer to a request of no known kind.
    #[prost(message, tag = "20")]
    Unsupported(StatusOnly),
    /// Field 21: `getSupportedAttKeyIDNumRes`.
    #[prost(message, tag = "21")]
    GetSupportedAttKeyIdNum(GetSupportedAttKeyIdNumResponse),
    /// Field 22: `getSupportedAttKeyIDsRes`.
    #[prost(message, tag = "22")]
    GetSupportedAttKeyIds(GetSupportedAttKeyIdsResponse),
    /// Field 1: `initQuoteRes`.
    #[prost(message, tag = "1")]
    InitQuote(StatusOnly),
    /// Field 2: `getQuoteRes`.
    #[prost(message, tag = "2")]
    GetQuote(StatusOnly),
    /// Field 3: `getLicTokenRes`.
    #[prost(message, tag = "3")]
    GetLaunchToken(StatusOnly),
    /// Field 4: `reportErrRes`.
    #[prost(message, tag = "4")]
    ReportAttestationError(StatusOnly),
    /// Field 5: `createSessionRes`.
    #[prost(message, tag = "5")]
    CreateSession(StatusOnly),
    /// Field 6: `invokeServiceRes`.
    #[prost(message, tag = "6")]
    InvokeService(StatusOnly),
    /// Field 7: `exchangeReportRes`.
    #[prost(message, tag = "7")]
    ExchangeReport(StatusOnly),
    /// Field 8: `closeSessionRes`.
    #[prost(message, tag = "8")]
    CloseSession(StatusOnly),
    /// Field 9: `getPsCapRes`.
    #[prost(message, tag = "9")]
    GetPsCap(StatusOnly),
    /// Field 10: `getWhiteListSizeRes`.
    #[prost(message, tag = "10")]
    GetWhiteListSize(StatusOnly),
    /// Field 11: `getWhiteListRes`.
    #[prost(message, tag = "11")]
    GetWhiteList(StatusOnly),
    /// Field 12: `sgxGetExtendedEpidGroupIdRes`.
    #[prost(message, tag = "12")]
    SgxGetExtendedEpidGroupId(StatusOnly),
    /// Field 13: `sgxSwitchExtendedEpidGroupRes`.
    #[prost(message, tag = "13")]
    SgxSwitchExtendedEpidGroup(StatusOnly),
    /// Field 14: `sgxRegisterRes`.
    #[prost(message, tag = "14")]
    SgxRegister(StatusOnly),
    /// Field 18: `checkUpdateStatusRes`.
    #[prost(message, tag = "18")]
    CheckUpdateStatus(StatusOnly),
}

impl ResponseKind {
    /// The status code the answer carries (Intel's `required errorCode = 1 [default = 1]`: an
    /// absent code reads as 1, unexpected error).
    pub fn error_code(&self) -> u32 {
        let code = match self {
            Self::InitQuoteEx(r) => r.error_code,
            Self::GetQuoteSizeEx(r) => r.error_code,
            Self::GetQuoteEx(r) => r.error_code,
            Self::SelectAttKeyId(r) => r.error_code,
            Self::GetSupportedAttKeyIdNum(r) => r.error_code,
            Self::GetSupportedAttKeyIds(r) => r.error_code,
            Self::Unsupported(r)
            | Self::InitQuote(r)
            | Self::GetQuote(r)
            | Self::GetLaunchToken(r)
            | Self::ReportAttestationError(r)
            | Self::CreateSession(r)
            | Self::InvokeService(r)
            | Self::ExchangeReport(r)
            | Self::CloseSession(r)
            | Self::GetPsCap(r)
            | Self::GetWhiteListSize(r)
            | Self::GetWhiteList(r)
            | Self::SgxGetExtendedEpidGroupId(r)
            | Self::SgxSwitchExtendedEpidGroup(r)
            | Self::SgxRegister(r)
            | Self::CheckUpdateStatus(r) => r.error_code,
        };
        code.unwrap_or(1)
    }

    /// The field number of this answer in `Response`.
    pub fn field(&self) -> u32 {
        match self {
            Self::InitQuote(_) => 1,
            Self::GetQuote(_) => 2,
            Self::GetLaunchToken(_) => 3,
            Self::ReportAttestationError(_) => 4,
            Self::CreateSession(_) => 5,
            Self::InvokeService(_) => 6,
            Self::ExchangeReport(_) => 7,
            Self::CloseSession(_) => 8,
            Self::GetPsCap(_) => 9,
            Self::GetWhiteListSize(_) => 10,
            Self::GetWhiteList(_) => 11,
            Self::SgxGetExtendedEpidGroupId(_) => 12,
            Self::SgxSwitchExtendedEpidGroup(_) => 13,
            Self::SgxRegister(_) => 14,
            Self::InitQuoteEx(_) => 15,
            Self::GetQuoteSizeEx(_) => 16,
            Self::GetQuoteEx(_) => 17,
            Self::CheckUpdateStatus(_) => 18,
            Self::SelectAttKeyId(_) => 19,
            Self::Unsupported(_) => 20,
            Self::GetSupportedAttKeyIdNum(_) => 21,
            Self::GetSupportedAttKeyIds(_) => 22,
        }
    }
}

/// A response that carries only `errorCode` (field 1): the shape of every legacy answer this
/// helper gives, and of `UnsupportedRequestResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct StatusOnly {
    /// 1: the AESM status code.
    #[prost(uint32, optional, tag = "1")]
    pub error_code: Option<u32>,
}

/// `Response.InitQuoteExResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct InitQuoteExResponse {
    /// 1: the AESM status code.
    #[prost(uint32, optional, tag = "1")]
    pub error_code: Option<u32>,
    /// 2: the quoting enclave's 512-byte TARGETINFO.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub target_info: Option<Vec<u8>>,
    /// 3: the size of the public key id (32).
    #[prost(uint64, optional, tag = "3")]
    pub pub_key_id_size: Option<u64>,
    /// 4: the public key id (SHA-256 identifying the attestation key).
    #[prost(bytes = "vec", optional, tag = "4")]
    pub pub_key_id: Option<Vec<u8>>,
}

/// `Response.GetQuoteSizeExResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct GetQuoteSizeExResponse {
    /// 1: the AESM status code.
    #[prost(uint32, optional, tag = "1")]
    pub error_code: Option<u32>,
    /// 2: the buffer size a quote needs.
    #[prost(uint32, optional, tag = "2")]
    pub quote_size: Option<u32>,
}

/// `Response.GetQuoteExResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct GetQuoteExResponse {
    /// 1: the AESM status code.
    #[prost(uint32, optional, tag = "1")]
    pub error_code: Option<u32>,
    /// 2: the quote, zero padded to the requested buffer size as Intel's aesmd does.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub quote: Option<Vec<u8>>,
    /// 3: the 960-byte `sgx_ql_qe_report_info_t` with the QE report filled in.
    #[prost(bytes = "vec", optional, tag = "3")]
    pub qe_report_info: Option<Vec<u8>>,
}

/// `Response.SelectAttKeyIDResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct SelectAttKeyIdResponse {
    /// 1: the AESM status code.
    #[prost(uint32, optional, tag = "1")]
    pub error_code: Option<u32>,
    /// 2: the selected 256-byte attestation key id.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub selected_att_key_id: Option<Vec<u8>>,
}

/// `Response.GetSupportedAttKeyIDNumResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct GetSupportedAttKeyIdNumResponse {
    /// 1: the AESM status code.
    #[prost(uint32, optional, tag = "1")]
    pub error_code: Option<u32>,
    /// 2: how many attestation key ids the service supports.
    #[prost(uint32, optional, tag = "2")]
    pub att_key_id_num: Option<u32>,
}

/// `Response.GetSupportedAttKeyIDsResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct GetSupportedAttKeyIdsResponse {
    /// 1: the AESM status code.
    #[prost(uint32, optional, tag = "1")]
    pub error_code: Option<u32>,
    /// 2: the supported ids, 256 bytes each.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub att_key_ids: Option<Vec<u8>>,
}

impl Response {
    /// An answer to `request` carrying only the status `code`, in the response field that
    /// matches the request's kind (field 20, `UnsupportedRequestResponse`, when the request has
    /// no known kind). This is how every refused request is answered: clients look for the
    /// field of their request and read its code.
    pub fn status_for(request: Option<&RequestKind>, code: u32) -> Self {
        let error_code = Some(code);
        let s = StatusOnly { error_code };
        let kind = match request {
            None => ResponseKind::Unsupported(s),
            Some(RequestKind::InitQuoteEx(_)) => ResponseKind::InitQuoteEx(InitQuoteExResponse {
                error_code,
                ..Default::default()
            }),
            Some(RequestKind::GetQuoteSizeEx(_)) => {
                ResponseKind::GetQuoteSizeEx(GetQuoteSizeExResponse {
                    error_code,
                    ..Default::default()
                })
            }
            Some(RequestKind::GetQuoteEx(_)) => ResponseKind::GetQuoteEx(GetQuoteExResponse {
                error_code,
                ..Default::default()
            }),
            Some(RequestKind::SelectAttKeyId(_)) => {
                ResponseKind::SelectAttKeyId(SelectAttKeyIdResponse {
                    error_code,
                    ..Default::default()
                })
            }
            Some(RequestKind::GetSupportedAttKeyIdNum(_)) => {
                ResponseKind::GetSupportedAttKeyIdNum(GetSupportedAttKeyIdNumResponse {
                    error_code,
                    ..Default::default()
                })
            }
            Some(RequestKind::GetSupportedAttKeyIds(_)) => {
                ResponseKind::GetSupportedAttKeyIds(GetSupportedAttKeyIdsResponse {
                    error_code,
                    ..Default::default()
                })
            }
            Some(RequestKind::InitQuote(_)) => ResponseKind::InitQuote(s),
            Some(RequestKind::GetQuote(_)) => ResponseKind::GetQuote(s),
            Some(RequestKind::GetLaunchToken(_)) => ResponseKind::GetLaunchToken(s),
            Some(RequestKind::ReportAttestationError(_)) => ResponseKind::ReportAttestationError(s),
            Some(RequestKind::CreateSession(_)) => ResponseKind::CreateSession(s),
            Some(RequestKind::InvokeService(_)) => ResponseKind::InvokeService(s),
            Some(RequestKind::ExchangeReport(_)) => ResponseKind::ExchangeReport(s),
            Some(RequestKind::CloseSession(_)) => ResponseKind::CloseSession(s),
            Some(RequestKind::GetPsCap(_)) => ResponseKind::GetPsCap(s),
            Some(RequestKind::GetWhiteListSize(_)) => ResponseKind::GetWhiteListSize(s),
            Some(RequestKind::GetWhiteList(_)) => ResponseKind::GetWhiteList(s),
            Some(RequestKind::SgxGetExtendedEpidGroupId(_)) => {
                ResponseKind::SgxGetExtendedEpidGroupId(s)
            }
            Some(RequestKind::SgxSwitchExtendedEpidGroup(_)) => {
                ResponseKind::SgxSwitchExtendedEpidGroup(s)
            }
            Some(RequestKind::SgxRegister(_)) => ResponseKind::SgxRegister(s),
            Some(RequestKind::CheckUpdateStatus(_)) => ResponseKind::CheckUpdateStatus(s),
        };
        Self { kind: Some(kind) }
    }
}

/// Encodes a message into a fresh buffer.
pub fn encode<M: Message>(message: &M) -> Vec<u8> {
    message.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_answers_use_the_request_field() {
        let kinds = [
            RequestKind::InitQuoteEx(InitQuoteExRequest::default()),
            RequestKind::GetQuoteSizeEx(GetQuoteSizeExRequest::default()),
            RequestKind::GetQuoteEx(GetQuoteExRequest::default()),
            RequestKind::SelectAttKeyId(SelectAttKeyIdRequest::default()),
            RequestKind::GetSupportedAttKeyIdNum(GetSupportedAttKeyIdNumRequest::default()),
            RequestKind::GetSupportedAttKeyIds(GetSupportedAttKeyIdsRequest::default()),
            RequestKind::InitQuote(vec![]),
            RequestKind::GetQuote(vec![]),
            RequestKind::GetLaunchToken(vec![]),
            RequestKind::ReportAttestationError(vec![]),
            RequestKind::CreateSession(vec![]),
            RequestKind::InvokeService(vec![]),
            RequestKind::ExchangeReport(vec![]),
            RequestKind::CloseSession(vec![]),
            RequestKind::GetPsCap(vec![]),
            RequestKind::GetWhiteListSize(vec![]),
            RequestKind::GetWhiteList(vec![]),
            RequestKind::SgxGetExtendedEpidGroupId(vec![]),
            RequestKind::SgxSwitchExtendedEpidGroup(vec![]),
            RequestKind::SgxRegister(vec![]),
            RequestKind::CheckUpdateStatus(vec![]),
        ];
        for kind in &kinds {
            let r = Response::status_for(Some(kind), 30);
            let k = r.kind.as_ref().unwrap();
            assert_eq!(k.field(), kind.field(), "{}", kind.name());
            assert_eq!(k.error_code(), 30);
            // The code is on the wire even when it is 0 (proto2 `required`).
            let zero = encode(&Response::status_for(Some(kind), 0));
            let back = Response::decode(zero.as_slice()).unwrap();
            assert_eq!(back.kind.unwrap().error_code(), 0);
            // Wire round trip of the request keeps its kind.
            let req = Request {
                kind: Some(kind.clone()),
            };
            let back = Request::decode(encode(&req).as_slice()).unwrap();
            assert_eq!(back.kind.unwrap().field(), kind.field());
        }
        let unsupported = Response::status_for(None, 1);
        assert_eq!(unsupported.kind.unwrap().field(), 20);
    }
}
