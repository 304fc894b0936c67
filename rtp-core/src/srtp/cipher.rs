//! The per-packet transforms, keyed once per context: AES-CM with truncated
//! HMAC-SHA1 (RFC 3711 §4.1.1, §4.2) and AES-GCM (RFC 7714 §8, §9).
//!
//! Both SRTP and SRTCP IVs/nonces have the same shape: the session salt
//! XOR'ed with the SSRC and a 48-bit index (the SRTP packet index
//! ROC || SEQ, or the 31-bit SRTCP index). The functions here take that
//! index and the buffer regions; the context decides what the regions are.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};
use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128, AES_256};
use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;

use super::kdf::{StreamKeys, AUTH_KEY_LEN};
use super::SrtpError;

/// AES-GCM tag length (RFC 7714 §8.2: 16 octets).
pub(crate) const GCM_TAG_LEN: usize = 16;

/// A keyed transform for one stream kind (SRTP or SRTCP).
// Two of these live inline in each context and are built once; boxing the
// big HMAC variant would only add a pointer chase per packet.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Transform {
    Cm {
        ctr: EncryptingKey,
        auth: hmac::Key,
        salt: [u8; 14],
        tag_len: usize,
    },
    Gcm {
        aead: LessSafeKey,
        salt: [u8; 12],
    },
}

impl core::fmt::Debug for Transform {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print key material.
        match self {
            Self::Cm { tag_len, .. } => write!(f, "Transform::Cm {{ tag_len: {tag_len} }}"),
            Self::Gcm { .. } => f.write_str("Transform::Gcm"),
        }
    }
}

impl Transform {
    /// An AES-CM/HMAC-SHA1 transform with a `tag_len`-byte truncated tag.
    pub(crate) fn cm(keys: &StreamKeys, tag_len: usize) -> Result<Self, SrtpError> {
        let algorithm = match keys.enc_key.len() {
            16 => &AES_128,
            32 => &AES_256,
            _ => return Err(SrtpError::BadKeyLength),
        };
        let salt: [u8; 14] = keys
            .salt
            .as_slice()
            .try_into()
            .map_err(|_| SrtpError::BadKeyLength)?;
        if keys.auth_key.len() != AUTH_KEY_LEN {
            return Err(SrtpError::BadKeyLength);
        }
        let key = UnboundCipherKey::new(algorithm, &keys.enc_key).map_err(|_| SrtpError::Crypto)?;
        Ok(Self::Cm {
            ctr: EncryptingKey::ctr(key).map_err(|_| SrtpError::Crypto)?,
            auth: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &keys.auth_key),
            salt,
            tag_len,
        })
    }

    /// An AES-GCM transform (128- or 256-bit key by the key length).
    pub(crate) fn gcm(keys: &StreamKeys) -> Result<Self, SrtpError> {
        let algorithm = match keys.enc_key.len() {
            16 => &AES_128_GCM,
            32 => &AES_256_GCM,
            _ => return Err(SrtpError::BadKeyLength),
        };
        let salt: [u8; 12] = keys
            .salt
            .as_slice()
            .try_into()
            .map_err(|_| SrtpError::BadKeyLength)?;
        let key = UnboundKey::new(algorithm, &keys.enc_key).map_err(|_| SrtpError::Crypto)?;
        Ok(Self::Gcm {
            aead: LessSafeKey::new(key),
            salt,
        })
    }

    /// Bytes of tag this transform appends.
    pub(crate) fn tag_len(&self) -> usize {
        match self {
            Self::Cm { tag_len, .. } => *tag_len,
            Self::Gcm { .. } => GCM_TAG_LEN,
        }
    }

    /// AES-CM: XOR `data` with the keystream for (`ssrc`, `index`).
    /// IV = (salt * 2^16) XOR (SSRC * 2^64) XOR (index * 2^16) (RFC 3711 §4.1.1).
    pub(crate) fn ctr_xor(&self, ssrc: u32, index: u64, data: &mut [u8]) -> Result<(), SrtpError> {
        let Self::Cm { ctr, salt, .. } = self else {
            return Err(SrtpError::Crypto);
        };
        if data.is_empty() {
            return Ok(());
        }
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(salt);
        xor_into(&mut iv[4..8], &ssrc.to_be_bytes());
        xor_into(&mut iv[8..14], &index.to_be_bytes()[2..]);
        ctr.less_safe_encrypt(data, EncryptionContext::Iv128(FixedLength::from(iv)))
            .map(|_| ())
            .map_err(|_| SrtpError::Crypto)
    }

    /// AES-CM: the full HMAC-SHA1 over `data || suffix` (suffix: the ROC for
    /// SRTP, empty for SRTCP whose index is inside `data`).
    pub(crate) fn mac(&self, data: &[u8], suffix: &[u8]) -> Result<hmac::Tag, SrtpError> {
        let Self::Cm { auth, .. } = self else {
            return Err(SrtpError::Crypto);
        };
        let mut ctx = hmac::Context::with_key(auth);
        ctx.update(data);
        ctx.update(suffix);
        Ok(ctx.sign())
    }

    /// AES-CM: write the truncated tag over `data || suffix` into `out`.
    pub(crate) fn write_tag(
        &self,
        data: &[u8],
        suffix: &[u8],
        out: &mut [u8],
    ) -> Result<(), SrtpError> {
        let tag = self.mac(data, suffix)?;
        let n = out.len();
        out.copy_from_slice(tag.as_ref().get(..n).ok_or(SrtpError::Crypto)?);
        Ok(())
    }

    /// AES-CM: constant-time check of `tag` against `data || suffix`.
    pub(crate) fn verify_tag(
        &self,
        data: &[u8],
        suffix: &[u8],
        tag: &[u8],
    ) -> Result<(), SrtpError> {
        let mac = self.mac(data, suffix)?;
        let expected = mac.as_ref().get(..tag.len()).ok_or(SrtpError::Crypto)?;
        verify_slices_are_equal(expected, tag).map_err(|_| SrtpError::AuthFailed)
    }

    /// AES-GCM nonce: (00 00 || SSRC || index48) XOR salt (RFC 7714 §8.1, §9.1).
    fn nonce(salt: &[u8; 12], ssrc: u32, index: u64) -> Nonce {
        let mut n = *salt;
        xor_into(&mut n[2..6], &ssrc.to_be_bytes());
        xor_into(&mut n[6..12], &index.to_be_bytes()[2..]);
        Nonce::assume_unique_for_key(n)
    }

    /// AES-GCM: encrypt `data` in place with `aad`, writing the tag into `tag_out`.
    pub(crate) fn seal(
        &self,
        ssrc: u32,
        index: u64,
        aad: &[u8],
        data: &mut [u8],
        tag_out: &mut [u8],
    ) -> Result<(), SrtpError> {
        let Self::Gcm { aead, salt } = self else {
            return Err(SrtpError::Crypto);
        };
        let tag = aead
            .seal_in_place_separate_tag(Self::nonce(salt, ssrc, index), Aad::from(aad), data)
            .map_err(|_| SrtpError::Crypto)?;
        tag_out.copy_from_slice(tag.as_ref());
        Ok(())
    }

    /// AES-GCM: authenticate and decrypt `data` (ciphertext || tag) in place;
    /// returns the plaintext length.
    pub(crate) fn open(
        &self,
        ssrc: u32,
        index: u64,
        aad: &[u8],
        data: &mut [u8],
    ) -> Result<usize, SrtpError> {
        let Self::Gcm { aead, salt } = self else {
            return Err(SrtpError::Crypto);
        };
        aead.open_in_place(Self::nonce(salt, ssrc, index), Aad::from(aad), data)
            .map(|plain| plain.len())
            .map_err(|_| SrtpError::AuthFailed)
    }
}

fn xor_into(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= s;
    }
}
