//! SRTP protection profiles negotiated by the DTLS `use_srtp` extension
//! (RFC 5764 §4.1.2, RFC 7714 §14.2) and their key, salt and tag sizes.

/// An SRTP protection profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtectionProfile {
    /// SRTP_AES128_CM_HMAC_SHA1_80 (0x0001).
    Aes128CmHmacSha1_80,
    /// SRTP_AES128_CM_HMAC_SHA1_32 (0x0002): 32-bit SRTP tag, 80-bit SRTCP tag.
    Aes128CmHmacSha1_32,
    /// SRTP_AEAD_AES_128_GCM (0x0007).
    AeadAes128Gcm,
    /// SRTP_AEAD_AES_256_GCM (0x0008).
    AeadAes256Gcm,
}

impl ProtectionProfile {
    /// Master key length in bytes.
    pub const fn master_key_len(self) -> usize {
        match self {
            Self::Aes128CmHmacSha1_80 | Self::Aes128CmHmacSha1_32 | Self::AeadAes128Gcm => 16,
            Self::AeadAes256Gcm => 32,
        }
    }

    /// Master salt length in bytes: 112 bits for AES-CM, 96 bits for GCM.
    pub const fn master_salt_len(self) -> usize {
        if self.is_aead() {
            12
        } else {
            14
        }
    }

    /// Bytes appended to an SRTP packet (the auth tag, or the GCM tag).
    pub const fn rtp_tag_len(self) -> usize {
        match self {
            Self::Aes128CmHmacSha1_80 => 10,
            Self::Aes128CmHmacSha1_32 => 4,
            Self::AeadAes128Gcm | Self::AeadAes256Gcm => 16,
        }
    }

    /// SRTCP auth tag length: always 80 bits for the CM profiles (RFC 5764 §4.1.2).
    pub const fn rtcp_tag_len(self) -> usize {
        match self {
            Self::Aes128CmHmacSha1_80 | Self::Aes128CmHmacSha1_32 => 10,
            Self::AeadAes128Gcm | Self::AeadAes256Gcm => 16,
        }
    }

    /// Whether this is an AEAD (AES-GCM) profile.
    pub const fn is_aead(self) -> bool {
        matches!(self, Self::AeadAes128Gcm | Self::AeadAes256Gcm)
    }

    /// The profile for a DTLS-SRTP profile id, if supported.
    pub const fn from_dtls_id(id: u16) -> Option<Self> {
        match id {
            0x0001 => Some(Self::Aes128CmHmacSha1_80),
            0x0002 => Some(Self::Aes128CmHmacSha1_32),
            0x0007 => Some(Self::AeadAes128Gcm),
            0x0008 => Some(Self::AeadAes256Gcm),
            _ => None,
        }
    }

    /// The DTLS-SRTP profile id.
    pub const fn dtls_id(self) -> u16 {
        match self {
            Self::Aes128CmHmacSha1_80 => 0x0001,
            Self::Aes128CmHmacSha1_32 => 0x0002,
            Self::AeadAes128Gcm => 0x0007,
            Self::AeadAes256Gcm => 0x0008,
        }
    }

    /// The registered name (RFC 5764 §4.1.2, RFC 7714 §14.2), e.g. `SRTP_AEAD_AES_128_GCM`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Aes128CmHmacSha1_80 => "SRTP_AES128_CM_HMAC_SHA1_80",
            Self::Aes128CmHmacSha1_32 => "SRTP_AES128_CM_HMAC_SHA1_32",
            Self::AeadAes128Gcm => "SRTP_AEAD_AES_128_GCM",
            Self::AeadAes256Gcm => "SRTP_AEAD_AES_256_GCM",
        }
    }

    /// The profile a registered name means, in any case, with or without the
    /// `SRTP_` prefix (`aead_aes_128_gcm`, `SRTP_AES128_CM_HMAC_SHA1_80`).
    pub fn from_name(name: &str) -> Option<Self> {
        let n = name.trim();
        [
            Self::AeadAes128Gcm,
            Self::AeadAes256Gcm,
            Self::Aes128CmHmacSha1_80,
            Self::Aes128CmHmacSha1_32,
        ]
        .into_iter()
        .find(|p| {
            let full = p.name();
            full.eq_ignore_ascii_case(n) || full["SRTP_".len()..].eq_ignore_ascii_case(n)
        })
    }

    /// Bytes to take from the DTLS exporter: client key, server key, client
    /// salt, server salt (RFC 5764 §4.2).
    pub const fn keying_material_len(self) -> usize {
        2 * (self.master_key_len() + self.master_salt_len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ProtectionProfile; 4] = [
        ProtectionProfile::Aes128CmHmacSha1_80,
        ProtectionProfile::Aes128CmHmacSha1_32,
        ProtectionProfile::AeadAes128Gcm,
        ProtectionProfile::AeadAes256Gcm,
    ];

    #[test]
    fn dtls_ids_round_trip() {
        for p in ALL {
            assert_eq!(ProtectionProfile::from_dtls_id(p.dtls_id()), Some(p));
        }
        assert_eq!(ProtectionProfile::from_dtls_id(0x0003), None);
        assert_eq!(ProtectionProfile::from_dtls_id(0xffff), None);
    }

    #[test]
    fn names_round_trip() {
        for p in ALL {
            assert_eq!(ProtectionProfile::from_name(p.name()), Some(p));
            assert_eq!(
                ProtectionProfile::from_name(&p.name()[5..].to_lowercase()),
                Some(p)
            );
        }
        assert_eq!(ProtectionProfile::from_name("aes128gcm"), None);
    }

    #[test]
    fn sizes() {
        use ProtectionProfile::*;
        assert_eq!(Aes128CmHmacSha1_32.rtp_tag_len(), 4);
        assert_eq!(Aes128CmHmacSha1_32.rtcp_tag_len(), 10);
        assert_eq!(Aes128CmHmacSha1_80.keying_material_len(), 60);
        assert_eq!(AeadAes128Gcm.keying_material_len(), 56);
        assert_eq!(AeadAes256Gcm.keying_material_len(), 88);
        assert_eq!(AeadAes256Gcm.master_salt_len(), 12);
    }
}
