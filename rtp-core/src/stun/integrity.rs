//! MESSAGE-INTEGRITY computation (RFC 8489 §14.5): HMAC-SHA1 over the
//! message up to the attribute, with the header length field rewritten as if
//! the message ended right after MESSAGE-INTEGRITY. The header is patched in
//! a 20-byte stack copy so neither parsing nor writing allocates or mutates
//! the caller's bytes.

use aws_lc_rs::hmac;

use super::HEADER_LEN;

/// Length of the HMAC-SHA1 value.
pub(crate) const TAG_LEN: usize = 20;

/// HMAC-SHA1 of `msg[..mi_off]` with the header length set to end after a
/// MESSAGE-INTEGRITY attribute starting at `mi_off`. `None` if `mi_off` is
/// outside `HEADER_LEN..=msg.len()` or the patched length does not fit 16 bits.
pub(crate) fn tag(key: &[u8], msg: &[u8], mi_off: usize) -> Option<[u8; TAG_LEN]> {
    let header = msg.get(..HEADER_LEN)?;
    let rest = msg.get(HEADER_LEN..mi_off)?;
    let patched_len = u16::try_from(mi_off - HEADER_LEN + 4 + TAG_LEN).ok()?;
    let mut hdr = [0u8; HEADER_LEN];
    hdr.copy_from_slice(header);
    hdr[2..4].copy_from_slice(&patched_len.to_be_bytes());

    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(&hdr);
    ctx.update(rest);
    let t = ctx.sign();
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(t.as_ref());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_ignores_the_original_length_field() {
        let mut a = [0u8; 28];
        a[4..8].copy_from_slice(&super::super::MAGIC_COOKIE.to_be_bytes());
        let mut b = a;
        b[3] = 0x40; // a different length field must not change the tag
        assert_eq!(tag(b"k", &a, 28), tag(b"k", &b, 28));
        assert_ne!(tag(b"k", &a, 28), tag(b"j", &a, 28));
    }

    #[test]
    fn out_of_range_offsets_are_none() {
        let a = [0u8; 24];
        assert!(tag(b"k", &a, 19).is_none());
        assert!(tag(b"k", &a, 25).is_none());
        assert!(tag(b"k", &a, 20).is_some());
    }
}
