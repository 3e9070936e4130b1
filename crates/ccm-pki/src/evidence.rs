//! The attestation-evidence certificate extension (see `docs/attestation-evidence.md`).
//!
//! ccm embeds an enclave's DCAP quote in the certificates it issues, in the interoperable RA-TLS
//! form (TCG DICE "conceptual message wrapper", formerly "tagged evidence"):
//!
//! ```text
//! extension  OID 2.23.133.5.4.9, non-critical, extnValue = the CBOR item below
//! evidence   = #6.60000([ quote: bstr, claims: bstr .cbor claims-map ])
//! claims-map = { "pubkey-hash" => bstr .cbor [ 1, bstr ]   ; SHA-256 of the cert's SPKI DER
//!               ? "ccm-simulated" => h'01' }               ; only for simulated platforms
//! ```
//!
//! CBOR tag 60000 is the tag Gramine uses for SGX/TDX quotes in this extension; the claims map
//! and its `pubkey-hash` entry (a CoSWID `hash-entry`, algorithm 1 = SHA-256) are those of the
//! interoperable RA-TLS format. The quote's REPORTDATA[0..32] equals that same SHA-256 of the
//! certificate's SubjectPublicKeyInfo DER (rest zero), which is Gramine's RA-TLS binding.
//! Encoding is deterministic (definite lengths, shortest forms) so the same inputs give the same
//! bytes.

use ciborium::value::Value;

use crate::{Error, EvidenceError, Result};

/// OID of the evidence extension (`tcg-dice-conceptual-message-wrapper`).
pub const EVIDENCE_OID: &[u64] = &[2, 23, 133, 5, 4, 9];
/// The same OID in dotted form.
pub const EVIDENCE_OID_STR: &str = "2.23.133.5.4.9";
/// CBOR tag of an Intel SGX/TDX quote.
pub const TAG_INTEL_QUOTE: u64 = 60000;
/// IANA named-information hash algorithm id of SHA-256.
pub const HASH_ALG_SHA256: u64 = 1;
/// Largest extension value decoded.
pub const MAX_EVIDENCE_LEN: usize = 64 * 1024;
/// The claim holding the key hash.
pub const CLAIM_PUBKEY_HASH: &str = "pubkey-hash";
/// ccm's claim marking a simulated platform.
pub const CLAIM_SIMULATED: &str = "ccm-simulated";

/// Decoded evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// The DCAP quote.
    pub quote: Vec<u8>,
    /// The `pubkey-hash` claim: SHA-256 of the certified SubjectPublicKeyInfo DER.
    pub pubkey_sha256: [u8; 32],
    /// Whether the `ccm-simulated` claim is present.
    pub simulated: bool,
}

fn to_cbor(v: &Value) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(v, &mut out)
        .map_err(|e| Error::Evidence(EvidenceError::Cbor(e.to_string())))?;
    Ok(out)
}

fn from_cbor(bytes: &[u8], what: &'static str) -> Result<Value> {
    let mut reader = bytes;
    let v: Value = ciborium::de::from_reader(&mut reader)
        .map_err(|e| Error::Evidence(EvidenceError::Cbor(format!("{what}: {e}"))))?;
    if !reader.is_empty() {
        return Err(Error::Evidence(EvidenceError::Cbor(format!(
            "{what}: {} trailing bytes",
            reader.len()
        ))));
    }
    Ok(v)
}

impl Evidence {
    /// Encodes the extension value.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let hash_entry = to_cbor(&Value::Array(vec![
            Value::Integer(HASH_ALG_SHA256.into()),
            Value::Bytes(self.pubkey_sha256.to_vec()),
        ]))?;
        let mut claims = vec![(
            Value::Text(CLAIM_PUBKEY_HASH.into()),
            Value::Bytes(hash_entry),
        )];
        if self.simulated {
            claims.push((Value::Text(CLAIM_SIMULATED.into()), Value::Bytes(vec![1])));
        }
        let claims = to_cbor(&Value::Map(claims))?;
        to_cbor(&Value::Tag(
            TAG_INTEL_QUOTE,
            Box::new(Value::Array(vec![
                Value::Bytes(self.quote.clone()),
                Value::Bytes(claims),
            ])),
        ))
    }

    /// Decodes an extension value. Unknown claims are ignored (as the interoperable format
    /// says); a missing or malformed `pubkey-hash`, another tag or hash algorithm is an error.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = |m: &str| Error::Evidence(EvidenceError::Format(m.to_string()));
        if bytes.len() > MAX_EVIDENCE_LEN {
            return Err(bad("the evidence is larger than 64 KiB"));
        }
        let Value::Tag(tag, inner) = from_cbor(bytes, "evidence")? else {
            return Err(bad("the evidence is not a tagged CBOR item"));
        };
        if tag != TAG_INTEL_QUOTE {
            return Err(Error::Evidence(EvidenceError::UnknownTag(tag)));
        }
        let Value::Array(items) = *inner else {
            return Err(bad("the tagged item is not an array"));
        };
        let [Value::Bytes(quote), Value::Bytes(claims)] = items.as_slice() else {
            return Err(bad("the array is not [quote: bstr, claims: bstr]"));
        };
        let Value::Map(claims) = from_cbor(claims, "claims")? else {
            return Err(bad("the claims are not a CBOR map"));
        };
        let mut pubkey_sha256 = None;
        let mut simulated = false;
        for (k, v) in &claims {
            match (k, v) {
                (Value::Text(k), Value::Bytes(entry)) if k == CLAIM_PUBKEY_HASH => {
                    let Value::Array(pair) = from_cbor(entry, "pubkey-hash")? else {
                        return Err(bad("pubkey-hash is not a CBOR array"));
                    };
                    let [Value::Integer(alg), Value::Bytes(hash)] = pair.as_slice() else {
                        return Err(bad("pubkey-hash is not [alg: uint, hash: bstr]"));
                    };
                    if u64::try_from(*alg).ok() != Some(HASH_ALG_SHA256) {
                        return Err(bad("pubkey-hash does not use SHA-256 (algorithm 1)"));
                    }
                    let hash: [u8; 32] = hash
                        .as_slice()
                        .try_into()
                        .map_err(|_| bad("the SHA-256 pubkey-hash is not 32 bytes"))?;
                    pubkey_sha256 = Some(hash);
                }
                (Value::Text(k), Value::Bytes(b)) if k == CLAIM_SIMULATED => {
                    simulated = b.as_slice() == [1];
                }
                _ => {}
            }
        }
        Ok(Self {
            quote: quote.clone(),
            pubkey_sha256: pubkey_sha256.ok_or_else(|| bad("the pubkey-hash claim is missing"))?,
            simulated,
        })
    }

    /// Finds and decodes the evidence extension of a certificate (DER). `Ok(None)` when the
    /// certificate has no such extension.
    pub fn from_certificate(cert_der: &[u8]) -> Result<Option<Self>> {
        let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
            .map_err(|e| Error::InvalidCertificate(e.to_string()))?;
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == EVIDENCE_OID_STR);
        ext.map(|e| Self::decode(e.value)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_is_deterministic() {
        for simulated in [false, true] {
            let e = Evidence {
                quote: vec![3; 1000],
                pubkey_sha256: [7; 32],
                simulated,
            };
            let bytes = e.encode().unwrap();
            assert_eq!(bytes, e.encode().unwrap());
            // Tag 60000 = 0xd9 0xea 0x60, then a 2-element array.
            assert_eq!(&bytes[..4], &[0xd9, 0xea, 0x60, 0x82]);
            assert_eq!(Evidence::decode(&bytes).unwrap(), e);
        }
    }

    #[test]
    fn refuses_truncations_and_wrong_shapes() {
        let e = Evidence {
            quote: vec![1, 2, 3],
            pubkey_sha256: [9; 32],
            simulated: false,
        };
        let bytes = e.encode().unwrap();
        for l in 0..bytes.len() {
            assert!(Evidence::decode(&bytes[..l]).is_err(), "prefix {l}");
        }
        let other_tag = to_cbor(&Value::Tag(1, Box::new(Value::Null))).unwrap();
        assert!(matches!(
            Evidence::decode(&other_tag),
            Err(Error::Evidence(EvidenceError::UnknownTag(1)))
        ));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(
            Evidence::decode(&trailing)
                .unwrap_err()
                .to_string()
                .contains("trailing")
        );
        let no_claim = to_cbor(&Value::Tag(
            TAG_INTEL_QUOTE,
            Box::new(Value::Array(vec![
                Value::Bytes(vec![1]),
                Value::Bytes(to_cbor(&Value::Map(vec![])).unwrap()),
            ])),
        ))
        .unwrap();
        assert!(
            Evidence::decode(&no_claim)
                .unwrap_err()
                .to_string()
                .contains("missing")
        );
    }
}
