//! Checking an issued certificate against its key and the zone CA, and writing key, certificate
//! and chain.
//!
//! The chain check ([`check_chain`]) walks the answer from the leaf: each certificate must be
//! signed by the next one, until one of them is a given zone CA certificate or is signed by
//! one. So a certificate that does not come from the zone CA the launcher was given (another
//! account's, a forged one, a chain with a broken link) is refused before anything is written.
//!
//! Every file is written under a temporary name in its own directory, flushed to disk, given
//! its mode (0600 for the key, 0644 for certificates) and owner, and renamed over the old one,
//! so a reader sees the old file or the new one, never a torn one. The key is replaced first,
//! then the certificate: an application that reloads on a certificate change always finds the
//! matching key in place.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::error::LaunchError;

/// What the launcher needs to know about an issued certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    /// The full PEM as received (leaf first).
    pub pem: String,
    /// The CA certificates after the leaf, PEM (empty when the agent sent only the leaf).
    pub chain_pem: String,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
}

impl Issued {
    /// When to renew: two thirds into the validity period (Unix seconds).
    pub fn renew_at(&self) -> i64 {
        let life = self.not_after.saturating_sub(self.not_before).max(0);
        self.not_before.saturating_add(life / 3 * 2)
    }
}

fn bad(domain: &str, reason: impl Into<String>) -> LaunchError {
    LaunchError::BadCertificate {
        domain: domain.to_owned(),
        reason: reason.into(),
    }
}

/// Parses a PEM chain and checks that its leaf is for `spki_der` and names `domain`.
/// `spki_der` None skips the key check (reading back a certificate from disk).
pub fn check(pem: &str, domain: &str, spki_der: Option<&[u8]>) -> Result<Issued, LaunchError> {
    let mut blocks = Vec::new();
    for item in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = item.map_err(|e| bad(domain, format!("not PEM: {e}")))?;
        if block.label != "CERTIFICATE" {
            return Err(bad(
                domain,
                format!("unexpected PEM block {:?}", block.label),
            ));
        }
        blocks.push(block);
    }
    let Some(leaf_block) = blocks.first() else {
        return Err(bad(domain, "no certificate in the answer"));
    };
    let (_, leaf) = X509Certificate::from_der(&leaf_block.contents)
        .map_err(|e| bad(domain, format!("leaf certificate does not parse: {e}")))?;
    for (i, b) in blocks.iter().enumerate().skip(1) {
        X509Certificate::from_der(&b.contents)
            .map_err(|e| bad(domain, format!("chain certificate {i} does not parse: {e}")))?;
    }
    if let Some(spki) = spki_der
        && leaf.public_key().raw != spki
    {
        return Err(bad(
            domain,
            "the issued certificate is for another public key than the one requested",
        ));
    }
    let names_domain = leaf
        .subject_alternative_name()
        .ok()
        .flatten()
        .is_some_and(|san| {
            san.value
                .general_names
                .iter()
                .any(|n| matches!(n, GeneralName::DNSName(d) if d.eq_ignore_ascii_case(domain)))
        });
    if !names_domain {
        return Err(bad(
            domain,
            "the issued certificate does not name the domain in its subjectAltName",
        ));
    }
    let validity = leaf.validity();
    let chain_pem = blocks
        .iter()
        .skip(1)
        .map(|b| {
            let p = pem::Pem::new("CERTIFICATE", b.contents.clone());
            pem::encode_config(
                &p,
                pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
            )
        })
        .collect::<String>();
    Ok(Issued {
        pem: if pem.ends_with('\n') {
            pem.to_owned()
        } else {
            format!("{pem}\n")
        },
        chain_pem,
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
    })
}

/// The DER certificates of a PEM text (any other block is refused).
pub fn pem_certificates(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for item in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = item.map_err(|e| format!("not PEM: {e}"))?;
        if block.label != "CERTIFICATE" {
            return Err(format!("unexpected PEM block {:?}", block.label));
        }
        X509Certificate::from_der(&block.contents)
            .map_err(|e| format!("a certificate does not parse: {e}"))?;
        out.push(block.contents);
    }
    if out.is_empty() {
        return Err("no certificate".into());
    }
    Ok(out)
}

/// Checks that the issued chain `pem` (leaf first) leads to one of the `anchors` (DER zone CA
/// certificates): each certificate is signed by the next, up to one that is an anchor or is
/// signed by one. `ca_file` names the anchors in the error.
pub fn check_chain(
    pem: &str,
    domain: &str,
    anchors: &[Vec<u8>],
    ca_file: &Path,
) -> Result<(), LaunchError> {
    let refuse = |why: String| {
        bad(
            domain,
            format!(
                "the certificate does not chain to the zone CA in {}: {why}",
                ca_file.display()
            ),
        )
    };
    let ders = pem_certificates(pem).map_err(|e| bad(domain, e))?;
    let mut parsed = Vec::with_capacity(ders.len());
    for der in &ders {
        let (_, c) = X509Certificate::from_der(der).map_err(|e| bad(domain, format!("{e}")))?;
        parsed.push(c);
    }
    let mut anchor_certs = Vec::with_capacity(anchors.len());
    for der in anchors {
        let (_, c) = X509Certificate::from_der(der)
            .map_err(|e| refuse(format!("a zone CA certificate does not parse: {e}")))?;
        anchor_certs.push(c);
    }
    for (i, cert) in parsed.iter().enumerate() {
        if i > 0 && anchors.iter().any(|a| ders.get(i).is_some_and(|d| d == a)) {
            return Ok(());
        }
        let signed_by_anchor = anchor_certs.iter().any(|a| {
            a.subject() == cert.issuer() && cert.verify_signature(Some(a.public_key())).is_ok()
        });
        if signed_by_anchor {
            return Ok(());
        }
        let Some(next) = parsed.get(i + 1) else {
            return Err(refuse(format!(
                "certificate {i} of the answer (issuer {}) is not signed by it",
                cert.issuer()
            )));
        };
        if next.subject() != cert.issuer()
            || cert.verify_signature(Some(next.public_key())).is_err()
        {
            return Err(refuse(format!(
                "certificate {i} of the answer is not signed by certificate {}",
                i + 1
            )));
        }
    }
    Err(refuse("the answer holds no certificate".into()))
}

/// Writes `data` to `path` atomically with `mode`, owned by `owner` when given.
pub fn write_atomic(
    path: &Path,
    data: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<(), LaunchError> {
    let err = |source: std::io::Error| LaunchError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let name = path
        .file_name()
        .ok_or_else(|| err(std::io::Error::other("no file name")))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".ccm-launch-{}.tmp", std::process::id()));
    let tmp: PathBuf = dir.join(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    let result = (|| -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            // O_NOFOLLOW: never write through a symlink planted at the temporary name.
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        // The umask may have taken bits away; the mode is exactly what was asked.
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        }
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // Make the rename durable.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// Writes a key (0600), then its certificate (0644) and optional chain (0644).
pub fn install(
    key_path: &Path,
    key_pem: &str,
    cert_path: &Path,
    chain_path: Option<&Path>,
    issued: &Issued,
    owner: Option<(u32, u32)>,
) -> Result<(), LaunchError> {
    write_atomic(key_path, key_pem.as_bytes(), 0o600, owner)?;
    if let Some(chain) = chain_path {
        write_atomic(chain, issued.chain_pem.as_bytes(), 0o644, owner)?;
    }
    write_atomic(cert_path, issued.pem.as_bytes(), 0o644, owner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn ca_and_leaf(domain: &str, key: &rcgen::KeyPair) -> String {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let mut p = rcgen::CertificateParams::new(vec![domain.to_owned()]).unwrap();
        p.not_before = rcgen::date_time_ymd(2030, 1, 1);
        p.not_after = rcgen::date_time_ymd(2030, 1, 31);
        let leaf = p.signed_by(key, &ca, &ca_key).unwrap();
        format!("{}{}", leaf.pem(), ca.pem())
    }

    #[test]
    fn checks_key_domain_and_splits_the_chain() {
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = ca_and_leaf("app.example.test", &key);
        let spki = key.public_key_der();
        let issued = check(&pem, "APP.example.test", Some(&spki)).unwrap();
        assert_eq!(issued.chain_pem.matches("BEGIN CERTIFICATE").count(), 1);
        assert_eq!(issued.not_after - issued.not_before, 30 * 86_400);
        assert_eq!(issued.renew_at() - issued.not_before, 20 * 86_400);

        let other = rcgen::KeyPair::generate().unwrap().public_key_der();
        let e = check(&pem, "app.example.test", Some(&other)).unwrap_err();
        assert!(e.to_string().contains("another public key"), "{e}");
        assert_eq!(e.exit_code(), 35);
        let e = check(&pem, "other.example.test", Some(&spki)).unwrap_err();
        assert!(e.to_string().contains("does not name the domain"), "{e}");
        assert!(
            check("", "a", None)
                .unwrap_err()
                .to_string()
                .contains("no certificate")
        );
        assert!(
            check(
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "a",
                None
            )
            .is_err()
        );
        let key_pem = key.serialize_pem();
        assert!(
            check(&key_pem, "a", None)
                .unwrap_err()
                .to_string()
                .contains("unexpected PEM block")
        );
    }

    fn ca(name: &str) -> rcgen::CertificateParams {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p
    }

    #[test]
    fn chains_are_checked_against_the_zone_ca() {
        let file = Path::new("/etc/ccm/zone-ca.pem");
        let der = |pem: &str| pem_certificates(pem).unwrap();
        let root_key = rcgen::KeyPair::generate().unwrap();
        let root = ca("zone CA").self_signed(&root_key).unwrap();
        let mid_key = rcgen::KeyPair::generate().unwrap();
        let mid = ca("simulated")
            .signed_by(&mid_key, &root, &root_key)
            .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf_params = rcgen::CertificateParams::new(vec!["a.example".to_owned()]).unwrap();
        let leaf = leaf_params
            .clone()
            .signed_by(&key, &root, &root_key)
            .unwrap();
        let deep = leaf_params.clone().signed_by(&key, &mid, &mid_key).unwrap();
        let anchors = der(&root.pem());
        let ok = |pem: String| check_chain(&pem, "a.example", &anchors, file);
        // Leaf and zone CA; the leaf alone; through an intermediate, with or without the root.
        ok(format!("{}{}", leaf.pem(), root.pem())).unwrap();
        ok(leaf.pem()).unwrap();
        ok(format!("{}{}", deep.pem(), mid.pem())).unwrap();
        ok(format!("{}{}{}", deep.pem(), mid.pem(), root.pem())).unwrap();

        // Another CA with the same name, sent along as the chain.
        let other_key = rcgen::KeyPair::generate().unwrap();
        let other = ca("zone CA").self_signed(&other_key).unwrap();
        let forged = leaf_params
            .clone()
            .signed_by(&key, &other, &other_key)
            .unwrap();
        let e = ok(format!("{}{}", forged.pem(), other.pem())).unwrap_err();
        assert_eq!(e.exit_code(), 35);
        assert!(
            e.to_string().starts_with(
                "certificate for a.example: the certificate does not chain to the zone CA in /etc/ccm/zone-ca.pem: "
            ),
            "{e}"
        );
        assert!(ok(forged.pem()).is_err());
        // A broken link: the intermediate did not sign the leaf.
        let e = ok(format!("{}{}{}", forged.pem(), mid.pem(), root.pem())).unwrap_err();
        assert!(e.to_string().contains("not signed by certificate 1"), "{e}");
        // The intermediate alone is not an anchor.
        let e = check_chain(&deep.pem(), "a.example", &der(&other.pem()), file).unwrap_err();
        assert!(e.to_string().contains("is not signed by it"), "{e}");
        assert!(check_chain("junk", "a.example", &anchors, file).is_err());
    }

    #[test]
    fn writes_atomically_with_modes() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("run/secrets/key.pem");
        write_atomic(&key, b"one", 0o600, None).unwrap();
        write_atomic(&key, b"two", 0o600, None).unwrap();
        assert_eq!(std::fs::read(&key).unwrap(), b"two");
        let meta = std::fs::metadata(&key).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        // Nothing left behind.
        let names: Vec<_> = std::fs::read_dir(key.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["key.pem"]);
        // An unwritable place is a Write error naming the file.
        let blocked = dir.path().join("file");
        std::fs::write(&blocked, b"x").unwrap();
        let e = write_atomic(&blocked.join("key.pem"), b"k", 0o600, None).unwrap_err();
        assert_eq!(e.exit_code(), 40);
        assert!(e.to_string().contains("file/key.pem"), "{e}");
    }
}
