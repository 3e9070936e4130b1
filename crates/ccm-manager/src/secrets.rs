//! Secrets at rest: a 32-byte master key kept in a file (mode 0600) and AES-256-GCM sealing.
//!
//! Sealed format: `0x01 ‖ nonce (12 random bytes) ‖ ciphertext ‖ tag (16)`. The caller's
//! *context* (e.g. `zone-ca-key:<zone_id>`) is the associated data, so a sealed value copied to
//! another row or purpose does not open. The key's id (first 16 hex digits of
//! SHA-256("ccm-master-key-id" ‖ key)) is recorded in the database on first start; a manager
//! started with a different key refuses to run instead of failing later on every secret.
//! Manager replicas sharing a PostgreSQL database must share the key file (`master_key_file`).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::Error;

const VERSION: u8 = 1;

/// The master key.
pub struct MasterKey {
    key: LessSafeKey,
    kdf: hmac::Key,
    id: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    /// Builds a key from 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, Error> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| Error::Crypto("invalid AES-256 key"))?;
        let mut h = Sha256::new();
        h.update(b"ccm-master-key-id");
        h.update(bytes);
        let id = hex::encode(&h.finalize()[..8]);
        Ok(Self {
            key: LessSafeKey::new(unbound),
            kdf: hmac::Key::new(hmac::HMAC_SHA256, bytes),
            id,
            rng: SystemRandom::new(),
        })
    }

    /// Loads the key from `path` (base64 of 32 bytes), creating it with mode 0600 if absent.
    pub fn load_or_create(path: &Path) -> Result<Self, Error> {
        let io = |e: std::io::Error| Error::Io {
            path: path.to_path_buf(),
            source: e,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes =
                    Zeroizing::new(STANDARD.decode(text.trim()).map_err(|_| Error::Config {
                        field: "master_key_file".into(),
                        message: format!(
                            "{} does not hold base64 of a 32-byte key",
                            path.display()
                        ),
                    })?);
                let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| Error::Config {
                    field: "master_key_file".into(),
                    message: format!("{} holds {} bytes, not 32", path.display(), bytes.len()),
                })?;
                let key = Self::from_bytes(&arr);
                let mut arr = arr;
                zeroize::Zeroize::zeroize(&mut arr);
                key
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = Zeroizing::new([0u8; 32]);
                SystemRandom::new()
                    .fill(bytes.as_mut())
                    .map_err(|_| Error::Crypto("no randomness"))?;
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io)?;
                let text = Zeroizing::new(STANDARD.encode(bytes.as_ref()));
                f.write_all(text.as_bytes()).map_err(io)?;
                f.write_all(b"\n").map_err(io)?;
                f.sync_all().map_err(io)?;
                Self::from_bytes(&bytes)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The key's public id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A key for `purpose` derived from the master key: HMAC-SHA256(master key,
    /// "ccm-derive-v1:" ‖ purpose), used as an HMAC-SHA256 key. Each purpose gets its own key,
    /// so a MAC made for one purpose is worthless for another and the raw key is never used
    /// for MACs.
    pub fn derive_hmac_key(&self, purpose: &str) -> hmac::Key {
        let mut ctx = hmac::Context::with_key(&self.kdf);
        ctx.update(b"ccm-derive-v1:");
        ctx.update(purpose.as_bytes());
        let tag = ctx.sign();
        hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref())
    }

    /// Encrypts `plaintext` bound to `context`.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| Error::Crypto("no randomness"))?;
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .map_err(|_| Error::Crypto("sealing failed"))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        zeroize::Zeroize::zeroize(&mut buf);
        Ok(out)
    }

    /// Decrypts a value sealed with the same `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let (&version, rest) = sealed
            .split_first()
            .ok_or(Error::Crypto("sealed value is empty"))?;
        if version != VERSION {
            return Err(Error::Crypto("sealed value has an unknown version"));
        }
        if rest.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(Error::Crypto("sealed value is truncated"));
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| Error::Crypto("bad nonce"))?;
        let mut buf = Zeroizing::new(ct.to_vec());
        let len = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| Error::Crypto("sealed value does not open with this key and context"))?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

/// The sealing context of a zone's CA key.
pub fn zone_key_context(zone_id: uuid::Uuid) -> String {
    format!("zone-ca-key:{zone_id}")
}

/// The sealing context of a job's registry credentials.
pub fn credentials_context(build_id: uuid::Uuid) -> String {
    format!("registry-credentials:{build_id}")
}

/// The sealing context of an account's enclave signing key.
pub fn signing_key_context(acct_id: uuid::Uuid) -> String {
    format!("enclave-signing-key:{acct_id}")
}

/// The default master key path in a data directory.
pub fn default_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("master.key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_tamper() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let k = MasterKey::load_or_create(&path).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(k.id(), again.id());
        let sealed = k.seal("ctx-a", b"secret key bytes").unwrap();
        assert_eq!(
            again.open("ctx-a", &sealed).unwrap().as_slice(),
            b"secret key bytes"
        );
        assert!(k.open("ctx-b", &sealed).is_err(), "context binds");
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 1;
            assert!(k.open("ctx-a", &t).is_err(), "byte {i}");
        }
        for l in 0..sealed.len() {
            assert!(k.open("ctx-a", &sealed[..l]).is_err());
        }
        let other = MasterKey::from_bytes(&[9; 32]).unwrap();
        assert!(other.open("ctx-a", &sealed).is_err());
        let mac = |k: &MasterKey, purpose: &str| {
            hmac::sign(&k.derive_hmac_key(purpose), b"m")
                .as_ref()
                .to_vec()
        };
        assert_eq!(mac(&k, "p"), mac(&again, "p"), "derivation is stable");
        assert_ne!(mac(&k, "p"), mac(&k, "q"), "purposes separate");
        assert_ne!(mac(&k, "p"), mac(&other, "p"), "keys separate");
        std::fs::write(&path, "bm90IGEga2V5\n").unwrap();
        assert!(matches!(
            MasterKey::load_or_create(&path),
            Err(Error::Config { .. })
        ));
    }
}
