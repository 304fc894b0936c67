//! Session-key derivation: the AES-CM PRF of RFC 3711 §4.3.1/§4.3.3 with a
//! key derivation rate of zero (the only rate DTLS-SRTP uses, RFC 5764 §4.1.2),
//! and its reuse for AES-GCM (RFC 7714 §11), where the 96-bit master salt is
//! zero-extended on the right to the 112 bits the PRF input needs.
//!
//! Runs once per context, so it may allocate.

use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128, AES_256};
use aws_lc_rs::iv::FixedLength;

use super::{ProtectionProfile, SrtpError};

/// RFC 3711 §4.3.2 labels.
const LABEL_RTP_ENC: u8 = 0;
const LABEL_RTP_AUTH: u8 = 1;
const LABEL_RTP_SALT: u8 = 2;
const LABEL_RTCP_ENC: u8 = 3;
const LABEL_RTCP_AUTH: u8 = 4;
const LABEL_RTCP_SALT: u8 = 5;

/// HMAC-SHA1 session authentication key length (RFC 3711 §5.2: n_a = 160).
pub(crate) const AUTH_KEY_LEN: usize = 20;

/// The session keys of one stream kind (SRTP or SRTCP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamKeys {
    /// Session encryption key (16 or 32 bytes).
    pub enc_key: Vec<u8>,
    /// Session salt (14 bytes for AES-CM, 12 for AES-GCM).
    pub salt: Vec<u8>,
    /// Session authentication key (20 bytes for HMAC-SHA1; empty for AES-GCM).
    pub auth_key: Vec<u8>,
}

/// Session keys for SRTP and SRTCP derived from one master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKeys {
    /// Keys for SRTP (labels 0, 1, 2).
    pub rtp: StreamKeys,
    /// Keys for SRTCP (labels 3, 4, 5).
    pub rtcp: StreamKeys,
}

/// Derive all session keys for `profile` from a master key and salt
/// (RFC 3711 §4.3, kdr = 0).
pub fn derive_session_keys(
    profile: ProtectionProfile,
    master_key: &[u8],
    master_salt: &[u8],
) -> Result<SessionKeys, SrtpError> {
    if master_key.len() != profile.master_key_len()
        || master_salt.len() != profile.master_salt_len()
    {
        return Err(SrtpError::BadKeyLength);
    }
    let algorithm = if master_key.len() == 32 {
        &AES_256
    } else {
        &AES_128
    };
    let key = UnboundCipherKey::new(algorithm, master_key).map_err(|_| SrtpError::Crypto)?;
    let prf = EncryptingKey::ctr(key).map_err(|_| SrtpError::Crypto)?;
    let key_len = profile.master_key_len();
    // The session salt is as long as the master salt (RFC 7714 §11 keeps 96 bits).
    let salt_len = profile.master_salt_len();
    let auth_len = if profile.is_aead() { 0 } else { AUTH_KEY_LEN };
    let stream = |enc: u8, auth: u8, salt: u8| -> Result<StreamKeys, SrtpError> {
        Ok(StreamKeys {
            enc_key: prf_output(&prf, master_salt, enc, key_len)?,
            salt: prf_output(&prf, master_salt, salt, salt_len)?,
            auth_key: prf_output(&prf, master_salt, auth, auth_len)?,
        })
    };
    Ok(SessionKeys {
        rtp: stream(LABEL_RTP_ENC, LABEL_RTP_AUTH, LABEL_RTP_SALT)?,
        rtcp: stream(LABEL_RTCP_ENC, LABEL_RTCP_AUTH, LABEL_RTCP_SALT)?,
    })
}

/// AES-CM PRF output for one label: the keystream of AES-CTR under the master
/// key, starting at IV = (master_salt XOR (label || r)) * 2^16 with r = 0.
fn prf_output(
    prf: &EncryptingKey,
    master_salt: &[u8],
    label: u8,
    len: usize,
) -> Result<Vec<u8>, SrtpError> {
    let mut iv = [0u8; 16];
    // The salt is a 112-bit value; a shorter (GCM) salt is zero-extended on the right.
    iv[..master_salt.len()].copy_from_slice(master_salt);
    // key_id = label || 48-bit r sits in the low 56 bits of the 112-bit value,
    // so the label byte lands 7 bytes from the end of the 14 bytes.
    iv[7] ^= label;
    let mut out = vec![0u8; len];
    prf.less_safe_encrypt(&mut out, EncryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| SrtpError::Crypto)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 3711 Appendix B.3.
    #[test]
    fn rfc3711_b3_key_derivation() {
        let keys = derive_session_keys(
            ProtectionProfile::Aes128CmHmacSha1_80,
            &unhex("E1F97A0D3E018BE0D64FA32C06DE4139"),
            &unhex("0EC675AD498AFEEBB6960B3AABE6"),
        )
        .unwrap();
        assert_eq!(keys.rtp.enc_key, unhex("C61E7A93744F39EE10734AFE3FF7A087"));
        assert_eq!(keys.rtp.salt, unhex("30CBBC08863D8C85D49DB34A9AE1"));
        assert_eq!(
            keys.rtp.auth_key,
            unhex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
        );
    }

    #[test]
    fn bad_lengths_rejected() {
        let p = ProtectionProfile::AeadAes256Gcm;
        assert_eq!(
            derive_session_keys(p, &[0; 16], &[0; 12]),
            Err(SrtpError::BadKeyLength)
        );
        assert_eq!(
            derive_session_keys(p, &[0; 32], &[0; 14]),
            Err(SrtpError::BadKeyLength)
        );
        let k = derive_session_keys(p, &[0; 32], &[0; 12]).unwrap();
        assert_eq!(k.rtp.enc_key.len(), 32);
        assert_eq!(k.rtcp.salt.len(), 12);
        assert!(k.rtp.auth_key.is_empty());
    }
}
