//! The connectivity and security half of a Session: ICE (RFC 8445 lite
//! server or our controlling client), DTLS-SRTP keying (RFC 5763, RFC 5764)
//! or nothing at all for trusted plain-RTP links. Decides where datagrams go
//! (the ICE-selected address) and which sources are accepted: DTLS and media
//! only from an address that passed an ICE check (RFC 8445 §7.3,
//! RFC 7983 §5), because crafted pre-handshake DTLS can kill a handshake.

use std::net::SocketAddr;
use std::time::Instant;

use crate::net::Remote;

use crate::dtls::{
    DtlsCert, DtlsEndpoint, DtlsError, DtlsEvent, DtlsRole, DtlsSettings, Fingerprint,
};
use crate::ice::{IceClient, IceClientEvent, IceEvent, IceLite};
use crate::time::earliest;

use super::config::SessionMode;
use super::SessionEvent;

// One per session, built once and never moved on a packet path: the
// plain variant's unused bytes cost nothing worth a Box's indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum Transport {
    Lite {
        ice: IceLite,
        dtls: DtlsEndpoint,
    },
    Client {
        ice: IceClient,
        dtls: DtlsEndpoint,
        /// The server's (ufrag, pwd), kept for restarts that change only ours.
        remote_creds: (String, String),
        connected: bool,
    },
    Plain {
        remote: SocketAddr,
    },
    /// A node-to-node trunk: media only from `remote`; SRTP keyed at creation when `secure`.
    Trunk {
        remote: SocketAddr,
        secure: bool,
    },
}

/// A DTLS or ICE happening the Session turns into events and state.
#[derive(Debug)]
pub(super) enum Happened {
    Session(SessionEvent),
    Dtls(DtlsEvent),
}

impl Transport {
    pub(super) fn new(
        now: Instant,
        mode: SessionMode,
        cert: &DtlsCert,
        settings: &DtlsSettings,
    ) -> Result<Self, DtlsError> {
        let dtls = |role: DtlsRole, fp: Option<Fingerprint>| {
            DtlsEndpoint::with_settings(role, cert, fp, settings, now)
        };
        Ok(match mode {
            SessionMode::WebRtc {
                ice,
                dtls_role,
                remote_fingerprint,
            } => Self::Lite {
                ice: IceLite::new(ice),
                dtls: dtls(dtls_role, remote_fingerprint)?,
            },
            SessionMode::WebRtcClient {
                ice,
                dtls_role,
                remote_fingerprint,
            } => Self::Client {
                remote_creds: (ice.remote_ufrag.clone(), ice.remote_pwd.clone()),
                ice: IceClient::new(ice),
                dtls: dtls(dtls_role, remote_fingerprint)?,
                connected: false,
            },
            SessionMode::PlainRtp { remote } => Self::Plain { remote },
            SessionMode::Trunk { remote, keys, .. } => Self::Trunk {
                remote,
                secure: keys.is_some(),
            },
        })
    }

    pub(super) fn is_secure(&self) -> bool {
        match self {
            Self::Plain { .. } => false,
            Self::Trunk { secure, .. } => *secure,
            _ => true,
        }
    }

    /// Where everything is sent: the ICE-selected address.
    pub(super) fn remote_addr(&self) -> Option<Remote> {
        match self {
            Self::Lite { ice, .. } => ice.selected(),
            Self::Client { ice, connected, .. } => connected.then(|| ice.remote()),
            Self::Plain { remote } | Self::Trunk { remote, .. } => Some(Remote::udp(*remote)),
        }
    }

    /// Whether DTLS and media from `src` are accepted.
    pub(super) fn accepts(&self, src: Remote) -> bool {
        match self {
            Self::Lite { ice, .. } => ice.is_valid(src),
            Self::Client { ice, .. } => src == ice.remote(),
            Self::Plain { .. } => true,
            Self::Trunk { remote, .. } => src == Remote::udp(*remote),
        }
    }

    /// The transport to `remote` closed (a TCP connection): ICE forgets it.
    pub(super) fn forget(&mut self, remote: Remote) {
        if let Self::Lite { ice, .. } = self {
            ice.forget(remote);
        }
    }

    pub(super) fn dtls_mut(&mut self) -> Option<&mut DtlsEndpoint> {
        match self {
            Self::Lite { dtls, .. } | Self::Client { dtls, .. } => Some(dtls),
            Self::Plain { .. } | Self::Trunk { .. } => None,
        }
    }

    pub(super) fn local_ufrag(&self) -> Option<&str> {
        match self {
            Self::Lite { ice, .. } => Some(ice.local_ufrag()),
            Self::Client { ice, .. } => Some(ice.local_credentials().0),
            Self::Plain { .. } | Self::Trunk { .. } => None,
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Self::Lite { ice, dtls } => earliest(ice.poll_timeout(), dtls.poll_timeout()),
            Self::Client { ice, dtls, .. } => earliest(ice.poll_timeout(), dtls.poll_timeout()),
            Self::Plain { .. } | Self::Trunk { .. } => None,
        }
    }

    pub(super) fn handle_timeout(&mut self, now: Instant) {
        match self {
            Self::Lite { ice, dtls } => {
                ice.handle_timeout(now);
                dtls.handle_timeout(now);
            }
            Self::Client { ice, dtls, .. } => {
                ice.handle_timeout(now);
                dtls.handle_timeout(now);
            }
            Self::Plain { .. } | Self::Trunk { .. } => {}
        }
    }

    /// The next ICE or DTLS happening, oldest first within each.
    pub(super) fn poll_happened(&mut self) -> Option<Happened> {
        match self {
            Self::Lite { ice, dtls } => {
                if let Some(e) = ice.poll_event() {
                    return Some(Happened::Session(match e {
                        IceEvent::Connected { selected } => {
                            SessionEvent::IceConnected { remote: selected }
                        }
                        IceEvent::SelectedChanged { selected } => {
                            SessionEvent::SelectedPairChanged { remote: selected }
                        }
                        IceEvent::Disconnected => SessionEvent::IceDisconnected,
                        IceEvent::Restarted => SessionEvent::Restarted,
                    }));
                }
                dtls.poll_event().map(Happened::Dtls)
            }
            Self::Client {
                ice,
                dtls,
                connected,
                ..
            } => {
                if let Some(e) = ice.poll_event() {
                    return Some(Happened::Session(match e {
                        IceClientEvent::Connected => {
                            *connected = true;
                            SessionEvent::IceConnected {
                                remote: ice.remote(),
                            }
                        }
                        IceClientEvent::Failed | IceClientEvent::ConsentLost => {
                            *connected = false;
                            SessionEvent::IceDisconnected
                        }
                    }));
                }
                dtls.poll_event().map(Happened::Dtls)
            }
            Self::Plain { .. } | Self::Trunk { .. } => None,
        }
    }

    pub(super) fn ice_restart(&mut self, ufrag: &str, pwd: &str, remote_ufrag: Option<&str>) {
        match self {
            Self::Lite { ice, .. } => ice.restart(ufrag, pwd, remote_ufrag.map(str::to_owned)),
            Self::Client {
                ice,
                remote_creds,
                connected,
                ..
            } => {
                if let Some(r) = remote_ufrag {
                    remote_creds.0 = r.to_owned();
                }
                ice.restart((ufrag, pwd), (&remote_creds.0, &remote_creds.1));
                *connected = false;
            }
            Self::Plain { .. } | Self::Trunk { .. } => {}
        }
    }
}
