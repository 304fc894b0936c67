//! Object ids on the control socket. The control daemon allocates every id; the dataplane only
//! stores and echoes them, so a reconnecting control daemon can match its state to ours
//! (`docs/control-socket.md`, "Resync").

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        ///
        /// On the wire it is a bare JSON integer (`u64`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_type!(
    /// One ICE/DTLS/SRTP peer (or one plain-RTP endpoint), owned by one shard.
    SessionId,
    "session#"
);
id_type!(
    /// One published source on a publisher session, possibly simulcast or SVC.
    TrackId,
    "track#"
);
id_type!(
    /// One track forwarded to one subscriber session (a DownTrack in the dataplane).
    SubscriptionId,
    "subscription#"
);
