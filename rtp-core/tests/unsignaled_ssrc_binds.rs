//! Streams the offer did not name (issue 20): GStreamer's webrtcbin often offers video without
//! `a=ssrc` and sends no MID extension, and every packet was dropped as `unknown_ssrc`. An SSRC
//! no track claims is bound by the MID extension when the packet carries one (it names the m=
//! section and decides alone), else by a payload type exactly one published track uses, media or
//! RTX (RFC 8843 §9.2). Simulcast layers are only ever told apart by RID (RFC 8853), and a
//! binding fills an empty slot: a second SSRC for the same stream stays unknown.

mod session_harness;

use std::time::Instant;

use rtp_core::forward::{Codec, MediaKind};
use rtp_core::packet::{write_rtp_header, RtpHeader};
use rtp_core::session::{
    ExtIds, LayerSsrc, Session, SessionError, SessionEvent, SessionOutput, SsrcBinding,
};

use session_harness::*;

const PT_OPUS: u8 = 111;
const MID_ID: u8 = 1;

/// A one-packet VP8 keyframe (or an RTX packet carrying OSN `osn`) with optional MID.
fn packet(pt: u8, ssrc: u32, seq: u16, mid: Option<&[u8]>, out: &mut [u8]) -> usize {
    let ext: Vec<(u8, &[u8])> = mid.map(|m| (MID_ID, m)).into_iter().collect();
    let h = write_rtp_header(
        &RtpHeader {
            pt,
            marker: true,
            seq,
            ts: u32::from(seq) * 3000,
            ssrc,
            csrcs: &[],
            extensions: &ext,
        },
        out,
    )
    .expect("header");
    let mut p = h;
    if pt == PT_RTX {
        out[p..p + 2].copy_from_slice(&seq.to_be_bytes()); // OSN
        p += 2;
    }
    out[p] = 0x10;
    out[p + 1] = 0x00;
    let len = p + 2 + 100;
    out[p + 2..len].fill(0xab);
    len
}

/// A publisher's section: one unsignaled layer.
fn ssrc_less(
    kind: MediaKind,
    pt: u8,
    rtx: Option<u8>,
    mid: &str,
) -> rtp_core::session::UpTrackConfig {
    let mut t = up_track(pt, PT_RTX, 0, 0);
    t.kind = kind;
    if kind == MediaKind::Audio {
        t.codec = Codec::Opus;
        t.clock_rate = 48_000;
    }
    t.rtx_payload_type = rtx;
    t.layers = vec![LayerSsrc::default()];
    t.mid = Some(mid.into());
    t
}

struct Pub {
    server: Session,
    client: Session,
    now: Instant,
    buf: Vec<u8>,
}

impl Pub {
    fn new() -> Self {
        let now = t0();
        let (server, client) = plain_pair(now, addr("127.0.0.1:6001"));
        Self {
            server,
            client,
            now,
            buf: vec![0u8; 1500],
        }
    }

    fn send(
        &mut self,
        pt: u8,
        ssrc: u32,
        seq: u16,
        mid: Option<&[u8]>,
    ) -> Result<SessionOutput, SessionError> {
        let n = packet(pt, ssrc, seq, mid, &mut self.buf);
        let (len, _) = self
            .client
            .protect_outgoing(self.now, &mut self.buf, n)
            .unwrap();
        self.server
            .handle_datagram(self.now, addr("127.0.0.1:6001"), &mut self.buf[..len])
    }

    fn bound(&mut self) -> Vec<(u16, u32, bool, SsrcBinding)> {
        let mut out = Vec::new();
        while let Some(e) = self.server.poll_event() {
            if let SessionEvent::SsrcBound {
                up, ssrc, rtx, by, ..
            } = e
            {
                out.push((up.0, ssrc, rtx, by));
            }
        }
        out
    }
}

fn media_of(r: Result<SessionOutput, SessionError>) -> u16 {
    match r {
        Ok(SessionOutput::Media { up, .. }) => up.0,
        other => panic!("expected media, got {other:?}"),
    }
}

#[test]
fn ssrc_less_video_and_audio_bind_by_payload_type() {
    let mut p = Pub::new();
    p.server
        .add_up_track(ssrc_less(MediaKind::Audio, PT_OPUS, None, "0"))
        .unwrap();
    p.server
        .add_up_track(ssrc_less(MediaKind::Video, PT_VP8, Some(PT_RTX), "1"))
        .unwrap();
    // GStreamer: random SSRCs, no MID extension, payload types unique in the bundle.
    for seq in 0..20 {
        assert_eq!(media_of(p.send(PT_VP8, 0xdead_0001, 100 + seq, None)), 1);
        assert_eq!(media_of(p.send(PT_OPUS, 0xdead_0002, 500 + seq, None)), 0);
    }
    // RTX on its own payload type binds the layer's RTX stream and is unpacked into the media.
    assert_eq!(media_of(p.send(PT_RTX, 0xdead_0003, 110, None)), 1);
    assert_eq!(p.server.stats().rtx_in, 1);
    assert_eq!(
        p.bound(),
        vec![
            (1, 0xdead_0001, false, SsrcBinding::PayloadType),
            (0, 0xdead_0002, false, SsrcBinding::PayloadType),
            (1, 0xdead_0003, true, SsrcBinding::PayloadType),
        ]
    );
    assert_eq!(p.server.stats().unsignaled_bound, 3);
    // The slot is taken: another SSRC on the same payload type is not a second stream.
    assert!(matches!(
        p.send(PT_VP8, 0xdead_0004, 1, None),
        Err(SessionError::UnknownSsrc)
    ));
    assert_eq!(p.server.stats().drop_unknown_ssrc, 1);
    assert_eq!(p.server.stats().unsignaled_bound, 3);
}

#[test]
fn mid_extension_decides_when_payload_types_are_shared() {
    let mut p = Pub::new();
    // Two video sections with the same payload type (aiortc and browsers reuse PTs).
    for mid in ["0", "1"] {
        let mut t = ssrc_less(MediaKind::Video, PT_VP8, None, mid);
        t.ext = ExtIds {
            mid: Some(MID_ID),
            ..ExtIds::default()
        };
        p.server.add_up_track(t).unwrap();
    }
    // Without a MID the payload type is ambiguous: not bound.
    assert!(matches!(
        p.send(PT_VP8, 0xaaaa_0001, 1, None),
        Err(SessionError::UnknownSsrc)
    ));
    assert_eq!(media_of(p.send(PT_VP8, 0xaaaa_0001, 2, Some(b"1"))), 1);
    assert_eq!(media_of(p.send(PT_VP8, 0xaaaa_0002, 1, Some(b"0"))), 0);
    // Once bound, packets without the extension still route by SSRC.
    assert_eq!(media_of(p.send(PT_VP8, 0xaaaa_0001, 3, None)), 1);
    // A MID naming no section binds nothing, even where the payload type alone would.
    assert!(matches!(
        p.send(PT_VP8, 0xaaaa_0003, 1, Some(b"9")),
        Err(SessionError::UnknownSsrc)
    ));
    assert_eq!(
        p.bound(),
        vec![
            (1, 0xaaaa_0001, false, SsrcBinding::Mid),
            (0, 0xaaaa_0002, false, SsrcBinding::Mid),
        ]
    );
}

#[test]
fn simulcast_and_signalled_tracks_are_not_bound_by_payload_type() {
    let mut p = Pub::new();
    // A simulcast track: layers by RID only (RFC 8853).
    let mut sim = ssrc_less(MediaKind::Video, PT_VP8, None, "0");
    sim.layers = ["l", "h"]
        .map(|r| LayerSsrc {
            rid: Some(r.into()),
            ..LayerSsrc::default()
        })
        .to_vec();
    sim.ext = ExtIds {
        rid: Some(4),
        ..ExtIds::default()
    };
    p.server.add_up_track(sim).unwrap();
    assert!(matches!(
        p.send(PT_VP8, 0xbbbb_0001, 1, None),
        Err(SessionError::UnknownSsrc)
    ));
    // A signalled track keeps its SSRC: a stranger on its payload type is refused.
    let mut p = Pub::new();
    p.server
        .add_up_track(up_track(PT_VP8, PT_RTX, PUB_SSRC, PUB_RTX_SSRC))
        .unwrap();
    assert!(matches!(
        p.send(PT_VP8, 0xbbbb_0002, 1, None),
        Err(SessionError::UnknownSsrc)
    ));
    assert_eq!(media_of(p.send(PT_VP8, PUB_SSRC, 1, None)), 0);
    assert!(p.bound().is_empty());
    assert_eq!(p.server.stats().unsignaled_bound, 0);
}
