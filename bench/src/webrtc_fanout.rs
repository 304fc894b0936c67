//! `fanout --cipher gcm|cm` against Sluice: the same run as the plain-RTP one, but every
//! publisher and subscriber is a real WebRTC peer ([`webrtc_gen`](crate::webrtc_gen)): WebRTC
//! sessions created over the control socket the way the dataplane's own WebRTC tests do
//! (`CreateSession` with our fingerprint, the dataplane as ICE-lite DTLS server), ICE + DTLS
//! through the dataplane, then tracks and subscriptions, then SRTP media.
//!
//! The SRTP profile is what the DTLS server picks from the peers' fixed offer (dimpl's client:
//! AES-256-GCM, AES-128-GCM, AES-CM). `--cipher gcm` peers offer DTLS 1.3 and dimpl's server
//! picks AES-256-GCM; `--cipher cm` peers offer DTLS 1.2 only, which Sluice's own DTLS 1.2
//! server answers with its `srtp_profiles` preference — the in-process dataplane is started
//! with AES-CM alone. `--cipher` still checks the negotiated profile against the one asked for
//! (an attached dataplane has its own preference) and refuses the run when they differ, rather
//! than report a different cipher's figures.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use sluice_dataplane::sys::affinity;
use sluice_proto::{
    Command, ControlClient, CreateSession, DtlsRole, ExtIds, Hello, IceParams, Quality, ReplyOk,
    SessionId, ShardStats, Subscribe, SubscriptionId, TrackId, TransportMode,
};

use crate::fanout::{self, Cipher, FanoutConfig, FanoutReport, Sfu, Window};
use crate::gen::{sub_ssrc, GenReport, Plan};
use crate::media::{Kind, AUDIO_PT, VIDEO_PT};
use crate::report::BenchError;
use crate::webrtc_gen::{cipher_name, profile_name, Edge, RecvStream, Remote, Side, WebRtcGen};
use rtp_core::dtls::ClientVersion;

/// ICE password of every SFU session (the ufrag tells them apart).
const SERVER_PWD: &str = "sluicebenchserverpwd0123";
const CLIENT_PWD: &str = "sluicebenchclientpwd0123";
/// The transport-wide-cc extension id every peer negotiates, as a browser does with the SFU: the
/// id the SFU forwards with (`ExtIds::FORWARDED`), offered to subscribers, and the publishers' own.
const TRANSPORT_CC_ID: u8 = 3;

/// Header-extension ids of every track and subscription: transport-wide-cc only.
fn ext_ids() -> ExtIds {
    ExtIds {
        transport_cc: Some(TRANSPORT_CC_ID),
        ..ExtIds::default()
    }
}

/// What one WebRTC fanout needs from the [`Sfu`].
#[derive(Debug, Clone)]
pub struct Target {
    pub control_socket: std::path::PathBuf,
    pub media_addrs: Vec<SocketAddr>,
    pub pid: Option<String>,
    pub id_base: u64,
}

/// Runs one WebRTC fanout; the generator (and its control connection) run on a thread pinned
/// to `cfg.generator_core`.
pub fn run(sfu: &mut Sfu, cfg: &FanoutConfig) -> Result<FanoutReport, BenchError> {
    let mut attempt = 0;
    let mut before = None;
    // Bounded: at most 1 + DISTURBED_RETRIES runs.
    loop {
        let target = sfu.webrtc_target();
        if attempt == 0 {
            // Before the first attempt: a re-measured step's sessions reuse what the first
            // attempt's freed.
            before = crate::memory::Before::read(target.pid.as_deref());
        }
        let cfg2 = cfg.clone();
        let t = std::thread::Builder::new()
            .name("sluice-bench-webrtc".into())
            .spawn(move || {
                let _ = affinity::pin_current_thread(cfg2.generator_core);
                body(&target, &cfg2)
            })?;
        let (gen, (window_stats, worker_stats), setup_s, profile, wait, after) = t
            .join()
            .map_err(|_| BenchError::Other("WebRTC generator panicked".into()))??;
        if disturbed(wait, gen.window_s) && attempt < DISTURBED_RETRIES {
            eprintln!(
                "sluice-bench: {} subscribers: the generator waited {:.2} s of the {:.1} s window \
                 for its core (other processes); measuring the step again",
                cfg.subscribers,
                wait.unwrap_or(0.0),
                gen.window_s
            );
            attempt += 1;
            continue;
        }
        return Ok(FanoutReport {
            config: cfg.clone(),
            gen,
            workers: sfu.workers,
            io_mode: sfu.io_mode.clone(),
            worker_stats,
            window_stats,
            setup_s,
            srtp_profile: profile,
            sfu_memory: before
                .clone()
                .zip(after)
                .map(|(b, a)| b.with(a, cfg.subscribers, attempt + 1)),
        });
    }
}

/// Re-measurements of a step whose generator was starved by other processes.
pub const DISTURBED_RETRIES: u32 = 2;

/// A window is disturbed when the generator thread spent more than a fifth of it runnable but
/// waiting for its core: its receive times (latency) then measure the machine's other load.
pub fn disturbed(runqueue_wait_s: Option<f64>, window_s: f64) -> bool {
    runqueue_wait_s.is_some_and(|w| w > 0.2 * window_s)
}

type Outcome = (
    GenReport,
    // Workers' snapshots around the measurement window, and their last.
    (Window, BTreeMap<u16, ShardStats>),
    f64,
    Option<&'static str>,
    Option<f64>,
    // The SFU's resident memory with the run's sessions still open.
    Option<crate::memory::Resident>,
);

fn body(t: &Target, cfg: &FanoutConfig) -> Result<Outcome, BenchError> {
    let plan = Plan {
        publishers: cfg.publishers,
        subscribers: cfg.subscribers,
        audio: cfg.audio,
        video: cfg.video,
        warmup: cfg.warmup,
        duration: cfg.duration,
        drain: cfg.drain,
        core: cfg.generator_core,
        // The WebRTC generator runs on one thread.
        rx_cores: Vec::new(),
        near: None,
        kernel_arrival: cfg.kernel_arrival,
    };
    let setup_start = Instant::now();
    let ctl_err = |e: sluice_proto::ControlError| BenchError::Control(e.to_string());
    let mut ctl = ControlClient::connect(&t.control_socket).map_err(ctl_err)?;
    ctl.set_timeout(Duration::from_secs(10));
    let hello = ctl.hello(Hello::control("sluice-bench")).map_err(ctl_err)?;
    let server_fp = hello
        .fingerprint
        .ok_or_else(|| BenchError::Control("dataplane announced no DTLS fingerprint".into()))?;
    let mut g = WebRtcGen::open(&plan, IpAddr::V4(Ipv4Addr::LOCALHOST))?;
    let mut created = Vec::new();
    let res = setup(&mut ctl, &mut g, t, cfg, &plan, &server_fp, &mut created);
    let setup_s = setup_start.elapsed().as_secs_f64();
    let mut stats = || match ctl.request(Command::Stats {}) {
        Ok(ReplyOk::Stats { shards }) => shards.into_iter().map(|w| (w.shard, w)).collect(),
        _ => BTreeMap::new(),
    };
    let before = stats();
    let (mut opened, mut closed) = (BTreeMap::new(), BTreeMap::new());
    let outcome = res.and_then(|()| {
        g.run_marking(&plan, t.pid.as_deref(), &mut |edge| match edge {
            Edge::Opened => opened = stats(),
            Edge::Closed => closed = stats(),
        })
    });
    let last = stats();
    let stats = (Window::pick(&before, &opened, &closed, &last), last);
    let sfu_memory = t.pid.as_deref().and_then(crate::memory::resident);
    for &s in &created {
        let _ = ctl.request(Command::CloseSession { session: s });
    }
    let mut gen = outcome?;
    // Datagrams a session refused (SRTP authentication failures among them).
    gen.received_other += g.counts.refused;
    Ok((
        gen,
        stats,
        setup_s,
        g.profile().map(profile_name),
        g.runqueue_wait_s,
        sfu_memory,
    ))
}

#[allow(clippy::too_many_arguments)]
fn setup(
    ctl: &mut ControlClient,
    g: &mut WebRtcGen,
    t: &Target,
    cfg: &FanoutConfig,
    plan: &Plan,
    server_fp: &str,
    created: &mut Vec<SessionId>,
) -> Result<(), BenchError> {
    let mut req = |c: Command| {
        ctl.request(c)
            .map_err(|e| BenchError::Control(e.to_string()))
    };
    let base = t.id_base;
    let sides = [
        (Side::Publisher, g.endpoints(Side::Publisher)?, 0u64),
        (Side::Subscriber, g.endpoints(Side::Subscriber)?, 0x1000u64),
    ];
    for (side, eps, off) in &sides {
        for (i, ep) in eps.iter().enumerate() {
            let id = SessionId(base + off + i as u64);
            let ufrag = format!("sb{}", id.0);
            req(Command::CreateSession(CreateSession {
                session: id,
                ice: IceParams {
                    ufrag: ufrag.clone(),
                    pwd: SERVER_PWD.into(),
                    remote_ufrag: None,
                    remote_pwd: None,
                },
                remote_fingerprint: Some(ep.fingerprint.clone()),
                dtls_role: DtlsRole::Server,
                shard_hint: None,
                mode: TransportMode::Webrtc {},
                data: None,
                quality: Quality {
                    max_bitrate_bps: cfg.max_bitrate_bps,
                    priority: 1,
                },
            }))?;
            created.push(id);
            let receive = if *side == Side::Subscriber {
                plan.streams()
                    .map(|(_, sid, kind)| RecvStream {
                        ssrc: sub_ssrc(i as u32, sid),
                        stream: sid,
                        kind,
                        pt: pt_of(kind),
                        rtx: rtx_of(i as u32, sid, kind),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            g.start_peer(
                *side,
                i,
                &Remote {
                    server: t.media_addrs[i % t.media_addrs.len()],
                    local_ufrag: format!("cl{}", id.0),
                    local_pwd: CLIENT_PWD.into(),
                    remote_ufrag: ufrag,
                    remote_pwd: SERVER_PWD.into(),
                    server_fingerprint: server_fp.to_string(),
                    tie_breaker: None,
                    receive,
                    transport_cc: Some(TRANSPORT_CC_ID),
                    dtls_version: match cfg.cipher {
                        Cipher::Cm => ClientVersion::Dtls12,
                        _ => ClientVersion::Auto,
                    },
                },
            )?;
        }
    }
    let timeout = Duration::from_secs(10) + Duration::from_millis(20) * plan.subscribers;
    let profile = g.handshake(timeout)?;
    let got = profile.map(cipher_name).unwrap_or("none");
    if got != cfg.cipher.name() {
        return Err(BenchError::Unsupported(format!(
            "--cipher {} asked, but the DTLS handshake negotiated {got}: the dataplane's \
             dataplane.srtp_profiles prefers another profile",
            cfg.cipher.name()
        )));
    }
    for (p, sid, kind) in plan.streams() {
        let mut track = fanout::track(
            SessionId(base + u64::from(p)),
            TrackId(base + u64::from(sid)),
            kind,
            sid,
        );
        if let Command::AddTrack(t) = &mut track {
            t.ext_ids = ext_ids();
        }
        req(track)?;
    }
    for j in 0..plan.subscribers {
        let id = SessionId(base + 0x1000 + u64::from(j));
        for (_, sid, kind) in plan.streams() {
            req(Command::Subscribe(Subscribe {
                subscription: SubscriptionId(base + (u64::from(j) << 8) + u64::from(sid)),
                session: id,
                track: TrackId(base + u64::from(sid)),
                ssrc: sub_ssrc(j, sid),
                rtx_ssrc: rtx_of(j, sid, kind).map(|(ssrc, _)| ssrc),
                payload_type: pt_of(kind),
                rtx_payload_type: rtx_of(j, sid, kind).map(|(_, pt)| pt),
                ext_ids: ext_ids(),
            }))?;
        }
    }
    Ok(())
}

/// Subscribers negotiate RTX for video as browsers do (RFC 4588, `a=ssrc-group:FID`): the SFU
/// retransmits and probes on it. SSRC: the media SSRC with the top bit flipped.
fn rtx_of(sub: u32, stream: u32, kind: Kind) -> Option<(u32, u8)> {
    (kind == Kind::Video).then(|| (sub_ssrc(sub, stream) ^ 0x8000_0000, VIDEO_RTX_PT))
}

/// The video RTX payload type the generator's subscribers negotiate.
const VIDEO_RTX_PT: u8 = 97;

fn pt_of(kind: Kind) -> u8 {
    match kind {
        Kind::Audio => AUDIO_PT,
        Kind::Video => VIDEO_PT,
    }
}

/// Which `--cipher` values this module serves.
pub fn serves(c: Cipher) -> bool {
    c != Cipher::None
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_dataplane::config::IoChoice;

    /// `fanout --cipher gcm` with a handful of WebRTC subscribers for about a second against an
    /// in-process dataplane: every peer connects (ICE, DTLS, SRTP-GCM), the window's packets
    /// arrive decrypted and verified.
    #[test]
    fn short_gcm_run_delivers_over_srtp() {
        let cores = affinity::online_cores().expect("affinity");
        let mut cfg = FanoutConfig::default_for(&cores, 4, Duration::from_millis(800));
        cfg.warmup = Duration::from_millis(400);
        cfg.cipher = Cipher::Gcm;
        cfg.buffers_per_worker = 4096;
        cfg.io = IoChoice::Socket;
        let mut sfu = Sfu::start(&cfg).expect("dataplane starts");
        let r = fanout::run(&mut sfu, &cfg).expect("fanout runs");
        sfu.stop();
        let g = &r.gen;
        println!("{}", r.to_json(None));
        assert!(g.sent_in_window > 0);
        assert_eq!(g.expected, g.sent_in_window * 4);
        assert_eq!((g.foreign, g.tag_errors, g.pattern_errors), (0, 0, 0));
        assert!(g.received > 0, "nothing delivered: {}", r.to_json(None));
        assert!(r.loss() < 0.05, "loss {}", r.loss());
    }

    #[test]
    fn a_window_is_disturbed_past_a_fifth_of_waiting() {
        assert!(!disturbed(None, 2.0));
        assert!(!disturbed(Some(0.39), 2.0));
        assert!(disturbed(Some(0.41), 2.0));
    }

    /// `--cipher cm`: the peers offer DTLS 1.2 only, the in-process dataplane prefers AES-CM
    /// (`srtp_profiles`), and the run measures AES-CM.
    #[test]
    fn cm_is_negotiated_through_the_dtls12_server() {
        let cores = affinity::online_cores().expect("affinity");
        let mut cfg = FanoutConfig::default_for(&cores, 1, Duration::from_millis(200));
        cfg.warmup = Duration::from_millis(100);
        cfg.cipher = Cipher::Cm;
        cfg.buffers_per_worker = 1024;
        cfg.io = IoChoice::Socket;
        let mut sfu = Sfu::start(&cfg).expect("dataplane starts");
        let r = fanout::run(&mut sfu, &cfg);
        sfu.stop();
        let r = r.expect("a cm run");
        assert_eq!(r.config.cipher, Cipher::Cm);
        assert_eq!(r.srtp_profile, Some("SRTP_AES128_CM_HMAC_SHA1_80"));
    }
}
