//! The launcher's error type and its exit codes.
//!
//! Every failure is one line on standard error (`ccm-launch: error: ...`) and a distinct exit
//! code per family, so an orchestrator (or a person reading `docker ps -a`) can tell a tampered
//! image from an unreachable node agent without reading logs. The codes are part of the
//! launcher's interface (docs/launcher.md) and never change meaning.

use std::path::PathBuf;

/// Everything that stops the launcher before the application starts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// A launcher option (`--ccm-*` or `CCM_LAUNCH_*`) is unknown or has a bad value.
    #[error("{0}")]
    Usage(String),
    /// The manifest cannot be read, is not a canonical manifest, or does not fit its enclave.
    #[error("manifest {}: {source}", path.display())]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// Why.
        source: ManifestProblem,
    },
    /// The SIGSTRUCT cannot be read, does not verify, or does not sign this manifest.
    #[error("SIGSTRUCT {}: {source}", path.display())]
    Sigstruct {
        /// The SIGSTRUCT file.
        path: PathBuf,
        /// Why.
        source: ManifestProblem,
    },
    /// A trusted file (or symlink) differs from the manifest.
    #[error("trusted file {path}: {problem}")]
    TrustedFile {
        /// The path in the image.
        path: String,
        /// How it differs.
        problem: ccm_enclave::FileProblem,
    },
    /// Arguments were given at run time but the manifest does not allow them.
    #[error(
        "{count} runtime argument(s) given but the manifest does not allow runtime arguments (first: {first:?})"
    )]
    RuntimeArgs {
        /// How many.
        count: usize,
        /// The first one.
        first: String,
    },
    /// There is no way to obtain a quote (no AESM socket configured, no simulated CPU key).
    #[error("{0}")]
    QuoteSource(String),
    /// The AESM service cannot be reached.
    #[error("cannot reach the AESM service at {}: {source}", socket.display())]
    AesmUnreachable {
        /// The socket.
        socket: PathBuf,
        /// Why.
        source: ccm_aesm::Error,
    },
    /// The AESM service (or the in-process quoting enclave) refused or answered wrongly.
    #[error("{0}")]
    Quote(String),
    /// Generating the key, CSR or a self-signed certificate failed.
    #[error("{0}")]
    Key(String),
    /// `NODE_AGENT_BASE_URL` is missing or unusable.
    #[error("{0}")]
    AgentConfig(String),
    /// The node agent could not be reached or broke the protocol.
    #[error("{0}")]
    Agent(String),
    /// The certificate request was denied or failed.
    #[error("certificate for {domain}: {status}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Refused {
        /// The requested domain.
        domain: String,
        /// `DENIED` or `FAILED`.
        status: String,
        /// The agent's reason, if it gave one.
        message: Option<String>,
    },
    /// No certificate arrived within the configured time.
    #[error(
        "certificate for {domain}: still {status} after {waited_secs} s (task {task_id}); giving up (--ccm-cert-timeout)"
    )]
    Timeout {
        /// The requested domain.
        domain: String,
        /// The last status seen.
        status: String,
        /// The task id.
        task_id: String,
        /// Seconds waited.
        waited_secs: u64,
    },
    /// The issued certificate cannot be used with the key it was requested for.
    #[error("certificate for {domain}: {reason}")]
    BadCertificate {
        /// The requested domain.
        domain: String,
        /// Why.
        reason: String,
    },
    /// Writing the key, certificate or chain failed.
    #[error("write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The application could not be started.
    #[error("start {program}: {reason}")]
    Exec {
        /// The program.
        program: String,
        /// Why.
        reason: String,
    },
}

/// Why the manifest or SIGSTRUCT was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestProblem {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    /// The content was refused.
    #[error("{0}")]
    Invalid(ccm_enclave::Error),
}

impl LaunchError {
    /// The process exit code for this error (see docs/launcher.md).
    pub fn exit_code(&self) -> u8 {
        match self {
            LaunchError::Usage(_) => 2,
            LaunchError::Manifest { .. } => 10,
            LaunchError::Sigstruct { .. } => 11,
            LaunchError::TrustedFile { .. } => 12,
            LaunchError::RuntimeArgs { .. } => 13,
            LaunchError::QuoteSource(_) => 20,
            LaunchError::AesmUnreachable { .. } => 21,
            LaunchError::Quote(_) => 22,
            LaunchError::Key(_) => 30,
            LaunchError::AgentConfig(_) => 31,
            LaunchError::Agent(_) => 32,
            LaunchError::Refused { .. } => 33,
            LaunchError::Timeout { .. } => 34,
            LaunchError::BadCertificate { .. } => 35,
            LaunchError::Write { .. } => 40,
            LaunchError::Exec { .. } => 41,
        }
    }

    /// Sorts an error of [`ccm_enclave::verify_enclave`] into manifest or SIGSTRUCT problems.
    pub fn from_enclave(
        manifest: &std::path::Path,
        sigstruct: &std::path::Path,
        err: ccm_enclave::Error,
    ) -> LaunchError {
        use ccm_enclave::Error as E;
        match err {
            E::Sgx(_) | E::EnclaveHashMismatch { .. } | E::DebugMismatch { .. } => {
                LaunchError::Sigstruct {
                    path: sigstruct.to_path_buf(),
                    source: ManifestProblem::Invalid(err),
                }
            }
            E::TrustedFile { path, problem } => LaunchError::TrustedFile { path, problem },
            other => LaunchError::Manifest {
                path: manifest.to_path_buf(),
                source: ManifestProblem::Invalid(other),
            },
        }
    }
}

/// Every exit code with its meaning, in order (printed by `--ccm-help`, checked by the docs test).
pub const EXIT_CODES: &[(u8, &str)] = &[
    (2, "bad launcher option (--ccm-* or CCM_LAUNCH_*)"),
    (
        10,
        "manifest unreadable, not canonical, or too large for its enclave",
    ),
    (
        11,
        "SIGSTRUCT unreadable, bad signature, or not signing this manifest (ENCLAVEHASH, DEBUG)",
    ),
    (12, "a trusted file or symlink differs from the manifest"),
    (
        13,
        "runtime arguments given but the manifest does not allow them",
    ),
    (
        20,
        "no quote source: SGX_AESM_ADDR unset, or no simulated CPU key next to the socket",
    ),
    (21, "the AESM socket cannot be reached"),
    (
        22,
        "the AESM service refused or answered wrongly (or the QE report check failed)",
    ),
    (30, "key, CSR or self-signed certificate generation failed"),
    (31, "NODE_AGENT_BASE_URL missing or invalid"),
    (32, "the node agent cannot be reached or broke the protocol"),
    (33, "the certificate request was DENIED or FAILED"),
    (34, "timed out waiting for the certificate"),
    (
        35,
        "the issued certificate does not match the key or cannot be parsed",
    ),
    (40, "writing the key, certificate or chain failed"),
    (41, "the application could not be started"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_documented() {
        let mut seen = std::collections::BTreeSet::new();
        for (code, _) in EXIT_CODES {
            assert!(seen.insert(*code), "code {code} listed twice");
        }
        let samples = [
            LaunchError::Usage(String::new()),
            LaunchError::QuoteSource(String::new()),
            LaunchError::Quote(String::new()),
            LaunchError::Key(String::new()),
            LaunchError::AgentConfig(String::new()),
            LaunchError::Agent(String::new()),
            LaunchError::RuntimeArgs {
                count: 1,
                first: "x".into(),
            },
        ];
        for e in samples {
            assert!(seen.contains(&e.exit_code()), "{e:?}");
        }
    }

    #[test]
    fn refusal_message_is_one_line() {
        let e = LaunchError::Refused {
            domain: "a.example".into(),
            status: "DENIED".into(),
            message: Some("image not approved".into()),
        };
        assert_eq!(
            e.to_string(),
            "certificate for a.example: DENIED: image not approved"
        );
    }
}
