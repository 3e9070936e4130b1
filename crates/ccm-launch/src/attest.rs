//! The REPORT and the quote.
//!
//! The launcher states the enclave identity the SIGSTRUCT establishes (MRENCLAVE recomputed from
//! the manifest, MRSIGNER, ISVPRODID, ISVSVN, ATTRIBUTES with INIT set as after EINIT) in a
//! REPORT whose REPORTDATA binds a fresh key, targeted at the quoting enclave named by
//! InitQuoteEx, MAC'ed with the simulated CPU key published next to the AESM socket
//! (`ccm-sim-cpu.key`, DESIGN.md section 3). The quote comes back through GetQuoteEx with a QE
//! report info: the QE's own REPORT, targeted at us, over SHA-256(nonce ‖ quote). Checking that
//! report (MAC, nonce binding, the QE we targeted) and that the quote carries exactly our REPORT
//! body catches a socket that answers with someone else's quote, as `sgx_get_quote_ex` callers
//! are told to do.
//!
//! **Simulation.** On this path nothing is isolated: any process that can read
//! `ccm-sim-cpu.key` can MAC a REPORT for any identity. The quote proves what the simulated
//! platform was told, and managers accept it only when they trust the simulated root.
//!
//! The simulated platform is the cargo feature `sim` (`scripts/build-launcher --simulation`),
//! off by default. It is today the only way this launcher makes a REPORT, so a launcher built
//! without it carries no simulator and refuses every certificate from the manager's CA with a
//! message that says why ([`Attester::connect`]); self-signed certificates and launches without
//! certificates work either way.

#[cfg(feature = "sim")]
use std::path::{Path, PathBuf};
#[cfg(feature = "sim")]
use std::time::Duration;

#[cfg(feature = "sim")]
use ccm_aesm::AesmClient;
#[cfg(feature = "sim")]
use ccm_attest::sim::{EnclaveIdentity, SimCpu, SimQuotingEnclave};
use ccm_enclave::VerifiedEnclave;
use ccm_sgx::ReportData;
#[cfg(feature = "sim")]
use ccm_sgx::{AttKeyId, AttributeFlags, Attributes, QeReportInfo, Quote, TargetInfo};
#[cfg(feature = "sim")]
use ring::rand::SecureRandom;

use crate::config::QuoteVia;
use crate::error::LaunchError;

/// The file holding the simulated platform secret, next to the AESM socket.
pub const SIM_CPU_KEY_FILE: &str = "ccm-sim-cpu.key";

/// Time allowed for each AESM read and write (the simulated QE answers in microseconds; Intel's
/// aesmd may contact a provisioning service on first use).
#[cfg(feature = "sim")]
const AESM_TIMEOUT: Duration = Duration::from_secs(30);

/// The identity the REPORT states, from a verified manifest and SIGSTRUCT.
#[cfg(feature = "sim")]
pub fn identity_of(v: &VerifiedEnclave) -> EnclaveIdentity {
    let s = &v.sigstruct;
    EnclaveIdentity {
        mr_enclave: v.mrenclave,
        mr_signer: v.mrsigner,
        // EINIT sets INIT; everything else is what the SIGSTRUCT asks for.
        attributes: Attributes::new(
            v.attributes.flags() | AttributeFlags::INIT,
            v.attributes.xfrm(),
        ),
        misc_select: s.misc_select.get(),
        isv_prod_id: v.isv_prod_id,
        isv_svn: v.isv_svn,
        isv_ext_prod_id: s.isv_ext_prod_id,
        isv_family_id: s.isv_family_id,
        ..EnclaveIdentity::default()
    }
}

/// REPORTDATA of a certificate request (docs/attestation-evidence.md): `[0..32]` = SHA-256 of
/// the key's SubjectPublicKeyInfo DER, `[32..64]` = the manager's issuance nonce.
pub fn report_data_for(spki_der: &[u8], nonce: &[u8; 32]) -> ReportData {
    let mut rd = ReportData::default();
    rd.0[..32].copy_from_slice(ring::digest::digest(&ring::digest::SHA256, spki_der).as_ref());
    rd.0[32..].copy_from_slice(nonce);
    rd
}

#[cfg(feature = "sim")]
enum Backend {
    Aesm {
        client: AesmClient,
        key: Box<AttKeyId>,
    },
    InProcess(Box<SimQuotingEnclave>),
}

/// A connected quote source with the simulated CPU that MACs our REPORTs.
#[cfg(feature = "sim")]
pub struct Attester {
    backend: Backend,
    cpu: SimCpu,
    target: TargetInfo,
    identity: EnclaveIdentity,
    /// Whether the quotes come from the in-process simulated QE.
    pub in_process: bool,
}

#[cfg(feature = "sim")]
impl std::fmt::Debug for Attester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attester")
            .field("in_process", &self.in_process)
            .field("target", &self.target.mr_enclave)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "sim")]
fn read_cpu_key(path: &Path) -> Result<SimCpu, LaunchError> {
    let bytes = std::fs::read(path).map_err(|e| {
        LaunchError::QuoteSource(format!(
            "no simulated CPU key at {}: {e} (this launcher MACs its REPORT with the simulated platform secret that \
             `ccm aesmd --platform` publishes next to its socket; mount the host's /var/run/aesmd)",
            path.display()
        ))
    })?;
    let secret: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        LaunchError::QuoteSource(format!(
            "simulated CPU key {} has {} bytes, expected 32",
            path.display(),
            bytes.len()
        ))
    })?;
    Ok(SimCpu::new(secret))
}

#[cfg(feature = "sim")]
impl Attester {
    /// Connects to the configured quote source: selects the attestation key and asks for the
    /// QE's TARGETINFO (InitQuoteEx), and loads the simulated CPU key; the REPORTs will state
    /// `enclave`'s identity.
    pub fn connect(via: &QuoteVia, enclave: &VerifiedEnclave) -> Result<Attester, LaunchError> {
        let identity = identity_of(enclave);
        match via {
            QuoteVia::None => Err(LaunchError::QuoteSource(
                "no quote source: SGX_AESM_ADDR is not set (run the container with SGX_AESM_ADDR=1 and the host's \
                 /var/run/aesmd mounted)"
                    .into(),
            )),
            QuoteVia::Aesm(socket) => {
                let client = AesmClient::new(socket).with_timeout(AESM_TIMEOUT);
                let unreachable = |source: ccm_aesm::Error| LaunchError::AesmUnreachable {
                    socket: socket.clone(),
                    source,
                };
                let refused = |what: &str, e: ccm_aesm::Error| match e {
                    ccm_aesm::Error::Io { .. } => unreachable(e),
                    other => LaunchError::Quote(format!(
                        "AESM service at {}: {what}: {other}",
                        socket.display()
                    )),
                };
                let key = client
                    .select_att_key_id(None)
                    .map_err(|e| refused("SelectAttKeyID", e))?;
                let qe = client
                    .init_quote_ex(&key)
                    .map_err(|e| refused("InitQuoteEx", e))?;
                let dir = socket.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
                let cpu = read_cpu_key(&dir.join(SIM_CPU_KEY_FILE))?;
                Ok(Attester {
                    backend: Backend::Aesm {
                        client,
                        key: Box::new(key),
                    },
                    cpu,
                    target: qe.target_info,
                    identity,
                    in_process: false,
                })
            }
            QuoteVia::DangerousInProcessSim(dir) => {
                let qe = SimQuotingEnclave::load(dir).map_err(|e| {
                    LaunchError::QuoteSource(format!(
                        "simulated platform {} (--ccm-dangerous-inprocess-sim): {e}",
                        dir.display()
                    ))
                })?;
                let cpu = read_cpu_key(&dir.join(SIM_CPU_KEY_FILE))?;
                Ok(Attester {
                    target: qe.target_info(),
                    backend: Backend::InProcess(Box::new(qe)),
                    cpu,
                    identity,
                    in_process: true,
                })
            }
        }
    }

    /// The QE's TARGETINFO our REPORTs are targeted at.
    pub fn target(&self) -> &TargetInfo {
        &self.target
    }

    /// A quote of our identity carrying `report_data`, checked against the QE's report.
    pub fn quote(&self, report_data: &ReportData) -> Result<Vec<u8>, LaunchError> {
        let report = self.cpu.ereport(&self.target, &self.identity, report_data);
        let mut nonce = [0u8; 16];
        ring::rand::SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| LaunchError::Quote("the system random generator failed".into()))?;
        let info = QeReportInfo {
            nonce,
            app_target_info: TargetInfo::for_enclave(&report.body),
            ..QeReportInfo::default()
        };
        let (quote, returned) = match &self.backend {
            Backend::Aesm { client, key } => {
                let r = client.get_quote(key, &report, Some(&info)).map_err(|e| {
                    LaunchError::Quote(format!(
                        "AESM service at {}: GetQuoteEx: {e}",
                        client.socket().display()
                    ))
                })?;
                (r.quote, r.qe_report_info)
            }
            Backend::InProcess(qe) => qe
                .get_quote(&report, Some(&info))
                .map_err(|e| LaunchError::Quote(format!("in-process simulated QE: {e}")))?,
        };
        let returned = returned.ok_or_else(|| {
            LaunchError::Quote("the quoting enclave returned no QE report".into())
        })?;
        check_quote(
            &self.cpu,
            &self.target,
            &report.body,
            &info,
            &returned,
            &quote,
        )?;
        Ok(quote)
    }
}

/// A launcher built without the simulated platform: it has no way to make a REPORT.
#[cfg(not(feature = "sim"))]
#[derive(Debug)]
pub struct Attester {
    /// Whether the quotes come from the in-process simulated QE (never: none is made).
    pub in_process: bool,
    never: std::convert::Infallible,
}

#[cfg(not(feature = "sim"))]
impl Attester {
    /// Refuses: this launcher carries no simulated platform (see the module documentation).
    pub fn connect(via: &QuoteVia, _enclave: &VerifiedEnclave) -> Result<Attester, LaunchError> {
        Err(without_simulation(via))
    }

    /// Never called: no `Attester` exists in this build.
    pub fn quote(&self, _report_data: &ReportData) -> Result<Vec<u8>, LaunchError> {
        match self.never {}
    }
}

/// The refusal of a launcher built without the simulated platform, naming the quote source
/// that was configured.
pub fn without_simulation(via: &QuoteVia) -> LaunchError {
    let source = match via {
        QuoteVia::None => "none configured".to_string(),
        QuoteVia::Aesm(socket) => format!("the AESM service at {}", socket.display()),
        QuoteVia::DangerousInProcessSim(dir) => {
            format!("--ccm-dangerous-inprocess-sim {}", dir.display())
        }
    };
    LaunchError::QuoteSource(format!(
        "this launcher was built without the simulated platform (cargo feature `sim`; \
         `scripts/build-launcher --simulation` builds one with it) and has no other way to make \
         the REPORT a quote needs, so it cannot obtain a certificate from the manager's CA \
         (quote source: {source})"
    ))
}

/// The checks an application makes on what GetQuoteEx returned.
#[cfg(feature = "sim")]
fn check_quote(
    cpu: &SimCpu,
    target: &TargetInfo,
    ours: &ccm_sgx::ReportBody,
    sent: &QeReportInfo,
    returned: &QeReportInfo,
    quote: &[u8],
) -> Result<(), LaunchError> {
    let bad = |why: &str| Err(LaunchError::Quote(format!("quote rejected: {why}")));
    let parsed =
        Quote::parse(quote).map_err(|e| LaunchError::Quote(format!("quote rejected: {e}")))?;
    if parsed.sgx_body() != Some(ours) {
        return bad("it does not carry this enclave's REPORT body");
    }
    if returned.nonce != sent.nonce {
        return bad("the QE report info carries another nonce");
    }
    let qe = &returned.qe_report;
    if qe.body.mr_enclave != target.mr_enclave {
        return bad("the QE report comes from another enclave than the one InitQuoteEx named");
    }
    if !cpu.verify_report(qe, &ours.mr_enclave) {
        return bad("the QE report's MAC does not verify (another platform, or forged)");
    }
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&sent.nonce);
    ctx.update(quote);
    if qe.body.report_data.0[..32] != *ctx.finish().as_ref() {
        return bad("the QE report does not bind this quote and nonce");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "sim")]
    #[test]
    fn the_secret_file_name_is_the_simulators() {
        assert_eq!(SIM_CPU_KEY_FILE, ccm_attest::sim::CPU_SECRET_FILE);
    }

    #[test]
    fn a_launcher_without_simulation_says_why_it_cannot_attest() {
        let via = QuoteVia::Aesm("/var/run/aesmd/aesm.socket".into());
        let e = without_simulation(&via);
        assert_eq!(e.exit_code(), 20);
        let text = e.to_string();
        assert!(
            text.contains("built without the simulated platform")
                && text.contains("scripts/build-launcher --simulation")
                && text.contains("/var/run/aesmd/aesm.socket"),
            "{text}"
        );
    }
}
