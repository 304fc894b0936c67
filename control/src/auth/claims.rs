//! What an access token or an admin token says (the JWT claims set, RFC 7519 §4).
//!
//! Access token claims, as JSON (this is the wire contract for `docs/protocol.md`):
//!
//! ```json
//! {
//!   "iss": "APIkey1",                 // the API key whose secret signed the token
//!   "sub": "alice",                   // participant identity, unique per room
//!   "room": "standup",                // the only room this token admits to
//!   "role": "host",                   // "host" | "controller" | "viewer"
//!   "grants": {
//!     "can_publish": true,
//!     "can_subscribe": true,
//!     "can_publish_sources": ["camera", "microphone", "screen"],
//!     "can_update_metadata": false,
//!     "can_publish_data": true          // optional; absent: true unless the role is viewer
//!   },
//!   "name": "Alice",                  // optional display name
//!   "metadata": "{\"team\":\"a\"}",   // optional opaque string
//!   "region": "eu-west",              // optional: where to place a new room (cluster only)
//!   "exp": 1700003600,                // unix seconds: not valid at or after
//!   "nbf": 1700000000,                // unix seconds: not valid before
//!   "iat": 1700000000                 // unix seconds: issued at (informational)
//! }
//! ```
//!
//! Admin tokens (for the HTTP API, `Authorization: Bearer <jwt>`) carry
//! `{ "iss", "sub", "admin": true, "exp", "nbf", "iat" }`.
//!
//! Grants are an upper bound the role narrows further: see
//! [`Role::may_publish`]. Every field above except `name`, `metadata` and `region` is
//! required; unknown fields are ignored so newer minters stay compatible.

use serde::{Deserialize, Serialize};

/// Claims of a participant access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// API key that signed the token; [`super::mint`] overwrites it.
    pub iss: String,
    /// Participant identity.
    pub sub: String,
    /// Room the token admits to.
    pub room: String,
    pub role: Role,
    pub grants: Grants,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    /// The participant's region: a cluster places a room that has no home yet on a node of
    /// this region first (docs/cluster.md "Placement"). 1..=64 of `[A-Za-z0-9_-]`; a token
    /// with any other value is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Expiry, unix seconds.
    pub exp: u64,
    /// Not before, unix seconds.
    pub nbf: u64,
    /// Issued at, unix seconds.
    pub iat: u64,
}

/// Claims of an admin token for the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminClaims {
    pub iss: String,
    pub sub: String,
    /// Must be `true`; an access token (no `admin`) is refused as an admin token.
    #[serde(default)]
    pub admin: bool,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
}

/// A participant's role in a room (seed 000, "Decision 5").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// One per room: shares the screen, grants/revokes control, ends the session.
    Host,
    /// Views, requests control, sends input once granted; at most `max_controllers`.
    Controller,
    /// Views only.
    Viewer,
}

/// A media source a participant may publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Camera,
    Microphone,
    Screen,
}

/// Permissions carried by a token (and changeable later through the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    pub can_publish: bool,
    pub can_subscribe: bool,
    pub can_publish_sources: Vec<Source>,
    pub can_update_metadata: bool,
    /// May send on the data channels (issue 17); absent: the role's default
    /// ([`Grants::may_publish_data`]), so tokens minted before the grant existed keep working.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_publish_data: Option<bool>,
}

impl Role {
    /// Whether this role may ever publish `source`, whatever the grants say.
    ///
    /// Seed 000 gives screen sharing to the host alone and makes viewers
    /// view-only, so a token cannot lift a viewer into a publisher: change the
    /// role instead. Controllers may talk and show their camera.
    pub fn may_publish(self, source: Source) -> bool {
        match self {
            Role::Host => true,
            Role::Controller => matches!(source, Source::Camera | Source::Microphone),
            Role::Viewer => false,
        }
    }

    /// Lower-case wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Host => "host",
            Role::Controller => "controller",
            Role::Viewer => "viewer",
        }
    }
}

impl Grants {
    /// The grants a token minted for `role` gets by default.
    pub fn for_role(role: Role) -> Self {
        let sources = match role {
            Role::Host => vec![Source::Camera, Source::Microphone, Source::Screen],
            Role::Controller => vec![Source::Camera, Source::Microphone],
            Role::Viewer => Vec::new(),
        };
        Grants {
            can_publish: !sources.is_empty(),
            can_subscribe: true,
            can_publish_sources: sources,
            can_update_metadata: false,
            can_publish_data: None,
        }
    }

    /// Whether `role` with these grants may send data-channel messages: the grant when the
    /// token carries it, else true for host and controller, false for viewer (issue 17).
    pub fn may_publish_data(&self, role: Role) -> bool {
        self.can_publish_data.unwrap_or(role != Role::Viewer)
    }

    /// Grants allow publishing `source` (the role check is separate).
    pub fn allows_source(&self, source: Source) -> bool {
        self.can_publish && self.can_publish_sources.contains(&source)
    }
}
