//! The bandwidth-estimation scenarios' world: synthetic publishers (VP8-shaped frames at a
//! stated rate per simulcast layer) → uplink → the SFU's publisher `Session` → a test shard
//! (packet history, fan-out, layer rates, keyframe requests, retransmissions) → the SFU's
//! subscriber `Session` → downlink (an in-memory `Netem`: bottleneck rate, loss, delay) → a
//! subscriber `Session` (our own client: transport-cc feedback, receiver reports, NACKs) and
//! back. Plain RTP (no DTLS/SRTP): these scenarios are about rates. Time is advanced by hand
//! from deadline to deadline (at most 5 ms at a time); nothing sleeps.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use rtp_core::bwe::{AllocatorConfig, EstimateSource, SendSideBweConfig};
use rtp_core::dtls::DtlsCert;
use rtp_core::forward::{Codec, MediaKind};
use rtp_core::nack::{HistoryConfig, PacketHistory};
use rtp_core::packet::rtcp::{write_remb, RtcpCompound, RtcpPacket};
use rtp_core::packet::{write_rtp_header, RtpHeader};
use rtp_core::session::{
    DownId, DownTrackConfig, ExtIds, LayerSsrc, Session, SessionConfig, SessionEvent, SessionMode,
    SessionOutput, UpId, UpTrackConfig,
};
use rtp_core::RtpView;

#[path = "../common/netem.rs"]
mod netem;
pub use netem::{Netem, NetemConfig};

pub const PUB: &str = "10.0.0.1:5000";
pub const SFU: &str = "10.0.0.2:5000";
pub const SUB: &str = "10.0.0.3:5000";
const PT: u8 = 96;
const PT_RTX: u8 = 97;
const PT_DOWN: u8 = 100;
const PT_DOWN_RTX: u8 = 101;
const TWCC_ID: u8 = 3;
const MAX_PAYLOAD: usize = 1100;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

#[allow(clippy::disallowed_methods)] // the one clock read a scenario needs
fn t0() -> Instant {
    Instant::now()
}

/// One published video track.
#[derive(Debug, Clone)]
pub struct TrackSpec {
    /// Bitrate of each simulcast layer, lowest first (one entry: no simulcast).
    pub layers: Vec<u64>,
    /// Allocation priority at the subscriber.
    pub priority: u8,
}

/// How the subscriber reports back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Feedback {
    /// Transport-cc feedback (and receiver reports), as browsers do.
    Twcc,
    /// REMB once a second at `factor` × what it received over that second + 10 kbit/s (aiortc:
    /// 1.5), and receiver reports; no transport-cc.
    Remb { factor: f64 },
    /// Receiver reports only.
    RrOnly,
}

/// A scenario's setup.
#[derive(Debug, Clone)]
pub struct Config {
    pub tracks: Vec<TrackSpec>,
    /// The publisher's frame rate (every layer).
    pub fps: u32,
    /// The publisher stamps transport-wide sequence numbers (Chromium does, aiortc does not).
    pub publisher_twcc: bool,
    pub feedback: Feedback,
    /// SFU → subscriber path.
    pub down: NetemConfig,
    /// Subscriber → SFU path (feedback).
    pub back_delay: Duration,
    /// The subscriber session's estimator cap (`Quality.max_bitrate_bps`).
    pub max_bps: u64,
    pub allow_pause: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            tracks: vec![TrackSpec {
                layers: vec![500_000],
                priority: 1,
            }],
            fps: 30,
            publisher_twcc: true,
            feedback: Feedback::Twcc,
            down: NetemConfig {
                delay: Duration::from_millis(20),
                rate_bps: Some(20_000_000),
                ..NetemConfig::default()
            },
            back_delay: Duration::from_millis(20),
            max_bps: 20_000_000,
            allow_pause: false,
        }
    }
}

/// One 100 ms sample of the subscriber side.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Duration,
    pub estimate_bps: u64,
    pub source: EstimateSource,
    /// Per track: the layer forwarded now (None: nothing).
    pub layers: Vec<Option<u8>>,
    /// Per track: paused by the allocator.
    pub paused: Vec<bool>,
    /// The subscriber session's pacing rate and queue.
    pub pacing_bps: u64,
    pub queued: usize,
    /// Probe packets sent so far.
    pub probe_packets: u64,
    /// Packets the downlink dropped so far (loss and its full queue).
    pub path_dropped: u64,
}

struct PubLayer {
    ssrc: u32,
    bitrate: u64,
    seq: u16,
}

struct PubTrack {
    layers: Vec<PubLayer>,
    keyframe_due: bool,
}

/// The scenario in progress; see the module docs.
pub struct World {
    pub cfg: Config,
    pub start: Instant,
    pub now: Instant,
    pubs: Vec<PubTrack>,
    frame: u32,
    next_frame: Instant,
    twcc: u16,
    uplink: VecDeque<(Instant, Vec<u8>)>,
    pub down: Netem,
    back: VecDeque<(Instant, Vec<u8>)>,
    pub sfu_pub: Session<u32>,
    pub sfu_sub: Session<u32>,
    pub sub: Session<u32>,
    ups: Vec<UpId>,
    downs: Vec<DownId>,
    /// Per track and layer (sequence numbers are per layer): 512 packets, 1 s.
    history: Vec<Vec<PacketHistory>>,
    slots: HashMap<u32, Vec<u8>>,
    next_handle: u32,
    /// Per track: frame timestamps completed (marker seen) at the subscriber, and when.
    frames: Vec<HashSet<u32>>,
    pub frame_times: Vec<Vec<Duration>>,
    received_bytes_window: u64,
    next_remb: Instant,
    next_sample: Instant,
    /// The scheduled time of the current 100 ms sample (what `run_until`'s callback sees).
    pub sample_at: Duration,
    pub samples: Vec<Sample>,
    /// `SessionEvent::StreamState` of the subscriber session: (when, track, paused).
    pub stream_states: Vec<(Duration, usize, bool)>,
}

fn layer_ssrc(track: usize, layer: usize) -> u32 {
    0x1111_0000 + (track as u32) * 16 + (layer as u32) * 2
}

fn down_ssrc(track: usize) -> u32 {
    0x2222_0000 + (track as u32) * 16
}

impl World {
    pub fn new(cfg: Config) -> Self {
        let start = t0();
        let cert = DtlsCert::generate(SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000))
            .expect("certificate");
        let plain = |remote: &str| {
            SessionConfig::new(SessionMode::PlainRtp {
                remote: addr(remote),
            })
        };
        let mut pub_cfg = plain(PUB);
        pub_cfg.max_down_tracks = 1;
        let mut sfu_pub: Session<u32> = Session::new(start, pub_cfg, &cert).expect("sfu pub");
        let mut sub_cfg = plain(SUB);
        // A WebRTC subscriber starts at the usual estimate, capped by its quality.
        sub_cfg.bwe = SendSideBweConfig {
            max_bps: cfg.max_bps,
            ..SendSideBweConfig::default()
        };
        sub_cfg.allocator = AllocatorConfig {
            allow_pause: cfg.allow_pause,
            ..AllocatorConfig::default()
        };
        let mut sfu_sub: Session<u32> = Session::new(start, sub_cfg, &cert).expect("sfu sub");
        let mut sub: Session<u32> = Session::new(start, plain(SFU), &cert).expect("subscriber");
        let twcc_ext = ExtIds {
            transport_cc: Some(TWCC_ID),
            ..ExtIds::default()
        };
        let sub_ext = if cfg.feedback == Feedback::Twcc {
            twcc_ext
        } else {
            ExtIds::default()
        };
        let mut pubs = Vec::new();
        let (mut ups, mut downs) = (Vec::new(), Vec::new());
        for (k, t) in cfg.tracks.iter().enumerate() {
            let layers: Vec<LayerSsrc> = (0..t.layers.len())
                .map(|l| LayerSsrc {
                    ssrc: Some(layer_ssrc(k, l)),
                    rtx_ssrc: Some(layer_ssrc(k, l) + 1),
                    rid: None,
                })
                .collect();
            ups.push(
                sfu_pub
                    .add_up_track(UpTrackConfig {
                        kind: MediaKind::Video,
                        codec: Codec::Vp8,
                        clock_rate: 90_000,
                        payload_type: PT,
                        rtx_payload_type: Some(PT_RTX),
                        layers,
                        ext: twcc_ext,
                        e2ee: false,
                        mid: None,
                    })
                    .expect("up track"),
            );
            downs.push(
                sfu_sub
                    .add_down_track(DownTrackConfig {
                        kind: MediaKind::Video,
                        codec: Codec::Vp8,
                        clock_rate: 90_000,
                        payload_type: PT_DOWN,
                        rtx_payload_type: Some(PT_DOWN_RTX),
                        ssrc: down_ssrc(k),
                        rtx_ssrc: Some(down_ssrc(k) + 1),
                        ext: sub_ext,
                        e2ee: false,
                        priority: t.priority,
                        max_layer: (t.layers.len() - 1) as u8,
                        relay_layer: None,
                        relay_group: 0,
                    })
                    .expect("down track"),
            );
            sub.add_up_track(UpTrackConfig {
                kind: MediaKind::Video,
                codec: Codec::Vp8,
                clock_rate: 90_000,
                payload_type: PT_DOWN,
                rtx_payload_type: Some(PT_DOWN_RTX),
                layers: vec![LayerSsrc {
                    ssrc: Some(down_ssrc(k)),
                    rtx_ssrc: Some(down_ssrc(k) + 1),
                    rid: None,
                }],
                ext: sub_ext,
                e2ee: false,
                mid: None,
            })
            .expect("subscriber track");
            pubs.push(PubTrack {
                layers: t
                    .layers
                    .iter()
                    .enumerate()
                    .map(|(l, &bitrate)| PubLayer {
                        ssrc: layer_ssrc(k, l),
                        bitrate,
                        seq: (k * 1000 + l * 100) as u16,
                    })
                    .collect(),
                keyframe_due: true,
            });
        }
        let n = cfg.tracks.len();
        Self {
            down: Netem::new(cfg.down),
            cfg,
            start,
            now: start,
            pubs,
            frame: 0,
            next_frame: start,
            twcc: 0,
            uplink: VecDeque::new(),
            back: VecDeque::new(),
            sfu_pub,
            sfu_sub,
            sub,
            ups,
            downs,
            history: (0..n)
                .map(|_| {
                    (0..3)
                        .map(|_| {
                            PacketHistory::new(HistoryConfig {
                                capacity: 512,
                                max_age: Duration::from_secs(1),
                                max_packet_len: 1500,
                            })
                        })
                        .collect()
                })
                .collect(),
            slots: HashMap::new(),
            next_handle: 0,
            frames: vec![HashSet::new(); n],
            frame_times: vec![Vec::new(); n],
            received_bytes_window: 0,
            next_remb: start + Duration::from_secs(1),
            next_sample: start,
            sample_at: Duration::ZERO,
            samples: Vec::new(),
            stream_states: Vec::new(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// The publisher's packets of one frame on every layer of every track.
    fn publish_frame(&mut self) {
        let fps = u64::from(self.cfg.fps.max(1));
        let frame = self.frame;
        for t in &mut self.pubs {
            let key = std::mem::take(&mut t.keyframe_due) || frame.is_multiple_of(fps as u32 * 3);
            for l in &mut t.layers {
                let mut bytes = (l.bitrate / 8 / fps) as usize;
                if key {
                    bytes *= 3;
                }
                let packets = bytes.div_ceil(MAX_PAYLOAD).max(1);
                let per = bytes.div_ceil(packets).max(3);
                for p in 0..packets {
                    let twcc = self.twcc.to_be_bytes();
                    let ext: &[(u8, &[u8])] = if self.cfg.publisher_twcc {
                        &[(TWCC_ID, &twcc)]
                    } else {
                        &[]
                    };
                    self.twcc = self.twcc.wrapping_add(1);
                    let mut buf = vec![0u8; 1500];
                    let h = write_rtp_header(
                        &RtpHeader {
                            pt: PT,
                            marker: p + 1 == packets,
                            seq: l.seq,
                            ts: frame.wrapping_mul(90_000 / fps as u32),
                            ssrc: l.ssrc,
                            csrcs: &[],
                            extensions: ext,
                        },
                        &mut buf,
                    )
                    .expect("header");
                    l.seq = l.seq.wrapping_add(1);
                    buf[h] = if p == 0 { 0x10 } else { 0x00 };
                    buf[h + 1] = if key { 0x00 } else { 0x01 };
                    buf[h + 2..h + per].fill(0x5a);
                    buf.truncate(h + per);
                    // The publisher's uplink is clean and 5 ms long.
                    self.uplink
                        .push_back((self.now + Duration::from_millis(5), buf));
                }
            }
        }
        self.frame += 1;
    }

    fn handle(&mut self) -> (u32, Vec<u8>) {
        let h = self.next_handle;
        self.next_handle += 1;
        (h, vec![0u8; 1500])
    }

    /// Outputs of the SFU's subscriber session: retransmissions and keyframe requests.
    fn drain_sub_outputs(&mut self) {
        while let Some(out) = self.sfu_sub.poll_output() {
            match out {
                SessionOutput::Retransmit {
                    down,
                    seq,
                    src_ext_seq,
                    layer,
                } => {
                    let k = usize::from(down.0);
                    let Some(orig) = self.history[k][usize::from(layer)]
                        .get(self.now, src_ext_seq)
                        .map(<[u8]>::to_vec)
                    else {
                        continue;
                    };
                    let view = RtpView::parse(&orig).expect("history parses");
                    let (h, mut b) = self.handle();
                    if let Ok(Some(len)) = self
                        .sfu_sub
                        .retransmit(self.now, down, seq, &view, &mut b, h)
                    {
                        b.truncate(len);
                        self.slots.insert(h, b);
                    }
                }
                SessionOutput::KeyframeWanted { down, layer } => {
                    let k = usize::from(down.0);
                    self.sfu_pub.request_keyframe(self.now, self.ups[k], layer);
                }
                _ => {}
            }
        }
    }

    /// One published packet arrived at the SFU: bookkeeping, fan-out to the subscriber.
    fn on_published(&mut self, mut pkt: Vec<u8>) {
        let out = self.sfu_pub.handle_datagram(self.now, addr(PUB), &mut pkt);
        let Ok(SessionOutput::Media { up, meta }) = out else {
            return;
        };
        pkt.truncate(meta.len);
        let k = self.ups.iter().position(|&u| u == up).expect("known up");
        let view = RtpView::parse(&pkt).expect("parses");
        let (h, mut b) = self.handle();
        let queued = self
            .sfu_sub
            .forward(self.now, self.downs[k], &view, meta, &mut b, h);
        if let Ok(Some(n)) = queued {
            b.truncate(n);
            self.slots.insert(h, b);
        }
        // NACKs name the source packet by its extended seq (one track, one layer at a time
        // here in the history the dataplane keeps per track).
        let _ = self.history[k][usize::from(meta.layer)].insert(self.now, meta.ext_seq, &pkt);
        self.drain_sub_outputs();
    }

    fn pump_sfu_pub(&mut self) {
        let mut buf = vec![0u8; 1500];
        while let Some((n, _)) = self.sfu_pub.poll_transmit(self.now, &mut buf) {
            // Keyframe requests reach the publisher at once.
            for p in RtcpCompound::new(&buf[..n]).flatten() {
                if let RtcpPacket::Pli(pli) = p {
                    for (k, t) in self.pubs.iter_mut().enumerate() {
                        if t.layers.iter().any(|l| l.ssrc == pli.media_ssrc) {
                            let _ = k;
                            t.keyframe_due = true;
                        }
                    }
                }
            }
        }
        while let Some(ev) = self.sfu_pub.poll_event() {
            if let SessionEvent::LayerRates { up, layers } = ev {
                let k = self.ups.iter().position(|&u| u == up).expect("known up");
                self.sfu_sub.set_down_layer_rates(self.downs[k], layers);
            }
        }
    }

    fn pump_sfu_sub(&mut self) {
        let mut buf = vec![0u8; 1500];
        while let Some((n, _)) = self.sfu_sub.poll_transmit(self.now, &mut buf) {
            self.down.send(self.now, &buf[..n]);
        }
        while let Some((h, len, _)) = self.sfu_sub.poll_paced(self.now) {
            let mut pkt = self.slots.remove(&h).expect("paced handle has a buffer");
            pkt.truncate(len);
            self.down.send(self.now, &pkt);
        }
        while let Some((n, _)) = self.sfu_sub.poll_probe(self.now, &mut buf) {
            self.down.send(self.now, &buf[..n]);
        }
        while let Some(ev) = self.sfu_sub.poll_event() {
            if let SessionEvent::StreamState { down, paused } = ev {
                let k = usize::from(down.0);
                self.stream_states.push((self.now - self.start, k, paused));
            }
        }
    }

    fn on_subscriber_datagram(&mut self, mut pkt: Vec<u8>) {
        self.received_bytes_window += pkt.len() as u64;
        let out = self.sub.handle_datagram(self.now, addr(SFU), &mut pkt);
        let mut outs = Vec::new();
        if let Ok(o) = out {
            outs.push(o);
        }
        while let Some(o) = self.sub.poll_output() {
            outs.push(o);
        }
        for o in outs {
            let SessionOutput::Media { meta, .. } = o else {
                continue;
            };
            let len = meta.len;
            let v = RtpView::parse(&pkt[..len]).expect("parses");
            let Some(k) = (0..self.pubs.len()).find(|&k| down_ssrc(k) == v.ssrc()) else {
                continue;
            };
            if v.marker() && self.frames[k].insert(v.ts()) {
                self.frame_times[k].push(self.now - self.start);
            }
        }
    }

    fn pump_subscriber(&mut self) {
        let mut buf = vec![0u8; 1500];
        while let Some((n, _)) = self.sub.poll_transmit(self.now, &mut buf) {
            self.back
                .push_back((self.now + self.cfg.back_delay, buf[..n].to_vec()));
        }
        if let Feedback::Remb { factor } = self.cfg.feedback {
            if self.now >= self.next_remb {
                self.next_remb = self.now + Duration::from_secs(1);
                let received = self.received_bytes_window * 8;
                self.received_bytes_window = 0;
                let bps = (received as f64 * factor) as u64 + 10_000;
                let mut rtcp = [0u8; 64];
                let n = write_remb(&mut rtcp, self.sub.local_ssrc(), bps, &[down_ssrc(0)])
                    .expect("remb");
                let (len, _) = self
                    .sub
                    .send_rtcp(self.now, &rtcp[..n], &mut buf)
                    .expect("send rtcp");
                self.back
                    .push_back((self.now + self.cfg.back_delay, buf[..len].to_vec()));
            }
        }
    }

    fn sample(&mut self) {
        let st = self.sfu_sub.stats();
        let (mut layers, mut paused) = (Vec::new(), Vec::new());
        for &d in &self.downs {
            let r = self.sfu_sub.down_report(d).expect("down");
            layers.push(if r.bwe_paused { None } else { r.current_layer });
            paused.push(r.bwe_paused);
        }
        self.samples.push(Sample {
            at: self.sample_at,
            estimate_bps: st.estimate_bps,
            source: st.estimate_source,
            layers,
            paused,
            pacing_bps: self.sfu_sub.pacing_rate_bps(),
            queued: self.sfu_sub.pacer_stats().total_queued(),
            probe_packets: st.probe_packets,
            path_dropped: self.down.stats().dropped,
        });
    }

    /// Runs until `until` after the start; `at(world)` is called every 100 ms, with
    /// `sample_at` set (to change the path at a given time).
    pub fn run_until(&mut self, until: Duration, mut at: impl FnMut(&mut World)) {
        let end = self.start + until;
        let frame_gap = Duration::from_nanos(1_000_000_000 / u64::from(self.cfg.fps.max(1)));
        while self.now < end {
            if self.now >= self.next_sample {
                self.sample_at = self.next_sample - self.start;
                self.next_sample += Duration::from_millis(100);
                self.sample();
                at(self);
            }
            while self.next_frame <= self.now {
                self.next_frame += frame_gap;
                self.publish_frame();
            }
            while self.uplink.front().is_some_and(|(t, _)| *t <= self.now) {
                let (_, p) = self.uplink.pop_front().expect("front");
                self.on_published(p);
            }
            self.sfu_pub.handle_timeout(self.now);
            self.pump_sfu_pub();
            while self.back.front().is_some_and(|(t, _)| *t <= self.now) {
                let (_, mut p) = self.back.pop_front().expect("front");
                let _ = self.sfu_sub.handle_datagram(self.now, addr(SUB), &mut p);
                self.drain_sub_outputs();
            }
            self.sfu_sub.handle_timeout(self.now);
            self.drain_sub_outputs();
            self.pump_sfu_sub();
            while let Some(p) = self.down.poll_recv(self.now) {
                self.on_subscriber_datagram(p);
            }
            self.sub.handle_timeout(self.now);
            self.pump_subscriber();
            let next = [
                Some(self.next_frame),
                Some(self.next_sample),
                self.uplink.front().map(|(t, _)| *t),
                self.back.front().map(|(t, _)| *t),
                self.down.next_arrival(),
                self.sfu_pub.poll_timeout(),
                self.sfu_sub.poll_timeout(),
                self.sub.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(end);
            self.now = next
                .max(self.now + Duration::from_micros(50))
                .min(self.now + Duration::from_millis(5));
        }
    }

    /// Frames completed at the subscriber per whole second in `[from, to)` for track `k`.
    pub fn frames_per_second(&self, k: usize, from: Duration, to: Duration) -> Vec<usize> {
        let secs = (to - from).as_secs() as usize;
        let mut v = vec![0; secs];
        for t in &self.frame_times[k] {
            if *t >= from && *t < to {
                let i = ((*t - from).as_secs()) as usize;
                if i < secs {
                    v[i] += 1;
                }
            }
        }
        v
    }

    /// The longest time without a completed frame of track `k` within `[from, to)`.
    pub fn longest_gap(&self, k: usize, from: Duration, to: Duration) -> Duration {
        let mut last = from;
        let mut longest = Duration::ZERO;
        for &t in self.frame_times[k].iter().filter(|&&t| t >= from && t < to) {
            longest = longest.max(t - last);
            last = t;
        }
        longest.max(to.saturating_sub(last))
    }

    /// Prints one line per second: estimate, its source, each track's layer (`-`: nothing,
    /// `P`: paused), frames, the pacing rate and queue, probe packets and path drops so far.
    pub fn print_timeline(&self, label: &str) {
        println!("{label}");
        println!("   t   estimate  source   layers  frames/s  pacing     queued probes path-drops");
        for s in self.samples.iter().filter(|s| s.at.subsec_millis() == 0) {
            let sec = s.at.as_secs();
            let layers: Vec<String> = s
                .layers
                .iter()
                .zip(&s.paused)
                .map(|(l, p)| match (l, p) {
                    (_, true) => "P".to_string(),
                    (Some(l), _) => l.to_string(),
                    (None, _) => "-".to_string(),
                })
                .collect();
            let frames: Vec<String> = (0..self.pubs.len())
                .map(|k| {
                    let from = Duration::from_secs(sec);
                    self.frames_per_second(k, from, from + Duration::from_secs(1))[0].to_string()
                })
                .collect();
            println!(
                "{:>4} {:>7.0}k  {:<7} {:<7} {:<9} {:>7.0}k {:>6} {:>6} {:>6}",
                sec,
                s.estimate_bps as f64 / 1000.0,
                s.source.as_str(),
                layers.join(","),
                frames.join(","),
                s.pacing_bps as f64 / 1000.0,
                s.queued,
                s.probe_packets,
                s.path_dropped,
            );
        }
    }
}
