//! The load generator behind `fanout`, `ramp` and `compare`: P publishers sending
//! [`media`](crate::media)-shaped RTP and S subscribers receiving every forwarded copy, on one
//! thread pinned to the generator's core, so the SFU's cores are left to the SFU — or, when
//! several SFU workers forward more than one core can receive, on one thread per generator core
//! ([`Plan::rx_cores`]): thread 0 has the publishers and the first share of subscribers, every
//! other thread only receives its contiguous share. All threads read time from one shared base
//! `Instant`, so the latency of a copy received on any thread is exact; their counts are summed
//! and their histograms merged.
//!
//! Sockets are the dataplane's own `recvmmsg`/`sendmmsg` backend (one per publisher and per
//! subscriber, because the SFU tells sessions apart by address), sharing one buffer pool;
//! readiness comes from one epoll set (mio), so an idle subscriber costs no system call.
//!
//! The receive side is kept cheap but honest: every datagram is parsed as RTP (≈15 ns) and its
//! tag read (stream, sequence, send time) to count it and take its latency — the tag is the only
//! way to tell a window packet from a warm-up one — and one packet in [`PATTERN_SAMPLE`] also
//! has its whole body checked against the sender's pattern. Latency is receive time minus the
//! send time in the tag, both read from the same `Instant` base in this process.
//!
//! Counting window: packets *sent* in `[warmup, warmup + duration)`; the senders stop at the
//! window's end and the receivers drain for `drain` more. Loss = 1 − received / (sent × S).

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use rtp_core::RtpView;
use sluice_dataplane::pool::BufPool;
use sluice_dataplane::sys::{affinity, Backend, RecvMeta, Transmit};

use crate::cpu::{self, ThreadCpu};
use crate::hist::Histogram;
use crate::limit::open_endpoint;
use crate::media::{body_offset, Kind, Profile, Stream};
use crate::report::BenchError;
use crate::tag::{check_pattern, Tag, TAG_LEN};

mod report;
mod split;
use report::account;
pub use report::GenReport;
pub use split::{Pairing, SplitReport, Spread, PAIR_CAP};

/// One packet in this many has its whole body checked.
pub const PATTERN_SAMPLE: u32 = 64;
/// Streams one subscriber can receive (the SSRC plan leaves 64 per subscriber).
pub const MAX_STREAMS: u32 = 64;
const BATCH: usize = 64;
/// Buffers shared by every socket of the generator.
const POOL: usize = 4096;
/// Longest sleep in `epoll_wait` while nothing is due.
const MAX_WAIT: Duration = Duration::from_millis(5);

/// What the generator does.
#[derive(Debug, Clone)]
pub struct Plan {
    pub publishers: u32,
    pub subscribers: u32,
    pub audio: bool,
    pub video: bool,
    pub warmup: Duration,
    pub duration: Duration,
    pub drain: Duration,
    /// Core the generator's first thread (publishers and the first share of subscribers) is
    /// pinned to.
    pub core: usize,
    /// Cores of the receive-only threads, one thread each; empty: one thread does everything.
    pub rx_cores: Vec<usize>,
    /// `Some(n)`: subscribers `0..n` are on the publisher's SFU and the rest behind a trunk
    /// (`fanout --cascade`); their copies are counted apart ([`SplitReport`]).
    pub near: Option<u32>,
    /// Latency runs to the kernel's receive time of each copy (`SO_TIMESTAMPNS`), not to when
    /// the generator read it: one thread reads hundreds of sockets in turn (and decrypts every
    /// copy), so during a keyframe's burst a copy read late was measured as arriving late.
    /// `false` (`--arrival read`): the old stamp, for an A/B against an older build.
    pub kernel_arrival: bool,
}

impl Plan {
    /// Generator threads.
    pub fn threads(&self) -> usize {
        1 + self.rx_cores.len()
    }

    /// The subscribers thread `t` receives for: a contiguous share, sizes differing by at most 1.
    pub fn share(&self, t: usize) -> std::ops::Range<u32> {
        let n = self.threads() as u64;
        let s = u64::from(self.subscribers);
        let at = |k: u64| (s * k / n) as u32;
        at(t as u64)..at(t as u64 + 1)
    }

    /// Core of thread `t`.
    fn thread_core(&self, t: usize) -> usize {
        match t {
            0 => self.core,
            _ => self.rx_cores[t - 1],
        }
    }

    /// Stream ids of publisher `p`: audio `2p`, video `2p + 1`.
    pub fn streams(&self) -> impl Iterator<Item = (u32, u32, Kind)> + '_ {
        (0..self.publishers).flat_map(move |p| {
            let a = self.audio.then_some((p, 2 * p, Kind::Audio));
            let v = self.video.then_some((p, 2 * p + 1, Kind::Video));
            a.into_iter().chain(v)
        })
    }

    /// Average packets per second all publishers send together.
    pub fn published_pps(&self) -> f64 {
        let per = f64::from(u8::from(self.audio)) * Profile::AUDIO.pps()
            + f64::from(u8::from(self.video)) * Profile::VIDEO.pps();
        per * f64::from(self.publishers)
    }
}

/// The SSRC the SFU must use towards subscriber `sub` for stream `stream`.
pub fn sub_ssrc(sub: u32, stream: u32) -> u32 {
    0x5000_0000u32
        .wrapping_add(sub.wrapping_mul(MAX_STREAMS))
        .wrapping_add(stream)
}

/// The SSRC publisher streams are sent with.
pub fn pub_ssrc(stream: u32) -> u32 {
    0x1000_0000 + stream
}

/// The generator's addresses, reported once its sockets are open.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub publishers: Vec<SocketAddr>,
    pub subscribers: Vec<SocketAddr>,
}

/// Where to send, and whose CPU to account.
#[derive(Debug, Clone)]
pub struct Go {
    /// The SFU's media address for each publisher.
    pub sfu: Vec<SocketAddr>,
    /// `/proc/<pid>` of the SFU process (`"self"` when in-process), sampled at the window edges.
    pub sfu_pid: Option<String>,
}

/// A running generator thread: read its endpoints, then send `Go`.
#[derive(Debug)]
pub struct Handle {
    pub endpoints: mpsc::Receiver<Result<Endpoints, BenchError>>,
    pub go: mpsc::Sender<Go>,
    pub join: JoinHandle<Result<GenReport, BenchError>>,
}

/// Starts the generator; it opens its sockets, reports them, and waits for `Go`.
///
/// A coordinating thread (unpinned, it only waits) starts one pinned thread per generator core,
/// collects their endpoints in subscriber order, hands every thread the same `Go` and time
/// base, and merges their reports.
pub fn spawn(plan: Plan) -> Result<Handle, BenchError> {
    if plan.publishers * 2 > MAX_STREAMS {
        return Err(BenchError::Other(format!(
            "at most {} publishers",
            MAX_STREAMS / 2
        )));
    }
    let (ep_tx, ep_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let join = std::thread::Builder::new()
        .name("sluice-bench-gen".into())
        .spawn(move || coordinate(&plan, &ep_tx, &go_rx))?;
    Ok(Handle {
        endpoints: ep_rx,
        go: go_tx,
        join,
    })
}

/// What a generator thread is told to start with.
struct Start {
    go: Go,
    base: Instant,
}

type Part = (
    mpsc::Receiver<Result<Endpoints, BenchError>>,
    mpsc::Sender<Start>,
    JoinHandle<Result<GenReport, BenchError>>,
);

fn coordinate(
    plan: &Plan,
    ep_tx: &mpsc::Sender<Result<Endpoints, BenchError>>,
    go_rx: &mpsc::Receiver<Go>,
) -> Result<GenReport, BenchError> {
    let mut parts: Vec<Part> = Vec::with_capacity(plan.threads());
    let mut failed = None;
    for t in 0..plan.threads() {
        match spawn_part(plan, t) {
            Ok(p) => parts.push(p),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let mut all = Endpoints {
        publishers: Vec::new(),
        subscribers: Vec::new(),
    };
    for (ep, _, _) in &parts {
        if failed.is_some() {
            break;
        }
        match ep.recv() {
            Ok(Ok(e)) => {
                all.publishers.extend(e.publishers);
                all.subscribers.extend(e.subscribers);
            }
            Ok(Err(e)) => failed = Some(e),
            Err(_) => failed = Some(BenchError::Other("generator thread exited".into())),
        }
    }
    if let Some(e) = failed {
        let _ = ep_tx.send(Err(BenchError::Other(e.to_string())));
        // Dropping the start senders ends the threads still waiting.
        for (_, start, join) in parts {
            drop(start);
            let _ = join.join();
        }
        return Err(e);
    }
    let _ = ep_tx.send(Ok(all));
    let go = go_rx.recv();
    // One base for every thread: send and receive times compare across threads.
    let base = Instant::now();
    let mut joins = Vec::with_capacity(parts.len());
    for (_, start, join) in parts {
        if let Ok(go) = &go {
            let _ = start.send(Start {
                go: go.clone(),
                base,
            });
        }
        drop(start);
        joins.push(join);
    }
    let mut merged: Option<GenReport> = None;
    let mut first_err = None;
    for join in joins {
        match join.join() {
            Ok(Ok(r)) => match &mut merged {
                None => merged = Some(r),
                Some(m) => m.absorb(&r),
            },
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(_) => {
                first_err =
                    first_err.or(Some(BenchError::Other("generator thread panicked".into())))
            }
        }
    }
    go.map_err(|_| BenchError::Other("generator: no go signal".into()))?;
    if let Some(e) = first_err {
        return Err(e);
    }
    let mut r = merged.ok_or_else(|| BenchError::Other("generator: no report".into()))?;
    r.expected = r.sent_in_window * u64::from(plan.subscribers);
    if let Some(s) = &mut r.split {
        s.pair();
    }
    Ok(r)
}

/// Starts generator thread `t`, pinned to its core.
fn spawn_part(plan: &Plan, t: usize) -> Result<Part, BenchError> {
    let (ep_tx, ep_rx) = mpsc::channel();
    let (start_tx, start_rx) = mpsc::channel::<Start>();
    let plan = plan.clone();
    let join = std::thread::Builder::new()
        .name(format!("sluice-bench-gen-{t}"))
        .spawn(move || {
            let _ = affinity::pin_current_thread(plan.thread_core(t));
            let mut g = match Generator::open(&plan, t) {
                Ok(g) => g,
                Err(e) => {
                    let _ = ep_tx.send(Err(BenchError::Other(e.to_string())));
                    return Err(e);
                }
            };
            let _ = ep_tx.send(g.endpoints());
            let start = start_rx
                .recv()
                .map_err(|_| BenchError::Other("generator: no go signal".into()))?;
            g.run(&plan, &start.go, start.base)
        })?;
    Ok((ep_rx, start_tx, join))
}

/// One generator thread's sockets: the publishers (thread 0 only) and its share of subscribers.
struct Generator {
    /// Which thread this is.
    thread: usize,
    /// Global index of `subs[0]` (the SSRC plan is per global subscriber).
    first_sub: u32,
    pubs: Vec<Backend>,
    subs: Vec<Backend>,
    pool: BufPool,
    poll: Poll,
}

impl Generator {
    fn open(plan: &Plan, thread: usize) -> Result<Self, BenchError> {
        let n_pubs = if thread == 0 { plan.publishers } else { 0 };
        let pubs = (0..n_pubs)
            .map(|_| open_endpoint(false))
            .collect::<Result<Vec<_>, _>>()?;
        let share = plan.share(thread);
        let subs = share
            .clone()
            .map(|_| open_endpoint(plan.kernel_arrival))
            .collect::<Result<Vec<_>, _>>()?;
        let poll = Poll::new()?;
        for (j, s) in subs.iter().enumerate() {
            let fd = s.as_fd().as_raw_fd();
            poll.registry()
                .register(&mut SourceFd(&fd), Token(j), Interest::READABLE)?;
        }
        Ok(Self {
            thread,
            first_sub: share.start,
            pubs,
            subs,
            pool: BufPool::new(POOL),
            poll,
        })
    }

    fn endpoints(&self) -> Result<Endpoints, BenchError> {
        Ok(Endpoints {
            publishers: self
                .pubs
                .iter()
                .map(Backend::local_addr)
                .collect::<Result<_, _>>()?,
            subscribers: self
                .subs
                .iter()
                .map(Backend::local_addr)
                .collect::<Result<_, _>>()?,
        })
    }

    fn run(&mut self, plan: &Plan, go: &Go, base: Instant) -> Result<GenReport, BenchError> {
        let n_streams = plan.publishers * 2;
        let sender = self.thread == 0;
        // Spread stream phases over a frame so publishers do not all burst together.
        let mut streams: Vec<(u32, Stream)> = plan
            .streams()
            .filter(|_| sender)
            .map(|(p, id, kind)| {
                let prof = if kind == Kind::Audio {
                    Profile::AUDIO
                } else {
                    Profile::VIDEO
                };
                let phase = u64::from(p) * 7_919_000;
                (p, Stream::new(prof, id, pub_ssrc(id), phase))
            })
            .collect();
        let win_start = plan.warmup.as_nanos() as u64;
        let win_end = win_start + plan.duration.as_nanos() as u64;
        let end = win_end + plan.drain.as_nanos() as u64;
        let mut r = GenReport {
            window_s: plan.duration.as_secs_f64(),
            split: plan.near.map(|near| {
                // This thread's far copies over the window, with a tenth to spare.
                let far = self
                    .subs
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| self.first_sub + *j as u32 >= near)
                    .count();
                let expected =
                    plan.published_pps() * plan.duration.as_secs_f64() * far as f64 * 1.1;
                SplitReport::new(near, plan.subscribers, expected as usize, PAIR_CAP)
            }),
            ..GenReport::default()
        };
        let mut events = Events::with_capacity(1024);
        let mut metas = [RecvMeta::default(); BATCH];
        let mut batch: Vec<Transmit> = Vec::with_capacity(BATCH);
        let tid = cpu::current_tid();
        let mut cpu_start: Option<(u64, Option<std::collections::BTreeMap<u32, ThreadCpu>>)> = None;
        let mut cpu_end = None;
        // Only thread 0 draws progress (one bar on stderr).
        let mut progress = sender.then(|| {
            crate::report::Progress::new(
                format!("generator {}×{}", plan.publishers, plan.subscribers),
                Duration::from_nanos(end),
            )
        });
        // Bounded by time: every iteration either sends, receives or waits at most MAX_WAIT.
        loop {
            let now_ns = base.elapsed().as_nanos() as u64;
            if now_ns >= end {
                break;
            }
            if cpu_start.is_none() && now_ns >= win_start {
                let sfu = sender
                    .then(|| go.sfu_pid.as_deref().and_then(|p| cpu::threads(p).ok()))
                    .flatten();
                cpu_start = Some((tid.and_then(cpu::thread_ticks).unwrap_or(0), sfu));
            }
            if cpu_end.is_none() && now_ns >= win_end {
                let sfu = sender
                    .then(|| go.sfu_pid.as_deref().and_then(|p| cpu::threads(p).ok()))
                    .flatten();
                cpu_end = Some((tid.and_then(cpu::thread_ticks).unwrap_or(0), sfu));
            }
            if now_ns < win_end {
                self.send_due(
                    &mut streams,
                    go,
                    now_ns,
                    win_start,
                    win_end,
                    &mut batch,
                    &mut r,
                )?;
            }
            let next = streams
                .iter()
                .map(|(_, s)| s.next_due_ns())
                .min()
                .unwrap_or(end)
                .min(if now_ns < win_end { win_end } else { end })
                .min(if cpu_start.is_none() { win_start } else { end });
            let now_ns = base.elapsed().as_nanos() as u64;
            let wait = Duration::from_nanos(next.saturating_sub(now_ns)).min(MAX_WAIT);
            match self.poll.poll(&mut events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
            for ev in events.iter() {
                let j = ev.token().0;
                self.drain_sub(j, base, win_start, win_end, n_streams, &mut metas, &mut r)?;
            }
            if let Some(p) = &mut progress {
                p.tick(
                    Instant::now(),
                    &format!(
                        "rx {:.0} pps",
                        r.received as f64 / (now_ns.saturating_sub(win_start).max(1) as f64 / 1e9)
                    ),
                );
            }
        }
        let ticks = cpu::ticks_per_second() as f64;
        if let (Some((g0, s0)), Some((g1, s1))) = (cpu_start, cpu_end) {
            r.busy = (g1 - g0) as f64 / ticks / r.window_s.max(1e-9);
            r.busy_per_thread = vec![r.busy];
            if let (Some(s0), Some(s1)) = (s0, s1) {
                r.sfu_cpu = cpu::delta_seconds(&s0, &s1, ticks as u64);
            }
        }
        r.expected = r.sent_in_window * self.subs.len() as u64;
        for s in &self.subs {
            r.rx_queue_drops += u64::from(s.stats().rx_queue_drops);
        }
        for p in &self.pubs {
            r.tx_would_block += p.stats().tx_would_block;
        }
        if let Some(mut p) = progress {
            // This thread's share only when there are several threads.
            p.finish(&format!(
                "{} of {} copies (thread 0's share when split), loss {:.3}%",
                r.received,
                r.expected,
                r.loss() * 100.0
            ));
        }
        Ok(r)
    }

    /// Sends every frame due at `now_ns`, one `sendmmsg` per publisher per 64 packets.
    #[allow(clippy::too_many_arguments)]
    fn send_due(
        &mut self,
        streams: &mut [(u32, Stream)],
        go: &Go,
        now_ns: u64,
        win_start: u64,
        win_end: u64,
        batch: &mut Vec<Transmit>,
        r: &mut GenReport,
    ) -> Result<(), BenchError> {
        for p in 0..self.pubs.len() {
            let dst = go.sfu[p % go.sfu.len()];
            for (owner, s) in streams.iter_mut() {
                if *owner as usize != p {
                    continue;
                }
                // Catch up frame by frame if the generator fell behind (bounded by the frames
                // due so far, which `pop_due` advances past).
                while let Some(f) = s.pop_due(now_ns) {
                    r.max_send_lateness_ns = r.max_send_lateness_ns.max(now_ns - f.due_ns);
                    for pos in 0..f.packets {
                        if batch.len() == BATCH {
                            self.flush(p, batch)?;
                        }
                        let Some(id) = self.pool.take() else {
                            return Err(BenchError::Other("generator pool exhausted".into()));
                        };
                        let len = s.write_packet(self.pool.get_mut(id), &f, pos, now_ns);
                        r.sent += 1;
                        if (win_start..win_end).contains(&now_ns) {
                            r.sent_in_window += 1;
                        }
                        batch.push(Transmit {
                            buf: id,
                            offset: 0,
                            len,
                            dst,
                            segment_size: None,
                        });
                    }
                }
            }
            self.flush(p, batch)?;
        }
        Ok(())
    }

    fn flush(&mut self, p: usize, batch: &mut Vec<Transmit>) -> Result<(), BenchError> {
        if batch.is_empty() {
            return Ok(());
        }
        let res = self.pubs[p].send(&self.pool, batch);
        for t in batch.drain(..) {
            self.pool.give(t.buf);
        }
        res?;
        Ok(())
    }

    /// Reads subscriber `j`'s socket until it would block (epoll is edge-triggered).
    #[allow(clippy::too_many_arguments)]
    fn drain_sub(
        &mut self,
        j: usize,
        base: Instant,
        win_start: u64,
        win_end: u64,
        n_streams: u32,
        metas: &mut [RecvMeta; BATCH],
        r: &mut GenReport,
    ) -> Result<(), BenchError> {
        // Bounded: a socket holds a finite queue; stop after 1,024 batches regardless.
        for _ in 0..1024 {
            let n = self.subs[j].recv(&mut self.pool, metas)?;
            if n == 0 {
                break;
            }
            let now_ns = base.elapsed().as_nanos() as u64;
            let wall = crate::tag::wall_now();
            for m in &metas[..n] {
                let data = &self.pool.get(m.buf)[m.offset..m.offset + m.len];
                let sub = self.first_sub + j as u32;
                let at = crate::tag::arrival_ns(now_ns, wall, m.stamp);
                let counted = account(data, sub, n_streams, at, win_start, win_end, r);
                if let (Some(s), Some((stream, seq, lat))) = (&mut r.split, counted) {
                    s.note(sub, stream, seq, lat);
                }
                self.pool.give(m.buf);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_counts_window_packets_and_refuses_foreign_ones() {
        let mut s = Stream::new(Profile::AUDIO, 0, pub_ssrc(0), 0);
        let f = s.pop_due(0).expect("due");
        let mut buf = [0u8; 256];
        let n = s.write_packet(&mut buf, &f, 0, 1_000);
        // What the SFU would send to subscriber 3: its own SSRC, same payload.
        buf[8..12].copy_from_slice(&sub_ssrc(3, 0).to_be_bytes());
        let mut r = GenReport::default();
        account(&buf[..n], 3, 2, 5_000, 0, 10_000, &mut r);
        assert_eq!((r.received, r.pattern_checked, r.pattern_errors), (1, 1, 0));
        assert_eq!(r.latency_audio.quantile(0.5), Some(4_000));
        // Wrong subscriber: the SSRC does not map to one of its streams.
        account(&buf[..n], 4, 2, 5_000, 0, 10_000, &mut r);
        assert_eq!(r.foreign, 1);
        // Outside the window.
        account(&buf[..n], 3, 2, 5_000, 2_000, 10_000, &mut r);
        assert_eq!(r.received_other, 1);
        // Corrupted body on a sampled packet.
        buf[20] ^= 0xff;
        account(&buf[..n], 3, 2, 5_000, 0, 10_000, &mut r);
        assert_eq!(r.pattern_errors, 1);
        // RTCP is counted apart.
        account(&[0x80, 200, 0, 6], 3, 2, 0, 0, 1, &mut r);
        assert_eq!(r.rtcp, 1);
    }

    #[test]
    fn shares_cover_every_subscriber_once() {
        let mut plan = Plan {
            publishers: 1,
            subscribers: 10,
            audio: true,
            video: true,
            warmup: Duration::ZERO,
            duration: Duration::ZERO,
            drain: Duration::ZERO,
            core: 0,
            rx_cores: vec![1, 2],
            near: None,
            kernel_arrival: true,
        };
        let shares: Vec<_> = (0..plan.threads()).map(|t| plan.share(t)).collect();
        assert_eq!(shares, vec![0..3, 3..6, 6..10]);
        plan.subscribers = 1;
        let sizes: Vec<_> = (0..3).map(|t| plan.share(t).len()).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 1);
        plan.rx_cores.clear();
        assert_eq!(plan.share(0), 0..1);
    }

    #[test]
    fn ssrc_plan_keeps_subscribers_apart() {
        assert_eq!(sub_ssrc(1, 0), sub_ssrc(0, MAX_STREAMS));
        assert_ne!(sub_ssrc(1, 1), sub_ssrc(0, 1));
    }
}
