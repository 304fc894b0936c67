//! Turning control-socket specs (`CreateSession`, `AddTrack`, `Subscribe`) into rtp-core
//! `Session` configurations, and rtp-core events into control-socket notifications. Slow path
//! only (commands), so allocation is fine here.

use std::time::{Duration, Instant};

use rtp_core::bwe::{AllocatorConfig, SendSideBweConfig};
use rtp_core::dtls::{DtlsCert, DtlsSettings, Fingerprint};
use rtp_core::ice::IceConfig;
use rtp_core::session::{
    DownTrackConfig, LayerSsrc, MediaBudget, Session, SessionConfig, SessionMode, TrunkKeys,
    UpTrackConfig,
};

use crate::pool::BufId;
use crate::proto::{
    AddTrack, CreateSession, ErrorBody, ErrorCode, Subscribe, TransportMode, TrunkCrypto,
};

/// Preallocated UpTracks per session (a publisher with camera, screen and microphone fits).
pub const MAX_UP_TRACKS: usize = 8;
/// Preallocated DownTracks per session.
pub const MAX_DOWN_TRACKS: usize = 64;
/// UpTracks of a trunk session: the relayed layers it may ingest (slots are filled on
/// `add_track`; an empty one is a `None`).
pub const MAX_TRUNK_UP_TRACKS: usize = 64;

/// What the operator's configuration decides for every session a worker builds.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionPolicy {
    /// The allocator may pause simulcast subscriptions (`dataplane.congestion_pause`).
    pub congestion_pause: bool,
    /// Packets each published layer may have forwarded (`dataplane.audio_packets_per_s`,
    /// `dataplane.video_packets_per_s`; D123).
    pub media_budget: MediaBudget,
}

/// Builds the `Session` for `spec` under `policy`; `trunk_secret`: the cluster secret SRTP
/// trunks are keyed from (`dataplane.trunk_secret_file`).
pub fn session(
    now: Instant,
    spec: &CreateSession,
    cert: &DtlsCert,
    dtls: &DtlsSettings,
    policy: SessionPolicy,
    trunk_secret: Option<&[u8]>,
) -> Result<Session<BufId>, ErrorBody> {
    let mode = match &spec.mode {
        TransportMode::Webrtc {} => {
            let mut ice = IceConfig::new(spec.ice.ufrag.clone(), spec.ice.pwd.clone());
            ice.remote_ufrag = spec.ice.remote_ufrag.clone();
            SessionMode::WebRtc {
                ice,
                dtls_role: spec.dtls_role.into(),
                remote_fingerprint: spec
                    .remote_fingerprint
                    .as_deref()
                    .map(fingerprint)
                    .transpose()?,
            }
        }
        TransportMode::PlainRtp { remote, .. } => SessionMode::PlainRtp { remote: *remote },
        TransportMode::Trunk {
            remote,
            crypto,
            silence_ms,
            ..
        } => SessionMode::Trunk {
            remote: *remote,
            keys: trunk_keys(crypto, trunk_secret)?,
            silence: Duration::from_millis(u64::from(
                silence_ms.unwrap_or(sluice_proto::DEFAULT_TRUNK_SILENCE_MS),
            )),
        },
    };
    let trunk = matches!(spec.mode, TransportMode::Trunk { .. });
    let config = SessionConfig {
        mode,
        dtls: *dtls,
        srtp: Default::default(),
        nack: Default::default(),
        media_budget: policy.media_budget,
        pacer: Default::default(),
        bwe: bwe_config(spec),
        allocator: AllocatorConfig {
            allow_pause: policy.congestion_pause,
            ..AllocatorConfig::default()
        },
        max_up_tracks: if trunk {
            MAX_TRUNK_UP_TRACKS
        } else {
            MAX_UP_TRACKS
        },
        max_down_tracks: MAX_DOWN_TRACKS,
    };
    Session::new(now, config, cert)
        .map_err(|e| ErrorBody::new(ErrorCode::Rejected, format!("session: {e}")))
}

/// The session's estimator bounds from its `Quality`: the estimate never exceeds
/// `max_bitrate_bps`. A plain-RTP session gets no transport-cc or REMB feedback (the receiver
/// is not a WebRTC stack), so its estimate would stay at the generic 1 Mbit/s start forever and
/// the pacer would starve it (2.5 Mbit/s: a keyframe burst queues for ~100 ms); it starts, and
/// stays, at its quality cap instead. WebRTC sessions start at the usual estimate, capped.
pub fn bwe_config(spec: &CreateSession) -> SendSideBweConfig {
    let mut bwe = SendSideBweConfig::default();
    let cap = spec.quality.max_bitrate_bps.max(bwe.min_bps);
    bwe.max_bps = cap;
    bwe.start_bps = match spec.mode {
        TransportMode::PlainRtp { .. } | TransportMode::Trunk { .. } => cap,
        TransportMode::Webrtc {} => bwe.start_bps.min(cap),
    };
    bwe
}

/// A trunk's keys: none when trusted, else derived from the cluster secret and its identity.
fn trunk_keys(crypto: &TrunkCrypto, secret: Option<&[u8]>) -> Result<Option<TrunkKeys>, ErrorBody> {
    let TrunkCrypto::Srtp {
        local_node,
        remote_node,
        epoch,
    } = crypto
    else {
        return Ok(None);
    };
    let Some(secret) = secret else {
        return Err(ErrorBody::new(
            ErrorCode::Rejected,
            "an srtp trunk needs dataplane.trunk_secret_file, which is not configured",
        )
        .with_field("mode.crypto"));
    };
    TrunkKeys::derive(secret, local_node, remote_node, *epoch)
        .map(Some)
        .map_err(|e| {
            ErrorBody::new(ErrorCode::Invalid, format!("trunk keys: {e}")).with_field("mode.crypto")
        })
}

pub fn fingerprint(sdp: &str) -> Result<Fingerprint, ErrorBody> {
    // The wire form is the SDP attribute value, "sha-256 AB:CD:…".
    Fingerprint::parse_sdp(sdp).map_err(|e| {
        ErrorBody::new(ErrorCode::Invalid, format!("fingerprint: {e}"))
            .with_field("remote_fingerprint")
    })
}

pub fn up_track(spec: &AddTrack) -> UpTrackConfig {
    UpTrackConfig {
        kind: spec.kind.into(),
        codec: (&spec.codec).into(),
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
        ext: spec.ext_ids.into(),
        e2ee: spec.e2ee,
        mid: spec.mid.clone(),
    }
}

/// `relay_layer`: a trunk relay of that layer (`relay_track`) rather than a subscription.
pub fn down_track(
    spec: &Subscribe,
    track: &AddTrack,
    priority: u8,
    relay_layer: Option<u8>,
) -> DownTrackConfig {
    DownTrackConfig {
        kind: track.kind.into(),
        codec: (&track.codec).into(),
        clock_rate: track.codec.clock_rate,
        payload_type: spec.payload_type,
        rtx_payload_type: spec.rtx_payload_type,
        ssrc: spec.ssrc,
        rtx_ssrc: spec.rtx_ssrc,
        ext: spec.ext_ids.into(),
        e2ee: track.e2ee,
        priority,
        // The top simulcast layer the publisher sends: the forwarder targets it until the
        // allocator (or a layer cap) says otherwise, and waits for a keyframe of it.
        max_layer: u8::try_from(track.layers.len().max(1) - 1).unwrap_or(0),
        relay_layer,
        // The relays of one track's layers shed together (D109).
        relay_group: spec.track.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{DtlsRole, IceParams, Quality, SessionId};

    fn spec(mode: TransportMode, max_bitrate_bps: u64) -> CreateSession {
        CreateSession {
            session: SessionId(1),
            ice: IceParams {
                ufrag: "buildtest".into(),
                pwd: "0123456789abcdefghijklmn".into(),
                remote_ufrag: None,
                remote_pwd: None,
            },
            remote_fingerprint: None,
            dtls_role: DtlsRole::Server,
            shard_hint: None,
            mode,
            data: None,
            quality: Quality {
                max_bitrate_bps,
                priority: 1,
            },
        }
    }

    fn plain() -> TransportMode {
        TransportMode::PlainRtp {
            remote: "127.0.0.1:5000".parse().expect("addr"),
            local_port: None,
        }
    }

    #[test]
    #[allow(clippy::disallowed_methods)]
    fn plain_rtp_starts_at_its_quality_cap() {
        let b = bwe_config(&spec(plain(), 10_000_000));
        assert_eq!((b.start_bps, b.max_bps), (10_000_000, 10_000_000));
        // The session's estimate (and so its pacing rate) starts there too.
        let now = Instant::now();
        let cert = DtlsCert::generate(std::time::SystemTime::now()).expect("cert");
        let s = session(
            now,
            &spec(plain(), 10_000_000),
            &cert,
            &DtlsSettings::default(),
            SessionPolicy::default(),
            None,
        )
        .expect("session");
        assert_eq!(s.stats().estimate_bps, 10_000_000);
    }

    #[test]
    fn webrtc_starts_at_the_usual_estimate_capped_by_quality() {
        let d = SendSideBweConfig::default();
        let b = bwe_config(&spec(TransportMode::Webrtc {}, 10_000_000));
        assert_eq!((b.start_bps, b.max_bps), (d.start_bps, 10_000_000));
        let b = bwe_config(&spec(TransportMode::Webrtc {}, 300_000));
        assert_eq!((b.start_bps, b.max_bps), (300_000, 300_000));
        // Below the estimator's floor, the floor wins.
        let b = bwe_config(&spec(TransportMode::Webrtc {}, 1));
        assert_eq!(b.max_bps, d.min_bps);
    }

    /// The send history follows the cap (D116): the control daemon's 2–4 Mbit/s participants
    /// keep 2,048 records, a 10 Mbit/s session the full 8,192.
    #[test]
    fn the_send_history_follows_the_quality_cap() {
        let len = |bps| bwe_config(&spec(TransportMode::Webrtc {}, bps)).history_len();
        assert_eq!(len(2_000_000), 2_048);
        assert_eq!(len(4_000_000), 2_048);
        assert_eq!(len(10_000_000), 8_192);
    }
}
