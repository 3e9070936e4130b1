//! The crate's error type and the AESM status codes.

use std::io;

macro_rules! aesm_codes {
    ($( $(#[$doc:meta])* $name:ident = $code:literal => $intel:literal, )*) => {
        /// A non-zero AESM status code (`aesm_error_t` in Intel's `aesm_error.h`).
        ///
        /// Codes this crate does not know are kept as [`AesmError::Unknown`] rather than refused,
        /// so a newer aesmd behind the forwarding backend never breaks the client.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum AesmError {
            $( $(#[$doc])* $name, )*
            /// A code this crate has no name for.
            Unknown(u32),
        }

        impl AesmError {
            /// The wire value of this code.
            pub fn code(self) -> u32 {
                match self {
                    $( Self::$name => $code, )*
                    Self::Unknown(code) => code,
                }
            }

            /// Interprets a wire value: `None` for 0 (success), the named code otherwise.
            pub fn from_code(code: u32) -> Option<Self> {
                match code {
                    0 => None,
                    $( $code => Some(Self::$name), )*
                    other => Some(Self::Unknown(other)),
                }
            }

            /// The name Intel gives the code (`AESM_PARAMETER_ERROR`, ...), or `AESM_UNKNOWN`.
            pub fn name(self) -> &'static str {
                match self {
                    $( Self::$name => $intel, )*
                    Self::Unknown(_) => "AESM_UNKNOWN",
                }
            }
        }
    };
}

aesm_codes! {
    /// 1: an unexpected error.
    Unexpected = 1 => "AESM_UNEXPECTED_ERROR",
    /// 2: no SGX device.
    NoDevice = 2 => "AESM_NO_DEVICE_ERROR",
    /// 3: a parameter is missing, malformed or of the wrong size.
    Parameter = 3 => "AESM_PARAMETER_ERROR",
    /// 4: the EPID blob is invalid.
    EpidBlob = 4 => "AESM_EPIDBLOB_ERROR",
    /// 5: the EPID group was revoked.
    EpidRevoked = 5 => "AESM_EPID_REVOKED_ERROR",
    /// 6: no launch token could be obtained.
    GetLicenseToken = 6 => "AESM_GET_LICENSETOKEN_ERROR",
    /// 7: invalid session.
    SessionInvalid = 7 => "AESM_SESSION_INVALID",
    /// 8: too many sessions.
    MaxNumSessionReached = 8 => "AESM_MAX_NUM_SESSION_REACHED",
    /// 9: PSDA unavailable.
    PsdaUnavailable = 9 => "AESM_PSDA_UNAVAILABLE",
    /// 10: ephemeral session failed.
    EphSessionFailed = 10 => "AESM_EPH_SESSION_FAILED",
    /// 11: long-term pairing failed.
    LongTermPairingFailed = 11 => "AESM_LONG_TERM_PAIRING_FAILED",
    /// 12: network error.
    NetworkError = 12 => "AESM_NETWORK_ERROR",
    /// 13: network busy.
    NetworkBusy = 13 => "AESM_NETWORK_BUSY_ERROR",
    /// 14: proxy settings needed.
    ProxySettingAssist = 14 => "AESM_PROXY_SETTING_ASSIST",
    /// 15: file access error.
    FileAccess = 15 => "AESM_FILE_ACCESS_ERROR",
    /// 16: SGX provisioning failed.
    SgxProvisionFailed = 16 => "AESM_SGX_PROVISION_FAILED",
    /// 17: the service stopped.
    ServiceStopped = 17 => "AESM_SERVICE_STOPPED",
    /// 18: busy.
    Busy = 18 => "AESM_BUSY",
    /// 19: the back-end server is busy.
    BackendServerBusy = 19 => "AESM_BACKEND_SERVER_BUSY",
    /// 20: an update is available.
    UpdateAvailable = 20 => "AESM_UPDATE_AVAILABLE",
    /// 21: out of memory.
    OutOfMemory = 21 => "AESM_OUT_OF_MEMORY_ERROR",
    /// 22: message error.
    MsgError = 22 => "AESM_MSG_ERROR",
    /// 23: thread error.
    ThreadError = 23 => "AESM_THREAD_ERROR",
    /// 24: the SGX device is not available.
    SgxDeviceNotAvailable = 24 => "AESM_SGX_DEVICE_NOT_AVAILABLE",
    /// 25: enabling the SGX device failed.
    EnableSgxDeviceFailed = 25 => "AESM_ENABLE_SGX_DEVICE_FAILED",
    /// 26: platform info blob has an invalid signature.
    PlatformInfoBlobInvalidSig = 26 => "AESM_PLATFORM_INFO_BLOB_INVALID_SIG",
    /// 27: service not available.
    ServiceNotAvailable = 27 => "AESM_SERVICE_NOT_AVAILABLE",
    /// 28: KDF mismatch.
    KdfMismatch = 28 => "AESM_KDF_MISMATCH",
    /// 29: out of EPC.
    OutOfEpc = 29 => "AESM_OUT_OF_EPC",
    /// 30: the requested service is not available (this helper answers it for legacy EPID,
    /// launch-token and platform-service requests, and to callers refused by `--allow-uid`).
    ServiceUnavailable = 30 => "AESM_SERVICE_UNAVAILABLE",
    /// 31: unrecognized platform.
    UnrecognizedPlatform = 31 => "AESM_UNRECOGNIZED_PLATFORM",
    /// 32: ECDSA id mismatch.
    EcdsaIdMismatch = 32 => "AESM_ECDSA_ID_MISMATCH",
    /// 33: path name buffer overflow.
    PathnameBufferOverflow = 33 => "AESM_PATHNAME_BUFFER_OVERFLOW_ERROR",
    /// 34: stored key error.
    ErrorStoredKey = 34 => "AESM_ERROR_STORED_KEY",
    /// 35: public key id mismatch.
    PubKeyIdMismatch = 35 => "AESM_PUB_KEY_ID_MISMATCH",
    /// 36: invalid PCE signature scheme.
    InvalidPceSigScheme = 36 => "AESM_INVALID_PCE_SIG_SCHEME",
    /// 37: attestation key blob error.
    AttKeyBlobError = 37 => "AESM_ATT_KEY_BLOB_ERROR",
    /// 38: the attestation key id is not one this quoting enclave serves.
    UnsupportedAttKeyId = 38 => "AESM_UNSUPPORTED_ATT_KEY_ID",
    /// 39: unsupported loading policy.
    UnsupportedLoadingPolicy = 39 => "AESM_UNSUPPORTED_LOADING_POLICY",
    /// 40: interface unavailable.
    InterfaceUnavailable = 40 => "AESM_INTERFACE_UNAVAILABLE",
    /// 41: platform library unavailable.
    PlatformLibUnavailable = 41 => "AESM_PLATFORM_LIB_UNAVAILABLE",
    /// 42: the attestation key has not been initialized (call InitQuoteEx first).
    AttKeyNotInitialized = 42 => "AESM_ATT_KEY_NOT_INITIALIZED",
    /// 43: attestation key certification data invalid.
    AttKeyCertDataInvalid = 43 => "AESM_ATT_KEY_CERT_DATA_INVALID",
    /// 44: no platform certification data.
    NoPlatformCertData = 44 => "AESM_NO_PLATFORM_CERT_DATA",
    /// 45: the application REPORT could not be used (the QE's REPORT check failed).
    ErrorReport = 45 => "AESM_ERROR_REPORT",
    /// 46: the enclave was lost.
    EnclaveLost = 46 => "AESM_ENCLAVE_LOST",
    /// 47: the application REPORT is invalid: its MAC does not verify for this quoting enclave
    /// (a forged report, or one targeted at another enclave).
    InvalidReport = 47 => "AESM_INVALID_REPORT",
    /// 48: enclave load error.
    EnclaveLoadError = 48 => "AESM_ENCLAVE_LOAD_ERROR",
    /// 49: the QE report for the application could not be generated.
    UnableToGenerateQeReport = 49 => "AESM_UNABLE_TO_GENERATE_QE_REPORT",
    /// 50: key certification error.
    KeyCertificationError = 50 => "AESM_KEY_CERTIFICATION_ERROR",
}

impl std::fmt::Display for AesmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

/// Everything that can go wrong talking AESM: I/O and timeouts on the socket, frames above the
/// cap, undecodable or mismatched messages, and non-zero AESM status codes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Connecting to, reading from or writing to the socket failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done (`connect /var/run/aesmd/aesm.socket`, `read response`, ...).
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The peer did not complete a read or write in time.
    #[error("{context}: timed out")]
    Timeout {
        /// What was being waited for.
        context: String,
    },
    /// A frame declared a length above the cap; nothing was allocated for it.
    #[error("{what} frame declares {declared} bytes, above the limit of {limit}")]
    FrameTooLarge {
        /// `request` or `response`.
        what: &'static str,
        /// The declared length.
        declared: u32,
        /// The cap.
        limit: u32,
    },
    /// The peer closed the connection inside a frame.
    #[error("{what} frame truncated: expected {expected} bytes, got {received}")]
    Truncated {
        /// `request header`, `response body`, ...
        what: &'static str,
        /// Bytes the frame needed.
        expected: usize,
        /// Bytes that arrived.
        received: usize,
    },
    /// The peer closed the connection before sending a single byte of the frame (a readiness
    /// probe, or a daemon that hung up without answering).
    #[error("{what}: the peer closed the connection before sending anything")]
    Closed {
        /// `request` or `response`.
        what: &'static str,
    },
    /// The frame is not a protobuf message of the expected type.
    #[error("{what} is not a valid protobuf message: {source}")]
    Decode {
        /// `request` or `response`.
        what: &'static str,
        /// The decoder's error.
        #[source]
        source: prost::DecodeError,
    },
    /// The response decoded but does not answer the request, or lacks a field it must carry.
    #[error("bad AESM response: {0}")]
    BadResponse(String),
    /// The AESM service answered with a non-zero status code.
    #[error("AESM service returned {0}")]
    Aesm(AesmError),
    /// A fixed-size SGX structure in a response has the wrong size.
    #[error("{0}")]
    Sgx(#[from] ccm_sgx::Error),
    /// The daemon could not be set up (socket path in use, platform unreadable, ...).
    #[error("{0}")]
    Setup(String),
}

impl Error {
    /// An [`Error::Io`] with context, turning timeouts into [`Error::Timeout`].
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        let context = context.into();
        match source.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Self::Timeout { context },
            _ => Self::Io { context, source },
        }
    }

    /// The AESM status code, if this error is one.
    pub fn aesm_code(&self) -> Option<AesmError> {
        match self {
            Self::Aesm(code) => Some(*code),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_is_kept() {
        assert_eq!(AesmError::from_code(0), None);
        for code in 1..=50 {
            let e = AesmError::from_code(code).unwrap();
            assert_eq!(e.code(), code);
            assert!(!matches!(e, AesmError::Unknown(_)), "{code}");
        }
        assert_eq!(AesmError::from_code(3), Some(AesmError::Parameter));
        assert_eq!(
            AesmError::from_code(38),
            Some(AesmError::UnsupportedAttKeyId)
        );
        assert_eq!(
            AesmError::from_code(42),
            Some(AesmError::AttKeyNotInitialized)
        );
        assert_eq!(AesmError::from_code(47), Some(AesmError::InvalidReport));
        assert_eq!(AesmError::from_code(51), Some(AesmError::Unknown(51)));
        assert_eq!(AesmError::Unknown(51).code(), 51);
        assert_eq!(AesmError::Parameter.to_string(), "AESM_PARAMETER_ERROR (3)");
    }
}
