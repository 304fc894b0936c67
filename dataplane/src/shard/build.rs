//! Turning control-socket specs (`CreateSession`, `AddTrack`, `Subscribe`) into rtp-core
//! `Session` configurations, and rtp-core events into control-socket notifications. Slow path
//! only (commands), so allocation is fine here.

use std::time::Instant;

use rtp_core::dtls::{DtlsCert, Fingerprint};
use rtp_core::forward::{Codec as CoreCodec, MediaKind as CoreKind};
use rtp_core::ice::IceConfig;
use rtp_core::session::{
    DownTrackConfig, ExtIds as CoreExtIds, LayerSsrc, Session, SessionConfig, SessionMode,
    UpTrackConfig,
};

use crate::pool::BufId;
use crate::proto::{
    AddTrack, CreateSession, DtlsRole, ErrorBody, ErrorCode, ExtIds, MediaKind, Subscribe,
    TransportMode,
};

/// Preallocated UpTracks per session (a publisher with camera, screen and microphone fits).
pub const MAX_UP_TRACKS: usize = 8;
/// Preallocated DownTracks per session.
pub const MAX_DOWN_TRACKS: usize = 64;

/// Builds the `Session` for `spec`.
pub fn session(
    now: Instant,
    spec: &CreateSession,
    cert: &DtlsCert,
) -> Result<Session<BufId>, ErrorBody> {
    let mode = match &spec.mode {
        TransportMode::Webrtc {} => {
            let mut ice = IceConfig::new(spec.ice.ufrag.clone(), spec.ice.pwd.clone());
            ice.remote_ufrag = spec.ice.remote_ufrag.clone();
            SessionMode::WebRtc {
                ice,
                dtls_role: dtls_role(spec.dtls_role),
                remote_fingerprint: spec
                    .remote_fingerprint
                    .as_deref()
                    .map(fingerprint)
                    .transpose()?,
            }
        }
        TransportMode::PlainRtp { remote, .. } => SessionMode::PlainRtp { remote: *remote },
    };
    let config = SessionConfig {
        mode,
        srtp: Default::default(),
        nack: Default::default(),
        pacer: Default::default(),
        bwe: Default::default(),
        max_up_tracks: MAX_UP_TRACKS,
        max_down_tracks: MAX_DOWN_TRACKS,
    };
    Session::new(now, config, cert)
        .map_err(|e| ErrorBody::new(ErrorCode::Rejected, format!("session: {e}")))
}

pub fn fingerprint(sdp: &str) -> Result<Fingerprint, ErrorBody> {
    // The wire form is "sha-256 AB:CD:…"; rtp-core parses the value after the hash name.
    let value = sdp.split_once(' ').map_or(sdp, |(_, v)| v);
    Fingerprint::parse_sdp(value)
        .or_else(|_| Fingerprint::parse_sdp(sdp))
        .map_err(|e| {
            ErrorBody::new(ErrorCode::Invalid, format!("fingerprint: {e}"))
                .with_field("remote_fingerprint")
        })
}

pub fn dtls_role(role: DtlsRole) -> rtp_core::dtls::DtlsRole {
    match role {
        DtlsRole::Server => rtp_core::dtls::DtlsRole::Server,
        DtlsRole::Client => rtp_core::dtls::DtlsRole::Client,
    }
}

pub fn up_track(spec: &AddTrack) -> UpTrackConfig {
    UpTrackConfig {
        kind: kind(spec.kind),
        codec: codec(&spec.codec.name),
        clock_rate: spec.codec.clock_rate,
        payload_type: spec.codec.payload_type,
        rtx_payload_type: spec.codec.rtx_payload_type,
        layers: spec
            .layers
            .iter()
            .map(|l| LayerSsrc {
                ssrc: l.ssrc,
                rtx_ssrc: l.rtx_ssrc,
                rid: l.rid.clone(),
            })
            .collect(),
        ext: ext_ids(&spec.ext_ids),
        e2ee: spec.e2ee,
    }
}

pub fn down_track(spec: &Subscribe, track: &AddTrack, priority: u8) -> DownTrackConfig {
    DownTrackConfig {
        kind: kind(track.kind),
        codec: codec(&track.codec.name),
        clock_rate: track.codec.clock_rate,
        payload_type: spec.payload_type,
        rtx_payload_type: spec.rtx_payload_type,
        ssrc: spec.ssrc,
        rtx_ssrc: spec.rtx_ssrc,
        ext: ext_ids(&spec.ext_ids),
        e2ee: track.e2ee,
        priority,
        // The top simulcast layer the publisher sends: the forwarder targets it until the
        // allocator (or a layer cap) says otherwise, and waits for a keyframe of it.
        max_layer: u8::try_from(track.layers.len().max(1) - 1).unwrap_or(0),
    }
}

fn kind(k: MediaKind) -> CoreKind {
    match k {
        MediaKind::Audio => CoreKind::Audio,
        MediaKind::Video => CoreKind::Video,
    }
}

/// SDP encoding names are case-insensitive (RFC 4855 §3).
pub fn codec(name: &str) -> CoreCodec {
    match name.to_ascii_lowercase().as_str() {
        "opus" => CoreCodec::Opus,
        "vp8" => CoreCodec::Vp8,
        "vp9" => CoreCodec::Vp9,
        "h264" => CoreCodec::H264,
        "av1" => CoreCodec::Av1,
        _ => CoreCodec::Other,
    }
}

fn ext_ids(e: &ExtIds) -> CoreExtIds {
    CoreExtIds {
        transport_cc: e.transport_cc,
        abs_send_time: e.abs_send_time,
        audio_level: e.audio_level,
        mid: e.mid,
        rid: e.rid,
        repaired_rid: e.repaired_rid,
        dependency_descriptor: e.dependency_descriptor,
    }
}
