//! The simulated quoting enclave (QE3-like): checks REPORT MACs, signs DCAP v3 quotes with its
//! ECDSA P-256 attestation key, and answers `qe_report_info` requests.
//!
//! Everything that does not depend on the request is computed when the QE is loaded (header,
//! attestation key, QE report and its PCK signature, authentication data, certification data), so
//! a quote costs one CMAC check and one ECDSA signature.

use std::path::Path;

use ccm_sgx::{
    AttKeyId, CertDataType, CertificationData, Measurement, Quote, QuoteBody, QuoteHeader,
    QuoteSignatureData, Report, ReportBody, ReportData, TargetInfo,
};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _};

use crate::error::{Error, QeError};
use crate::sim::ca::SimKey;
use crate::sim::cpu::SimCpu;
use crate::sim::{PlatformInfo, files};

/// The simulated quoting enclave of one platform. `Send + Sync`: share it (`Arc`) between the
/// tasks of a quote helper.
pub struct SimQuotingEnclave {
    cpu: SimCpu,
    identity: ReportBody,
    target_info: TargetInfo,
    att_key: EcdsaKeyPair,
    att_key_id: AttKeyId,
    pub_key_id: [u8; 32],
    header: QuoteHeader,
    template: QuoteSignatureData,
    quote_size: usize,
    rng: SystemRandom,
}

impl std::fmt::Debug for SimQuotingEnclave {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimQuotingEnclave")
            .field("mr_enclave", &self.identity.mr_enclave)
            .field("isv_svn", &self.identity.isv_svn.get())
            .field("quote_size", &self.quote_size)
            .finish_non_exhaustive()
    }
}

fn bad_file(path: &Path, reason: impl Into<String>) -> Error {
    Error::PlatformFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

impl SimQuotingEnclave {
    /// Loads the QE of the platform in `dir` (created by [`init`](super::init) or
    /// [`add_platform`](super::add_platform)).
    pub fn load(dir: &Path) -> Result<SimQuotingEnclave, Error> {
        let info = PlatformInfo::load(dir)?;
        let cpu = super::load_cpu(dir, &info)?;
        let att_key = SimKey::load(&dir.join(super::ATTESTATION_KEY_FILE))?;
        let chain_path = dir.join(super::PCK_CHAIN_FILE);
        let mut chain = files::read(&chain_path)?;
        chain.push(0); // Intel's QE library NUL-terminates the PEM chain.

        let qe_report_path = dir.join(super::QE_REPORT_FILE);
        let qe_report_bytes = files::read(&qe_report_path)?;
        let (body, sig) = qe_report_bytes
            .split_at_checked(ReportBody::SIZE)
            .ok_or_else(|| bad_file(&qe_report_path, "shorter than a REPORT body"))?;
        let qe_report =
            ReportBody::parse(body).map_err(|e| bad_file(&qe_report_path, e.to_string()))?;
        let qe_report_signature: [u8; 64] = sig
            .try_into()
            .map_err(|_| bad_file(&qe_report_path, "expected 384 + 64 bytes"))?;

        let auth_data = super::QE_AUTH_DATA.to_vec();
        SimQuotingEnclave::assemble(
            cpu,
            &info,
            att_key,
            qe_report,
            qe_report_signature,
            auth_data,
            chain,
        )
        .map_err(|reason| bad_file(dir, reason))
    }

    fn assemble(
        cpu: SimCpu,
        info: &PlatformInfo,
        att_key: SimKey,
        qe_report: ReportBody,
        qe_report_signature: [u8; 64],
        qe_auth_data: Vec<u8>,
        cert_chain: Vec<u8>,
    ) -> Result<SimQuotingEnclave, String> {
        let att_key = att_key.ring().map_err(|e| e.to_string())?;
        let point = att_key.public_key().as_ref();
        let attestation_key: [u8; 64] = point
            .get(1..)
            .and_then(|xy| xy.try_into().ok())
            .ok_or("attestation key is not an uncompressed P-256 key")?;
        if QuoteSignatureData::expected_qe_report_data(&attestation_key, &qe_auth_data)
            != qe_report.report_data
        {
            return Err(format!(
                "{} does not certify {}",
                super::QE_REPORT_FILE,
                super::ATTESTATION_KEY_FILE
            ));
        }
        let identity = ReportBody {
            report_data: ReportData::default(),
            ..qe_report
        };
        let pub_key_id = {
            let digest = ring::digest::digest(&ring::digest::SHA256, &attestation_key);
            let mut out = [0u8; 32];
            out.copy_from_slice(digest.as_ref());
            out
        };
        let header = QuoteHeader::v3(
            qe_report.isv_svn.get(),
            info.pce_svn,
            super::qe_user_data(&info.ppid_bytes().map_err(|e| e.to_string())?),
        );
        let template = QuoteSignatureData {
            signature: [0; 64],
            attestation_key,
            qe_report,
            qe_report_signature,
            qe_auth_data,
            certification_data: CertificationData {
                cert_type: CertDataType::PCK_CERT_CHAIN,
                data: cert_chain,
            },
        };
        let quote_size = Quote {
            header,
            body: QuoteBody::Sgx(ReportBody::default()),
            signature_data: template.clone(),
        }
        .to_bytes()
        .map_err(|e| e.to_string())?
        .len();
        Ok(SimQuotingEnclave {
            cpu,
            target_info: TargetInfo::for_enclave(&identity),
            identity,
            att_key,
            att_key_id: AttKeyId::ecdsa_p256(
                qe_report.mr_signer.0,
                u32::from(qe_report.isv_prod_id.get()),
            ),
            pub_key_id,
            header,
            template,
            quote_size,
            rng: SystemRandom::new(),
        })
    }

    /// The QE's TARGETINFO: enclaves target their REPORTs at it (`sgx_init_quote`).
    pub fn target_info(&self) -> TargetInfo {
        self.target_info
    }

    /// The attestation key id this QE serves (ECDSA P-256, the QE's MRSIGNER and product id,
    /// which are Intel QE3's so that unmodified AESM clients select it).
    pub fn att_key_id(&self) -> AttKeyId {
        self.att_key_id
    }

    /// The 32-byte public key id: SHA-256 of the attestation public key `x ‖ y`.
    pub fn pub_key_id(&self) -> [u8; 32] {
        self.pub_key_id
    }

    /// The size in bytes of every quote this QE produces.
    pub fn quote_size(&self) -> usize {
        self.quote_size
    }

    /// The QE's MRENCLAVE.
    pub fn mr_enclave(&self) -> Measurement {
        self.identity.mr_enclave
    }

    /// A DCAP v3 quote (certification data type 5) for `report`, and, when `qe_report_info` is
    /// given, the QE's REPORT targeted at the application with REPORTDATA\[0..32\] =
    /// SHA-256(nonce ‖ quote).
    ///
    /// Fails with [`QeError::InvalidReport`] (AESM 47) when the REPORT's MAC does not verify for
    /// this QE: forged, or targeted at another enclave.
    pub fn get_quote(
        &self,
        report: &Report,
        qe_report_info: Option<&ccm_sgx::QeReportInfo>,
    ) -> Result<(Vec<u8>, Option<ccm_sgx::QeReportInfo>), QeError> {
        if !self.cpu.verify_report(report, &self.identity.mr_enclave) {
            return Err(QeError::InvalidReport);
        }
        let mut quote = Quote {
            header: self.header,
            body: QuoteBody::Sgx(report.body),
            signature_data: self.template.clone(),
        };
        let signature = self
            .att_key
            .sign(&self.rng, &quote.signed_bytes())
            .map_err(|_| QeError::Unexpected("attestation key signing failed"))?;
        quote.signature_data.signature = signature
            .as_ref()
            .try_into()
            .map_err(|_| QeError::Unexpected("unexpected signature length"))?;
        let bytes = quote
            .to_bytes()
            .map_err(|_| QeError::Unexpected("quote encoding failed"))?;

        let info = qe_report_info.map(|info| {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            ctx.update(&info.nonce);
            ctx.update(&bytes);
            let mut report_data = ReportData::default();
            if let Some(head) = report_data.0.get_mut(..32) {
                head.copy_from_slice(ctx.finish().as_ref());
            }
            let body = ReportBody {
                report_data,
                ..self.identity
            };
            ccm_sgx::QeReportInfo {
                nonce: info.nonce,
                app_target_info: info.app_target_info,
                qe_report: self.cpu.report_for(&info.app_target_info, body),
            }
        });
        Ok((bytes, info))
    }
}
