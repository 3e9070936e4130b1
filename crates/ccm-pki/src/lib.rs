//! Zone certificate authorities, CSR checks, certificate issuance and the attestation-evidence extension.
