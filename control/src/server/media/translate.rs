//! The one place the control daemon's own types meet the shared vocabulary of `sluice-proto`:
//! SDP's extension ids, DTLS role, m= kind and candidates, and the token's source. Conversions
//! to rtp-core's types live in `sluice-proto` itself.

use std::net::IpAddr;

use sluice_proto::{Candidate, CandidateProtocol, DtlsRole, ExtIds, MediaKind, Source};

use crate::auth;
use crate::sdp;
use crate::server::error::ApiError;

impl From<&sdp::ExtIds> for ExtIds {
    fn from(e: &sdp::ExtIds) -> Self {
        Self {
            transport_cc: e.transport_cc,
            abs_send_time: e.abs_send_time,
            audio_level: e.audio_level,
            mid: e.mid,
            rid: e.rid,
            repaired_rid: e.repaired_rid,
            dependency_descriptor: e.dependency_descriptor,
        }
    }
}

impl From<sdp::DtlsRole> for DtlsRole {
    fn from(r: sdp::DtlsRole) -> Self {
        match r {
            sdp::DtlsRole::Server => Self::Server,
            sdp::DtlsRole::Client => Self::Client,
        }
    }
}

impl From<auth::Source> for Source {
    fn from(s: auth::Source) -> Self {
        match s {
            auth::Source::Camera => Self::Camera,
            auth::Source::Microphone => Self::Microphone,
            auth::Source::Screen => Self::Screen,
        }
    }
}

impl From<MediaKind> for sdp::MediaKind {
    fn from(k: MediaKind) -> Self {
        match k {
            MediaKind::Audio => Self::Audio,
            MediaKind::Video => Self::Video,
        }
    }
}

/// The track kind of an m= section: audio and video only (`None` for application, text...).
pub(crate) fn track_kind(kind: &sdp::MediaKind) -> Option<MediaKind> {
    match kind {
        sdp::MediaKind::Audio => Some(MediaKind::Audio),
        sdp::MediaKind::Video => Some(MediaKind::Video),
        _ => None,
    }
}

/// The candidates the dataplane gave a session (`SessionCreated.local_candidates`), as SDP
/// lines. A wildcard-bound address becomes one a client can reach ([`sdp::announce_ip`]).
pub(crate) fn sdp_candidates(candidates: &[Candidate], http_ip: IpAddr) -> Vec<sdp::Candidate> {
    candidates
        .iter()
        .map(|c| {
            let ip = sdp::announce_ip(c.addr.ip(), http_ip);
            let mut line = sdp::Candidate::host_udp(&c.foundation, ip, c.addr.port(), c.priority);
            if c.protocol == CandidateProtocol::Tcp {
                line.transport = "tcp".into();
                line.tcptype = Some("passive".into());
            }
            line
        })
        .collect()
}

/// The kind of a section a client publishes on: audio or video.
pub(crate) fn publishable(kind: &sdp::MediaKind) -> Result<MediaKind, ApiError> {
    track_kind(kind).ok_or_else(|| ApiError::invalid("sdp", format!("cannot publish {kind} media")))
}

/// The source a section's track is published as when no `publish` request named one.
pub(crate) fn default_source(kind: MediaKind) -> auth::Source {
    match kind {
        MediaKind::Audio => auth::Source::Microphone,
        MediaKind::Video => auth::Source::Camera,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_announce_a_reachable_address() {
        let c = Candidate {
            foundation: "1".into(),
            addr: "0.0.0.0:7882".parse().unwrap(),
            protocol: CandidateProtocol::Udp,
            priority: 2_130_706_431,
        };
        let lines = sdp_candidates(&[c], "127.0.0.1".parse().unwrap());
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].address, "127.0.0.1");
        assert_eq!((lines[0].port, lines[0].priority), (7882, 2_130_706_431));
        assert_eq!(lines[0].transport, "udp");
    }

    #[test]
    fn kinds_and_roles() {
        assert_eq!(track_kind(&sdp::MediaKind::Video), Some(MediaKind::Video));
        assert_eq!(track_kind(&sdp::MediaKind::Application), None);
        assert_eq!(
            sdp::MediaKind::from(MediaKind::Audio),
            sdp::MediaKind::Audio
        );
        assert_eq!(DtlsRole::from(sdp::DtlsRole::Client), DtlsRole::Client);
        assert_eq!(Source::from(auth::Source::Screen), Source::Screen);
    }
}
