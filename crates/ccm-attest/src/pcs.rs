//! A client of Intel's Provisioning Certification Service API v4, as Intel's PCS and every PCCS
//! (Intel's caching service, cloud providers' caches, ccm's own) serve it.
//!
//! [`PcsClient`] fetches the parts of a [`Collateral`] for one FMSPC: the PCK CRL
//! (`pckcrl?ca=processor|platform&encoding=der`, issuer chain in `SGX-PCK-CRL-Issuer-Chain`), the
//! TCB info (`tcb?fmspc=`, `TCB-Info-Issuer-Chain` or v3's `SGX-TCB-Info-Issuer-Chain`), the QE
//! identity (`qe/identity`, `SGX-Enclave-Identity-Issuer-Chain`), each with `update=standard|early`,
//! and the root CA CRL: from a PCCS at `rootcacrl` (hex-encoded DER), from Intel's PCS at the root
//! certificate's CRL distribution point. The TDX equivalents of TCB info and QE identity are under
//! `tdx/certification/v4` ([`Tee::Tdx`]).
//!
//! The client checks shape, not trust: a response that is not what the API promises (a status
//! other than 200, a missing or undecodable issuer-chain header, a body larger than
//! [`MAX_BODY_LEN`], JSON without the signed object) is refused with a [`PcsError`] naming the
//! endpoint. Whether the collateral is genuine (signatures, chains to a trusted root, CRLs,
//! validity) is the verifier's question: pass what the client returns to
//! [`Verifier::check_collateral`](crate::Verifier::check_collateral) before storing or using it.

use std::time::Duration;

pub use crate::collateral::{CaType, Tee};
use crate::collateral::{Collateral, CollateralParts, split_signed_json};
use crate::error::PcsError;

/// The largest response body accepted (Intel's platform CA CRL is the largest, well under this).
pub const MAX_BODY_LEN: usize = 4 << 20;

/// Intel's PCS, the default base URL.
pub const INTEL_PCS_URL: &str = "https://api.trustedservices.intel.com";

/// Which TCB evaluation data set to fetch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Update {
    /// The set in force (`update=standard`).
    #[default]
    Standard,
    /// The set of the next TCB recovery, published ahead of it (`update=early`).
    Early,
}

impl Update {
    /// The API's spelling (`update=`).
    pub fn as_str(self) -> &'static str {
        match self {
            Update::Standard => "standard",
            Update::Early => "early",
        }
    }
}

/// A signed JSON object as the API serves it: the exact signed text, its signature and the
/// PEM chain of its signer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedJson {
    /// The signed object's exact text (`tcbInfo` or `enclaveIdentity`).
    pub body: String,
    /// ECDSA P-256 signature `r ‖ s`.
    pub signature: Vec<u8>,
    /// PEM chain of the signer, from the response header.
    pub issuer_chain: String,
}

/// A CRL with the PEM chain of its issuer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crl {
    /// DER.
    pub der: Vec<u8>,
    /// PEM chain of the issuer, from the response header.
    pub issuer_chain: String,
}

/// Where and how to reach the service.
#[derive(Clone, Debug)]
pub struct PcsOptions {
    /// Base URL: Intel's PCS, a PCCS, or a ccm manager (a trailing `/sgx/certification/v4` or
    /// `/tdx/certification/v4` is accepted and dropped).
    pub base_url: String,
    /// Sent as `Ocp-Apim-Subscription-Key` when set (Intel's PCS wants one for some endpoints).
    pub api_key: Option<String>,
    /// Limit for each request, connection included.
    pub timeout: Duration,
    /// Where the root CA CRL is fetched from when the service has no `rootcacrl` endpoint
    /// (Intel's PCS): `None` reads it from the root certificate's CRL distribution point.
    pub root_ca_crl_url: Option<String>,
}

impl PcsOptions {
    /// Options for `base_url` with a 30 s timeout and no API key.
    pub fn new(base_url: &str) -> PcsOptions {
        PcsOptions {
            base_url: base_url.to_string(),
            api_key: None,
            timeout: Duration::from_secs(30),
            root_ca_crl_url: None,
        }
    }
}

/// The TLS configuration for reaching a PCS or PCCS (ring provider): the system's CA
/// certificates, plus those in `extra_ca_pem` (PEM text) for a PCCS with a CA of its own, as
/// Intel's PCCS makes one. The collateral is authenticated by its signatures whatever the
/// transport; this only authenticates the service.
pub fn system_tls(extra_ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, PcsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(text) = extra_ca_pem {
        let certs = pem::parse_many(text)
            .map_err(|e| PcsError::Client(format!("CA certificates: {e}")))?
            .into_iter()
            .filter(|p| p.tag() == "CERTIFICATE")
            .map(|p| p.into_contents().into());
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(PcsError::Client("the file holds no CA certificate".into()));
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PcsError::Client(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A client of one PCS or PCCS.
#[derive(Clone, Debug)]
pub struct PcsClient {
    http: reqwest::Client,
    base: String,
    options: PcsOptions,
}

impl PcsClient {
    /// A client over `tls` (the roots that authenticate the service; the collateral itself is
    /// authenticated by its signatures whatever the transport).
    pub fn new(options: PcsOptions, tls: rustls::ClientConfig) -> Result<PcsClient, PcsError> {
        let base = options
            .base_url
            .trim_end_matches('/')
            .trim_end_matches("/sgx/certification/v4")
            .trim_end_matches("/tdx/certification/v4")
            .to_string();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(PcsError::BaseUrl(options.base_url.clone()));
        }
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .user_agent(concat!("ccm/", env!("CARGO_PKG_VERSION")))
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| PcsError::Client(e.to_string()))?;
        Ok(PcsClient {
            http,
            base,
            options,
        })
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Whether the service is Intel's PCS (which has no `rootcacrl` endpoint).
    fn is_intel_pcs(&self) -> bool {
        self.base.contains("api.trustedservices.intel.com")
    }

    /// The PCK CRL of `ca`.
    pub async fn pck_crl(&self, ca: CaType) -> Result<Crl, PcsError> {
        let path = format!(
            "sgx/certification/v4/pckcrl?ca={}&encoding=der",
            ca.as_str()
        );
        let resp = self.get(&path).await?;
        let issuer_chain = header(&resp, &path, &["SGX-PCK-CRL-Issuer-Chain"])?;
        let body = body(resp, &path).await?;
        Ok(Crl {
            der: der_or_pem_crl(body, &path)?,
            issuer_chain,
        })
    }

    /// The TCB info of `fmspc` (6 bytes) for `tee`.
    pub async fn tcb_info(
        &self,
        tee: Tee,
        fmspc: &[u8; 6],
        update: Update,
    ) -> Result<SignedJson, PcsError> {
        let path = format!(
            "{}/tcb?fmspc={}&update={}",
            tee.api_path(),
            hex::encode_upper(fmspc),
            update.as_str()
        );
        let names = ["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"];
        self.signed_json(&path, &names, "tcbInfo").await
    }

    /// The QE identity for `tee` (the QE of SGX, the TD QE of TDX).
    pub async fn qe_identity(&self, tee: Tee, update: Update) -> Result<SignedJson, PcsError> {
        let path = format!("{}/qe/identity?update={}", tee.api_path(), update.as_str());
        let names = ["SGX-Enclave-Identity-Issuer-Chain"];
        self.signed_json(&path, &names, "enclaveIdentity").await
    }

    /// The root CA's CRL (DER). `root_pem` is the root certificate as the other responses'
    /// chains end with it; its CRL distribution point is used when the service has no
    /// `rootcacrl` endpoint and [`PcsOptions::root_ca_crl_url`] is not set.
    pub async fn root_ca_crl(&self, root_pem: &str) -> Result<Vec<u8>, PcsError> {
        if let Some(url) = &self.options.root_ca_crl_url {
            return self.get_crl_at(url).await;
        }
        if !self.is_intel_pcs() {
            let path = "sgx/certification/v4/rootcacrl";
            let resp = self.get(path).await?;
            let body = body(resp, path).await?;
            // A PCCS answers the DER hex-encoded; accept DER and PEM as well.
            let text = std::str::from_utf8(&body).map(str::trim).unwrap_or("");
            if !text.is_empty() && text.bytes().all(|b| b.is_ascii_hexdigit()) {
                return hex::decode(text).map_err(|_| PcsError::Body {
                    path: path.into(),
                    reason: "not valid hex".into(),
                });
            }
            return der_or_pem_crl(body, path);
        }
        let url = crl_distribution_point(root_pem)?;
        self.get_crl_at(&url).await
    }

    /// Everything needed to verify SGX quotes of `fmspc` whose PCK certificate `ca` issued.
    pub async fn sgx_collateral(
        &self,
        fmspc: &[u8; 6],
        ca: CaType,
        update: Update,
    ) -> Result<Collateral, PcsError> {
        let (pck_crl, tcb, qe) = tokio::try_join!(
            self.pck_crl(ca),
            self.tcb_info(Tee::Sgx, fmspc, update),
            self.qe_identity(Tee::Sgx, update),
        )?;
        let root_pem = last_pem(&qe.issuer_chain).ok_or(PcsError::Header {
            path: "sgx/certification/v4/qe/identity".into(),
            reason: "the issuer chain holds no certificate".into(),
        })?;
        let root_ca_crl = self.root_ca_crl(&root_pem).await?;
        Collateral::new(CollateralParts {
            pck_crl_issuer_chain: pck_crl.issuer_chain,
            root_ca_crl,
            pck_crl: pck_crl.der,
            tcb_info_issuer_chain: tcb.issuer_chain,
            tcb_info: tcb.body,
            tcb_info_signature: tcb.signature,
            qe_identity_issuer_chain: qe.issuer_chain,
            qe_identity: qe.body,
            qe_identity_signature: qe.signature,
        })
        .map_err(PcsError::Collateral)
    }

    async fn signed_json(
        &self,
        path: &str,
        header_names: &[&str],
        key: &str,
    ) -> Result<SignedJson, PcsError> {
        let resp = self.get(path).await?;
        let issuer_chain = header(&resp, path, header_names)?;
        let body = body(resp, path).await?;
        let text = String::from_utf8(body).map_err(|_| PcsError::Body {
            path: path.into(),
            reason: "not UTF-8".into(),
        })?;
        let (body, signature) = split_signed_json(&text, key).map_err(|e| PcsError::Body {
            path: path.into(),
            reason: e.to_string(),
        })?;
        Ok(SignedJson {
            body,
            signature,
            issuer_chain,
        })
    }

    async fn get(&self, path: &str) -> Result<reqwest::Response, PcsError> {
        self.get_url(&format!("{}/{path}", self.base), path).await
    }

    async fn get_url(&self, url: &str, path: &str) -> Result<reqwest::Response, PcsError> {
        let mut req = self.http.get(url);
        if let Some(key) = &self.options.api_key {
            req = req.header("Ocp-Apim-Subscription-Key", key);
        }
        let resp = req.send().await.map_err(|e| PcsError::Request {
            path: path.into(),
            reason: error_chain(&e),
        })?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(PcsError::Status {
                path: path.into(),
                status: resp.status().as_u16(),
                error: resp
                    .headers()
                    .get("Error-Code")
                    .or_else(|| resp.headers().get("Error-Message"))
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.chars().take(200).collect()),
            });
        }
        Ok(resp)
    }

    async fn get_crl_at(&self, url: &str) -> Result<Vec<u8>, PcsError> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(PcsError::BaseUrl(url.to_string()));
        }
        let resp = self.get_url(url, url).await?;
        let body = body(resp, url).await?;
        der_or_pem_crl(body, url)
    }
}

/// The FMSPC and PCK CA type a quote's collateral is fetched for, read from the PCK certificate
/// in its certification data (nothing is verified here: the verifier checks that certificate).
pub fn quote_collateral_key(quote: &[u8]) -> Result<([u8; 6], CaType), PcsError> {
    let bad = |reason: &str| PcsError::Quote(reason.to_string());
    let parsed = ccm_sgx::Quote::parse(quote).map_err(|e| PcsError::Quote(e.to_string()))?;
    let chain = parsed
        .pck_cert_chain()
        .map_err(|_| bad("the quote carries no PCK certificate chain"))?;
    let leaf = chain.first().ok_or_else(|| bad("the PCK chain is empty"))?;
    let fmspc = ccm_sgx::SgxExtension::from_certificate_der(leaf)
        .map_err(|e| PcsError::Quote(e.to_string()))?
        .fmspc;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|_| bad("the PCK certificate does not parse"))?;
    let issuer = cert
        .issuer()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default();
    let ca = CaType::from_issuer_cn(issuer)
        .ok_or_else(|| PcsError::Quote(format!("PCK issuer {issuer:?} is no PCK CA")))?;
    Ok((fmspc, ca))
}

/// The first of `names` present, URL-decoded (the API sends PEM chains percent-encoded).
fn header(resp: &reqwest::Response, path: &str, names: &[&str]) -> Result<String, PcsError> {
    let bad = |reason: String| PcsError::Header {
        path: path.into(),
        reason,
    };
    let value = names
        .iter()
        .find_map(|n| resp.headers().get(*n))
        .ok_or_else(|| bad(format!("no {} header", names.first().unwrap_or(&""))))?;
    let value = value
        .to_str()
        .map_err(|_| bad("the issuer chain header is not ASCII".into()))?;
    let pem = percent_decode(value).ok_or_else(|| bad("not percent-encoded PEM".into()))?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(bad("the issuer chain holds no certificate".into()));
    }
    Ok(pem)
}

fn percent_decode(s: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(s).decode_utf8().ok()?;
    // A `%` not followed by two hex digits is passed through by the decoder: refuse it.
    (!decoded.contains('%')).then(|| decoded.into_owned())
}

/// Reads a body of at most [`MAX_BODY_LEN`] bytes.
async fn body(mut resp: reqwest::Response, path: &str) -> Result<Vec<u8>, PcsError> {
    let mut out = Vec::new();
    loop {
        let chunk = resp.chunk().await.map_err(|e| PcsError::Request {
            path: path.into(),
            reason: error_chain(&e),
        })?;
        let Some(chunk) = chunk else { return Ok(out) };
        if out.len().saturating_add(chunk.len()) > MAX_BODY_LEN {
            return Err(PcsError::Body {
                path: path.into(),
                reason: format!("larger than {MAX_BODY_LEN} bytes"),
            });
        }
        out.extend_from_slice(&chunk);
    }
}

/// A CRL body: DER as is, PEM decoded.
fn der_or_pem_crl(body: Vec<u8>, path: &str) -> Result<Vec<u8>, PcsError> {
    if body.starts_with(b"-----BEGIN") {
        let p = pem::parse(&body).map_err(|e| PcsError::Body {
            path: path.into(),
            reason: format!("PEM: {e}"),
        })?;
        return Ok(p.into_contents());
    }
    // DER: a SEQUENCE.
    if body.first() != Some(&0x30) {
        return Err(PcsError::Body {
            path: path.into(),
            reason: "not a DER or PEM CRL".into(),
        });
    }
    Ok(body)
}

/// The last certificate of a PEM chain, as PEM.
fn last_pem(chain: &str) -> Option<String> {
    pem::parse_many(chain)
        .ok()?
        .into_iter()
        .rfind(|p| p.tag() == "CERTIFICATE")
        .map(|p| pem::encode(&p))
}

/// The first URI of a certificate's CRL distribution points.
fn crl_distribution_point(cert_pem: &str) -> Result<String, PcsError> {
    use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
    let bad = |reason: &str| PcsError::RootCrl(reason.to_string());
    let p = pem::parse(cert_pem).map_err(|_| bad("the root certificate is not PEM"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(p.contents())
        .map_err(|_| bad("the root certificate does not parse"))?;
    for ext in cert.extensions() {
        if let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() {
            for point in points.iter() {
                if let Some(DistributionPointName::FullName(names)) = &point.distribution_point {
                    for n in names {
                        if let GeneralName::URI(uri) = n {
                            return Ok(uri.to_string());
                        }
                    }
                }
            }
        }
    }
    Err(bad("the root certificate names no CRL distribution point"))
}

/// An error with its sources, for a log line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoded_pem_decodes_and_junk_does_not() {
        assert_eq!(
            percent_decode("-----BEGIN%20CERTIFICATE-----%0AMII%2B").as_deref(),
            Some("-----BEGIN CERTIFICATE-----\nMII+")
        );
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%ff"), None, "not UTF-8");
    }

    #[test]
    fn crl_bodies_are_der_or_pem() {
        assert_eq!(der_or_pem_crl(vec![0x30, 0], "p").unwrap(), vec![0x30, 0]);
        let pem = pem::encode(&pem::Pem::new("X509 CRL", vec![0x30, 1]));
        assert_eq!(
            der_or_pem_crl(pem.into_bytes(), "p").unwrap(),
            vec![0x30, 1]
        );
        assert!(der_or_pem_crl(b"<html>".to_vec(), "p").is_err());
    }

    #[test]
    fn ca_types_come_from_the_issuer_name() {
        assert_eq!(
            CaType::from_issuer_cn("Intel SGX PCK Processor CA"),
            Some(CaType::Processor)
        );
        assert_eq!(
            CaType::from_issuer_cn("Intel SGX PCK Platform CA"),
            Some(CaType::Platform)
        );
        assert_eq!(CaType::from_issuer_cn("Someone else"), None);
    }
}
