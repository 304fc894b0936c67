//! Webhook delivery: one lane per receiver URL, each a [`WebhookQueue`] (ordered per room,
//! retried with backoff, bounded) driven by its own task, so a receiver that never answers
//! delays and fills only its own lane. POSTs go through hyper's client over http:// or https://
//! (rustls; trust roots from the system store plus `control.webhook_ca_file`), with a 5 s
//! connect and a 5 s response timeout. A full lane drops its oldest event and says so in the
//! log at most once per [`OVERFLOW_WARN_EVERY`] per URL, with the count.

use crate::lock::Locked;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::events::{redact_url, Delivery, EventEnvelope, WebhookConfig, WebhookQueue};

/// How long a receiver has to accept the connection, and then to answer.
const TIMEOUT: Duration = Duration::from_secs(5);
/// "Queue full" warnings per URL are at most this frequent.
const OVERFLOW_WARN_EVERY: Duration = Duration::from_secs(10);

/// Every URL's lane.
#[derive(Debug, Default)]
pub(crate) struct Webhooks {
    lanes: Vec<Arc<Lane>>,
}

#[derive(Debug)]
struct Lane {
    /// For logs and metric labels (no user info or query).
    label: String,
    queue: Mutex<WebhookQueue>,
    wake: Notify,
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Why the webhook client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebhookSetupError {
    #[error("control.webhook_ca_file {path}: {reason}")]
    CaFile { path: String, reason: String },
}

impl Webhooks {
    /// Starts one delivery task per URL (none when `urls` is empty).
    pub(crate) fn start(
        urls: &[String],
        secret: &[u8],
        config: &WebhookConfig,
        ca_file: Option<&Path>,
    ) -> Result<Self, WebhookSetupError> {
        if urls.is_empty() {
            return Ok(Self::default());
        }
        let client = http_client(ca_file)?;
        let lanes = urls
            .iter()
            .map(|url| {
                let lane = Arc::new(Lane {
                    label: redact_url(url),
                    queue: Mutex::new(WebhookQueue::new(config.clone(), url.clone(), secret)),
                    wake: Notify::new(),
                });
                tokio::spawn(drive(Arc::clone(&lane), client.clone()));
                lane
            })
            .collect();
        Ok(Self { lanes })
    }

    /// Queues `envelope` on every URL's lane.
    pub(crate) fn enqueue(&self, envelope: &EventEnvelope, now_ms: u64) {
        for lane in &self.lanes {
            lane.queue.locked().enqueue(envelope, now_ms);
            lane.wake.notify_one();
        }
    }

    /// Per-URL counters for `/metrics`.
    pub(crate) fn metrics(&self, out: &mut String) {
        if self.lanes.is_empty() {
            return;
        }
        let rows: Vec<_> = self
            .lanes
            .iter()
            .map(|l| {
                let q = l.queue.locked();
                (l.label.clone(), q.stats(), q.len())
            })
            .collect();
        let _ = writeln!(out, "# HELP sluice_webhook_delivered_total Events a receiver acknowledged (2xx).\n# TYPE sluice_webhook_delivered_total counter");
        for (url, s, _) in &rows {
            let _ = writeln!(
                out,
                "sluice_webhook_delivered_total{{url=\"{url}\"}} {}",
                s.delivered
            );
        }
        let _ = writeln!(out, "# HELP sluice_webhook_failed_total Delivery attempts that failed (error, timeout or non-2xx).\n# TYPE sluice_webhook_failed_total counter");
        for (url, s, _) in &rows {
            let _ = writeln!(
                out,
                "sluice_webhook_failed_total{{url=\"{url}\"}} {}",
                s.failed_attempts
            );
        }
        let _ = writeln!(out, "# HELP sluice_webhook_dropped_total Events given up on: the lane was full, or every attempt failed.\n# TYPE sluice_webhook_dropped_total counter");
        for (url, s, _) in &rows {
            let _ = writeln!(
                out,
                "sluice_webhook_dropped_total{{url=\"{url}\",reason=\"overflow\"}} {}",
                s.dropped_overflow
            );
            let _ = writeln!(
                out,
                "sluice_webhook_dropped_total{{url=\"{url}\",reason=\"exhausted\"}} {}",
                s.dropped_exhausted
            );
        }
        let _ = writeln!(out, "# HELP sluice_webhook_queued Events waiting or in flight per receiver.\n# TYPE sluice_webhook_queued gauge");
        for (url, _, queued) in &rows {
            let _ = writeln!(out, "sluice_webhook_queued{{url=\"{url}\"}} {queued}");
        }
    }
}

/// One URL's lane: starts due deliveries (up to the queue's in-flight limit), reports their
/// outcome, sleeps until the next is due or an event arrives.
async fn drive(lane: Arc<Lane>, client: HttpClient) {
    let mut in_flight: JoinSet<(u64, bool)> = JoinSet::new();
    let mut warned_drops = 0u64;
    let mut last_warn: Option<tokio::time::Instant> = None;
    loop {
        let now = now_ms();
        let (due, next, dropped) = {
            let mut q = lane.queue.locked();
            let due: Vec<Delivery> = std::iter::from_fn(|| q.poll_due(now)).collect();
            (due, q.poll_timeout(), q.stats().dropped_overflow)
        };
        for d in due {
            let client = client.clone();
            in_flight.spawn(async move {
                let ok = post(&client, &d).await;
                (d.id, ok)
            });
        }
        if dropped > warned_drops && last_warn.is_none_or(|t| t.elapsed() >= OVERFLOW_WARN_EVERY) {
            tracing::warn!(
                url = %lane.label,
                dropped = dropped - warned_drops,
                "webhook queue full: oldest events dropped"
            );
            warned_drops = dropped;
            last_warn = Some(tokio::time::Instant::now());
        }
        let sleep = next.map_or(Duration::from_secs(60), |t| {
            Duration::from_millis(t.saturating_sub(now).max(1))
        });
        tokio::select! {
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Ok((id, ok)) = done {
                    lane.queue.locked().on_result(id, ok, now_ms());
                }
            }
            _ = lane.wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

/// POSTs one delivery; `true` on a 2xx within the timeout.
async fn post(client: &HttpClient, d: &Delivery) -> bool {
    let mut req = hyper::Request::post(d.url.as_str());
    for (name, value) in d.headers() {
        req = req.header(name, value);
    }
    let req = match req.body(Full::new(Bytes::from(d.body.clone()))) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(url = %redact_url(&d.url), error = %e, "webhook request not built");
            return false;
        }
    };
    match tokio::time::timeout(TIMEOUT, client.request(req)).await {
        Ok(Ok(resp)) if resp.status().is_success() => true,
        Ok(Ok(resp)) => {
            tracing::debug!(url = %redact_url(&d.url), status = %resp.status(), attempt = d.attempt, "webhook refused");
            false
        }
        Ok(Err(e)) => {
            tracing::debug!(url = %redact_url(&d.url), error = %e, attempt = d.attempt, "webhook failed");
            false
        }
        Err(_) => {
            tracing::debug!(url = %redact_url(&d.url), attempt = d.attempt, "webhook timed out");
            false
        }
    }
}

/// The HTTP(S) client: rustls over aws-lc-rs, system trust roots plus `ca_file`.
fn http_client(ca_file: Option<&Path>) -> Result<HttpClient, WebhookSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!(error = %e, "a system trust root was not loaded");
    }
    let (_, unusable) = roots.add_parsable_certificates(native.certs);
    if unusable > 0 {
        tracing::debug!(unusable, "system trust roots skipped");
    }
    if let Some(path) = ca_file {
        use rustls_pki_types::pem::PemObject;
        let err = |reason: String| WebhookSetupError::CaFile {
            path: path.display().to_string(),
            reason,
        };
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| err(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(e.to_string()))?;
        if certs.is_empty() {
            return Err(err("no PEM certificate in the file".into()));
        }
        for c in certs {
            roots.add(c).map_err(|e| err(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(https))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
