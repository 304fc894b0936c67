//! What a subscriber's session holds on the heap: per session, and per track it receives. A
//! room of N publishers gives every subscriber a DownTrack per published track, so the room
//! costs N² of them: at 64 KiB each (a 1,024-slot NACK map on every track and a VP8 munging
//! ring on audio too) a 50-person room with audio and video was 160 MB of DownTracks. Measured
//! with a counting allocator (the bytes still held after the call), and printed.

mod session_harness;

use rtp_core::dtls::DtlsRole;
use rtp_core::forward::{Codec, MediaKind};
use rtp_core::ice::IceConfig;
use rtp_core::session::{DownTrackConfig, Session, SessionConfig, SessionMode};

use session_harness::*;

/// DownTracks added per measurement: the slot vector's growth is part of their cost.
const TRACKS: u32 = 8;

/// Heap bytes per DownTrack that adding [`TRACKS`] of `make`'s to a connected WebRTC session
/// leaves held.
fn per_track(tag: &str, make: impl Fn(u32) -> DownTrackConfig) -> u64 {
    let mut now = t0();
    let c = addr("127.0.0.1:6300");
    let (mut server, mut client) = webrtc_pair(now, tag, c);
    connect(&mut now, &mut server, &mut client, c);
    let info = allocation_counter::measure(|| {
        for i in 0..TRACKS {
            server
                .add_down_track(make(0x3000_0000 + 16 * i))
                .expect("track");
        }
    });
    info.bytes_current as u64 / u64::from(TRACKS)
}

fn audio(ssrc: u32) -> DownTrackConfig {
    DownTrackConfig {
        kind: MediaKind::Audio,
        codec: Codec::Opus,
        clock_rate: 48_000,
        payload_type: 111,
        rtx_payload_type: None,
        rtx_ssrc: None,
        ssrc,
        ..down_track()
    }
}

fn video(ssrc: u32, codec: Codec, e2ee: bool) -> DownTrackConfig {
    DownTrackConfig {
        codec,
        ssrc,
        rtx_ssrc: Some(ssrc + 1),
        e2ee,
        ..down_track()
    }
}

#[test]
fn a_down_track_holds_what_its_kind_needs() {
    let a = per_track("a", audio);
    let v = per_track("v", |s| video(s, Codec::Vp8, false));
    let h = per_track("h", |s| video(s, Codec::H264, false));
    let e = per_track("e", |s| video(s, Codec::Vp8, true));
    println!("heap per DownTrack: audio {a} B, VP8 video {v} B, H.264 video {h} B, e2ee VP8 {e} B");
    // 128 NACK-map slots; no VP8 ring.
    assert!(a <= 8 * 1024, "an audio DownTrack holds {a} B");
    // 512 slots (the shard's history of a track) and, for VP8 only, the munging ring.
    assert!(v <= 36 * 1024, "a VP8 DownTrack holds {v} B");
    assert!(
        h < v && e < v,
        "only munged VP8 keeps the VP8 ring: H.264 {h} B, e2ee {e} B"
    );
    // A 50-person room, audio and video: 98 DownTracks per subscriber, 50 subscribers.
    let room = 50 * 49 * (a + v);
    println!("a 50-person room's DownTracks: {:.1} MB", room as f64 / 1e6);
}

/// A session before any track: its fixed storage (pacer queues, BWE history and feedback
/// buffer, rings). The DownTrack slots grow with the tracks added, not reserved for the 64 a
/// session may have (44 KB); a pacer entry is 32 bytes, not 40.
#[test]
fn a_fresh_session_reserves_no_track_slots() {
    let now = t0();
    let (sc, cc) = (cert(), cert());
    let fp = cc.fingerprint();
    let info = allocation_counter::measure(|| {
        let s: Session = Session::new(
            now,
            SessionConfig::new(SessionMode::WebRtc {
                ice: IceConfig::new("smem", "server-password-mem-0123456789"),
                dtls_role: DtlsRole::Server,
                remote_fingerprint: Some(fp),
            }),
            &sc,
        )
        .expect("session");
        std::mem::forget(s);
    });
    let held = info.bytes_current as u64;
    println!("a fresh WebRTC session holds {held} B of heap");
    // 445,417 B before the slots grew on demand and the pacer entries shrank.
    assert!(held <= 384 * 1024, "a fresh session holds {held} B");
}

/// The DownTrack slots grow on demand but keep their bound (64 by default: `TooManyTracks`
/// beyond it, a removed track's slot reused), and the SRTP context is still sized for the
/// bound, not for the tracks there were at the handshake: a copy to each of the 64 is
/// protected.
#[test]
fn down_tracks_grow_to_their_bound_and_each_is_protected() {
    let mut now = t0();
    let c = addr("127.0.0.1:6301");
    let (mut server, mut client) = webrtc_pair(now, "bound", c);
    connect(&mut now, &mut server, &mut client, c);
    let mut downs = Vec::new();
    for i in 0..63 {
        downs.push(
            server
                .add_down_track(audio(0x4000_0000 + 2 * i))
                .expect("audio track"),
        );
    }
    downs.push(
        server
            .add_down_track(video(0x4100_0000, Codec::Vp8, false))
            .expect("the 64th track"),
    );
    assert!(
        server.add_down_track(audio(0x4200_0000)).is_err(),
        "a 65th DownTrack is refused"
    );
    server.remove_down_track(downs[10]);
    assert_eq!(
        server
            .add_down_track(audio(0x4300_0000))
            .expect("a freed slot"),
        downs[10],
        "the freed slot is reused"
    );
    // A published keyframe packet, forwarded to every DownTrack.
    let mut pkt = vec![0u8; 1500];
    let n = vp8_packet(0, PUB_SSRC, &mut pkt);
    let view = rtp_core::RtpView::parse(&pkt[..n]).expect("packet");
    let meta = rtp_core::session::MediaMeta {
        layer: 0,
        ext_seq: 1,
        len: n,
        keyframe: true,
    };
    let mut out = vec![0u8; 1500];
    for (h, &d) in downs.iter().enumerate() {
        let sent = server
            .forward(now, d, &view, meta, &mut out, h as u32)
            .unwrap_or_else(|e| panic!("DownTrack {h}: {e}"));
        assert!(sent.is_some(), "DownTrack {h} forwarded nothing");
    }
}
