//! The enclave manifest: what the enclave runs, with which settings, over which files.
//!
//! Its canonical JSON bytes are what the enclave layout measures, so one manifest has exactly one
//! encoding: [`Manifest::to_canonical_bytes`] writes it, [`Manifest::from_canonical_bytes`]
//! refuses anything else (unknown fields, other key order, whitespace, unsorted lists).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::canonical;
use crate::error::{Error, ManifestError};
use crate::layout::PAGE_SIZE;

/// The manifest version this build writes and reads.
pub const MANIFEST_VERSION: u64 = 1;
/// Largest manifest accepted (64 MiB, room for about 300 000 files).
pub const MAX_MANIFEST_SIZE: usize = 64 * 1024 * 1024;
/// Most threads an enclave may declare.
pub const MAX_THREADS: u32 = 4096;
/// Environment variables every converted image passes through from the container's environment.
pub const DEFAULT_PASSTHROUGH_ENV: [&str; 2] = ["NODE_AGENT_BASE_URL", "SGX_AESM_ADDR"];
/// Paths that are never measured: the runtime mounts or generates them.
pub const DEFAULT_EXCLUDED_PATHS: [&str; 9] = [
    "/dev",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/proc",
    "/run",
    "/sys",
    "/tmp",
    "/var/run",
];
/// Where conversion puts the launcher.
pub const LAUNCHER_PATH: &str = "/opt/ccm/bin/ccm-launch";
/// Where conversion puts the manifest.
pub const MANIFEST_PATH: &str = "/opt/ccm/enclave.json";
/// Where conversion puts the SIGSTRUCT.
pub const SIGSTRUCT_PATH: &str = "/opt/ccm/enclave.sig";

/// A lowercase-hex SHA-256 value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Sha256Hex(pub [u8; 32]);

impl std::fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for Sha256Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl Serialize for Sha256Hex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Sha256Hex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(serde::de::Error::custom("expected 64 lowercase hex digits"));
        }
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(Sha256Hex(out))
    }
}

/// The launcher the manifest was built for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    /// The launcher's version string.
    pub version: String,
    /// SHA-256 of the launcher binary.
    pub sha256: Sha256Hex,
}

/// Enclave sizing and mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnclaveParams {
    /// Enclave memory in bytes (a multiple of 4096): measured pages, threads, and heap.
    pub mem_size: u64,
    /// SIZE given to ECREATE: the next power of two ≥ `mem_size`.
    pub size: u64,
    /// Number of threads (TCS pages).
    pub threads: u32,
    /// Stack bytes per thread (a multiple of 4096).
    pub stack_size: u64,
    /// Whether the enclave is a debug enclave (DEBUG attribute in the SIGSTRUCT).
    pub debug: bool,
}

impl EnclaveParams {
    /// Parameters for a memory size, thread count and debug flag, with the default stack.
    pub fn new(mem_size: u64, threads: u32, debug: bool) -> Result<Self, Error> {
        let size = mem_size
            .checked_next_power_of_two()
            .ok_or_else(|| Error::InvalidSetting {
                field: "mem_size",
                reason: format!("{mem_size} is too large"),
            })?;
        let p = EnclaveParams {
            mem_size,
            size: size.max(2 * PAGE_SIZE),
            threads,
            stack_size: DEFAULT_STACK_SIZE,
            debug,
        };
        p.check().map_err(|e| match e {
            ManifestError::Field { field, reason } => Error::InvalidSetting {
                field: if field.contains("threads") {
                    "threads"
                } else {
                    "mem_size"
                },
                reason,
            },
            other => Error::Manifest(other),
        })?;
        Ok(p)
    }

    fn check(&self) -> Result<(), ManifestError> {
        let bad = |field: &str, reason: String| {
            Err(ManifestError::Field {
                field: format!("enclave.{field}"),
                reason,
            })
        };
        if self.mem_size == 0 || !self.mem_size.is_multiple_of(PAGE_SIZE) {
            return bad(
                "mem_size",
                format!("{} is not a positive multiple of 4096", self.mem_size),
            );
        }
        if self
            .mem_size
            .checked_next_power_of_two()
            .map(|s| s.max(2 * PAGE_SIZE))
            != Some(self.size)
        {
            return bad(
                "size",
                format!(
                    "{} is not the next power of two of mem_size {}",
                    self.size, self.mem_size
                ),
            );
        }
        if self.threads == 0 || self.threads > MAX_THREADS {
            return bad(
                "threads",
                format!("{} is not between 1 and {MAX_THREADS}", self.threads),
            );
        }
        if self.stack_size == 0 || !self.stack_size.is_multiple_of(PAGE_SIZE) {
            return bad(
                "stack_size",
                format!("{} is not a positive multiple of 4096", self.stack_size),
            );
        }
        Ok(())
    }
}

/// Default stack per thread: 256 KiB.
pub const DEFAULT_STACK_SIZE: u64 = 256 * 1024;

/// The key algorithm of a requested certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyType {
    /// RSA, 2048 bits.
    #[serde(rename = "rsa:2048")]
    Rsa2048,
    /// RSA, 3072 bits.
    #[serde(rename = "rsa:3072")]
    Rsa3072,
    /// ECDSA on P-256.
    #[serde(rename = "ec:p256")]
    EcP256,
    /// ECDSA on P-384.
    #[serde(rename = "ec:p384")]
    EcP384,
}

impl std::str::FromStr for KeyType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "rsa:2048" | "rsa" | "rsa2048" => KeyType::Rsa2048,
            "rsa:3072" | "rsa3072" => KeyType::Rsa3072,
            "ec:p256" | "ec" | "p256" | "ec:p-256" => KeyType::EcP256,
            "ec:p384" | "p384" | "ec:p-384" => KeyType::EcP384,
            _ => {
                return Err(Error::InvalidSetting {
                    field: "key_type",
                    reason: format!("{s:?} is not one of rsa:2048, rsa:3072, ec:p256, ec:p384"),
                });
            }
        })
    }
}

/// Who issues a requested certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Issuer {
    /// The manager's zone CA, after attestation (the default).
    ManagerCa,
    /// The launcher itself (no attestation-backed chain).
    SelfSigned,
}

/// A certificate the launcher obtains before starting the application.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateRequest {
    /// The DNS name (subject CN and SAN).
    pub domain: String,
    /// The key algorithm.
    pub key_type: KeyType,
    /// Where the private key is written (mode 0600).
    pub key_path: String,
    /// Where the certificate is written.
    pub cert_path: String,
    /// Where the CA chain is written, if wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_path: Option<String>,
    /// Who issues it.
    pub issuer: Issuer,
}

/// A regular file whose content is part of the enclave's identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedFile {
    /// Absolute path in the image.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (`0o7777` mask).
    pub mode: u32,
    /// SHA-256 of the content.
    pub sha256: Sha256Hex,
}

/// A symbolic link whose target is part of the enclave's identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Symlink {
    /// Absolute path in the image.
    pub path: String,
    /// The link target, as stored.
    pub target: String,
}

/// The enclave manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`MANIFEST_VERSION`].
    pub version: u64,
    /// The launcher.
    pub runtime: Runtime,
    /// The program and its arguments (`argv`), from the image's ENTRYPOINT + CMD unless overridden.
    pub entrypoint: Vec<String>,
    /// Whether arguments given at `docker run` time replace the measured arguments.
    pub allow_runtime_args: bool,
    /// Fixed environment (image ENV plus overrides).
    pub env: BTreeMap<String, String>,
    /// Names of variables taken from the container's environment at run time (sorted).
    pub passthrough_env: Vec<String>,
    /// Working directory.
    pub working_dir: String,
    /// `user[:group]` as in the image config (empty: root).
    pub user: String,
    /// Enclave sizing and mode.
    pub enclave: EnclaveParams,
    /// Certificates to obtain.
    pub certificates: Vec<CertificateRequest>,
    /// Trusted regular files, sorted by path.
    pub trusted_files: Vec<TrustedFile>,
    /// Trusted symlinks, sorted by path.
    pub symlinks: Vec<Symlink>,
    /// Paths not measured (sorted).
    pub excluded_paths: Vec<String>,
}

fn field_err(field: impl Into<String>, reason: impl Into<String>) -> ManifestError {
    ManifestError::Field {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Checks that `p` is an absolute, normalized path (`/a/b`, no `.`/`..`/empty components).
pub fn check_abs_path(field: &str, p: &str) -> Result<(), ManifestError> {
    let ok = p.len() > 1
        && p.starts_with('/')
        && !p.contains('\0')
        && p.get(1..).is_some_and(|rest| {
            rest.split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..")
        });
    if ok {
        Ok(())
    } else {
        Err(field_err(
            field,
            format!("{p:?} is not an absolute normalized path"),
        ))
    }
}

fn check_env_name(field: &str, name: &str) -> Result<(), ManifestError> {
    if name.is_empty() || name.contains('=') || name.contains('\0') {
        return Err(field_err(
            field,
            format!("{name:?} is not a valid environment variable name"),
        ));
    }
    Ok(())
}

fn check_sorted<'a>(
    field: &str,
    items: impl Iterator<Item = &'a str>,
) -> Result<(), ManifestError> {
    let mut prev: Option<&str> = None;
    for item in items {
        if let Some(p) = prev
            && p.as_bytes() >= item.as_bytes()
        {
            return Err(field_err(
                field,
                format!("{item:?} is out of order or repeated"),
            ));
        }
        prev = Some(item);
    }
    Ok(())
}

impl Manifest {
    /// Checks every invariant the canonical form relies on.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.version != MANIFEST_VERSION {
            return Err(ManifestError::Version(self.version));
        }
        if self.runtime.version.is_empty() {
            return Err(field_err("runtime.version", "empty"));
        }
        match self.entrypoint.first() {
            Some(p) if !p.is_empty() => {}
            _ => return Err(field_err("entrypoint", "no program to run")),
        }
        if self.entrypoint.iter().any(|a| a.contains('\0')) {
            return Err(field_err("entrypoint", "contains a NUL byte"));
        }
        for (k, v) in &self.env {
            check_env_name("env", k)?;
            if v.contains('\0') {
                return Err(field_err(format!("env.{k}"), "contains a NUL byte"));
            }
        }
        for n in &self.passthrough_env {
            check_env_name("passthrough_env", n)?;
        }
        check_sorted(
            "passthrough_env",
            self.passthrough_env.iter().map(String::as_str),
        )?;
        if !self.working_dir.starts_with('/') {
            return Err(field_err(
                "working_dir",
                format!("{:?} is not absolute", self.working_dir),
            ));
        }
        if self.user.contains('\0') {
            return Err(field_err("user", "contains a NUL byte"));
        }
        self.enclave.check()?;
        for (i, c) in self.certificates.iter().enumerate() {
            let valid_domain = !c.domain.is_empty()
                && c.domain.len() <= 253
                && c.domain
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'*'));
            if !valid_domain {
                return Err(field_err(
                    format!("certificates[{i}].domain"),
                    format!("{:?} is not a DNS name", c.domain),
                ));
            }
            check_abs_path(&format!("certificates[{i}].key_path"), &c.key_path)?;
            check_abs_path(&format!("certificates[{i}].cert_path"), &c.cert_path)?;
            if let Some(p) = &c.chain_path {
                check_abs_path(&format!("certificates[{i}].chain_path"), p)?;
            }
        }
        for (i, f) in self.trusted_files.iter().enumerate() {
            check_abs_path(&format!("trusted_files[{i}].path"), &f.path)?;
            if f.mode > 0o7777 {
                return Err(field_err(
                    format!("trusted_files[{i}].mode"),
                    format!("{:o} has bits above 0o7777", f.mode),
                ));
            }
        }
        check_sorted(
            "trusted_files",
            self.trusted_files.iter().map(|f| f.path.as_str()),
        )?;
        for (i, s) in self.symlinks.iter().enumerate() {
            check_abs_path(&format!("symlinks[{i}].path"), &s.path)?;
            if s.target.is_empty() || s.target.contains('\0') {
                return Err(field_err(
                    format!("symlinks[{i}].target"),
                    "empty or contains NUL",
                ));
            }
        }
        check_sorted("symlinks", self.symlinks.iter().map(|s| s.path.as_str()))?;
        for (i, p) in self.excluded_paths.iter().enumerate() {
            check_abs_path(&format!("excluded_paths[{i}]"), p)?;
        }
        check_sorted(
            "excluded_paths",
            self.excluded_paths.iter().map(String::as_str),
        )?;
        // A path is either a file or a symlink, never both.
        let (mut a, mut b) = (
            self.trusted_files.iter().peekable(),
            self.symlinks.iter().peekable(),
        );
        while let (Some(f), Some(s)) = (a.peek(), b.peek()) {
            match f.path.as_bytes().cmp(s.path.as_bytes()) {
                std::cmp::Ordering::Less => {
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    return Err(field_err(
                        "symlinks",
                        format!("{:?} is also a trusted file", s.path),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether `path` (absolute) is under one of the excluded paths.
    pub fn is_excluded(&self, path: &str) -> bool {
        is_under_any(path, &self.excluded_paths)
    }

    /// Total bytes of the trusted files, each rounded up to whole pages.
    pub fn file_pages_bytes(&self) -> u64 {
        self.trusted_files
            .iter()
            .fold(0u64, |acc, f| acc.saturating_add(round_up_page(f.size)))
    }

    /// Validates and encodes the manifest in canonical form.
    pub fn to_canonical_bytes(&self) -> Result<Vec<u8>, ManifestError> {
        self.validate()?;
        let value = serde_json::to_value(self)?;
        let bytes = canonical::to_vec(&value)?;
        if bytes.len() > MAX_MANIFEST_SIZE {
            return Err(ManifestError::TooLarge(bytes.len()));
        }
        Ok(bytes)
    }

    /// Parses canonical manifest bytes, refusing anything that is not exactly the canonical
    /// encoding of a valid manifest.
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_SIZE {
            return Err(ManifestError::TooLarge(bytes.len()));
        }
        // Check the version first so a newer manifest gets the precise error.
        let value: serde_json::Value = serde_json::from_slice(bytes)?;
        match value.get("version").and_then(serde_json::Value::as_u64) {
            Some(MANIFEST_VERSION) => {}
            Some(v) => return Err(ManifestError::Version(v)),
            None => return Err(field_err("version", "missing or not an integer")),
        }
        let m: Manifest = serde_json::from_value(value)?;
        m.validate()?;
        if m.to_canonical_bytes()? != bytes {
            return Err(ManifestError::NotCanonical);
        }
        Ok(m)
    }
}

/// Whether `path` equals or lies under one of `prefixes` (all absolute).
pub fn is_under_any(path: &str, prefixes: &[String]) -> bool {
    prefixes.iter().any(|p| {
        path == p || (path.starts_with(p.as_str()) && path.as_bytes().get(p.len()) == Some(&b'/'))
    })
}

/// `n` rounded up to a multiple of the page size (saturating).
pub fn round_up_page(n: u64) -> u64 {
    n.div_ceil(PAGE_SIZE).saturating_mul(PAGE_SIZE)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            runtime: Runtime {
                version: "0.1.0".into(),
                sha256: Sha256Hex([1; 32]),
            },
            entrypoint: vec!["/app/server".into(), "--port".into(), "8443".into()],
            allow_runtime_args: false,
            env: [
                ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
                ("LANG".to_owned(), "C.UTF-8".to_owned()),
            ]
            .into(),
            passthrough_env: DEFAULT_PASSTHROUGH_ENV
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            working_dir: "/app".into(),
            user: "1000:1000".into(),
            enclave: EnclaveParams::new(64 * 1024 * 1024, 4, false).unwrap(),
            certificates: vec![CertificateRequest {
                domain: "myapp.example.com".into(),
                key_type: KeyType::EcP256,
                key_path: "/run/key.pem".into(),
                cert_path: "/run/cert.pem".into(),
                chain_path: None,
                issuer: Issuer::ManagerCa,
            }],
            trusted_files: vec![
                TrustedFile {
                    path: "/app/server".into(),
                    size: 10,
                    mode: 0o755,
                    sha256: Sha256Hex([2; 32]),
                },
                TrustedFile {
                    path: "/etc/passwd".into(),
                    size: 3,
                    mode: 0o644,
                    sha256: Sha256Hex([3; 32]),
                },
            ],
            symlinks: vec![Symlink {
                path: "/bin".into(),
                target: "usr/bin".into(),
            }],
            excluded_paths: DEFAULT_EXCLUDED_PATHS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }

    #[test]
    fn round_trips_canonically() {
        let m = sample();
        let bytes = m.to_canonical_bytes().unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.starts_with(r#"{"allow_runtime_args":false,"certificates":[{"cert_path":"/run/cert.pem","domain":"#), "{text}");
        assert!(!text.contains(' ') && !text.contains('\n'), "{text}");
        assert_eq!(Manifest::from_canonical_bytes(&bytes).unwrap(), m);
    }

    #[test]
    fn refuses_non_canonical_forms() {
        let bytes = sample().to_canonical_bytes().unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        // Whitespace.
        let spaced = text.replacen(',', ", ", 1);
        assert!(matches!(
            Manifest::from_canonical_bytes(spaced.as_bytes()),
            Err(ManifestError::NotCanonical)
        ));
        // Key order.
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let pretty = serde_json::to_vec_pretty(&v).unwrap();
        assert!(matches!(
            Manifest::from_canonical_bytes(&pretty),
            Err(ManifestError::NotCanonical)
        ));
        // Explicit null for an absent option.
        let nulled = text.replace(r#""cert_path""#, r#""chain_path":null,"cert_path""#);
        assert!(Manifest::from_canonical_bytes(nulled.as_bytes()).is_err());
        // Unknown field.
        let extra = text.replacen('{', r#"{"aaa":1,"#, 1);
        assert!(matches!(
            Manifest::from_canonical_bytes(extra.as_bytes()),
            Err(ManifestError::Json(_))
        ));
        // Version.
        let v2 = text.replace(r#""version":1"#, r#""version":2"#);
        assert!(matches!(
            Manifest::from_canonical_bytes(v2.as_bytes()),
            Err(ManifestError::Version(2))
        ));
    }

    #[test]
    fn truncations_and_garbage_are_errors() {
        let bytes = sample().to_canonical_bytes().unwrap();
        for l in 0..bytes.len() {
            assert!(
                Manifest::from_canonical_bytes(&bytes[..l]).is_err(),
                "prefix of {l} bytes accepted"
            );
        }
        let mut flipped = bytes.clone();
        for i in (0..bytes.len()).step_by(7) {
            flipped[i] ^= 0x5a;
            let _ = Manifest::from_canonical_bytes(&flipped);
            flipped[i] ^= 0x5a;
        }
        assert!(Manifest::from_canonical_bytes(b"\xff\xfe").is_err());
        assert!(Manifest::from_canonical_bytes(&vec![b'['; 100_000]).is_err());
    }

    #[test]
    fn refuses_invalid_content() {
        let mut m = sample();
        m.trusted_files.swap(0, 1);
        assert!(
            matches!(m.to_canonical_bytes(), Err(ManifestError::Field { field, .. }) if field == "trusted_files")
        );
        let mut m = sample();
        m.trusted_files[0].path = "/app/../etc/shadow".into();
        assert!(m.to_canonical_bytes().is_err());
        let mut m = sample();
        m.symlinks[0].path = "/app/server".into();
        assert!(m.to_canonical_bytes().is_err());
        let mut m = sample();
        m.enclave.size *= 2;
        assert!(m.to_canonical_bytes().is_err());
        assert!(EnclaveParams::new(1000, 1, false).is_err());
        assert!(EnclaveParams::new(4096 * 16, 0, false).is_err());
        assert!("dsa:1024".parse::<KeyType>().is_err());
        assert_eq!("rsa:3072".parse::<KeyType>().unwrap(), KeyType::Rsa3072);
    }

    #[test]
    fn exclusion_is_by_component() {
        let m = sample();
        assert!(m.is_excluded("/tmp") && m.is_excluded("/tmp/x") && m.is_excluded("/etc/hosts"));
        assert!(!m.is_excluded("/tmpfile") && !m.is_excluded("/etc/hosts.allow"));
    }
}
