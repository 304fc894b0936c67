//! One ramp step against Janus VideoRoom, run inside Janus's network namespace by the hidden
//! `janus-client step` command: a room; P publishers that join as publishers with our SDP offer
//! and apply Janus's answer; S subscribers that join as subscribers to every publisher's feed,
//! answer Janus's offer `recvonly` and `start`; then ICE + DTLS + SRTP with the
//! [`webrtc_gen`](crate::webrtc_gen) peers against Janus's candidate, the same media, window,
//! tag/latency/loss accounting as the Sluice runs, and Janus's CPU from `/proc/<pid>`. The room
//! and the Janus session are destroyed on every exit path.
//!
//! ICE roles: for a publisher we are the offerer, hence controlling (RFC 8445 §6.1.1); for a
//! subscriber Janus offers and starts controlling, so our checks carry the largest possible
//! tie-breaker and Janus's agent switches to controlled (RFC 8445 §7.3.1.1). Janus's own checks
//! towards our candidate are answered by the generator.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rtp_core::dtls::ClientVersion;
use serde_json::{json, Value};

use super::api::Api;
use super::sdp::{self, Local};
use crate::fanout::generator_verdict;
use crate::gen::{pub_ssrc, Plan};
use crate::media::{Kind, AUDIO_PT, VIDEO_PT};
use crate::report::{round, BenchError};
use crate::webrtc_gen::{profile_name, RecvStream, Remote, Side, WebRtcGen, WINNING_TIE_BREAKER};

/// Longest wait for one Janus event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(5);
const ICE_PWD: &str = "sluicebenchjanuspwd01234";

/// What a step runs.
#[derive(Debug, Clone)]
pub struct StepArgs {
    pub plan: Plan,
    /// `/proc` name of Janus's process.
    pub janus_pid: Option<String>,
}

impl StepArgs {
    /// `janus-client step` arguments: `subs pubs audio(0|1) video(0|1) warmup_ms duration_ms
    /// drain_ms core janus_pid kernel_arrival(0|1)`.
    pub fn parse(a: &[String]) -> Result<StepArgs, BenchError> {
        let n = |i: usize| -> Result<u64, BenchError> {
            a.get(i)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| BenchError::Other(format!("janus-client step: argument {i}")))
        };
        let ms = |i: usize| n(i).map(Duration::from_millis);
        Ok(StepArgs {
            plan: Plan {
                subscribers: n(0)? as u32,
                publishers: n(1)? as u32,
                audio: n(2)? != 0,
                video: n(3)? != 0,
                warmup: ms(4)?,
                duration: ms(5)?,
                drain: ms(6)?,
                core: n(7)? as usize,
                // The WebRTC generator runs on one thread.
                rx_cores: Vec::new(),
                near: None,
                // Older callers passed nine arguments: the kernel's stamp unless told `0`.
                kernel_arrival: a.get(9).is_none_or(|s| s.as_str() != "0"),
            },
            janus_pid: a.get(8).filter(|s| s.as_str() != "-").cloned(),
        })
    }

    /// The inverse of [`StepArgs::parse`].
    pub fn to_args(&self) -> Vec<String> {
        let p = &self.plan;
        vec![
            p.subscribers.to_string(),
            p.publishers.to_string(),
            u8::from(p.audio).to_string(),
            u8::from(p.video).to_string(),
            p.warmup.as_millis().to_string(),
            p.duration.as_millis().to_string(),
            p.drain.as_millis().to_string(),
            p.core.to_string(),
            self.janus_pid.clone().unwrap_or_else(|| "-".into()),
            u8::from(p.kernel_arrival).to_string(),
        ]
    }
}

/// Runs one step; the answer is the step's figures as JSON (see [`point_json`]).
pub fn run(api: &Api, a: &StepArgs) -> Result<Value, BenchError> {
    let _ = sluice_dataplane::sys::affinity::pin_current_thread(a.plan.core);
    let session = api.create_session()?;
    let res = run_in(api, session, a);
    // Destroying the session hangs up every handle (and their PeerConnections).
    let _ = api.destroy_session(session);
    res
}

fn run_in(api: &Api, session: u64, a: &StepArgs) -> Result<Value, BenchError> {
    let plan = &a.plan;
    let setup_start = Instant::now();
    let admin = api.attach_videoroom(session)?;
    let room = 5000 + u64::from(std::process::id() % 100_000);
    api.videoroom(
        session,
        admin,
        json!({"request": "create", "room": room, "publishers": plan.publishers.max(1),
               "audiocodec": "opus", "videocodec": "vp8", "bitrate": 0,
               "notify_joining": false, "permanent": false}),
    )?;
    let res = (|| {
        let mut g = WebRtcGen::open(plan, IpAddr::V4(super::GENERATOR_IP.parse().expect("ip")))?;
        let janus_ip = IpAddr::V4(super::JANUS_IP.parse::<Ipv4Addr>().expect("ip"));
        let mut pending = Vec::new();
        let feeds = publish(api, session, room, &mut g, plan, janus_ip, &mut pending)?;
        g.handshake(Duration::from_secs(10))?;
        subscribe(api, session, room, &mut g, janus_ip, &feeds, &mut pending)?;
        let timeout = Duration::from_secs(10) + Duration::from_millis(20) * plan.subscribers;
        let profile = g.handshake(timeout)?;
        let setup_s = setup_start.elapsed().as_secs_f64();
        let r = g.run(plan, a.janus_pid.as_deref())?;
        let window = r.window_s.max(1e-9);
        let janus_cpu: f64 = r.sfu_cpu.iter().map(|(_, _, s)| s).sum();
        Ok(json!({
            "subscribers": plan.subscribers,
            "delivered_pps": r.delivered_pps(),
            "delivered_mbit_s": r.delivered_bps() / 1e6,
            "loss": r.loss(),
            "p50_ms": r.latency_all.quantile(0.5).unwrap_or(0) as f64 / 1e6,
            "p99_ms": r.latency_all.quantile(0.99).unwrap_or(0) as f64 / 1e6,
            "sfu_busy": janus_cpu / window,
            "generator_busy": r.busy,
            "generator_limited": generator_verdict(&r).starts_with("MAY BE"),
            "detail": {
                "setup_s": round(setup_s, 3),
                "srtp_profile": profile.map(profile_name),
                "sent_in_window": r.sent_in_window,
                "expected": r.expected,
                "received": r.received,
                "tag_errors": r.tag_errors,
                "foreign": r.foreign,
                "pattern_checked": r.pattern_checked,
                "pattern_errors": r.pattern_errors,
                "rtcp": r.rtcp,
                "janus_checks_answered": g.counts.checks_answered,
                "refused": g.counts.refused,
                "rx_queue_drops": r.rx_queue_drops,
                "janus_threads": r.sfu_cpu.len(),
                "generator_runqueue_wait_s": g.runqueue_wait_s.map(|w| round(w, 3)),
                "max_send_lateness_ms": round(r.max_send_lateness_ns as f64 / 1e6, 1),
                "generator_verdict": generator_verdict(&r),
            },
        }))
    })();
    let _ = api.videoroom(session, admin, json!({"request": "destroy", "room": room}));
    res
}

fn local_of(ufrag: String, ep: &crate::webrtc_gen::Endpoint) -> Local {
    Local {
        ufrag,
        pwd: ICE_PWD.into(),
        fingerprint: ep.fingerprint.clone(),
        candidate: ep.addr,
    }
}

fn remote_of(l: &Local, d: &sdp::Remote, janus_ip: IpAddr) -> Result<Remote, BenchError> {
    let server: SocketAddr = d
        .candidate_on(janus_ip)
        .ok_or_else(|| BenchError::Other("Janus's SDP has no UDP candidate".into()))?;
    Ok(Remote {
        server,
        local_ufrag: l.ufrag.clone(),
        local_pwd: l.pwd.clone(),
        remote_ufrag: d.ufrag.clone(),
        remote_pwd: d.pwd.clone(),
        server_fingerprint: d.fingerprint.clone(),
        tie_breaker: Some(WINNING_TIE_BREAKER),
        receive: Vec::new(),
        dtls_version: ClientVersion::Auto,
        // Our offer and answer to Janus negotiate no transport-wide-cc: Janus 1.1.2 paces
        // nothing and estimates no bandwidth towards subscribers, so feedback would only add
        // RTCP for it to parse.
        transport_cc: None,
    })
}

/// Joins every publisher with its offer and starts its peer; returns the feed ids.
fn publish(
    api: &Api,
    session: u64,
    room: u64,
    g: &mut WebRtcGen,
    plan: &Plan,
    janus_ip: IpAddr,
    pending: &mut Vec<Value>,
) -> Result<Vec<u64>, BenchError> {
    let eps = g.endpoints(Side::Publisher)?;
    let mut feeds = Vec::new();
    for (p, ep) in eps.iter().enumerate() {
        let h = api.attach_videoroom(session)?;
        let l = local_of(format!("pub{p}"), ep);
        let ssrcs = (pub_ssrc(2 * p as u32), pub_ssrc(2 * p as u32 + 1));
        let offer = sdp::publisher_offer(&l, (AUDIO_PT, VIDEO_PT), ssrcs, p as u64 + 1);
        let txn = format!("pub{p}");
        api.message_async(
            session,
            h,
            json!({"request": "joinandconfigure", "room": room, "ptype": "publisher",
                   "display": txn, "audio": plan.audio, "video": plan.video}),
            Some(json!({"type": "offer", "sdp": offer, "trickle": false})),
            &txn,
        )?;
        let ev = api.wait_event(session, &txn, pending, EVENT_TIMEOUT)?;
        let answer = ev["jsep"]["sdp"]
            .as_str()
            .ok_or_else(|| BenchError::Other(format!("publisher {p}: no JSEP answer: {ev}")))?;
        let feed = ev["plugindata"]["data"]["id"]
            .as_u64()
            .ok_or_else(|| BenchError::Other(format!("publisher {p}: no feed id: {ev}")))?;
        let d = sdp::parse(answer)?;
        g.start_peer(Side::Publisher, p, &remote_of(&l, &d, janus_ip)?)?;
        feeds.push(feed);
    }
    Ok(feeds)
}

/// Joins every subscriber to every feed, answers Janus's offer and starts its peer, keeping the
/// peers already started serviced in between.
#[allow(clippy::too_many_arguments)]
fn subscribe(
    api: &Api,
    session: u64,
    room: u64,
    g: &mut WebRtcGen,
    janus_ip: IpAddr,
    feeds: &[u64],
    pending: &mut Vec<Value>,
) -> Result<(), BenchError> {
    let eps = g.endpoints(Side::Subscriber)?;
    let streams: Vec<Value> = feeds.iter().map(|f| json!({"feed": f})).collect();
    for (j, ep) in eps.iter().enumerate() {
        let h = api.attach_videoroom(session)?;
        // Janus lists a feed only once its PeerConnection is up on Janus's side, which can
        // trail our DTLS by a few milliseconds (more on a loaded machine): retry "No such
        // feed" for up to 3 s, keeping the peers serviced.
        let mut attempt = 0;
        let ev = loop {
            let txn = format!("sub{j}.{attempt}");
            api.message_async(
                session,
                h,
                json!({"request": "join", "room": room, "ptype": "subscriber",
                       "streams": streams}),
                None,
                &txn,
            )?;
            match api.wait_event(session, &txn, pending, EVENT_TIMEOUT) {
                Err(e) if attempt < 30 && e.to_string().contains("No such feed") => {
                    attempt += 1;
                    let until = Instant::now() + Duration::from_millis(100);
                    while Instant::now() < until {
                        g.pump()?;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                other => break other?,
            }
        };
        let offer = ev["jsep"]["sdp"]
            .as_str()
            .ok_or_else(|| BenchError::Other(format!("subscriber {j}: no JSEP offer: {ev}")))?;
        let d = sdp::parse(offer)?;
        let l = local_of(format!("sub{j}"), ep);
        let (answer, accepted) = sdp::subscriber_answer(&d, &l, j as u64 + 100)?;
        let mut remote = remote_of(&l, &d, janus_ip)?;
        for a in &accepted {
            let mid = d.media[a.index].mid.clone().unwrap_or_default();
            let stream = stream_of(&ev["plugindata"]["data"]["streams"], &mid, feeds)
                .filter(|s| s.1 == if a.audio { Kind::Audio } else { Kind::Video })
                .ok_or_else(|| {
                    BenchError::Other(format!("subscriber {j}: mid {mid} names no feed stream"))
                })?;
            remote.receive.push(RecvStream {
                ssrc: a.ssrc,
                stream: stream.0,
                kind: stream.1,
                pt: a.pt,
                rtx: None,
            });
        }
        let stxn = format!("start{j}");
        api.message_async(
            session,
            h,
            json!({"request": "start"}),
            Some(json!({"type": "answer", "sdp": answer, "trickle": false})),
            &stxn,
        )?;
        api.wait_event(session, &stxn, pending, EVENT_TIMEOUT)?;
        g.start_peer(Side::Subscriber, j, &remote)?;
        g.pump()?;
    }
    Ok(())
}

/// The generator stream carried by subscriber section `mid`, from the `attached` event's
/// `streams` list (`mid`, `type`, `feed_id`): publisher p's audio is stream 2p, video 2p + 1.
fn stream_of(streams: &Value, mid: &str, feeds: &[u64]) -> Option<(u32, Kind)> {
    let s = streams.as_array()?.iter().find(|s| s["mid"] == mid)?;
    let p = feeds
        .iter()
        .position(|&f| s["feed_id"].as_u64() == Some(f))? as u32;
    match s["type"].as_str()? {
        "audio" => Some((2 * p, Kind::Audio)),
        "video" => Some((2 * p + 1, Kind::Video)),
        _ => None,
    }
}

/// A ramp point from a step's answer.
pub fn point_of(v: &Value) -> Result<crate::ramp::Point, BenchError> {
    if let Some(e) = v.get("error") {
        return Err(BenchError::Other(format!("Janus step: {e}")));
    }
    let f = |k: &str| {
        v[k].as_f64()
            .ok_or_else(|| BenchError::Other(format!("Janus step: no `{k}` in {v}")))
    };
    Ok(crate::ramp::Point {
        subscribers: f("subscribers")? as u32,
        delivered_pps: f("delivered_pps")?,
        delivered_mbit_s: f("delivered_mbit_s")?,
        loss: f("loss")?,
        p50_ms: f("p50_ms")?,
        p99_ms: f("p99_ms")?,
        sfu_busy: f("sfu_busy")?,
        generator_busy: f("generator_busy")?,
        generator_limited: v["generator_limited"].as_bool().unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_args_round_trip() {
        let a = StepArgs {
            plan: Plan {
                publishers: 1,
                subscribers: 40,
                audio: true,
                video: false,
                warmup: Duration::from_millis(700),
                duration: Duration::from_millis(3000),
                drain: Duration::from_millis(300),
                core: 1,
                // The WebRTC generator runs on one thread.
                rx_cores: Vec::new(),
                near: None,
                kernel_arrival: false,
            },
            janus_pid: Some("1234".into()),
        };
        let b = StepArgs::parse(&a.to_args()).expect("parses");
        assert_eq!(b.to_args(), a.to_args());
        assert!(StepArgs::parse(&["x".into()]).is_err());
    }

    #[test]
    fn attached_streams_map_to_generator_streams() {
        let streams = json!([
            {"type": "audio", "mid": "0", "feed_id": 77},
            {"type": "video", "mid": "1", "feed_id": 77},
            {"type": "video", "mid": "3", "feed_id": 88},
        ]);
        assert_eq!(stream_of(&streams, "0", &[77, 88]), Some((0, Kind::Audio)));
        assert_eq!(stream_of(&streams, "1", &[77, 88]), Some((1, Kind::Video)));
        assert_eq!(stream_of(&streams, "3", &[77, 88]), Some((3, Kind::Video)));
        assert_eq!(stream_of(&streams, "9", &[77, 88]), None);
    }
}
