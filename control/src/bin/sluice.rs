//! `sluice`: the control daemon and its tools.
//!
//! - `sluice up [--config sluice.toml] [--http ADDR] [--state-file PATH] [--dataplane-bin PATH]
//!   [--external-dataplane] [--hybrid-<key> V] [--turn-<key> V]`: serve HTTP/WebSocket, spawn
//!   and supervise `sluice-dataplane` (or attach to one already listening on the control
//!   socket), persist rooms. `--hybrid-default-mode auto` turns on the P2P/SFU policy.
//! - `sluice token --room R --identity I --role host|controller|viewer [--grants LIST]
//!   [--ttl 6h] [--name N] [--region R]` and `sluice token --admin [--ttl 6h]`: print a token signed with
//!   the configured (or dev) API key.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use tokio::sync::{oneshot, watch};

use sluice_control::auth::{self, AdminClaims, Claims, Grants, Role, Source};
use sluice_control::config::ControlConfig;
use sluice_control::room::{RoomConfig, RoomsConfig};
use sluice_control::server::{Server, ServerOptions};

/// mimalloc, counted: `cap` keeps the bytes allocated and not yet freed in one atomic, which
/// `/metrics` exports as `sluice_control_heap_bytes` (D122). No limit is set.
#[global_allocator]
static GLOBAL: cap::Cap<mimalloc::MiMalloc> = cap::Cap::new(mimalloc::MiMalloc, usize::MAX);

/// The control daemon's live heap, in bytes.
fn heap_bytes() -> usize {
    GLOBAL.allocated()
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        eprintln!("usage: sluice up [flags] | sluice token [flags]");
        return ExitCode::from(2);
    }
    let cmd = args.remove(0);
    let config_path = match take_flag(&mut args, "--config") {
        Ok(p) => p.map(PathBuf::from),
        Err(e) => return fail(&e),
    };
    let toml_text = match &config_path {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => Some(t),
            Err(e) => return fail(&format!("--config: {}: {e}", p.display())),
        },
        None => None,
    };
    match cmd.as_str() {
        "up" => up(config_path, toml_text, args),
        "token" => token(toml_text, args),
        other => fail(&format!("unknown command {other:?} (expected up or token)")),
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

/// Removes `--name value` / `--name=value` from `args`.
fn take_flag(args: &mut Vec<String>, name: &str) -> Result<Option<String>, String> {
    let Some(i) = args
        .iter()
        .position(|a| a == name || a.starts_with(&format!("{name}=")))
    else {
        return Ok(None);
    };
    let arg = args.remove(i);
    if let Some((_, v)) = arg.split_once('=') {
        return Ok(Some(v.to_owned()));
    }
    if i >= args.len() {
        return Err(format!("{name}: expects a value"));
    }
    Ok(Some(args.remove(i)))
}

/// API keys from the config, else the dev pair in the state directory (created on first use).
fn api_keys(cfg: &ControlConfig) -> Result<BTreeMap<String, String>, String> {
    if !cfg.api_keys.is_empty() {
        return Ok(cfg.api_keys.clone());
    }
    let dir = cfg
        .state_file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let path = dir.join("dev-keys.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        use std::os::unix::fs::PermissionsExt;
        // An older file others can read: this user's only, from now on (finding #15).
        if let Ok(meta) = std::fs::metadata(&path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "dev key file was readable by others: now 0600");
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        return serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()));
    }
    let mut secret = [0u8; 24];
    aws_lc_rs::rand::fill(&mut secret).map_err(|_| "system RNG failed".to_owned())?;
    let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let keys = BTreeMap::from([("devkey".to_owned(), secret.clone())]);
    {
        use std::io::Write as _;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        // A secret: readable by this user only.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| {
                f.write_all(&serde_json::to_vec_pretty(&keys).expect("map serializes"))
            })
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    // The secret itself stays in the file (0600): printed, it would land in the journal.
    eprintln!(
        "generated a development API key \"devkey\"; its secret is in {} (mode 0600)",
        path.display()
    );
    Ok(keys)
}

fn up(config_path: Option<PathBuf>, toml_text: Option<String>, flags: Vec<String>) -> ExitCode {
    let cfg = match ControlConfig::load(toml_text.as_deref(), std::env::vars(), &flags) {
        Ok(c) => c,
        Err(e) => return fail(&e.to_string()),
    };
    let keys = match api_keys(&cfg) {
        Ok(k) => k,
        Err(e) => return fail(&e),
    };
    let dev_tokens = cfg.dev_tokens_enabled();
    if dev_tokens {
        tracing::warn!(
            "dev mode: GET /dev/token hands out tokens to anyone who can reach the HTTP port"
        );
    }
    // The demo page from where it was built, never from the working directory (finding #34:
    // files someone placed there would be served in the daemon's origin).
    let static_dir = Some(PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/static"
    )))
    .filter(|p| p.is_dir());
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("tokio runtime: {e}")),
    };
    rt.block_on(async move {
        let socket = cfg.dataplane_socket.clone();
        // The dataplane this process spawned and supervises, if any.
        let mut supervisor = None;
        let (fatal_tx, fatal_rx) = oneshot::channel::<String>();
        if cfg.external_dataplane {
            tracing::info!(socket = %socket.display(), "using an external dataplane");
        } else if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            // Attach only to a socket of our own user, in a directory no one else may write
            // (finding #9): otherwise another user's listener gets every ICE password.
            if let Err(why) = own_socket(&socket) {
                return fail(&format!(
                    "dataplane.control_socket {}: {why}; not attaching",
                    socket.display()
                ));
            }
            tracing::info!(socket = %socket.display(), "dataplane already running: attaching");
        } else {
            let bin = cfg.dataplane_bin.clone().unwrap_or_else(|| {
                std::env::current_exe()
                    .map(|p| p.with_file_name("sluice-dataplane"))
                    .unwrap_or_else(|_| PathBuf::from("sluice-dataplane"))
            });
            let (stop_tx, stop_rx) = watch::channel(false);
            let task = tokio::spawn(supervise(
                bin,
                config_path.clone(),
                socket.clone(),
                stop_rx,
                fatal_tx,
            ));
            supervisor = Some((stop_tx, task));
        }
        let opts = ServerOptions {
            http: cfg.http,
            api_keys: keys,
            rooms: RoomsConfig {
                auto_create: cfg.auto_create,
                default_room: RoomConfig {
                    max_controllers: cfg.max_controllers,
                    ..RoomConfig::default()
                },
                tiers: cfg.tiers,
                lifetimes: cfg.lifetimes,
            },
            state_file: Some(cfg.state_file.clone()),
            webhooks: cfg.webhooks.clone(),
            webhook_secret: cfg.webhook_secret.clone(),
            webhook_ca_file: cfg.webhook_ca_file.clone(),
            webhook: Default::default(),
            sse: sluice_control::events::SseConfig {
                backlog_per_room: cfg.sse_backlog_per_room,
                ..Default::default()
            },
            static_dir,
            dataplane_socket: Some(socket),
            drain_deadline: Duration::from_secs(cfg.drain_deadline_s),
            dev_tokens,
            hybrid: cfg.hybrid.clone(),
            turn: cfg.turn.clone(),
            limits: cfg.limits.clone(),
            cluster: cfg.cluster.clone(),
            heap_bytes: Some(heap_bytes),
        };
        let server = match Server::start(opts).await {
            Ok(s) => s,
            Err(e) => return fail(&e.to_string()),
        };
        eprintln!("sluice is up: http://{}/", server.addr);
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => return fail(&format!("signal handler: {e}")),
            };
        let mut code = ExitCode::SUCCESS;
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM: draining");
                server.drain();
                server.drained().await;
            }
            // `POST /api/drain`: the same end as SIGTERM once the rooms emptied or the
            // deadline passed (docs/api.md "Operations").
            () = server.drained() => tracing::info!("drained: exiting"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
            Ok(why) = fatal_rx => {
                eprintln!("error: {why}");
                code = ExitCode::from(2);
            }
        }
        // A clean stop takes the dataplane we spawned with us (a crash or SIGKILL of this
        // process leaves it running, so calls survive a control restart): the `shutdown`
        // command first, a signal if it does not go.
        if let Some((stop, task)) = supervisor {
            let _ = stop.send(true);
            if let Err(e) = server.shutdown_dataplane().await {
                tracing::info!(error = %e, "no shutdown command: the dataplane gets a signal");
            }
            let _ = task.await;
        }
        server.shutdown().await;
        code
    })
}

/// Whether `socket` (something listens there) is ours to attach to: the socket file and its
/// directory belong to our user, and the directory is not writable by others (no one else can
/// swap the socket).
fn own_socket(socket: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let ours = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(|e| format!("our uid: {e}"))?;
    let meta = std::fs::symlink_metadata(socket).map_err(|e| e.to_string())?;
    if meta.uid() != ours {
        return Err(format!(
            "the socket belongs to uid {}, not to us ({ours})",
            meta.uid()
        ));
    }
    if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) {
        let d = std::fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
        if d.uid() != ours || d.mode() & 0o022 != 0 {
            return Err(format!(
                "its directory {} belongs to uid {} with mode {:o}: it must be ours and closed to others",
                dir.display(),
                d.uid(),
                d.mode() & 0o7777
            ));
        }
    }
    Ok(())
}

/// How long a dataplane gets to exit after the `shutdown` command, then after SIGTERM.
const DATAPLANE_STOP_GRACE: Duration = Duration::from_secs(3);

/// Runs the dataplane and restarts it with backoff when it exits. The link reconnects on its
/// own and resyncs, which re-creates sessions, tracks and subscriptions in the new process.
/// A first start that exits at once with status 2 (a configuration error, which the dataplane
/// names) is reported on `fatal` instead: restarting cannot fix it. Once `stop` turns true it
/// restarts nothing and returns when the child is gone: it exits on the `shutdown` command
/// the server sends, else on SIGTERM, else it is killed.
async fn supervise(
    bin: PathBuf,
    config: Option<PathBuf>,
    socket: PathBuf,
    mut stop: watch::Receiver<bool>,
    fatal: oneshot::Sender<String>,
) {
    // A crash after a while is restarted at once (calls are waiting); a crash loop backs off.
    let mut backoff = Duration::from_millis(50);
    let mut fatal = Some(fatal);
    loop {
        let mut cmd = tokio::process::Command::new(&bin);
        if let Some(c) = &config {
            cmd.arg("--config").arg(c);
        }
        cmd.arg("--control-socket").arg(&socket);
        let started = tokio::time::Instant::now();
        match cmd.spawn() {
            Ok(mut child) => {
                tracing::info!(bin = %bin.display(), pid = child.id(), "dataplane started");
                let status = tokio::select! {
                    status = child.wait() => status,
                    _ = stopped(&mut stop) => {
                        stop_child(&mut child).await;
                        return;
                    }
                };
                match status {
                    Ok(status) => {
                        tracing::warn!(%status, "dataplane exited");
                        let quick = started.elapsed() < Duration::from_secs(5);
                        if status.code() == Some(2) && quick {
                            if let Some(fatal) = fatal.take() {
                                let _ = fatal.send(format!(
                                    "{} refused its configuration (see its error above)",
                                    bin.display()
                                ));
                                return;
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "dataplane wait failed"),
                }
            }
            Err(e) => {
                tracing::error!(bin = %bin.display(), error = %e, "cannot start the dataplane")
            }
        }
        fatal = None;
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_millis(50);
        }
        tracing::info!(?backoff, "restarting the dataplane");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopped(&mut stop) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Waits for a dataplane asked to stop; SIGTERM (through `kill(1)`: this crate has no
/// `unsafe`), then SIGKILL if it lingers.
async fn stop_child(child: &mut tokio::process::Child) {
    if tokio::time::timeout(DATAPLANE_STOP_GRACE, child.wait())
        .await
        .is_ok()
    {
        return;
    }
    if let Some(pid) = child.id() {
        tracing::warn!(
            pid,
            "dataplane still running after the shutdown command: SIGTERM"
        );
        let _ = tokio::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .await;
        if tokio::time::timeout(DATAPLANE_STOP_GRACE, child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    tracing::warn!("dataplane did not stop: SIGKILL");
    let _ = child.kill().await;
}

fn parse_ttl(s: &str) -> Result<u64, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("--ttl: expected e.g. 6h, got {s:?}"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("--ttl: unknown unit {unit:?} (s, m, h, d)")),
    };
    Ok(n * mult)
}

fn token(toml_text: Option<String>, mut args: Vec<String>) -> ExitCode {
    let mut run = || -> Result<String, String> {
        let is_admin = if let Some(i) = args.iter().position(|a| a == "--admin") {
            args.remove(i);
            true
        } else {
            false
        };
        let room = take_flag(&mut args, "--room")?;
        let identity = take_flag(&mut args, "--identity")?;
        let role = take_flag(&mut args, "--role")?;
        let grants = take_flag(&mut args, "--grants")?;
        let name = take_flag(&mut args, "--name")?;
        let region = take_flag(&mut args, "--region")?;
        let ttl = parse_ttl(&take_flag(&mut args, "--ttl")?.unwrap_or_else(|| "6h".into()))?;
        let cfg = ControlConfig::load(toml_text.as_deref(), std::env::vars(), &args)
            .map_err(|e| e.to_string())?;
        let keys = api_keys(&cfg)?;
        let (key, secret) = keys.iter().next().ok_or("no API key")?;
        let now = auth::unix_seconds(SystemTime::now());
        if is_admin {
            let claims = AdminClaims {
                iss: key.clone(),
                sub: identity.unwrap_or_else(|| "admin".into()),
                admin: true,
                exp: now + ttl,
                nbf: now.saturating_sub(1),
                iat: now,
            };
            return Ok(auth::mint_admin(key, secret.as_bytes(), &claims));
        }
        let room = room.ok_or("--room: required")?;
        let identity = identity.ok_or("--identity: required")?;
        let role = match role.as_deref().unwrap_or("viewer") {
            "host" => Role::Host,
            "controller" => Role::Controller,
            "viewer" => Role::Viewer,
            other => {
                return Err(format!(
                    "--role: expected host, controller or viewer, got {other:?}"
                ))
            }
        };
        let mut g = Grants::for_role(role);
        if let Some(list) = grants {
            g = Grants {
                can_publish: false,
                can_subscribe: false,
                can_publish_sources: Vec::new(),
                can_update_metadata: false,
                can_publish_data: Some(false),
            };
            for item in list.split(',').filter(|s| !s.is_empty()) {
                match item {
                    "publish" => g.can_publish = true,
                    "subscribe" => g.can_subscribe = true,
                    "metadata" => g.can_update_metadata = true,
                    "data" => g.can_publish_data = Some(true),
                    "camera" => g.can_publish_sources.push(Source::Camera),
                    "microphone" => g.can_publish_sources.push(Source::Microphone),
                    "screen" => g.can_publish_sources.push(Source::Screen),
                    other => return Err(format!("--grants: unknown grant {other:?} (publish, subscribe, metadata, data, camera, microphone, screen)")),
                }
            }
        }
        let claims = Claims {
            iss: key.clone(),
            sub: identity,
            room,
            role,
            grants: g,
            name,
            metadata: None,
            region,
            exp: now + ttl,
            nbf: now.saturating_sub(1),
            iat: now,
        };
        Ok(auth::mint(key, secret.as_bytes(), &claims))
    };
    match run() {
        Ok(t) => {
            println!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}
