//! DCAP ECDSA quotes: version 3 (SGX) parse and encode, version 4 (SGX or TDX 1.0) parse and
//! encode.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! v3/v4:  header(48) ‖ body (SGX REPORT body 384 | TDX 1.0 TD report 584)
//!         ‖ signature_data_len u32 ‖ signature data (signature_data_len bytes)
//! v3 signature data:  quote signature r‖s (64, big-endian) ‖ attestation key x‖y (64)
//!         ‖ QE REPORT body (384) ‖ QE report signature (64) ‖ QE auth data size u16 ‖ data
//!         ‖ certification data type u16 ‖ size u32 ‖ data
//! v4 signature data:  quote signature (64) ‖ attestation key (64)
//!         ‖ certification data type u16 (= 6) ‖ size u32 ‖ [ QE REPORT body ‖ QE report
//!           signature ‖ QE auth data size u16 ‖ data ‖ inner certification data ]
//! ```
//!
//! Both versions parse into the same [`QuoteSignatureData`]; the version in the header decides
//! how it is nested on the wire.
//!
//! **What is tolerated.** The signature data is read exactly as `signature_data_len` says and
//! must be consumed exactly (every inner length is self-describing). After it, *zero* bytes are
//! tolerated as padding (callers often hand over the whole buffer sized by `get_quote_size`);
//! any non-zero byte there is refused with [`Error::TrailingBytes`]. Every variable length is
//! capped at [`MAX_VARIABLE_LEN`].

use core::fmt;

use sha2::{Digest, Sha256};
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::Error;
use crate::reader::Reader;
use crate::report::ReportBody;
use crate::types::{ReportData, fixed_layout};

/// The cap on every variable-length field of a quote (signature data, QE auth data,
/// certification data): 1 MiB.
pub const MAX_VARIABLE_LEN: usize = 1 << 20;

/// Intel's QE vendor id, `939a7233-f79c-4ca9-940a-0db3957f0607`.
pub const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];

/// Length of the quote header.
pub const HEADER_LEN: usize = 48;

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident($repr:ty) { $($(#[$cmeta:meta])* $cname:ident = $value:expr,)* }) => {
        $(#[$meta])*
        ///
        /// A newtype over the wire value: values this crate does not name are kept, not refused.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub $repr);

        impl $name {
            $($(#[$cmeta])* pub const $cname: Self = Self($value);)*

            /// The name of a known value.
            pub fn name(self) -> Option<&'static str> {
                match self {
                    $(Self::$cname => Some(stringify!($cname)),)*
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(n) => write!(f, "{} ({})", self.0, n),
                    None => write!(f, "{}", self.0),
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(n) => write!(f, concat!(stringify!($name), "::{}"), n),
                    None => write!(f, concat!(stringify!($name), "({})"), self.0),
                }
            }
        }
    };
}

wire_enum! {
    /// The attestation key type of a quote header.
    AttestationKeyType(u16) {
        /// ECDSA-256 with P-256.
        ECDSA_P256 = 2,
        /// ECDSA-384 with P-384 (defined by Intel, not produced by its QE).
        ECDSA_P384 = 3,
    }
}

wire_enum! {
    /// The TEE type of a quote header (v4 and later; reserved zero in v3).
    TeeType(u32) {
        /// SGX enclave.
        SGX = 0,
        /// TDX trust domain.
        TDX = 0x81,
    }
}

wire_enum! {
    /// The type of certification data at the end of a quote.
    CertDataType(u16) {
        /// PPID in clear text ‖ CPUSVN ‖ PCESVN ‖ PCEID.
        PPID_CLEARTEXT = 1,
        /// PPID encrypted with RSA-2048-OAEP ‖ CPUSVN ‖ PCESVN ‖ PCEID.
        PPID_RSA2048_ENCRYPTED = 2,
        /// PPID encrypted with RSA-3072-OAEP ‖ CPUSVN ‖ PCESVN ‖ PCEID.
        PPID_RSA3072_ENCRYPTED = 3,
        /// The PCK leaf certificate.
        PCK_LEAF_CERT = 4,
        /// PEM PCK certificate chain: leaf ‖ intermediate ‖ root.
        PCK_CERT_CHAIN = 5,
        /// QE report certification data (v4): QE report, its signature, QE auth data and
        /// inner certification data.
        QE_REPORT = 6,
        /// Platform manifest.
        PLATFORM_MANIFEST = 7,
    }
}

/// The 48-byte quote header.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct QuoteHeader {
    /// @0: quote version (3 or 4).
    pub version: U16,
    /// @2: attestation key type ([`AttestationKeyType`]).
    pub attestation_key_type: U16,
    /// @4: TEE type ([`TeeType`]) in v4; reserved (zero) in v3.
    pub tee_type: U32,
    /// @8: SVN of the quoting enclave (v3; reserved in v4).
    pub qe_svn: U16,
    /// @10: SVN of the PCE (v3; reserved in v4).
    pub pce_svn: U16,
    /// @12: QE vendor id ([`INTEL_QE_VENDOR_ID`]).
    pub qe_vendor_id: [u8; 16],
    /// @28: user data; Intel's QE puts the QE id in the first 16 bytes.
    pub user_data: [u8; 20],
}

fixed_layout!(QuoteHeader, 48, "quote header");

impl QuoteHeader {
    /// A v3 SGX header as Intel's QE writes it: ECDSA P-256, Intel's vendor id.
    pub fn v3(qe_svn: u16, pce_svn: u16, user_data: [u8; 20]) -> Self {
        Self {
            version: U16::new(3),
            attestation_key_type: U16::new(AttestationKeyType::ECDSA_P256.0),
            tee_type: U32::new(0),
            qe_svn: U16::new(qe_svn),
            pce_svn: U16::new(pce_svn),
            qe_vendor_id: INTEL_QE_VENDOR_ID,
            user_data,
        }
    }

    /// The attestation key type.
    pub fn attestation_key_type(&self) -> AttestationKeyType {
        AttestationKeyType(self.attestation_key_type.get())
    }

    /// The TEE type as the version defines it: always SGX for v3.
    pub fn tee_type(&self) -> TeeType {
        if self.version.get() == 3 {
            TeeType::SGX
        } else {
            TeeType(self.tee_type.get())
        }
    }
}

/// The TDX 1.0 TD report body of a v4 TDX quote (584 bytes).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct TdReport10 {
    /// @0: TEE_TCB_SVN.
    pub tee_tcb_svn: [u8; 16],
    /// @16: MRSEAM, measurement of the TDX module.
    pub mr_seam: [u8; 48],
    /// @64: MRSIGNERSEAM.
    pub mr_signer_seam: [u8; 48],
    /// @112: SEAMATTRIBUTES.
    pub seam_attributes: [u8; 8],
    /// @120: TDATTRIBUTES.
    pub td_attributes: [u8; 8],
    /// @128: XFAM.
    pub xfam: [u8; 8],
    /// @136: MRTD, the build-time measurement of the TD.
    pub mr_td: [u8; 48],
    /// @184: MRCONFIGID.
    pub mr_config_id: [u8; 48],
    /// @232: MROWNER.
    pub mr_owner: [u8; 48],
    /// @280: MROWNERCONFIG.
    pub mr_owner_config: [u8; 48],
    /// @328: RTMR0..RTMR3, the run-time measurement registers.
    pub rt_mr: [[u8; 48]; 4],
    /// @520: REPORTDATA.
    pub report_data: ReportData,
}

fixed_layout!(TdReport10, 584, "TDX 1.0 TD report");

/// The attested body of a quote.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum QuoteBody {
    /// The REPORT body of an SGX enclave.
    Sgx(ReportBody),
    /// The TD report of a TDX 1.0 trust domain (v4 only).
    Td10(TdReport10),
}

impl QuoteBody {
    /// Length of the encoded body.
    pub fn len(&self) -> usize {
        match self {
            Self::Sgx(_) => ReportBody::SIZE,
            Self::Td10(_) => TdReport10::SIZE,
        }
    }

    /// Never empty; present for API symmetry with [`QuoteBody::len`].
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The encoded body.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Sgx(b) => b.as_bytes(),
            Self::Td10(b) => b.as_bytes(),
        }
    }

    /// The REPORTDATA of either body kind.
    pub fn report_data(&self) -> &ReportData {
        match self {
            Self::Sgx(b) => &b.report_data,
            Self::Td10(b) => &b.report_data,
        }
    }
}

/// Certification data: a type and its bytes. What the bytes mean depends on the type; for
/// [`CertDataType::PCK_CERT_CHAIN`] see [`CertificationData::pck_cert_chain`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CertificationData {
    /// The type.
    pub cert_type: CertDataType,
    /// The data (at most [`MAX_VARIABLE_LEN`] bytes).
    pub data: Vec<u8>,
}

impl fmt::Debug for CertificationData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificationData")
            .field("cert_type", &self.cert_type)
            .field("len", &self.data.len())
            .finish()
    }
}

impl CertificationData {
    fn read(r: &mut Reader<'_>, prefix: &[&'static str; 3]) -> Result<Self, Error> {
        let [type_field, size_field, data_field] = *prefix;
        let cert_type = CertDataType(r.u16(type_field)?);
        let size = r.u32(size_field)?;
        let data = r.take_capped(u64::from(size), MAX_VARIABLE_LEN, data_field)?;
        Ok(Self {
            cert_type,
            data: data.to_vec(),
        })
    }

    fn write(&self, out: &mut Vec<u8>, field: &'static str) -> Result<(), Error> {
        out.extend_from_slice(&self.cert_type.0.to_le_bytes());
        out.extend_from_slice(&len_u32(self.data.len(), field)?.to_le_bytes());
        out.extend_from_slice(&self.data);
        Ok(())
    }

    /// The PCK certificate chain of type-5 certification data, as DER certificates in the order
    /// they appear (leaf, intermediate, root).
    ///
    /// The data must be PEM `CERTIFICATE` blocks; one trailing NUL byte (as Intel's QE library
    /// writes) is tolerated, and text between blocks is ignored as OpenSSL ignores it.
    pub fn pck_cert_chain(&self) -> Result<Vec<Vec<u8>>, Error> {
        if self.cert_type != CertDataType::PCK_CERT_CHAIN {
            return Err(Error::CertificationDataType {
                context: "PCK certificate chain",
                found: self.cert_type,
                expected: CertDataType::PCK_CERT_CHAIN,
            });
        }
        parse_pem_chain(&self.data)
    }
}

/// Parses a PEM certificate list into DER certificates (one trailing NUL tolerated).
pub fn parse_pem_chain(data: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    let data = data.strip_suffix(&[0]).unwrap_or(data);
    if data.contains(&0) {
        return Err(Error::PckChain("NUL byte inside the PEM text".into()));
    }
    let blocks = pem::parse_many(data).map_err(|e| Error::PckChain(e.to_string()))?;
    if blocks.is_empty() {
        return Err(Error::PckChain("no PEM certificate found".into()));
    }
    blocks
        .into_iter()
        .enumerate()
        .map(|(i, block)| {
            if block.tag() == "CERTIFICATE" {
                Ok(block.into_contents())
            } else {
                Err(Error::PckChain(format!(
                    "PEM block {i} is {:?}, expected CERTIFICATE",
                    block.tag()
                )))
            }
        })
        .collect()
}

/// The ECDSA quote signature data, in the same shape for v3 and v4.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QuoteSignatureData {
    /// ECDSA signature r‖s (32 bytes each, big-endian) by the attestation key over the header and
    /// body ([`Quote::signed_bytes`]).
    pub signature: [u8; 64],
    /// The attestation public key x‖y (32 bytes each, big-endian).
    pub attestation_key: [u8; 64],
    /// The quoting enclave's REPORT body.
    pub qe_report: ReportBody,
    /// ECDSA signature r‖s by the PCK key over the QE REPORT body.
    pub qe_report_signature: [u8; 64],
    /// QE authentication data (at most [`MAX_VARIABLE_LEN`] bytes; Intel's QE sends 32 bytes).
    pub qe_auth_data: Vec<u8>,
    /// The certification data (for v4, the inner data of the type-6 wrapper).
    pub certification_data: CertificationData,
}

impl QuoteSignatureData {
    /// The REPORTDATA a genuine QE report carries for this attestation key and auth data:
    /// SHA-256(attestation key ‖ QE auth data) ‖ 32 zero bytes.
    pub fn expected_qe_report_data(attestation_key: &[u8; 64], qe_auth_data: &[u8]) -> ReportData {
        let digest = Sha256::new()
            .chain_update(attestation_key)
            .chain_update(qe_auth_data)
            .finalize();
        let mut out = [0u8; 64];
        if let Some(head) = out.get_mut(..32) {
            head.copy_from_slice(&digest);
        }
        ReportData(out)
    }

    /// Whether the QE report's REPORTDATA binds this attestation key and auth data.
    pub fn qe_report_data_matches(&self) -> bool {
        Self::expected_qe_report_data(&self.attestation_key, &self.qe_auth_data)
            == self.qe_report.report_data
    }

    /// Reads the QE report, its signature, the auth data and the certification data.
    #[allow(clippy::type_complexity)]
    fn read_qe_part(
        r: &mut Reader<'_>,
        fields: &QeFields,
    ) -> Result<(ReportBody, [u8; 64], Vec<u8>, CertificationData), Error> {
        let qe_report = r.read::<ReportBody>(fields.report)?;
        let qe_report_signature = r.array(fields.report_signature)?;
        let auth_len = r.u16(fields.auth_size)?;
        let auth = r.take_capped(u64::from(auth_len), MAX_VARIABLE_LEN, fields.auth_data)?;
        let cert = CertificationData::read(r, &fields.cert)?;
        Ok((qe_report, qe_report_signature, auth.to_vec(), cert))
    }

    fn write_qe_part(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        out.extend_from_slice(self.qe_report.as_bytes());
        out.extend_from_slice(&self.qe_report_signature);
        let auth_len = u16::try_from(self.qe_auth_data.len()).map_err(|_| Error::TooLong {
            field: "quote.qe_auth_data",
            declared: self.qe_auth_data.len() as u64,
            limit: usize::from(u16::MAX),
        })?;
        out.extend_from_slice(&auth_len.to_le_bytes());
        out.extend_from_slice(&self.qe_auth_data);
        self.certification_data
            .write(out, "quote.certification_data")
    }
}

struct QeFields {
    report: &'static str,
    report_signature: &'static str,
    auth_size: &'static str,
    auth_data: &'static str,
    cert: [&'static str; 3],
}

const V3_FIELDS: QeFields = QeFields {
    report: "quote.qe_report",
    report_signature: "quote.qe_report_signature",
    auth_size: "quote.qe_auth_data_size",
    auth_data: "quote.qe_auth_data",
    cert: [
        "quote.certification_data_type",
        "quote.certification_data_size",
        "quote.certification_data",
    ],
};

const V4_FIELDS: QeFields = QeFields {
    report: "quote.qe_report_certification.qe_report",
    report_signature: "quote.qe_report_certification.qe_report_signature",
    auth_size: "quote.qe_report_certification.qe_auth_data_size",
    auth_data: "quote.qe_report_certification.qe_auth_data",
    cert: [
        "quote.qe_report_certification.certification_data_type",
        "quote.qe_report_certification.certification_data_size",
        "quote.qe_report_certification.certification_data",
    ],
};

/// A parsed DCAP ECDSA quote (v3 or v4).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Quote {
    /// The header.
    pub header: QuoteHeader,
    /// The attested body.
    pub body: QuoteBody,
    /// The signature data.
    pub signature_data: QuoteSignatureData,
}

impl Quote {
    /// Parses a quote. Trailing zero bytes after the signature data are tolerated (see the
    /// module docs); anything else that does not fit the format is an error naming the field.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let header = r.read::<QuoteHeader>("quote.header")?;
        let version = header.version.get();
        let body = match (version, header.tee_type()) {
            (3 | 4, TeeType::SGX) => QuoteBody::Sgx(r.read::<ReportBody>("quote.body")?),
            (4, TeeType::TDX) => QuoteBody::Td10(r.read::<TdReport10>("quote.body")?),
            (3 | 4, tee_type) => return Err(Error::UnsupportedTeeType { version, tee_type }),
            _ => return Err(Error::UnsupportedQuoteVersion(version)),
        };
        let sig_len = r.u32("quote.signature_data_len")?;
        let sig_bytes =
            r.take_capped(u64::from(sig_len), MAX_VARIABLE_LEN, "quote.signature_data")?;
        let padding = r.into_rest();
        if let Some(pos) = padding.iter().position(|b| *b != 0) {
            return Err(Error::TrailingBytes {
                structure: "quote (non-zero byte after signature_data_len bytes)",
                count: padding.len().saturating_sub(pos),
            });
        }

        let mut s = Reader::new(sig_bytes);
        let signature = s.array("quote.signature")?;
        let attestation_key = s.array("quote.attestation_key")?;
        let (qe_report, qe_report_signature, qe_auth_data, certification_data) = if version == 3 {
            QuoteSignatureData::read_qe_part(&mut s, &V3_FIELDS)?
        } else {
            let outer = CertificationData::read(
                &mut s,
                &[
                    "quote.certification_data_type",
                    "quote.certification_data_size",
                    "quote.certification_data",
                ],
            )?;
            if outer.cert_type != CertDataType::QE_REPORT {
                return Err(Error::CertificationDataType {
                    context: "quote v4 certification data",
                    found: outer.cert_type,
                    expected: CertDataType::QE_REPORT,
                });
            }
            let mut inner = Reader::new(&outer.data);
            let parts = QuoteSignatureData::read_qe_part(&mut inner, &V4_FIELDS)?;
            inner.finish("quote.qe_report_certification")?;
            parts
        };
        s.finish("quote.signature_data")?;
        Ok(Self {
            header,
            body,
            signature_data: QuoteSignatureData {
                signature,
                attestation_key,
                qe_report,
                qe_report_signature,
                qe_auth_data,
                certification_data,
            },
        })
    }

    /// Encodes the quote in the layout of its header's version (no padding).
    ///
    /// Refused: a version other than 3 or 4, a body that does not fit the header's TEE type, and
    /// variable-length fields above their caps.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        let version = self.header.version.get();
        match (version, self.header.tee_type(), &self.body) {
            (3 | 4, TeeType::SGX, QuoteBody::Sgx(_)) | (4, TeeType::TDX, QuoteBody::Td10(_)) => {}
            (3 | 4, tee_type, _) => return Err(Error::UnsupportedTeeType { version, tee_type }),
            _ => return Err(Error::UnsupportedQuoteVersion(version)),
        }
        let sd = &self.signature_data;
        let mut sig = Vec::with_capacity(
            1024usize
                .saturating_add(sd.qe_auth_data.len())
                .saturating_add(sd.certification_data.data.len()),
        );
        sig.extend_from_slice(&sd.signature);
        sig.extend_from_slice(&sd.attestation_key);
        if version == 3 {
            sd.write_qe_part(&mut sig)?;
        } else {
            let mut inner = Vec::new();
            sd.write_qe_part(&mut inner)?;
            CertificationData {
                cert_type: CertDataType::QE_REPORT,
                data: inner,
            }
            .write(&mut sig, "quote.qe_report_certification")?;
        }
        let sig_len = len_u32(sig.len(), "quote.signature_data")?;
        let mut out = self.signed_bytes();
        out.extend_from_slice(&sig_len.to_le_bytes());
        out.extend_from_slice(&sig);
        Ok(out)
    }

    /// The quote version.
    pub fn version(&self) -> u16 {
        self.header.version.get()
    }

    /// The TEE type (SGX for every v3 quote).
    pub fn tee_type(&self) -> TeeType {
        self.header.tee_type()
    }

    /// The SGX REPORT body, if this is an SGX quote.
    pub fn sgx_body(&self) -> Option<&ReportBody> {
        match &self.body {
            QuoteBody::Sgx(b) => Some(b),
            QuoteBody::Td10(_) => None,
        }
    }

    /// Length of the range `[0, signed_len)` of the encoded quote that the attestation key
    /// signs: the header and the body.
    pub fn signed_len(&self) -> usize {
        HEADER_LEN.saturating_add(self.body.len())
    }

    /// The bytes the attestation key signs: header ‖ body (identical to the first
    /// [`Quote::signed_len`] bytes of the parsed input).
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.signed_len());
        out.extend_from_slice(self.header.as_bytes());
        out.extend_from_slice(self.body.as_bytes());
        out
    }

    /// The PCK certificate chain (DER, leaf first) when the certification data is type 5.
    pub fn pck_cert_chain(&self) -> Result<Vec<Vec<u8>>, Error> {
        self.signature_data.certification_data.pck_cert_chain()
    }
}

fn len_u32(len: usize, field: &'static str) -> Result<u32, Error> {
    u32::try_from(len)
        .ok()
        .filter(|_| len <= MAX_VARIABLE_LEN)
        .ok_or(Error::TooLong {
            field,
            declared: len as u64,
            limit: MAX_VARIABLE_LEN,
        })
}
