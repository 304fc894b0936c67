//! `sluice-dataplane`: reads the `[dataplane]` configuration (`--config FILE`, then
//! `SLUICE_DATAPLANE_*` env, then flags), logs the capability probe, starts the shards and the
//! control thread, and runs until SIGTERM or SIGINT or a `shutdown` command from the control
//! daemon, then stops cleanly.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use sluice_dataplane::config::Config;
use sluice_dataplane::runtime::Dataplane;
use sluice_dataplane::sys::{affinity, capabilities};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

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
    let mut handle = match Dataplane::start(config) {
        Ok(h) => h,
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
