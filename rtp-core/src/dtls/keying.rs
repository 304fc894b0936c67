//! DTLS-SRTP keying material: the exporter output (label
//! `EXTRACTOR-dtls_srtp`, RFC 5764 §4.2) split into the two directions'
//! master keys and salts, and the SRTP contexts built from them.

use crate::srtp::{ProtectionProfile, SrtpConfig, SrtpContext};

use super::{DtlsFailure, DtlsRole};

/// The exported material for one negotiated profile, held until the owner
/// asks for SRTP contexts. Fixed size so no allocation outlives the handshake.
pub(super) struct Keying {
    profile: ProtectionProfile,
    material: [u8; MAX_KEYING_LEN],
}

impl Keying {
    /// Keep `material` for dimpl's `profile`. Fails when the profile is one we
    /// cannot run or the length is not what RFC 5764 §4.2 gives.
    pub(super) fn from_dimpl(
        profile: dimpl::SrtpProfile,
        material: &[u8],
    ) -> Result<Self, DtlsFailure> {
        let profile = profile_from_dimpl(profile).ok_or(DtlsFailure::NoSrtpProfile)?;
        Self::new(profile, material)
    }

    /// Keep `material` exported for `profile`.
    pub(super) fn new(profile: ProtectionProfile, material: &[u8]) -> Result<Self, DtlsFailure> {
        if material.len() != profile.keying_material_len() {
            return Err(DtlsFailure::Crypto);
        }
        let mut out = [0u8; MAX_KEYING_LEN];
        out[..material.len()].copy_from_slice(material);
        Ok(Self {
            profile,
            material: out,
        })
    }

    pub(super) fn profile(&self) -> ProtectionProfile {
        self.profile
    }

    /// Outbound and inbound contexts for `role`. RFC 5764 §4.2 lays the
    /// material out as client_write_key | server_write_key |
    /// client_write_salt | server_write_salt; we write with our role's half.
    pub(super) fn contexts(
        &self,
        role: DtlsRole,
        config: SrtpConfig,
    ) -> Option<(SrtpContext, SrtpContext)> {
        let k = self.profile.master_key_len();
        let s = self.profile.master_salt_len();
        let m = &self.material;
        let client_key = &m[..k];
        let server_key = &m[k..2 * k];
        let client_salt = &m[2 * k..2 * k + s];
        let server_salt = &m[2 * k + s..2 * k + 2 * s];
        let client = SrtpContext::new(self.profile, client_key, client_salt, config).ok()?;
        let server = SrtpContext::new(self.profile, server_key, server_salt, config).ok()?;
        Some(match role {
            DtlsRole::Client => (client, server),
            DtlsRole::Server => (server, client),
        })
    }
}

impl std::fmt::Debug for Keying {
    /// Never prints the keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keying")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

impl Drop for Keying {
    /// Best effort: do not leave master keys in freed memory.
    fn drop(&mut self) {
        self.material.fill(0);
    }
}

/// Our profile for dimpl's; `None` for any profile a newer dimpl adds.
pub(super) fn profile_from_dimpl(p: dimpl::SrtpProfile) -> Option<ProtectionProfile> {
    match p {
        dimpl::SrtpProfile::AEAD_AES_128_GCM => Some(ProtectionProfile::AeadAes128Gcm),
        dimpl::SrtpProfile::AEAD_AES_256_GCM => Some(ProtectionProfile::AeadAes256Gcm),
        dimpl::SrtpProfile::AES128_CM_SHA1_80 => Some(ProtectionProfile::Aes128CmHmacSha1_80),
        _ => None,
    }
}

/// Longest keying material of any profile: AES-256-GCM, 2 × (32 + 12).
const MAX_KEYING_LEN: usize = 88;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dimpl_profile_maps_and_fits() {
        for &p in dimpl::SrtpProfile::ALL {
            let ours = profile_from_dimpl(p).expect("mapped");
            assert_eq!(ours.keying_material_len(), p.keying_material_len());
            assert!(ours.keying_material_len() <= MAX_KEYING_LEN);
        }
    }

    #[test]
    fn wrong_length_is_rejected() {
        let m = [7u8; 40];
        assert_eq!(
            Keying::from_dimpl(dimpl::SrtpProfile::AEAD_AES_128_GCM, &m).err(),
            Some(DtlsFailure::Crypto)
        );
    }

    /// The client's outbound context must be the server's inbound one:
    /// a packet protected by one opens with the other.
    #[test]
    fn roles_take_opposite_halves() {
        let mut m = [0u8; 56];
        for (i, b) in m.iter_mut().enumerate() {
            *b = i as u8;
        }
        let k = Keying::from_dimpl(dimpl::SrtpProfile::AEAD_AES_128_GCM, &m).expect("keying");
        let (mut c_out, mut c_in) = k.contexts(DtlsRole::Client, SrtpConfig::default()).unwrap();
        let (mut s_out, mut s_in) = k.contexts(DtlsRole::Server, SrtpConfig::default()).unwrap();
        let plain = [0x80u8, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 42, 1, 2, 3, 4];
        for (tx, rx) in [(&mut c_out, &mut s_in), (&mut s_out, &mut c_in)] {
            let mut buf = [0u8; 64];
            buf[..plain.len()].copy_from_slice(&plain);
            let n = tx.protect_rtp(&mut buf, plain.len()).expect("protect");
            let got = rx.unprotect_rtp(&mut buf[..n]).expect("unprotect");
            assert_eq!(&buf[..got], &plain);
        }
        // And a context never opens its own direction's packets.
        let mut buf = [0u8; 64];
        buf[..plain.len()].copy_from_slice(&plain);
        let n = c_out.protect_rtp(&mut buf, plain.len()).expect("protect");
        assert!(c_in.unprotect_rtp(&mut buf[..n]).is_err());
    }
}
