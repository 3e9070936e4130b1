//! `sgx_ql_att_key_id_list_t`, the list a quote verifier hands to SelectAttKeyID: an 8-byte
//! header (id u16 = 0, version u16 = 0, count u32) followed by `count` 256-byte attestation key
//! ids.

use ccm_sgx::AttKeyId;

/// Size of the list header.
pub const HEADER_LEN: usize = 8;

/// Size of one attestation key id in the list.
pub const ID_LEN: usize = 256;

/// The most ids a list may carry. Intel's aesmd caps the count too; requests with more are
/// parameter errors.
pub const MAX_IDS: u32 = 16;

/// Why a list was refused (each is a parameter error on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListError {
    /// Shorter than a header and one id.
    TooShort,
    /// The header's id or version is not 0.
    BadHeader,
    /// More ids than [`MAX_IDS`].
    TooMany,
    /// The byte length does not match the header's count.
    LengthMismatch,
}

/// Encodes candidate ids as a list.
pub fn encode(ids: &[AttKeyId]) -> Vec<u8> {
    let count = u32::try_from(ids.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(ids.len().saturating_mul(ID_LEN).saturating_add(HEADER_LEN));
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    for id in ids {
        out.extend_from_slice(id.as_bytes());
    }
    out
}

/// Parses a list, checking the header and that its length matches the count exactly.
pub fn parse(bytes: &[u8]) -> Result<Vec<AttKeyId>, ListError> {
    if bytes.len() < HEADER_LEN.saturating_add(ID_LEN) {
        return Err(ListError::TooShort);
    }
    let (header, rest) = bytes
        .split_at_checked(HEADER_LEN)
        .ok_or(ListError::TooShort)?;
    let field = |range: std::ops::Range<usize>| header.get(range).unwrap_or_default();
    if field(0..2) != [0, 0] || field(2..4) != [0, 0] {
        return Err(ListError::BadHeader);
    }
    let mut count = [0u8; 4];
    count.copy_from_slice(field(4..8));
    let count = u32::from_le_bytes(count);
    if count > MAX_IDS {
        return Err(ListError::TooMany);
    }
    let expected = usize::try_from(count)
        .ok()
        .and_then(|c| c.checked_mul(ID_LEN))
        .ok_or(ListError::TooMany)?;
    if rest.len() != expected {
        return Err(ListError::LengthMismatch);
    }
    rest.chunks_exact(ID_LEN)
        .map(|chunk| AttKeyId::parse(chunk).map_err(|_| ListError::LengthMismatch))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let a = AttKeyId::intel_ecdsa_p256();
        let b = AttKeyId::ecdsa_p256([7; 32], 1);
        let list = encode(&[a, b]);
        assert_eq!(list.len(), 8 + 512);
        assert_eq!(&list[..8], &[0, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(parse(&list).unwrap(), vec![a, b]);
        for cut in 0..list.len() {
            assert!(parse(&list[..cut]).is_err(), "{cut}");
        }
        let mut bad = list.clone();
        bad[0] = 1;
        assert_eq!(parse(&bad), Err(ListError::BadHeader));
        let mut bad = list.clone();
        bad[4] = 3;
        assert_eq!(parse(&bad), Err(ListError::LengthMismatch));
        let mut bad = list.clone();
        bad[4..8].copy_from_slice(&(MAX_IDS + 1).to_le_bytes());
        assert_eq!(parse(&bad), Err(ListError::TooMany));
        let mut long = list;
        long.push(0);
        assert_eq!(parse(&long), Err(ListError::LengthMismatch));
    }
}
