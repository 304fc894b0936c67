//! `sluice-bench limit`: the machine's ceiling for the traffic the SFU forwards. A trivial
//! sender pushes one pre-encrypted 1,200-byte SRTP packet (protected once, before the clock
//! starts) with `sendmmsg` from one pinned core to a receiver with the generator's receive
//! setup (the dataplane's `recvmmsg` backend into a buffer pool) pinned on another, over
//! loopback. The receiver's delivered packets per second is the limit; the sender's own rate is
//! its capacity. On loopback the sender's core also runs the receive softirq, exactly as the
//! SFU worker's core does when it sends to the generator, so the limit is compared with fanout
//! egress with the sender on the SFU's core and the receiver on the generator's.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rtp_core::srtp::ProtectionProfile;
use serde_json::{json, Value};
use sluice_dataplane::pool::BufPool;
use sluice_dataplane::sys::{affinity, Backend, IoMode, RecvMeta, SocketConfig, Transmit};

use crate::cpu;
use crate::report::{round, BenchError};
use crate::sample;

/// Datagrams per `sendmmsg`/`recvmmsg`, as in the dataplane.
const BATCH: usize = 64;
/// Socket buffers requested on both ends (the kernel caps them at rmem_max/wmem_max).
const SOCKET_BUF: usize = 4 << 20;

/// How to run `limit`.
#[derive(Debug, Clone)]
pub struct LimitConfig {
    pub duration: Duration,
    /// Whole SRTP packet length.
    pub packet_len: usize,
    pub sender_core: usize,
    pub receiver_core: usize,
}

impl LimitConfig {
    /// Sender on the SFU's core (the last one), receiver on the generator's (the first).
    pub fn default_for(cores: &[usize], duration: Duration) -> Self {
        Self {
            duration,
            packet_len: 1200,
            sender_core: *cores.last().unwrap_or(&0),
            receiver_core: cores.first().copied().unwrap_or(0),
        }
    }
}

/// What `limit` measured.
#[derive(Debug, Clone)]
pub struct LimitReport {
    pub seconds: f64,
    pub sent: u64,
    pub received: u64,
    /// Delivered packets per second: the machine's limit.
    pub rx_pps: f64,
    /// The sender's own rate (its capacity; beyond `rx_pps` the excess was dropped).
    pub tx_pps: f64,
    /// Kernel drops at the receiving socket (SO_RXQ_OVFL).
    pub rx_queue_drops: u64,
    pub tx_would_block: u64,
    /// CPU seconds / wall seconds of each thread.
    pub sender_busy: f64,
    pub receiver_busy: f64,
    pub config: LimitConfig,
}

impl LimitReport {
    pub fn to_json(&self) -> Value {
        json!({
            "seconds": round(self.seconds, 3),
            "packet_len": self.config.packet_len,
            "sender_core": self.config.sender_core,
            "receiver_core": self.config.receiver_core,
            "sent": self.sent,
            "received": self.received,
            "rx_pps": round(self.rx_pps, 0),
            "tx_pps": round(self.tx_pps, 0),
            "rx_gbit_s": round(self.rx_pps * self.config.packet_len as f64 * 8e-9, 3),
            "rx_queue_drops": self.rx_queue_drops,
            "tx_would_block": self.tx_would_block,
            "sender_busy": round(self.sender_busy, 3),
            "receiver_busy": round(self.receiver_busy, 3),
        })
    }
}

/// Runs the sender/receiver pair for `cfg.duration`.
pub fn run(cfg: &LimitConfig) -> Result<LimitReport, BenchError> {
    let stop = Arc::new(AtomicBool::new(false));
    let (addr_tx, addr_rx) = mpsc::channel();
    let rx_core = cfg.receiver_core;
    let rx_stop = Arc::clone(&stop);
    let receiver = std::thread::Builder::new()
        .name("limit-rx".into())
        .spawn(move || receive(rx_core, &rx_stop, &addr_tx))?;
    let Ok(dst) = addr_rx.recv() else {
        return Err(join_err(receiver));
    };
    let dst = dst?;
    let tx_cfg = cfg.clone();
    let sender = std::thread::Builder::new()
        .name("limit-tx".into())
        .spawn(move || send(&tx_cfg, dst))?;
    let sent = sender
        .join()
        .map_err(|_| BenchError::Other("limit sender panicked".into()))?;
    // Let the receiver drain what is queued, then stop it.
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Release);
    let recv = receiver
        .join()
        .map_err(|_| BenchError::Other("limit receiver panicked".into()))??;
    let sent = sent?;
    Ok(LimitReport {
        seconds: sent.seconds,
        sent: sent.count,
        received: recv.count,
        rx_pps: recv.count as f64 / sent.seconds,
        tx_pps: sent.count as f64 / sent.seconds,
        rx_queue_drops: recv.queue_drops,
        tx_would_block: sent.would_block,
        sender_busy: sent.busy,
        receiver_busy: recv.busy_ticks as f64
            / cpu::ticks_per_second() as f64
            / sent.seconds.max(1e-9),
        config: cfg.clone(),
    })
}

fn join_err(h: std::thread::JoinHandle<Result<Received, BenchError>>) -> BenchError {
    match h.join() {
        Ok(Err(e)) => e,
        _ => BenchError::Other("limit receiver exited during start-up".into()),
    }
}

struct Sent {
    count: u64,
    seconds: f64,
    would_block: u64,
    busy: f64,
}

struct Received {
    count: u64,
    queue_drops: u64,
    busy_ticks: u64,
}

/// Opens a socket-backend endpoint on 127.0.0.1 with our buffer sizes and GSO off: every
/// datagram takes the per-packet kernel path, as the SFU's fan-out to distinct subscribers does.
/// `stamped`: with the kernel's receive time on each datagram ([`gen::Plan::kernel_arrival`]).
///
/// [`gen::Plan::kernel_arrival`]: crate::gen::Plan::kernel_arrival
pub fn open_endpoint(stamped: bool) -> Result<Backend, BenchError> {
    let mut sc = SocketConfig::new(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0));
    sc.reuse_port = false;
    sc.gso = false;
    // Nobody wakes these sockets from another thread: one fd each instead of two (the
    // generator opens one per subscriber, 10,000 of them for the audio-only scale run).
    sc.waker = false;
    sc.recv_buf_bytes = Some(SOCKET_BUF);
    sc.send_buf_bytes = Some(SOCKET_BUF);
    sc.rx_timestamps = stamped;
    Ok(Backend::open_mode(IoMode::Socket, &sc, BATCH)?)
}

fn send(cfg: &LimitConfig, dst: SocketAddr) -> Result<Sent, BenchError> {
    let _ = affinity::pin_current_thread(cfg.sender_core);
    let mut backend = open_endpoint(false)?;
    let mut pool = BufPool::new(4);
    let id = pool.take().expect("a fresh pool has buffers");
    let len = protected_packet(pool.get_mut(id), cfg.packet_len)?;
    let batch = [Transmit {
        buf: id,
        offset: 0,
        len,
        dst,
        segment_size: None,
    }; BATCH];
    let tid = cpu::current_tid();
    let ticks0 = tid.and_then(cpu::thread_ticks).unwrap_or(0);
    let start = Instant::now();
    let mut count = 0u64;
    // Bounded by time; each round is one sendmmsg of BATCH datagrams.
    while start.elapsed() < cfg.duration {
        count += backend.send(&pool, &batch)? as u64;
    }
    let seconds = start.elapsed().as_secs_f64();
    let ticks1 = tid.and_then(cpu::thread_ticks).unwrap_or(0);
    let stats = backend.stats().clone();
    Ok(Sent {
        count: count.saturating_sub(stats.tx_would_block),
        seconds,
        would_block: stats.tx_would_block,
        busy: (ticks1 - ticks0) as f64 / cpu::ticks_per_second() as f64 / seconds.max(1e-9),
    })
}

/// A 1,200-byte (or `len`) RTP packet protected with AES-128-GCM, as the SFU would send it.
fn protected_packet(buf: &mut [u8], len: usize) -> Result<usize, BenchError> {
    let profile = ProtectionProfile::AeadAes128Gcm;
    let plain = len
        .checked_sub(sample::TAG_ROOM)
        .filter(|&p| p >= 32)
        .ok_or_else(|| BenchError::Other(format!("packet_len {len} too small")))?;
    sample::rtp_packet(buf, plain, 1, 1);
    let mut ctx = sample::context(profile);
    ctx.protect_rtp(buf, plain)
        .map_err(|e| BenchError::Other(format!("srtp: {e}")))
}

fn receive(
    core: usize,
    stop: &AtomicBool,
    addr_tx: &mpsc::Sender<Result<SocketAddr, BenchError>>,
) -> Result<Received, BenchError> {
    let _ = affinity::pin_current_thread(core);
    let mut backend = match open_endpoint(false) {
        Ok(b) => b,
        Err(e) => {
            let _ = addr_tx.send(Err(BenchError::Other(e.to_string())));
            return Err(e);
        }
    };
    let _ = addr_tx.send(backend.local_addr().map_err(BenchError::from));
    let mut pool = BufPool::new(4 * BATCH);
    let mut metas = [RecvMeta::default(); BATCH];
    let tid = cpu::current_tid();
    let ticks0 = tid.and_then(cpu::thread_ticks).unwrap_or(0);
    let mut count = 0u64;
    let deadline = Instant::now() + Duration::from_secs(3600);
    while !stop.load(Ordering::Acquire) && Instant::now() < deadline {
        let n = backend.recv(&mut pool, &mut metas)?;
        if n == 0 {
            backend.wait(Some(Duration::from_millis(5)))?;
            continue;
        }
        count += n as u64;
        for m in &metas[..n] {
            pool.give(m.buf);
        }
    }
    let ticks1 = tid.and_then(cpu::thread_ticks).unwrap_or(0);
    Ok(Received {
        count,
        queue_drops: u64::from(backend.stats().rx_queue_drops),
        busy_ticks: ticks1 - ticks0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_packet_has_the_requested_length() {
        let mut buf = [0u8; 2048];
        assert_eq!(protected_packet(&mut buf, 1200).expect("protects"), 1200);
        assert!(protected_packet(&mut buf, 20).is_err());
    }

    #[test]
    fn a_short_run_delivers_packets_over_loopback() {
        let cores = affinity::online_cores().expect("affinity");
        let cfg = LimitConfig::default_for(&cores, Duration::from_millis(100));
        let r = run(&cfg).expect("limit runs");
        assert!(r.received > 0 && r.sent >= r.received, "{r:?}");
        assert!(r.rx_pps > 0.0);
    }
}
