//! Quotes through the quote helper (AESM protocol) and the agent's own REPORT.
//!
//! The agent proves its platform at enrollment with a quote whose REPORTDATA binds its node key
//! and the manager's nonce. A quote needs a REPORT from an enclave. In simulation the agent makes
//! that REPORT itself with the platform secret `ccm-sim-cpu.key` published next to the AESM
//! socket (DESIGN.md section 3), under a fixed agent identity ([`agent_identity`]). On SGX
//! hardware there is no such secret: the agent would need a small provisioning enclave of its own
//! to produce the REPORT; this build has none, so enrollment on hardware stops with an error that
//! says so. The simulated path is the cargo feature `sim` (the `ccm` binary enables it); an agent
//! built without it carries no simulator and cannot make its own quote.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ccm_aesm::AesmClient;
#[cfg(feature = "sim")]
use ccm_attest::sim::{EnclaveIdentity, SimCpu};
#[cfg(feature = "sim")]
use ccm_sgx::Measurement;
use ccm_sgx::{AttKeyId, Report, ReportData, TargetInfo};

use crate::Error;

/// The identity of the agent's simulated enclave: MRENCLAVE = SHA-256("ccm node agent
/// (simulated)"), ISVPRODID 0, not a debug enclave.
#[cfg(feature = "sim")]
pub fn agent_identity() -> EnclaveIdentity {
    use sha2::{Digest, Sha256};
    let m: [u8; 32] = Sha256::digest(b"ccm node agent (simulated)").into();
    EnclaveIdentity {
        mr_enclave: Measurement(m),
        mr_signer: Measurement(m),
        attributes: ccm_sgx::Attributes::new(
            ccm_sgx::AttributeFlags::INIT | ccm_sgx::AttributeFlags::MODE64BIT,
            0x3,
        ),
        ..EnclaveIdentity::default()
    }
}

/// The simulated platform secret's file name next to the AESM socket (DESIGN.md section 3).
pub const SIM_CPU_KEY_FILE: &str = "ccm-sim-cpu.key";

/// Talks to the quote helper.
#[derive(Debug, Clone)]
pub struct Quoter {
    client: AesmClient,
    sim_key: PathBuf,
}

fn aesm(e: ccm_aesm::Error) -> Error {
    Error::Aesm(e.to_string())
}

impl Quoter {
    /// A quoter for the AESM socket at `socket`; the simulated platform secret is read from
    /// `sim_key` (default: `ccm-sim-cpu.key` next to the socket).
    pub fn new(socket: &Path, sim_key: Option<PathBuf>) -> Self {
        let sim_key = sim_key.unwrap_or_else(|| {
            socket
                .parent()
                .unwrap_or(Path::new("/"))
                .join(SIM_CPU_KEY_FILE)
        });
        Self {
            client: AesmClient::new(socket).with_timeout(Duration::from_secs(30)),
            sim_key,
        }
    }

    /// The attestation key and the quoting enclave's TARGETINFO (InitQuoteEx).
    pub fn target(&self) -> Result<(AttKeyId, TargetInfo), Error> {
        let key = self.client.select_att_key_id(None).map_err(aesm)?;
        let qe = self.client.init_quote_ex(&key).map_err(aesm)?;
        Ok((key, qe.target_info))
    }

    /// A quote for an application's REPORT (the quoting enclave checks its MAC).
    pub fn quote_report(&self, key: &AttKeyId, report: &Report) -> Result<Vec<u8>, Error> {
        Ok(self
            .client
            .get_quote(key, report, None)
            .map_err(aesm)?
            .quote)
    }

    /// A quote of the agent itself carrying `report_data`.
    #[cfg(not(feature = "sim"))]
    pub fn own_quote(&self, _report_data: &ReportData) -> Result<Vec<u8>, Error> {
        Err(Error::NoPlatformSecret {
            path: self.sim_key.clone(),
            reason: "this agent was built without the simulated platform (cargo feature `sim`) \
                     and has no other way to make its REPORT"
                .into(),
        })
    }

    /// A quote of the agent itself carrying `report_data`.
    #[cfg(feature = "sim")]
    pub fn own_quote(&self, report_data: &ReportData) -> Result<Vec<u8>, Error> {
        let secret = std::fs::read(&self.sim_key).map_err(|e| Error::NoPlatformSecret {
            path: self.sim_key.clone(),
            reason: e.to_string(),
        })?;
        let secret: [u8; 32] = secret.try_into().map_err(|_| Error::NoPlatformSecret {
            path: self.sim_key.clone(),
            reason: "it is not 32 bytes".into(),
        })?;
        let cpu = SimCpu::new(secret);
        let (key, target) = self.target()?;
        let report = cpu.ereport(&target, &agent_identity(), report_data);
        self.quote_report(&key, &report)
    }
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    #[test]
    fn the_secret_file_name_is_the_simulators() {
        assert_eq!(super::SIM_CPU_KEY_FILE, ccm_attest::sim::CPU_SECRET_FILE);
    }
}
