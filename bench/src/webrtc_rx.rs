//! The receive path of the [`webrtc_gen`](crate::webrtc_gen) peers: each socket drained until it
//! would block; connectivity checks from the SFU answered (RFC 8445 §7.3 Binding success with
//! XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY under our password, FINGERPRINT), everything else through
//! the peer's session (SRTP/SRTCP unprotect, RFC 3711 §3.3 / RFC 7714 §9.2); decrypted media
//! accounted: SSRC → stream, payload tag, window, latency, 1 in
//! [`PATTERN_SAMPLE`](crate::gen::PATTERN_SAMPLE) bodies in full. Also the session's events
//! (DTLS connected/failed) and the control datagrams it queues after input or timers.
#![allow(clippy::disallowed_methods)] // a load generator reads the clock by design

use std::net::SocketAddr;
use std::time::Instant;

use rtp_core::dtls::DtlsCert;
use rtp_core::session::{MediaMeta, Session, SessionEvent, SessionOutput};
use rtp_core::srtp::ProtectionProfile;
use rtp_core::stun::{write_binding_success, StunClass, StunMessage, StunMethod};
use rtp_core::RtpView;
use sluice_dataplane::pool::BufPool;
use sluice_dataplane::sys::{Backend, RecvMeta, Transmit};

use crate::gen::{GenReport, PATTERN_SAMPLE};
use crate::media::{body_offset, Kind};
use crate::report::BenchError;
use crate::tag::{check_pattern, Tag, TAG_LEN};
use crate::webrtc_gen::RecvStream;

/// Datagrams per `recvmmsg`/`sendmmsg`.
pub(crate) const BATCH: usize = 64;
/// Datagrams asked for by the first receive after a socket woke ([`drain`]).
const FIRST_BATCH: usize = 8;

/// One WebRTC peer: its socket, certificate, and (once signaling is done) its session.
pub(crate) struct Peer {
    pub(crate) backend: Backend,
    pub(crate) cert: DtlsCert,
    pub(crate) session: Option<Session<u32>>,
    pub(crate) local_pwd: String,
    pub(crate) receive: Vec<RecvStream>,
    /// Negotiated transport-wide-cc extension id ([`Remote::transport_cc`](crate::webrtc_gen::Remote)).
    pub(crate) transport_cc: Option<u8>,
    /// A publisher's next transport-wide sequence number (one counter per connection).
    pub(crate) transport_seq: u16,
    pub(crate) profile: Option<ProtectionProfile>,
    pub(crate) failed: Option<String>,
    /// The session's next timer as of the last [`after_input`] (`None`: not known).
    pub(crate) deadline: Option<Instant>,
}

impl Peer {
    pub(crate) fn connected(&self) -> bool {
        self.profile.is_some() && self.session.as_ref().is_some_and(Session::is_connected)
    }
}

/// Counters of the protocol work around the media.
#[derive(Debug, Clone, Copy, Default)]
pub struct ControlCounts {
    /// Connectivity checks from the SFU we answered.
    pub checks_answered: u64,
    /// Datagrams a session refused (bad SRTP tag, unknown SSRC, …).
    pub refused: u64,
}

/// The counting window and stream count of a run.
pub(crate) struct Accounting {
    pub(crate) win_start: u64,
    pub(crate) win_end: u64,
    pub(crate) n_streams: u32,
}

/// Reads `peer`'s socket until it would block: checks from the SFU answered, everything else
/// through the session; media accounted for subscriber `sub`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn drain(
    peer: &mut Peer,
    sub: Option<usize>,
    pool: &mut BufPool,
    base: Instant,
    metas: &mut [RecvMeta; BATCH],
    acct: Option<&Accounting>,
    counts: &mut ControlCounts,
    r: &mut GenReport,
) -> Result<(), BenchError> {
    // The backend readies a pool buffer for every datagram it is asked for, and a socket that
    // woke usually holds a few: the first call asks for FIRST_BATCH, later ones for a whole
    // batch. A short read means the queue was empty then; a datagram arriving later wakes the
    // (edge-triggered) poll again, so no call is spent on EAGAIN.
    let mut want = FIRST_BATCH;
    // Bounded: a socket holds a finite queue; stop after 1,024 batches regardless.
    for _ in 0..1024 {
        let n = peer.backend.recv(pool, &mut metas[..want])?;
        if n == 0 {
            break;
        }
        let now = Instant::now();
        let now_ns = now.duration_since(base).as_nanos() as u64;
        let wall = crate::tag::wall_now();
        for m in &metas[..n] {
            let at = crate::tag::arrival_ns(now_ns, wall, m.stamp);
            on_datagram(peer, sub, pool, m, now, at, acct, counts, r)?;
            pool.give(m.buf);
        }
        after_input(peer, pool, now)?;
        if n < want {
            break;
        }
        want = BATCH;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn on_datagram(
    peer: &mut Peer,
    sub: Option<usize>,
    pool: &mut BufPool,
    m: &RecvMeta,
    now: Instant,
    arrival_ns: u64,
    acct: Option<&Accounting>,
    counts: &mut ControlCounts,
    r: &mut GenReport,
) -> Result<(), BenchError> {
    if peer.session.is_none() {
        return Ok(());
    }
    let data = &pool.get(m.buf)[m.offset..m.offset + m.len];
    // RFC 7983 §7: first byte 0..=3 is STUN.
    if data.first().is_some_and(|&b| b < 4) {
        if let Ok(msg) = StunMessage::parse(data) {
            if msg.class() == StunClass::Request && msg.method() == StunMethod::Binding {
                let txid = *msg.transaction_id();
                let mut out = [0u8; 256];
                if let Ok(len) =
                    write_binding_success(&mut out, &txid, m.src, peer.local_pwd.as_bytes())
                {
                    send_bytes(&mut peer.backend, pool, &out[..len], m.src)?;
                    counts.checks_answered += 1;
                }
                return Ok(());
            }
        }
    }
    let Some(session) = peer.session.as_mut() else {
        return Ok(());
    };
    let data = &mut pool.get_mut(m.buf)[m.offset..m.offset + m.len];
    let out = match session.handle_datagram(now, m.src, data) {
        Ok(o) => o,
        Err(_) => {
            counts.refused += 1;
            return Ok(());
        }
    };
    let SessionOutput::Media {
        meta: MediaMeta { len, .. },
        ..
    } = out
    else {
        if data.len() >= 2 && (200..=206).contains(&data[1]) {
            r.rtcp += 1;
        }
        return Ok(());
    };
    let (Some(acct), Some(_)) = (acct, sub) else {
        return Ok(());
    };
    account(&data[..len], &peer.receive, arrival_ns, acct, r);
    Ok(())
}

/// Events, outputs and queued control datagrams of `peer`'s session after input or timers.
pub(crate) fn after_input(
    peer: &mut Peer,
    pool: &mut BufPool,
    now: Instant,
) -> Result<(), BenchError> {
    let Some(s) = peer.session.as_mut() else {
        return Ok(());
    };
    // Bounded by the session's queues.
    while let Some(ev) = s.poll_event() {
        match ev {
            SessionEvent::DtlsConnected { profile, .. } => peer.profile = Some(profile),
            SessionEvent::DtlsFailed { reason } => peer.failed = Some(reason),
            SessionEvent::IceDisconnected if peer.profile.is_none() => {
                peer.failed = Some("ICE checks failed".into());
            }
            _ => {}
        }
    }
    while s.poll_output().is_some() {}
    let Some(id) = pool.take() else {
        return Err(BenchError::Other("generator pool exhausted".into()));
    };
    let res = (|| {
        while let Some((n, dst)) = s.poll_transmit(now, pool.get_mut(id)) {
            let t = [Transmit {
                buf: id,
                offset: 0,
                len: n,
                dst: dst.addr,
                segment_size: None,
            }];
            peer.backend.send(pool, &t)?;
        }
        Ok::<(), std::io::Error>(())
    })();
    pool.give(id);
    res?;
    peer.deadline = s.poll_timeout();
    Ok(())
}

fn send_bytes(
    backend: &mut Backend,
    pool: &mut BufPool,
    bytes: &[u8],
    dst: SocketAddr,
) -> Result<(), BenchError> {
    let Some(id) = pool.take() else {
        return Err(BenchError::Other("generator pool exhausted".into()));
    };
    pool.get_mut(id)[..bytes.len()].copy_from_slice(bytes);
    let res = backend.send(
        pool,
        &[Transmit {
            buf: id,
            offset: 0,
            len: bytes.len(),
            dst,
            segment_size: None,
        }],
    );
    pool.give(id);
    res?;
    Ok(())
}

/// Counts one decrypted media packet: its SSRC must be one the subscriber expects, its tag the
/// stream that SSRC carries, its send time inside the window.
fn account(data: &[u8], receive: &[RecvStream], now_ns: u64, acct: &Accounting, r: &mut GenReport) {
    let Ok(view) = RtpView::parse(data) else {
        r.received_other += 1;
        return;
    };
    let Some(rs) = receive.iter().find(|s| s.ssrc == view.ssrc()) else {
        r.foreign += 1;
        return;
    };
    if rs.stream >= acct.n_streams {
        r.foreign += 1;
        return;
    }
    let payload = view.payload();
    let tag = match Tag::read(payload) {
        Ok(t) => t,
        Err(_) => {
            r.tag_errors += 1;
            return;
        }
    };
    if tag.stream != rs.stream {
        r.foreign += 1;
        return;
    }
    if !(acct.win_start..acct.win_end).contains(&tag.sent_ns) {
        r.received_other += 1;
        return;
    }
    r.received += 1;
    r.received_bytes += data.len() as u64;
    let lat = now_ns.saturating_sub(tag.sent_ns);
    r.latency_all.record(lat);
    match rs.kind {
        Kind::Audio => r.latency_audio.record(lat),
        Kind::Video => r.latency_video.record(lat),
    }
    if tag.seq.is_multiple_of(PATTERN_SAMPLE) {
        r.pattern_checked += 1;
        let off = body_offset(rs.kind, payload);
        let body = payload.get(off..payload.len() - TAG_LEN).unwrap_or(&[]);
        if !check_pattern(body, tag.seq) {
            r.pattern_errors += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::pub_ssrc;
    use crate::media::{Profile, Stream};

    #[test]
    fn account_maps_ssrc_to_stream_and_refuses_the_rest() {
        let mut s = Stream::new(Profile::AUDIO, 0, pub_ssrc(0), 0);
        let f = s.pop_due(0).expect("due");
        let mut buf = [0u8; 256];
        let n = s.write_packet(&mut buf, &f, 0, 1_000);
        buf[8..12].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        let recv = [RecvStream {
            ssrc: 0xdead_beef,
            stream: 0,
            kind: Kind::Audio,
            pt: 111,
            rtx: None,
        }];
        let acct = Accounting {
            win_start: 0,
            win_end: 10_000,
            n_streams: 2,
        };
        let mut r = GenReport::default();
        account(&buf[..n], &recv, 5_000, &acct, &mut r);
        assert_eq!((r.received, r.pattern_checked, r.pattern_errors), (1, 1, 0));
        assert_eq!(r.latency_audio.quantile(0.5), Some(4_000));
        account(&buf[..n], &[], 5_000, &acct, &mut r);
        assert_eq!(r.foreign, 1);
        let wrong = [RecvStream {
            stream: 1,
            ..recv[0]
        }];
        account(&buf[..n], &wrong, 5_000, &acct, &mut r);
        assert_eq!(r.foreign, 2);
    }
}
