//! Authentication: participant access tokens and admin tokens, both JWTs
//! signed HS256 with an API secret (RFC 7519, RFC 7515, RFC 7518 §3.2).
//!
//! The claim format is documented on [`Claims`]. The HTTP layer calls
//! [`verify`] on join (with the room the client asked for) and
//! [`verify_admin`] on every API request (`Authorization: Bearer <jwt>`, see
//! [`bearer`]). Everything takes `now` so tests and the daemon agree on time.

mod base64url;
mod claims;
mod token;

pub(crate) use base64url::decode as base64url_decode;
pub use claims::{AdminClaims, Claims, Grants, Role, Source};
pub use token::{
    bearer, mint, mint_admin, unix_seconds, verify, verify_admin, AuthError, Keyring, CLOCK_SKEW_S,
    MAX_TOKEN_LEN,
};
