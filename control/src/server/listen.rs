//! The HTTP listener (finding #2): a connection cap, global and per source IP, checked at
//! accept before a byte is read; hyper's HTTP/1 server with a timer, so a client that does
//! not finish its request headers within `limits.http_header_timeout_s` (an idle keep-alive
//! too) is disconnected. A WebSocket keeps its connection's slot until it closes
//! ([`ConnSlot`] travels into the upgraded connection as a request extension).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::Request;
use hyper_util::rt::{TokioIo, TokioTimer};

use super::App;
use crate::limits::Refusal;

/// Open connections: the total and per source IP (entries only while a connection is open,
/// so the map is bounded by `max_connections`).
#[derive(Debug, Default)]
pub(crate) struct Connections {
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One open connection's place in [`Connections`]; freed on drop.
#[derive(Debug)]
pub(crate) struct ConnSlot {
    app: Arc<App>,
    ip: IpAddr,
}

impl Connections {
    /// The open connections and the source IPs they come from (for tests and metrics).
    pub(crate) fn sizes(&self) -> (usize, usize) {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        (open.0, open.1.len())
    }
}

impl ConnSlot {
    /// A slot for a connection from `ip`, or the limit it would pass.
    fn take(app: &Arc<App>, ip: IpAddr) -> Result<Self, Refusal> {
        let l = &app.limits;
        let mut open = app
            .connections
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if open.0 >= l.max_connections {
            return Err(Refusal::Connections);
        }
        let n = open.1.entry(ip).or_insert(0);
        if *n >= l.max_connections_per_ip {
            return Err(Refusal::ConnectionsPerIp);
        }
        *n += 1;
        open.0 += 1;
        Ok(Self {
            app: Arc::clone(app),
            ip,
        })
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut open = self
            .app
            .connections
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.ip);
            }
        }
    }
}

/// Accepts and serves connections until the task is aborted.
pub(crate) async fn serve(app: Arc<App>, listener: tokio::net::TcpListener, router: axum::Router) {
    let header_timeout = Duration::from_secs(app.limits.http_header_timeout_s);
    loop {
        let (stream, peer): (_, SocketAddr) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: let connections close, then go on.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match ConnSlot::take(&app, peer.ip()) {
            Ok(s) => Arc::new(s),
            Err(r) => {
                app.refusals.count(r);
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let conn_slot = Arc::clone(&slot);
            let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(Arc::clone(&conn_slot));
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                let mut router = router.clone();
                tower_service::Service::call(&mut router, req.map(axum::body::Body::new))
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            if let Err(e) = conn.await {
                if e.is_timeout() {
                    app.refusals.count(Refusal::HttpHeaderTimeout);
                }
                tracing::debug!(error = %e, %peer, "http connection ended");
            }
            drop(slot);
        });
    }
}
