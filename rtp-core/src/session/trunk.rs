//! Trunk keys: the SRTP master keys of a node-to-node trunk (cascade, issue 16), derived from a
//! cluster secret both nodes hold and the trunk's identity, so that no key is negotiated (no
//! DTLS) or ever written anywhere (no key on the control socket, none in Redis).
//!
//! HKDF-SHA256 (RFC 5869): `PRK = Extract(salt = "sluice trunk v1", secret)`, then for each
//! direction `OKM = Expand(PRK, info = "sluice trunk v1" ‖ len ‖ from ‖ len ‖ to ‖ epoch, 28)`:
//! a 16-byte AES-128 master key and a 12-byte salt for SRTP_AEAD_AES_128_GCM (RFC 7714). The
//! direction is part of `info`, so the two directions never share a key stream, and the epoch
//! (bumped whenever a trunk is re-created) keeps a restarted node from reusing a key with reset
//! sequence numbers (which would repeat GCM nonces).

use aws_lc_rs::hkdf::{KeyType, Salt, HKDF_SHA256};

use crate::srtp::ProtectionProfile;

const LABEL: &[u8] = b"sluice trunk v1";
/// The shortest cluster secret accepted (256 bits).
pub const MIN_TRUNK_SECRET: usize = 32;
/// The longest node name a trunk identity may carry.
pub const MAX_NODE_NAME: usize = 64;

/// One direction's SRTP master key and salt.
#[derive(Clone, PartialEq, Eq)]
pub struct TrunkKey {
    pub master_key: [u8; 16],
    pub master_salt: [u8; 12],
}

/// Both directions of a trunk, seen from one end.
#[derive(Clone, PartialEq, Eq)]
pub struct TrunkKeys {
    /// What we protect with.
    pub tx: TrunkKey,
    /// What the peer protects with.
    pub rx: TrunkKey,
}

impl std::fmt::Debug for TrunkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TrunkKey(..)")
    }
}

impl std::fmt::Debug for TrunkKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TrunkKeys(..)")
    }
}

/// Why keys could not be derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TrunkKeyError {
    #[error("the cluster secret is shorter than {MIN_TRUNK_SECRET} bytes")]
    ShortSecret,
    #[error("node names must be 1-{MAX_NODE_NAME} bytes and differ")]
    BadIdentity,
}

impl TrunkKeys {
    /// The profile trunk keys are for.
    pub const PROFILE: ProtectionProfile = ProtectionProfile::AeadAes128Gcm;

    /// Keys of the trunk from node `local` to node `remote` in `epoch`. The other end calls
    /// this with the names swapped and gets `tx` and `rx` swapped.
    pub fn derive(
        secret: &[u8],
        local: &str,
        remote: &str,
        epoch: u64,
    ) -> Result<Self, TrunkKeyError> {
        if secret.len() < MIN_TRUNK_SECRET {
            return Err(TrunkKeyError::ShortSecret);
        }
        let ok = |n: &str| (1..=MAX_NODE_NAME).contains(&n.len());
        if !ok(local) || !ok(remote) || local == remote {
            return Err(TrunkKeyError::BadIdentity);
        }
        let prk = Salt::new(HKDF_SHA256, LABEL).extract(secret);
        let one = |from: &str, to: &str| -> TrunkKey {
            let (fl, tl) = ([from.len() as u8], [to.len() as u8]);
            let e = epoch.to_be_bytes();
            let info: [&[u8]; 6] = [LABEL, &fl, from.as_bytes(), &tl, to.as_bytes(), &e];
            let mut okm = [0u8; 28];
            prk.expand(&info, Len(okm.len()))
                .and_then(|o| o.fill(&mut okm))
                .expect("28 bytes is within HKDF-SHA256's output limit");
            let mut k = TrunkKey {
                master_key: [0; 16],
                master_salt: [0; 12],
            };
            k.master_key.copy_from_slice(&okm[..16]);
            k.master_salt.copy_from_slice(&okm[16..]);
            k
        };
        Ok(Self {
            tx: one(local, remote),
            rx: one(remote, local),
        })
    }
}

struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn the_two_ends_derive_mirrored_keys() {
        let a = TrunkKeys::derive(SECRET, "node-a", "node-b", 1).expect("a");
        let b = TrunkKeys::derive(SECRET, "node-b", "node-a", 1).expect("b");
        assert!(a.tx == b.rx && a.rx == b.tx);
        assert!(a.tx != a.rx, "the directions use different keys");
    }

    #[test]
    fn epoch_secret_and_names_all_change_the_keys() {
        let base = TrunkKeys::derive(SECRET, "a", "b", 1).expect("base");
        let other_secret = [7u8; 32];
        for k in [
            TrunkKeys::derive(SECRET, "a", "b", 2),
            TrunkKeys::derive(&other_secret, "a", "b", 1),
            TrunkKeys::derive(SECRET, "a", "c", 1),
            // Length-prefixed names: "ab"+"c" is not "a"+"bc".
            TrunkKeys::derive(SECRET, "ab", "c", 1),
        ] {
            let k = k.expect("keys");
            assert!(k.tx != base.tx && k.rx != base.rx);
        }
        assert!(
            TrunkKeys::derive(SECRET, "ab", "c", 1).expect("x")
                != TrunkKeys::derive(SECRET, "a", "bc", 1).expect("y")
        );
    }

    #[test]
    fn short_secrets_and_bad_names_are_refused() {
        assert_eq!(
            TrunkKeys::derive(&SECRET[..31], "a", "b", 1),
            Err(TrunkKeyError::ShortSecret)
        );
        let long = "x".repeat(MAX_NODE_NAME + 1);
        for (l, r) in [("", "b"), ("a", "a"), (long.as_str(), "b")] {
            assert_eq!(
                TrunkKeys::derive(SECRET, l, r, 1),
                Err(TrunkKeyError::BadIdentity)
            );
        }
    }
}
