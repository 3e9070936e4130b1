//! The crate's error type and its families.
//!
//! [`Error`] is the one error enum of the crate; each family of failures has a typed sub-enum
//! ([`VerifyError`] for quote verification, [`CollateralError`] for collateral parsing,
//! [`CertError`] for certificates and CRLs, [`QeError`] for the simulated quoting enclave,
//! [`PolicyViolation`] for policy checks). Functions whose failures all belong to one family return
//! that sub-enum directly; every sub-enum converts into [`Error`].

use std::fmt;
use std::path::PathBuf;

use crate::collateral::TcbStatus;

/// Any failure of this crate.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A quote did not verify.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// Collateral is malformed.
    #[error(transparent)]
    Collateral(#[from] CollateralError),
    /// The simulated quoting enclave refused a request.
    #[error(transparent)]
    Qe(#[from] QeError),
    /// A verified quote does not satisfy a policy.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A trust root certificate is unusable.
    #[error("trust root: {0}")]
    TrustRoot(CertError),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file of a simulated platform directory is missing or malformed.
    #[error("{}: {reason}", path.display())]
    PlatformFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A simulated platform directory cannot be created where asked.
    #[error("{}: {reason}", path.display())]
    PlatformDir {
        /// The directory.
        path: PathBuf,
        /// Why not.
        reason: String,
    },
    /// An option of the simulator is out of range.
    #[error("invalid simulator option: {0}")]
    SimOption(String),
    /// Generating a certificate, CRL or key failed.
    #[error("generating {what} failed: {reason}")]
    Generate {
        /// What was being generated.
        what: &'static str,
        /// The underlying reason.
        reason: String,
    },
    /// A time value is outside the range of calendar dates.
    #[error("time {0} (Unix seconds) is out of range")]
    TimeOutOfRange(u64),
}

/// Problems with a certificate, certificate chain or CRL encoding.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// The PEM text does not parse or holds the wrong kind of block.
    #[error("PEM: {0}")]
    Pem(String),
    /// The DER does not parse.
    #[error("malformed: {0}")]
    Malformed(String),
    /// Bytes follow the DER structure.
    #[error("trailing bytes after the DER structure")]
    TrailingData,
    /// The certificate is larger than accepted.
    #[error("certificate of {0} bytes is too large")]
    TooLarge(usize),
    /// Not an X.509 version 3 certificate.
    #[error("not an X.509 v3 certificate")]
    UnsupportedVersion,
    /// Signed with something other than ECDSA P-256 with SHA-256.
    #[error("unsupported signature algorithm {0} (expected ecdsa-with-SHA256)")]
    UnsupportedSignatureAlgorithm(String),
    /// The subject key is not an uncompressed P-256 point.
    #[error("subject public key is not an uncompressed P-256 key")]
    UnsupportedKey,
    /// A critical extension this verifier does not understand.
    #[error("unknown critical extension {0}")]
    UnknownCriticalExtension(String),
    /// An extension appears twice.
    #[error("duplicate extension {0}")]
    DuplicateExtension(String),
    /// A root certificate that is not a CA.
    #[error("not a CA certificate")]
    NotCa,
    /// A root certificate whose self-signature does not verify.
    #[error("not a self-signed certificate")]
    NotSelfSigned,
}

/// Which certificate of the DCAP PKI an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertRole {
    /// The PCK leaf certificate in the quote.
    PckLeaf,
    /// The PCK CA (processor or platform CA) certificate in the quote.
    PckCa,
    /// The root certificate carried by a chain.
    Root,
    /// The TCB info signing certificate.
    TcbSigner,
    /// The QE identity signing certificate.
    QeIdentitySigner,
    /// The PCK CA certificate in the PCK CRL issuer chain.
    PckCrlIssuer,
}

impl fmt::Display for CertRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CertRole::PckLeaf => "PCK certificate",
            CertRole::PckCa => "PCK CA certificate",
            CertRole::Root => "root CA certificate",
            CertRole::TcbSigner => "TCB info signing certificate",
            CertRole::QeIdentitySigner => "QE identity signing certificate",
            CertRole::PckCrlIssuer => "PCK CRL issuer certificate",
        })
    }
}

/// Which CRL an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CrlKind {
    /// The root CA's CRL (revokes intermediate CAs and signing certificates).
    RootCa,
    /// The PCK CA's CRL (revokes PCK certificates).
    PckCa,
}

impl fmt::Display for CrlKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CrlKind::RootCa => "root CA CRL",
            CrlKind::PckCa => "PCK CRL",
        })
    }
}

/// A dated item of the collateral.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CollateralItem {
    /// The TCB info (`issueDate` .. `nextUpdate`).
    TcbInfo,
    /// The QE identity (`issueDate` .. `nextUpdate`).
    QeIdentity,
    /// A CRL (`thisUpdate` .. `nextUpdate`).
    Crl(CrlKind),
}

impl fmt::Display for CollateralItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CollateralItem::TcbInfo => f.write_str("TCB info"),
            CollateralItem::QeIdentity => f.write_str("QE identity"),
            CollateralItem::Crl(kind) => kind.fmt(f),
        }
    }
}

/// A QE identity field that did not match the QE report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QeIdentityField {
    /// MRSIGNER.
    MrSigner,
    /// ISVPRODID.
    IsvProdId,
    /// MISCSELECT under the mask.
    MiscSelect,
    /// ATTRIBUTES under the mask.
    Attributes,
}

impl fmt::Display for QeIdentityField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QeIdentityField::MrSigner => "MRSIGNER",
            QeIdentityField::IsvProdId => "ISVPRODID",
            QeIdentityField::MiscSelect => "MISCSELECT (masked)",
            QeIdentityField::Attributes => "ATTRIBUTES (masked)",
        })
    }
}

/// Why a quote was refused, one specific reason per failure.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The quote bytes do not parse.
    #[error("malformed quote: {0}")]
    Quote(#[source] ccm_sgx::Error),
    /// A quote version other than 3 or 4.
    #[error("unsupported quote version {0}")]
    UnsupportedQuoteVersion(u16),
    /// A TEE other than SGX.
    #[error("unsupported TEE type {0:#x} (only SGX quotes are verified)")]
    UnsupportedTeeType(u32),
    /// An attestation key type other than ECDSA-256-with-P-256.
    #[error("unsupported attestation key type {0}")]
    UnsupportedAttestationKeyType(u16),
    /// A QE vendor other than Intel.
    #[error("unknown QE vendor id {0}")]
    UnknownQeVendor(String),
    /// Certification data other than a PCK certificate chain.
    #[error("unsupported certification data type {0} (expected 5, a PCK certificate chain)")]
    UnsupportedCertificationDataType(u16),
    /// A certificate does not parse or is outside the DCAP profile.
    #[error("{role}: {source}")]
    Certificate {
        /// Which certificate.
        role: CertRole,
        /// What is wrong.
        source: CertError,
    },
    /// A chain has the wrong number of certificates.
    #[error("{role} chain has {len} certificates (expected {expected})")]
    ChainLength {
        /// The chain's first certificate.
        role: CertRole,
        /// Certificates found.
        len: usize,
        /// What was expected.
        expected: &'static str,
    },
    /// No trusted root issued the chain.
    #[error("{role} is not issued by a trusted root (issuer \"{issuer}\")")]
    UntrustedRoot {
        /// The certificate issued by the root.
        role: CertRole,
        /// The issuer's common name.
        issuer: String,
    },
    /// The chain carries a root certificate that differs from the trusted one.
    #[error("the root certificate in the {role} chain is not the trusted root")]
    RootMismatch {
        /// The chain's first certificate.
        role: CertRole,
    },
    /// A certificate's signature does not verify with its issuer's key (or the names differ).
    #[error("{role} is not signed by its issuer")]
    CertificateSignature {
        /// Which certificate.
        role: CertRole,
    },
    /// An issuer certificate is not allowed to issue certificates.
    #[error("{role} is not a CA certificate")]
    NotCa {
        /// Which certificate.
        role: CertRole,
    },
    /// A leaf certificate claims to be a CA.
    #[error("{role} must not be a CA certificate")]
    UnexpectedCa {
        /// Which certificate.
        role: CertRole,
    },
    /// A certificate has expired.
    #[error("{role} expired at {not_after} (now {now})")]
    CertificateExpired {
        /// Which certificate.
        role: CertRole,
        /// Its notAfter (Unix seconds).
        not_after: u64,
        /// The verification time.
        now: u64,
    },
    /// A certificate is not valid yet.
    #[error("{role} is not valid before {not_before} (now {now})")]
    CertificateNotYetValid {
        /// Which certificate.
        role: CertRole,
        /// Its notBefore (Unix seconds).
        not_before: u64,
        /// The verification time.
        now: u64,
    },
    /// A certificate is listed on a CRL.
    #[error("{role} (serial {serial}) is revoked")]
    Revoked {
        /// Which certificate.
        role: CertRole,
        /// Its serial number, hex.
        serial: String,
    },
    /// A CRL does not parse or is outside the profile.
    #[error("{crl}: {source}")]
    Crl {
        /// Which CRL.
        crl: CrlKind,
        /// What is wrong.
        source: CertError,
    },
    /// A CRL's signature does not verify with the expected issuer.
    #[error("{crl} is not signed by its issuer")]
    CrlSignature {
        /// Which CRL.
        crl: CrlKind,
    },
    /// The PCK CRL is issued by a different CA than the one that issued the PCK certificate.
    #[error("the PCK CRL is not issued by the CA that issued the PCK certificate")]
    PckCrlIssuerMismatch,
    /// Collateral past its `nextUpdate`.
    #[error("{item} expired at {next_update} (now {now})")]
    CollateralExpired {
        /// Which item.
        item: CollateralItem,
        /// Its nextUpdate (Unix seconds).
        next_update: u64,
        /// The verification time.
        now: u64,
    },
    /// Collateral whose issue date is in the future.
    #[error("{item} is not valid before {issued} (now {now})")]
    CollateralNotYetValid {
        /// Which item.
        item: CollateralItem,
        /// Its issueDate / thisUpdate (Unix seconds).
        issued: u64,
        /// The verification time.
        now: u64,
    },
    /// The collateral is signed under a different root than the quote's PCK chain.
    #[error("the collateral chains to a different root than the PCK certificate")]
    CollateralRootMismatch,
    /// The collateral is malformed.
    #[error("collateral: {0}")]
    Collateral(#[from] CollateralError),
    /// The PCK certificate's SGX extension is missing or malformed.
    #[error("PCK certificate: {0}")]
    PckExtension(#[source] ccm_sgx::PckExtensionError),
    /// The PCK certificate's FMSPC differs from the TCB info's.
    #[error("FMSPC mismatch: PCK certificate {pck}, TCB info {tcb_info}")]
    FmspcMismatch {
        /// FMSPC in the PCK certificate, hex.
        pck: String,
        /// FMSPC in the TCB info, hex.
        tcb_info: String,
    },
    /// The PCK certificate's PCEID differs from the TCB info's.
    #[error("PCEID mismatch: PCK certificate {pck}, TCB info {tcb_info}")]
    PceIdMismatch {
        /// PCEID in the PCK certificate, hex.
        pck: String,
        /// PCEID in the TCB info, hex.
        tcb_info: String,
    },
    /// The TCB info signature does not verify with the TCB signing certificate.
    #[error("TCB info signature is invalid")]
    TcbInfoSignature,
    /// The QE identity signature does not verify with its signing certificate.
    #[error("QE identity signature is invalid")]
    QeIdentitySignature,
    /// The QE report signature does not verify with the PCK key.
    #[error("QE report signature is invalid")]
    QeReportSignature,
    /// The QE report does not bind the attestation key and QE authentication data.
    #[error("QE report data does not match SHA-256(attestation key ‖ QE authentication data)")]
    QeReportDataMismatch,
    /// The QE report does not match the QE identity.
    #[error("QE report does not match the QE identity: {0} differs")]
    QeIdentityMismatch(QeIdentityField),
    /// The quote signature does not verify with the attestation key.
    #[error("quote signature is invalid")]
    QuoteSignature,
    /// The attestation key is not a valid P-256 point.
    #[error("attestation key is not a valid P-256 public key")]
    AttestationKey,
    /// No TCB level of the TCB info is met by the platform.
    #[error("the platform's TCB is below every TCB level of the TCB info (TCB not supported)")]
    NoMatchingTcbLevel,
}

/// Problems with collateral contents.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CollateralError {
    /// JSON that does not parse or has the wrong shape.
    #[error("{field}: invalid JSON: {reason}")]
    Json {
        /// Which part.
        field: &'static str,
        /// The parser's message.
        reason: String,
    },
    /// A required field is missing.
    #[error("missing field {0}")]
    MissingField(String),
    /// A hex field does not decode.
    #[error("{field}: not valid hex")]
    Hex {
        /// Which field.
        field: &'static str,
    },
    /// A fixed-size field has the wrong length.
    #[error("{field}: {actual} bytes (expected {expected})")]
    Length {
        /// Which field.
        field: &'static str,
        /// Required length.
        expected: usize,
        /// Actual length.
        actual: usize,
    },
    /// A field is larger than accepted.
    #[error("{field}: {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Which field.
        field: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A date that does not parse as RFC 3339.
    #[error("{field}: invalid date {value:?}")]
    Date {
        /// Which field.
        field: &'static str,
        /// The text found.
        value: String,
    },
    /// A TCB status name this verifier does not know.
    #[error("unknown TCB status {0:?}")]
    UnknownTcbStatus(String),
    /// TCB info other than SGX version 3.
    #[error("unsupported TCB info {id:?} version {version} (expected SGX version 3)")]
    UnsupportedTcbInfo {
        /// The `id` found.
        id: String,
        /// The `version` found.
        version: u32,
    },
    /// A TCB type other than 0.
    #[error("unsupported TCB type {0}")]
    UnsupportedTcbType(u32),
    /// QE identity other than QE version 2.
    #[error("unsupported QE identity {id:?} version {version} (expected QE version 2)")]
    UnsupportedQeIdentity {
        /// The `id` found.
        id: String,
        /// The `version` found.
        version: u32,
    },
    /// No TCB levels, or too many.
    #[error("{0} TCB levels (expected 1 to 1024)")]
    TcbLevelCount(usize),
    /// A signature that is not 64 bytes.
    #[error("{field}: signature of {len} bytes (expected 64)")]
    SignatureLength {
        /// Which signature.
        field: &'static str,
        /// Its length.
        len: usize,
    },
}

/// Why a PCS or PCCS request did not give what the API promises (`pcs`). Each names the
/// endpoint (`path`) it is about.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PcsError {
    /// A base or CRL URL that is not http(s).
    #[error("not an http(s) URL: {0:?}")]
    BaseUrl(String),
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Client(String),
    /// The request failed (connection refused, timeout, TLS, a body cut short).
    #[error("{path}: {reason}")]
    Request {
        /// The endpoint.
        path: String,
        /// What failed.
        reason: String,
    },
    /// An answer other than 200.
    #[error("{path}: HTTP {status}{}", error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default())]
    Status {
        /// The endpoint.
        path: String,
        /// The status code.
        status: u16,
        /// The service's `Error-Code` or `Error-Message` header, if any.
        error: Option<String>,
    },
    /// A missing or malformed issuer-chain header.
    #[error("{path}: issuer chain header: {reason}")]
    Header {
        /// The endpoint.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A body that is not what the endpoint serves.
    #[error("{path}: body: {reason}")]
    Body {
        /// The endpoint.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The root CA CRL's location could not be found.
    #[error("root CA CRL: {0}")]
    RootCrl(String),
    /// The parts do not make a collateral set.
    #[error("collateral: {0}")]
    Collateral(CollateralError),
    /// A quote whose collateral cannot be named (no PCK chain, no SGX extension).
    #[error("quote: {0}")]
    Quote(String),
}

/// Why the simulated quoting enclave refused a request. Each maps to an AESM error code
/// ([`QeError::aesm_code`]) so the quote helper can answer as Intel's AESM would.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QeError {
    /// The REPORT's MAC does not verify for this QE (forged, or targeted at another enclave).
    #[error("invalid report: MAC does not verify for the quoting enclave")]
    InvalidReport,
    /// A malformed or inconsistent parameter (size, qe_report_info).
    #[error("invalid parameter: {0}")]
    InvalidParameter(&'static str),
    /// The requested attestation key id is not the QE's.
    #[error("unsupported attestation key id")]
    UnsupportedAttKeyId,
    /// Signing failed unexpectedly.
    #[error("unexpected failure: {0}")]
    Unexpected(&'static str),
}

impl QeError {
    /// The AESM error code (`aesm_error_t`) for this failure.
    pub fn aesm_code(&self) -> u32 {
        match self {
            QeError::InvalidReport => 47,
            QeError::InvalidParameter(_) => 3,
            QeError::UnsupportedAttKeyId => 38,
            QeError::Unexpected(_) => 1,
        }
    }
}

/// One way a verified quote falls short of a [`Policy`](crate::Policy).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyViolation {
    /// The TCB status is not among the accepted ones.
    TcbStatus(TcbStatus),
    /// The enclave runs in debug mode and debug is not allowed.
    DebugEnclave,
    /// The enclave's ISVSVN is below the minimum.
    IsvSvnTooLow {
        /// The enclave's ISVSVN.
        isvsvn: u16,
        /// The required minimum.
        min: u16,
    },
    /// The quote rests on a simulated root and simulation is not allowed.
    SimulatedPlatform,
}

impl fmt::Display for PolicyViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyViolation::TcbStatus(s) => write!(f, "TCB status {s} is not accepted"),
            PolicyViolation::DebugEnclave => f.write_str("debug enclaves are not allowed"),
            PolicyViolation::IsvSvnTooLow { isvsvn, min } => {
                write!(f, "ISVSVN {isvsvn} is below the minimum {min}")
            }
            PolicyViolation::SimulatedPlatform => {
                f.write_str("the quote comes from a simulated platform")
            }
        }
    }
}

/// A verified quote that a [`Policy`](crate::Policy) refuses, with every violation found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    /// The violations, in the order the policy checks them.
    pub violations: Vec<PolicyViolation>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("policy refused the quote: ")?;
        for (i, v) in self.violations.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            v.fmt(f)?;
        }
        Ok(())
    }
}
