//! `sluice-dataplane`: reads the `[dataplane]` configuration (`--config FILE`, then
//! `SLUICE_DATAPLANE_*` env, then flags), logs the capability probe, starts the shards and the
//! control thread, and runs until SIGTERM or SIGINT or a `shutdown` command from the control
//! daemon, then stops cleanly.
//!
//! A panic on any thread ends the process (exit status 70) once the message is logged: a shard
//! or the control thread that died would otherwise leave a half-working dataplane that answers
//! its socket but forwards nothing, and the supervisor (`sluice up`, systemd) would never
//! restart it (security review #22).
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use sluice_dataplane::config::Config;
use sluice_dataplane::runtime::{Dataplane, StartError};
use sluice_dataplane::shard::LoopHook;
use sluice_dataplane::sys::{affinity, capabilities};
use tracing_subscriber::EnvFilter;

/// Exit status after a thread panicked (EX_SOFTWARE).
const PANIC_EXIT: i32 = 70;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        let thread = std::thread::current();
        tracing::error!(
            thread = thread.name().unwrap_or("?"),
            "a dataplane thread panicked: exiting so the supervisor restarts the dataplane"
        );
        std::process::exit(PANIC_EXIT);
    }));

    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut toml_text = None;
    if let Some(i) = args
        .iter()
        .position(|a| a == "--config" || a.starts_with("--config="))
    {
        let path = match args[i].split_once('=') {
            Some((_, p)) => {
                let p = p.to_string();
                args.remove(i);
                p
            }
            None => {
                args.remove(i);
                if i >= args.len() {
                    eprintln!("error: --config: expects a value");
                    return ExitCode::from(2);
                }
                args.remove(i)
            }
        };
        match std::fs::read_to_string(&path) {
            Ok(t) => toml_text = Some(t),
            Err(e) => {
                eprintln!("error: --config: {path}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let online = affinity::online_cores()
        .ok()
        .and_then(|c| c.iter().max().map(|m| m + 1))
        .unwrap_or(1);
    let config = match Config::load(online, toml_text.as_deref(), std::env::vars(), &args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}: {}", e.key, e.message);
            return ExitCode::from(2);
        }
    };
    tracing::info!("capabilities: {}", capabilities().log_line());
    tracing::info!(io = ?config.io, workers = ?config.workers, "starting");

    let mut signals = match Signals::new([SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let media = (config.bind, config.port);
    let mut handle = match Dataplane::start_with_hook(config, fault_hook()) {
        Ok(h) => h,
        // The media address cannot be had: a configuration error naming its key (status 2, so
        // `sluice up` stops on a first start instead of restarting it forever with the node
        // unable to take a session).
        Err(StartError::Worker { worker, source }) if unbindable(&source) => {
            let key = if source.kind() == std::io::ErrorKind::AddrNotAvailable {
                "dataplane.bind"
            } else {
                "dataplane.port"
            };
            eprintln!(
                "error: {key}: {}:{} (worker {worker}): {source}",
                media.0, media.1
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        backend = ?handle.io_mode(),
        media = ?handle.local_addrs(),
        control = %handle.control_socket().display(),
        fingerprint = handle.fingerprint(),
        "dataplane running"
    );
    // A `shutdown` command ends the wait on signals as a signal would.
    if let Some(requests) = handle.take_shutdown_requests() {
        let signals = signals.handle();
        let spawned = std::thread::Builder::new()
            .name("sluice-shutdown".into())
            .spawn(move || {
                if requests.recv().is_ok() {
                    signals.close();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no shutdown-command thread; signals only");
        }
    }
    match signals.forever().next() {
        Some(sig) => tracing::info!(signal = sig, "stopping"),
        None => tracing::info!("stopping on the control daemon's shutdown command"),
    }
    handle.stop();
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Debug builds only: `SLUICE_DATAPLANE_FAULT=panic-shard:<worker>:<ms>` makes that worker panic
/// that long after start, so the crash path (the panic hook above, the supervisor's restart) can
/// be tested on the real binary.
fn fault_hook() -> Option<LoopHook> {
    if !cfg!(debug_assertions) {
        return None;
    }
    let spec = std::env::var("SLUICE_DATAPLANE_FAULT").ok()?;
    let mut parts = spec.strip_prefix("panic-shard:")?.split(':');
    let worker: usize = parts.next()?.parse().ok()?;
    let after = Duration::from_millis(parts.next()?.parse().ok()?);
    let start = Instant::now();
    tracing::warn!(worker, ?after, "fault injection armed");
    Some(Arc::new(move |w, turn: &mut dyn FnMut()| {
        if w == worker && start.elapsed() >= after {
            panic!("injected fault: worker {w} panics (SLUICE_DATAPLANE_FAULT)");
        }
        turn();
    }))
}

/// A bind error that retrying the same address cannot fix soon: taken, not ours, not allowed.
fn unbindable(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{AddrInUse, AddrNotAvailable, PermissionDenied};
    matches!(e.kind(), AddrInUse | AddrNotAvailable | PermissionDenied)
}
