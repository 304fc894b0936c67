//! `Dataplane::start`: spawns one pinned shard per configured core (worker i ↔
//! `config.workers[i]`) and the control thread; `DataplaneHandle::stop` joins them all. Used
//! in-process by tests and by the `sluice-dataplane` binary.
//!
//! Start-up order: each shard opens its backend on its own thread (io_uring SINGLE_ISSUER) and
//! reports its address and waker; shards start one after another so that with `port = 0` the
//! first shard's ephemeral port is the one the others join with SO_REUSEPORT. Once all are
//! open, the mesh of rings is built from their wakers and handed to each shard.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use rtp_core::dtls::{DtlsCert, DtlsSettings};

use crate::config::{Config, IoChoice};
use crate::control::{bind_listener, ControlContext, ControlThread};
use crate::pool::BufPool;
use crate::shard::mesh::Mesh;
use crate::shard::msg::ControlTx;
use crate::shard::registry::SharedRegistry;
use crate::shard::tcp::{self, Handoffs, TcpConfig, TcpSide};
use crate::shard::{LoopHook, Shard, ShardContext};
use crate::sys::{affinity, Backend, IoMode, SocketConfig, Waker};

/// Commands a shard's inbox holds before the control thread answers `rejected` (busy).
const INBOX_CAPACITY: usize = 1024;
/// Lossy messages (keyframe notices, pair changes, stats) from all shards to the control thread
/// in flight at once; replies and life-cycle events go on an unbounded channel of their own.
const TO_CONTROL_CAPACITY: usize = 8192;

/// Why the dataplane did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("worker {worker}: {source}")]
    Worker {
        worker: usize,
        source: std::io::Error,
    },
    #[error("control socket {path}: {source}")]
    ControlSocket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("DTLS certificate: {0}")]
    Cert(String),
    #[error("thread: {0}")]
    Thread(std::io::Error),
    #[error("dataplane.trunk_secret_file: {0}")]
    TrunkSecret(String),
}

/// Entry point; see the module docs.
#[derive(Debug)]
pub struct Dataplane;

impl Dataplane {
    pub fn start(config: Config) -> Result<DataplaneHandle, StartError> {
        Self::start_with_hook(config, None)
    }

    /// [`Dataplane::start`] with every shard iteration run inside `hook` (tests: allocation
    /// counting on the shard threads, which only a closure running there can do).
    pub fn start_with_hook(
        config: Config,
        hook: Option<LoopHook>,
    ) -> Result<DataplaneHandle, StartError> {
        let cert = Arc::new(load_cert(&config)?);
        let trunk_secret = load_trunk_secret(&config)?;
        let fingerprint = cert.fingerprint().to_sdp();
        let stop = Arc::new(AtomicBool::new(false));
        let registry = Arc::new(SharedRegistry::default());
        // Lossy: bounded, its buffer allocated here once, so per-keyframe notices and stats never
        // allocate on the packet path. Reliable: unbounded, so a shard never blocks on it.
        let (lossy_tx, from_shards_lossy) = mpsc::sync_channel(TO_CONTROL_CAPACITY);
        let (reliable_tx, from_shards) = mpsc::channel();
        let to_control = ControlTx::new(reliable_tx, lossy_tx);
        let mode = match config.io {
            IoChoice::Auto => IoMode::Auto,
            IoChoice::Uring => IoMode::Uring,
            IoChoice::Socket => IoMode::Socket,
        };

        let (shutdown_tx, shutdown_rx) = mpsc::channel();
        let mut handle = DataplaneHandle {
            threads: Vec::new(),
            shutdown_requests: Some(shutdown_rx),
            stop: Arc::clone(&stop),
            wakers: Vec::new(),
            local_addrs: Vec::new(),
            control_socket: config.control_socket.clone(),
            fingerprint: fingerprint.clone(),
            io_mode: mode,
        };
        let mut inboxes = Vec::new();
        let mut mesh_senders = Vec::new();
        let mut tcp_addrs = Vec::new();
        let handoffs = Arc::new(Handoffs::new(config.workers.len()));
        let tcp_cfg = TcpConfig {
            max_conns: config.tcp_max_connections,
            send_queue_bytes: config.tcp_send_queue_bytes,
            stun_timeout: Duration::from_millis(config.tcp_stun_timeout_ms),
            idle_timeout: Duration::from_millis(config.tcp_idle_timeout_ms),
        };
        let (ice_tcp, tcp_port, bind) = (config.ice_tcp, config.tcp_port, config.bind);
        let mut shared_port = config.port;
        for (i, &core) in config.workers.iter().enumerate() {
            let port = if config.port_per_worker {
                config.worker_port(i)
            } else {
                shared_port
            };
            let mut sock = SocketConfig::new(SocketAddr::new(config.bind, port));
            sock.recv_buf_bytes = Some(config.recv_buffer_bytes);
            sock.send_buf_bytes = Some(config.send_buffer_bytes);
            sock.gso = config.gso;
            let (inbox_tx, inbox_rx) = mpsc::sync_channel(INBOX_CAPACITY);
            let (mesh_tx, mesh_rx) = mpsc::channel::<Arc<Mesh>>();
            let (ready_tx, ready_rx) = mpsc::channel();
            let buffers = config.buffers_per_worker;
            let stats_interval = Duration::from_millis(config.stats_interval_ms.max(1));
            let policy = crate::shard::build::SessionPolicy {
                congestion_pause: config.congestion_pause,
                media_budget: rtp_core::session::MediaBudget {
                    audio_packets_per_s: config.audio_packets_per_s,
                    video_packets_per_s: config.video_packets_per_s,
                },
            };
            let trunk_secret = trunk_secret.clone();
            let dtls = DtlsSettings {
                srtp_profiles: config.srtp_profiles,
                ..DtlsSettings::default()
            };
            let hook = hook.clone();
            let handoffs = Arc::clone(&handoffs);
            let (registry, to_control, cert, stop) = (
                Arc::clone(&registry),
                to_control.clone(),
                Arc::clone(&cert),
                Arc::clone(&stop),
            );
            let thread = std::thread::Builder::new()
                .name(format!("sluice-shard-{i}"))
                .spawn(move || {
                    if let Err(e) = affinity::pin_current_thread(core) {
                        tracing::warn!(worker = i, core, error = %e, "could not pin worker");
                    }
                    let mut pool = BufPool::new(buffers);
                    let recv_depth = (buffers / 2).max(1);
                    let backend = match Backend::open_mode(mode, &sock, recv_depth) {
                        Ok(b) => b,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = backend.set_incoming_cpu(core);
                    let mut tcp_side = None;
                    let info = backend.local_addr().and_then(|a| {
                        if ice_tcp {
                            let side = open_tcp(bind, tcp_port.unwrap_or(a.port()), tcp_cfg)?;
                            tcp_side = Some(side);
                        }
                        let tcp_addr = tcp_side.as_ref().map(TcpSide::local_addr);
                        Ok((a, backend.waker(), backend.mode(), tcp_addr))
                    });
                    let failed = info.is_err();
                    let _ = ready_tx.send(info);
                    let Ok(mesh) = mesh_rx.recv() else {
                        let mut backend = backend;
                        let _ = backend.shutdown(&mut pool);
                        return;
                    };
                    if failed {
                        return;
                    }
                    tracing::info!(worker = i, core, backend = ?backend.mode(), "worker started");
                    Shard::new(ShardContext {
                        index: i as u16,
                        backend,
                        pool,
                        mesh,
                        registry,
                        inbox: inbox_rx,
                        to_control,
                        cert,
                        dtls,
                        stop,
                        stats_interval,
                        tcp: tcp_side,
                        handoffs,
                        policy,
                        trunk_secret,
                    })
                    .run_with(hook);
                })
                .map_err(StartError::Thread)?;
            handle.threads.push(thread);
            inboxes.push(inbox_tx);
            mesh_senders.push(mesh_tx);
            let ready = ready_rx
                .recv()
                .unwrap_or_else(|_| Err(std::io::Error::other("worker exited during start-up")));
            match ready {
                Ok((addr, waker, m, tcp_addr)) => {
                    if i == 0 && !config.port_per_worker {
                        shared_port = addr.port();
                    }
                    tcp_addrs.extend(tcp_addr);
                    handle.local_addrs.push(addr);
                    handle.wakers.push(waker);
                    handle.io_mode = m;
                }
                Err(source) => {
                    drop(mesh_senders);
                    handle.stop();
                    return Err(StartError::Worker { worker: i, source });
                }
            }
        }
        let mesh = Arc::new(Mesh::new(handle.wakers.clone()));
        for tx in mesh_senders {
            let _ = tx.send(Arc::clone(&mesh));
        }

        let listener = match bind_listener(&config.control_socket) {
            Ok(l) => l,
            Err(source) => {
                handle.stop();
                return Err(StartError::ControlSocket {
                    path: config.control_socket.clone(),
                    source,
                });
            }
        };
        let worker_addrs = handle
            .local_addrs
            .iter()
            .enumerate()
            .map(|(i, &bound)| announced(&config, i, bound))
            .collect::<Vec<_>>();
        // The TCP candidate: the announced address's IP with the TCP port.
        let tcp_addrs = tcp_addrs
            .iter()
            .zip(&worker_addrs)
            .map(|(t, u): (&SocketAddr, &SocketAddr)| SocketAddr::new(u.ip(), t.port()))
            .collect::<Vec<_>>();
        log_candidates(&config, &worker_addrs, &tcp_addrs);
        let control = ControlThread::new(ControlContext {
            listener,
            // Unique per start (a restarted process, or a second dataplane in one test
            // process): the control daemon tells a restart by a new instance.
            instance: format!(
                "sluice-dataplane-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros())
            ),
            fingerprint,
            worker_addrs,
            tcp_addrs,
            port_per_worker: config.port_per_worker,
            inboxes,
            wakers: handle.wakers.clone(),
            from_shards,
            from_shards_lossy,
            registry,
            stop: Arc::clone(&stop),
            shutdown: shutdown_tx,
        })
        .map_err(|source| StartError::ControlSocket {
            path: config.control_socket.clone(),
            source,
        })?;
        let thread = std::thread::Builder::new()
            .name("sluice-control".into())
            .spawn(move || control.run())
            .map_err(StartError::Thread)?;
        handle.threads.push(thread);
        Ok(handle)
    }
}

/// The address worker `i` announces: `announce[i]` when one per worker is configured, the only
/// one when a single address is, else what it bound.
/// Logs the candidates sessions will be given and warns when clients elsewhere cannot reach
/// them (issue 18: connectivity that explains itself).
fn log_candidates(config: &Config, udp: &[SocketAddr], tcp: &[SocketAddr]) {
    let mut seen = Vec::new();
    for (proto, a) in udp
        .iter()
        .map(|a| ("udp", a))
        .chain(tcp.iter().map(|a| ("tcp passive", a)))
    {
        if seen.contains(&(proto, a)) {
            continue;
        }
        seen.push((proto, a));
        tracing::info!(candidate = %format!("{proto} {a}"), "advertised candidate");
    }
    if config.bind.is_unspecified() && config.announce.is_empty() {
        tracing::warn!(
            "dataplane.bind is a wildcard address and dataplane.announce is empty: candidates carry \
             the wildcard, which the control daemon replaces with its HTTP listen IP; set \
             dataplane.announce to the address clients reach (docs/connectivity.md)"
        );
    } else if udp.iter().all(|a| a.ip().is_loopback()) {
        tracing::warn!(
            "every candidate is on a loopback address: only clients on this host can connect; set \
             dataplane.bind or dataplane.announce (docs/connectivity.md)"
        );
    }
}

/// This worker's ICE-TCP listener (shared by the workers with `SO_REUSEPORT`); an error names
/// the key.
fn open_tcp(bind: std::net::IpAddr, port: u16, cfg: TcpConfig) -> std::io::Result<TcpSide> {
    let addr = SocketAddr::new(bind, port);
    let named = |e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("dataplane.tcp_port: TCP {addr}: {e}"))
    };
    let listener = tcp::listen(addr).map_err(named)?;
    #[allow(clippy::disallowed_methods)]
    let now = std::time::Instant::now();
    TcpSide::new(listener, cfg, now).map_err(named)
}

fn announced(config: &Config, i: usize, bound: SocketAddr) -> SocketAddr {
    match config.announce.len() {
        0 => bound,
        1 => config.announce[0],
        n if i < n => config.announce[i],
        _ => bound,
    }
}

/// The cluster secret trunks derive their keys from (`dataplane.trunk_secret_file`).
fn load_trunk_secret(config: &Config) -> Result<Option<Arc<[u8]>>, StartError> {
    let Some(path) = &config.trunk_secret_file else {
        return Ok(None);
    };
    let bytes = std::fs::read(path)
        .map_err(|e| StartError::TrunkSecret(format!("{}: {e}", path.display())))?;
    if bytes.len() < rtp_core::session::MIN_TRUNK_SECRET {
        return Err(StartError::TrunkSecret(format!(
            "{}: {} bytes, at least {} needed",
            path.display(),
            bytes.len(),
            rtp_core::session::MIN_TRUNK_SECRET
        )));
    }
    Ok(Some(bytes.into()))
}

fn load_cert(config: &Config) -> Result<DtlsCert, StartError> {
    match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => {
            let cert_der = std::fs::read(cert).map_err(|e| StartError::Cert(e.to_string()))?;
            let key_der = std::fs::read(key).map_err(|e| StartError::Cert(e.to_string()))?;
            // DER files; PEM loading is not implemented yet.
            DtlsCert::from_der(cert_der, key_der).map_err(|e| StartError::Cert(e.to_string()))
        }
        _ => DtlsCert::generate(SystemTime::now()).map_err(|e| StartError::Cert(e.to_string())),
    }
}

/// A running dataplane. Dropping it without `stop` leaves the threads running.
#[derive(Debug)]
pub struct DataplaneHandle {
    threads: Vec<JoinHandle<()>>,
    shutdown_requests: Option<mpsc::Receiver<()>>,
    stop: Arc<AtomicBool>,
    wakers: Vec<Waker>,
    local_addrs: Vec<SocketAddr>,
    control_socket: PathBuf,
    fingerprint: String,
    io_mode: IoMode,
}

impl DataplaneHandle {
    /// Bound media address of each worker (all equal unless `port_per_worker`).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    pub fn control_socket(&self) -> &std::path::Path {
        &self.control_socket
    }

    /// `"sha-256 AB:…"`, as in `Hello.fingerprint`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The backend the workers run on.
    pub fn io_mode(&self) -> IoMode {
        self.io_mode
    }

    /// Receives one message per `shutdown` command from the control daemon; the caller decides
    /// what it means (the `sluice-dataplane` binary stops). `None` after the first call.
    pub fn take_shutdown_requests(&mut self) -> Option<mpsc::Receiver<()>> {
        self.shutdown_requests.take()
    }

    /// Signals every thread and joins them.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        for w in &self.wakers {
            w.wake();
        }
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                tracing::error!("a dataplane thread panicked");
            }
        }
        let _ = std::fs::remove_file(&self.control_socket);
    }
}
