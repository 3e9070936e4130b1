//! Issuance nonces: short-lived, node-bound values a workload puts into REPORTDATA[32..64].
//!
//! A nonce is 32 bytes: `expires_at` (Unix seconds, u64 big-endian, 8) ‖ random (8) ‖ the first
//! 16 bytes of HMAC-SHA256(K, "ccm-issuance-nonce-v1" ‖ node_id (16) ‖ expires_at (8) ‖ random
//! (8)). K is derived from the master key ([`crate::secrets::MasterKey::derive_hmac_key`]), so
//! every replica sharing the key accepts the nonces of the others and no write is needed to hand
//! one out. The MAC binds the nonce to the node that fetched it and to its expiry; single use is
//! enforced by the store (the certificate row keeps its nonce under a UNIQUE index).

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use uuid::Uuid;

/// Length of a nonce (REPORTDATA[32..64]).
pub const NONCE_LEN: usize = 32;

/// Purpose label of the nonce key derived from the master key.
pub const KEY_PURPOSE: &str = "issuance-nonce";

const DOMAIN: &[u8] = b"ccm-issuance-nonce-v1";
const MAC_LEN: usize = 16;

/// Why a nonce is not accepted (before the single-use check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceFault {
    /// All zero: the quote carries no manager nonce (the legacy local-attestation path).
    Absent,
    /// Not made by this manager for this node (forged, or issued to another node).
    Unknown,
    /// Made for this node, but its lifetime is over.
    Expired,
}

/// Mints and checks nonces with the key derived from the master key.
pub struct NonceKey {
    key: hmac::Key,
    ttl_secs: i64,
    rng: SystemRandom,
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceKey")
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

impl NonceKey {
    /// A minter with key `key` whose nonces live `ttl_secs`.
    pub fn new(key: hmac::Key, ttl_secs: i64) -> Self {
        Self {
            key,
            ttl_secs,
            rng: SystemRandom::new(),
        }
    }

    /// How long a fresh nonce is accepted.
    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    fn mac(&self, node_id: Uuid, expires_be: &[u8; 8], random: &[u8; 8]) -> [u8; MAC_LEN] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(DOMAIN);
        ctx.update(node_id.as_bytes());
        ctx.update(expires_be);
        ctx.update(random);
        let tag = ctx.sign();
        let mut out = [0u8; MAC_LEN];
        for (o, t) in out.iter_mut().zip(tag.as_ref()) {
            *o = *t;
        }
        out
    }

    /// A nonce for `node_id` with the given random part, expiring `ttl_secs` after `now`.
    pub fn mint_with(&self, node_id: Uuid, now: i64, random: [u8; 8]) -> ([u8; NONCE_LEN], i64) {
        let expires_at = now.saturating_add(self.ttl_secs).max(0);
        let expires_be = u64::try_from(expires_at).unwrap_or(0).to_be_bytes();
        let mac = self.mac(node_id, &expires_be, &random);
        let mut nonce = [0u8; NONCE_LEN];
        let (head, tail) = nonce.split_at_mut(8);
        head.copy_from_slice(&expires_be);
        let (rand_part, mac_part) = tail.split_at_mut(8);
        rand_part.copy_from_slice(&random);
        mac_part.copy_from_slice(&mac);
        (nonce, expires_at)
    }

    /// `count` fresh nonces for `node_id` and their expiry, or `None` when the system has no
    /// randomness.
    pub fn mint(
        &self,
        node_id: Uuid,
        now: i64,
        count: usize,
    ) -> Option<Vec<([u8; NONCE_LEN], i64)>> {
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let mut random = [0u8; 8];
            self.rng.fill(&mut random).ok()?;
            out.push(self.mint_with(node_id, now, random));
        }
        Some(out)
    }

    /// Checks that `nonce` was minted for `node_id` and is still valid at `now`.
    pub fn check(
        &self,
        node_id: Uuid,
        nonce: &[u8; NONCE_LEN],
        now: i64,
    ) -> Result<(), NonceFault> {
        if nonce.iter().all(|b| *b == 0) {
            return Err(NonceFault::Absent);
        }
        let (expires_be, rest) = nonce.split_at(8);
        let (random, mac) = rest.split_at(8);
        let (Ok(expires_be), Ok(random)) =
            (<[u8; 8]>::try_from(expires_be), <[u8; 8]>::try_from(random))
        else {
            return Err(NonceFault::Unknown);
        };
        let expected = self.mac(node_id, &expires_be, &random);
        // Constant time: whether a MAC is close reveals nothing.
        let diff = expected
            .iter()
            .zip(mac)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if std::hint::black_box(diff) != 0 {
            return Err(NonceFault::Unknown);
        }
        let expires_at = i64::try_from(u64::from_be_bytes(expires_be)).unwrap_or(i64::MAX);
        if now >= expires_at {
            return Err(NonceFault::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> NonceKey {
        NonceKey::new(hmac::Key::new(hmac::HMAC_SHA256, &[seed; 32]), 300)
    }

    #[test]
    fn layout_is_expiry_random_mac() {
        let node = Uuid::from_u128(7);
        let (n, exp) = key(1).mint_with(node, 1_000, [5; 8]);
        assert_eq!(exp, 1_300);
        assert_eq!(&n[..8], &1_300u64.to_be_bytes());
        assert_eq!(&n[8..16], &[5; 8]);
        let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, &[1; 32]));
        ctx.update(b"ccm-issuance-nonce-v1");
        ctx.update(node.as_bytes());
        ctx.update(&1_300u64.to_be_bytes());
        ctx.update(&[5; 8]);
        assert_eq!(&n[16..], &ctx.sign().as_ref()[..16]);
    }

    #[test]
    fn accepted_for_its_node_until_expiry() {
        let k = key(1);
        let node = Uuid::from_u128(7);
        let batch = k.mint(node, 1_000, 3).unwrap();
        assert_eq!(batch.len(), 3);
        assert_ne!(batch[0].0, batch[1].0, "random part differs");
        let (n, exp) = batch[0];
        assert_eq!(k.check(node, &n, 1_000), Ok(()));
        assert_eq!(k.check(node, &n, exp - 1), Ok(()));
        assert_eq!(k.check(node, &n, exp), Err(NonceFault::Expired));
    }

    #[test]
    fn other_node_other_key_or_tampered_is_unknown() {
        let k = key(1);
        let node = Uuid::from_u128(7);
        let (n, _) = k.mint_with(node, 1_000, [9; 8]);
        assert_eq!(
            k.check(Uuid::from_u128(8), &n, 1_000),
            Err(NonceFault::Unknown)
        );
        assert_eq!(key(2).check(node, &n, 1_000), Err(NonceFault::Unknown));
        for i in 0..NONCE_LEN {
            let mut t = n;
            t[i] ^= 1;
            assert_eq!(
                k.check(node, &t, 1_000),
                Err(NonceFault::Unknown),
                "byte {i}"
            );
        }
        // A later expiry cannot be written in without the key.
        let mut later = n;
        later[..8].copy_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(k.check(node, &later, 5_000), Err(NonceFault::Unknown));
    }

    #[test]
    fn zeros_are_absent() {
        assert_eq!(
            key(1).check(Uuid::from_u128(7), &[0; NONCE_LEN], 0),
            Err(NonceFault::Absent)
        );
    }
}
