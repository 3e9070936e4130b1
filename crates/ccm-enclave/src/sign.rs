//! SIGSTRUCT for an enclave manifest, and the verification the launcher runs before anything else.

use ccm_sgx::{AttributeFlags, Attributes, Measurement, SigningKey, Sigstruct};

use crate::error::Error;
use crate::layout::{Layout, mrenclave_of};
use crate::manifest::Manifest;

/// XFRM requested in the SIGSTRUCT: x87 and SSE state (what every x86-64 enclave needs).
pub const XFRM: u64 = 0x3;

/// Identity fields of the SIGSTRUCT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignOptions {
    /// ISVPRODID.
    pub isv_prod_id: u16,
    /// ISVSVN.
    pub isv_svn: u16,
    /// DATE (year, month, day). Fixed by the caller so that signing is reproducible.
    pub date: (u16, u8, u8),
}

/// A measured and signed enclave.
#[derive(Clone, Debug)]
pub struct SignedEnclave {
    /// The SIGSTRUCT (1808 bytes with [`Sigstruct::as_bytes`]).
    pub sigstruct: Sigstruct,
    /// MRENCLAVE.
    pub mrenclave: Measurement,
    /// MRSIGNER.
    pub mrsigner: Measurement,
    /// The layout that was measured.
    pub layout: Layout,
}

/// The attributes a manifest asks for: 64-bit mode, plus DEBUG for a debug enclave.
pub fn attributes_for(debug: bool) -> Attributes {
    let mut flags = AttributeFlags::MODE64BIT;
    if debug {
        flags |= AttributeFlags::DEBUG;
    }
    Attributes::new(flags, XFRM)
}

/// Measures the canonical manifest bytes and signs the result with `key` (RSA-3072, e = 3).
///
/// ATTRIBUTES = MODE64BIT (| DEBUG), XFRM = 3; ATTRIBUTEMASK covers every flag but INIT (set by
/// EINIT itself) and no XFRM bit; MISCSELECT = 0 with a full MISCMASK.
pub fn sign_enclave(
    manifest_bytes: &[u8],
    key: &SigningKey,
    opts: &SignOptions,
) -> Result<SignedEnclave, Error> {
    let (manifest, layout, mrenclave) = mrenclave_of(manifest_bytes)?;
    let mut s = Sigstruct::unsigned(mrenclave);
    s.attributes = attributes_for(manifest.enclave.debug);
    s.attribute_mask = Attributes::new(
        AttributeFlags::from_bits_retain(!AttributeFlags::INIT.bits()),
        0,
    );
    s.misc_select.set(0);
    s.misc_mask.set(u32::MAX);
    s.isv_prod_id.set(opts.isv_prod_id);
    s.isv_svn.set(opts.isv_svn);
    let (y, m, d) = opts.date;
    s.set_date(y, m, d)?;
    s.sign(key)?;
    let mrsigner = s.mrsigner();
    Ok(SignedEnclave {
        sigstruct: s,
        mrenclave,
        mrsigner,
        layout,
    })
}

/// What a successful [`verify_enclave`] establishes.
#[derive(Clone, Debug)]
pub struct VerifiedEnclave {
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The SIGSTRUCT.
    pub sigstruct: Sigstruct,
    /// MRENCLAVE recomputed from the manifest (equal to ENCLAVEHASH).
    pub mrenclave: Measurement,
    /// MRSIGNER of the signing key.
    pub mrsigner: Measurement,
    /// ISVPRODID.
    pub isv_prod_id: u16,
    /// ISVSVN.
    pub isv_svn: u16,
    /// ATTRIBUTES from the SIGSTRUCT.
    pub attributes: Attributes,
    /// The layout.
    pub layout: Layout,
}

/// The launcher's first step, in order:
///
/// 1. parse the manifest (canonical form only);
/// 2. plan the layout (the image must fit the memory size) and recompute MRENCLAVE;
/// 3. parse the SIGSTRUCT (exact length, headers);
/// 4. verify its RSA-3072 signature (and Q1/Q2), as EINIT would;
/// 5. check ENCLAVEHASH = the recomputed MRENCLAVE;
/// 6. check the DEBUG attribute matches the manifest's debug flag.
pub fn verify_enclave(
    manifest_bytes: &[u8],
    sigstruct_bytes: &[u8],
) -> Result<VerifiedEnclave, Error> {
    let (manifest, layout, mrenclave) = mrenclave_of(manifest_bytes)?;
    let sigstruct = Sigstruct::parse_checked(sigstruct_bytes)?;
    sigstruct.verify()?;
    if sigstruct.enclave_hash != mrenclave {
        return Err(Error::EnclaveHashMismatch {
            computed: mrenclave.to_string(),
            sigstruct: sigstruct.enclave_hash.to_string(),
        });
    }
    let debug = sigstruct.attributes.is_debug();
    if debug != manifest.enclave.debug {
        return Err(Error::DebugMismatch {
            manifest: manifest.enclave.debug,
            sigstruct: debug,
        });
    }
    Ok(VerifiedEnclave {
        mrsigner: sigstruct.mrsigner(),
        isv_prod_id: sigstruct.isv_prod_id.get(),
        isv_svn: sigstruct.isv_svn.get(),
        attributes: sigstruct.attributes,
        manifest,
        sigstruct,
        mrenclave,
        layout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::tests::sample;
    use std::sync::OnceLock;

    pub(crate) fn key() -> &'static SigningKey {
        static KEY: OnceLock<SigningKey> = OnceLock::new();
        KEY.get_or_init(|| SigningKey::generate(&mut rand::rngs::OsRng).unwrap())
    }

    const OPTS: SignOptions = SignOptions {
        isv_prod_id: 7,
        isv_svn: 3,
        date: (2024, 5, 17),
    };

    #[test]
    fn sign_then_verify() {
        let bytes = sample().to_canonical_bytes().unwrap();
        let signed = sign_enclave(&bytes, key(), &OPTS).unwrap();
        let again = sign_enclave(&bytes, key(), &OPTS).unwrap();
        assert_eq!(
            signed.sigstruct.as_bytes(),
            again.sigstruct.as_bytes(),
            "signing is deterministic"
        );
        let v = verify_enclave(&bytes, signed.sigstruct.as_bytes()).unwrap();
        assert_eq!(
            (v.mrenclave, v.mrsigner, v.isv_prod_id, v.isv_svn),
            (signed.mrenclave, signed.mrsigner, 7, 3)
        );
        assert!(!v.attributes.is_debug());
    }

    #[test]
    fn detects_tampering() {
        let bytes = sample().to_canonical_bytes().unwrap();
        let sig = sign_enclave(&bytes, key(), &OPTS).unwrap().sigstruct;

        // A different (valid) manifest under the old SIGSTRUCT.
        let mut m = sample();
        m.env.insert("EVIL".into(), "1".into());
        let other = m.to_canonical_bytes().unwrap();
        assert!(matches!(
            verify_enclave(&other, sig.as_bytes()),
            Err(Error::EnclaveHashMismatch { .. })
        ));

        // A flipped byte in the manifest is no longer canonical JSON or no longer the same manifest.
        let mut flipped = bytes.clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 1;
        assert!(verify_enclave(&flipped, sig.as_bytes()).is_err());

        // A flipped byte in the signed part of the SIGSTRUCT breaks the signature.
        let mut raw = sig.as_bytes().to_vec();
        raw[1024] ^= 1; // ISVPRODID
        assert!(matches!(verify_enclave(&bytes, &raw), Err(Error::Sgx(_))));
        // Truncated SIGSTRUCT.
        assert!(matches!(
            verify_enclave(&bytes, &sig.as_bytes()[..1000]),
            Err(Error::Sgx(_))
        ));

        // A debug SIGSTRUCT for a non-debug manifest (re-signed, so only the flag is wrong).
        let mut dbg = Sigstruct::parse_checked(sig.as_bytes()).unwrap();
        dbg.attributes = attributes_for(true);
        dbg.sign(key()).unwrap();
        assert!(matches!(
            verify_enclave(&bytes, dbg.as_bytes()),
            Err(Error::DebugMismatch {
                manifest: false,
                sigstruct: true
            })
        ));
    }
}
