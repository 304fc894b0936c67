//! What a subscriber's session holds on the heap per track it receives. A room of N
//! publishers gives every subscriber a DownTrack per published track, so the room costs N²
//! of them: at 64 KiB each (a 1,024-slot NACK map on every track and a VP8 munging ring on
//! audio too) a 50-person room with audio and video was 160 MB of DownTracks. Measured with a
//! counting allocator around `add_down_track` on a connected WebRTC session (the bytes still
//! held afterwards), and printed.

mod session_harness;

use rtp_core::forward::{Codec, MediaKind};
use rtp_core::session::{DownTrackConfig, Session};

use session_harness::*;

/// Heap bytes `add_down_track(cfg)` leaves held.
fn held_by(s: &mut Session, cfg: DownTrackConfig) -> u64 {
    let info = allocation_counter::measure(|| {
        s.add_down_track(cfg).expect("down track");
    });
    info.bytes_current as u64
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

fn video(ssrc: u32, codec: Codec) -> DownTrackConfig {
    DownTrackConfig {
        codec,
        ssrc,
        rtx_ssrc: Some(ssrc + 1),
        ..down_track()
    }
}

#[test]
fn a_down_track_holds_what_its_kind_needs() {
    let mut now = t0();
    let c = addr("127.0.0.1:6300");
    let (mut server, mut client) = webrtc_pair(now, "mem", c);
    connect(&mut now, &mut server, &mut client, c);
    let a = held_by(&mut server, audio(0x3000_0001));
    let v = held_by(&mut server, video(0x3000_0010, Codec::Vp8));
    let h = held_by(&mut server, video(0x3000_0020, Codec::H264));
    let mut e2ee = video(0x3000_0030, Codec::Vp8);
    e2ee.e2ee = true;
    let e = held_by(&mut server, e2ee);
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
