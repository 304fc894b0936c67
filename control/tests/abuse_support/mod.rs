//! Shared by the abuse tests (docs/security.md): a server with chosen `[limits]`, the
//! `sluice_refused_total` counters and gauges read from `/metrics`, the process's memory, and
//! a panic counter (every abuse test asserts that nothing panicked).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

use sluice_control::limits::Limits;
use sluice_control::server::{Server, ServerOptions};

use crate::api_support;

static PANICS: AtomicUsize = AtomicUsize::new(0);
static HOOK: Once = Once::new();

/// Counts panics in the server's tasks (the runtime's worker threads; a failing assertion of
/// a test, on its own thread, is not counted) from now on. The default hook still prints them.
pub fn watch_panics() {
    HOOK.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let name = std::thread::current().name().map(str::to_owned);
            if name.is_none_or(|n| n.starts_with("tokio-")) {
                PANICS.fetch_add(1, Ordering::SeqCst);
            }
            prev(info);
        }));
    });
}

/// Server panics seen since [`watch_panics`] (in any test of this binary).
pub fn panics() -> usize {
    PANICS.load(Ordering::SeqCst)
}

/// A server with `limits` changed by `f` (and the rest of the options by `g`).
pub async fn start_limited(
    f: impl FnOnce(&mut Limits),
    g: impl FnOnce(&mut ServerOptions),
) -> Server {
    watch_panics();
    api_support::start_with(|o| {
        f(&mut o.limits);
        g(o);
    })
    .await
}

/// One sample of `/metrics`: `name{labels}` → value.
pub async fn metric(addr: SocketAddr, series: &str) -> Option<f64> {
    let (_, body) = api_support::http(addr, "GET", "/metrics", &[], "").await;
    let text = body.as_str()?.to_owned();
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// `sluice_refused_total{reason}` (0 if the series is missing: the old code had none).
pub async fn refused(addr: SocketAddr, reason: &str) -> f64 {
    metric(
        addr,
        &format!("sluice_refused_total{{reason=\"{reason}\"}}"),
    )
    .await
    .unwrap_or(0.0)
}

/// This process's resident and peak resident memory, KiB (`/proc/self/status`).
pub fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
