//! Janus's HTTP API calls the benchmark makes (Janus "RESTful API": `POST /janus` creates a
//! session, `POST /janus/<session>` attaches a plugin, `POST /janus/<session>/<handle>` sends a
//! plugin message (synchronous, or asynchronous with its result as an event), `GET
//! /janus/<session>` long-polls events).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};

use super::http::request;
use crate::report::BenchError;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Janus's API at one address.
#[derive(Debug, Clone, Copy)]
pub struct Api {
    addr: SocketAddr,
}

impl Api {
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr }
    }

    fn post(&self, path: &str, body: Value) -> Result<Value, BenchError> {
        let v = request(self.addr, path, Some(&body), TIMEOUT)?;
        if v["janus"] == "error" {
            return Err(BenchError::Other(format!("Janus: {}", v["error"])));
        }
        Ok(v)
    }

    /// `GET /janus/info`.
    pub fn info(&self) -> Result<Value, BenchError> {
        let v = request(self.addr, "/janus/info", None, TIMEOUT)?;
        Ok(
            json!({"version": v["version_string"], "plugins": v["plugins"]
            .as_object().map(|o| o.keys().cloned().collect::<Vec<_>>())}),
        )
    }

    /// A new session's id.
    pub fn create_session(&self) -> Result<u64, BenchError> {
        let v = self.post("/janus", json!({"janus": "create", "transaction": "c"}))?;
        v["data"]["id"]
            .as_u64()
            .ok_or_else(|| BenchError::Other(format!("create: {v}")))
    }

    /// A VideoRoom handle on `session`.
    pub fn attach_videoroom(&self, session: u64) -> Result<u64, BenchError> {
        let v = self.post(
            &format!("/janus/{session}"),
            json!({"janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": "a"}),
        )?;
        v["data"]["id"]
            .as_u64()
            .ok_or_else(|| BenchError::Other(format!("attach: {v}")))
    }

    /// A synchronous VideoRoom request (`create`, `destroy`, `exists`, …); returns the plugin's
    /// data.
    pub fn videoroom(&self, session: u64, handle: u64, body: Value) -> Result<Value, BenchError> {
        let v = self.post(
            &format!("/janus/{session}/{handle}"),
            json!({"janus": "message", "transaction": "m", "body": body}),
        )?;
        let data = v["plugindata"]["data"].clone();
        if data["videoroom"] == "event" && data.get("error").is_some() {
            return Err(BenchError::Other(format!("videoroom: {}", data["error"])));
        }
        Ok(data)
    }

    /// An asynchronous plugin message (`join`, `configure`, `start`, …) with an optional JSEP;
    /// Janus acknowledges it at once and answers later with an event carrying `transaction`
    /// (see [`Api::wait_event`]).
    pub fn message_async(
        &self,
        session: u64,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
        transaction: &str,
    ) -> Result<(), BenchError> {
        let mut msg = json!({"janus": "message", "transaction": transaction, "body": body});
        if let Some(j) = jsep {
            msg["jsep"] = j;
        }
        let v = self.post(&format!("/janus/{session}/{handle}"), msg)?;
        match v["janus"].as_str() {
            Some("ack") => Ok(()),
            // A plugin may answer synchronously; keep it for `wait_event`.
            Some("success") | Some("event") => Ok(()),
            _ => Err(BenchError::Other(format!("message: {v}"))),
        }
    }

    /// Long-polls `session`'s events (`GET /janus/<session>?maxev=N`, RESTful API) until one
    /// with `transaction` arrives or `timeout` passes; events for other transactions are kept in
    /// `pending` for later calls. Only called when an event is due, so Janus answers at once.
    pub fn wait_event(
        &self,
        session: u64,
        transaction: &str,
        pending: &mut Vec<Value>,
        timeout: Duration,
    ) -> Result<Value, BenchError> {
        let deadline = std::time::Instant::now() + timeout;
        // Bounded by the deadline.
        loop {
            if let Some(i) = pending
                .iter()
                .position(|e| e["transaction"] == transaction && e["janus"] == "event")
            {
                let e = pending.swap_remove(i);
                let data = &e["plugindata"]["data"];
                if data.get("error").is_some() {
                    return Err(BenchError::Other(format!("videoroom: {}", data["error"])));
                }
                return Ok(e);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(BenchError::Other(format!(
                    "no Janus event for transaction {transaction} within {timeout:?}"
                )));
            }
            let v = request(
                self.addr,
                &format!("/janus/{session}?maxev=64"),
                None,
                left.min(TIMEOUT),
            )?;
            match v {
                Value::Array(evs) => pending.extend(evs),
                // Janus's long-poll answers a keepalive when nothing happened in 30 s.
                v if v["janus"] == "keepalive" => {}
                v => pending.push(v),
            }
            // Events nobody waits for (webrtcup, media, slowlink) must not pile up.
            pending.retain(|e| e["transaction"].is_string() && e["janus"] == "event");
        }
    }

    pub fn destroy_session(&self, session: u64) -> Result<(), BenchError> {
        self.post(
            &format!("/janus/{session}"),
            json!({"janus": "destroy", "transaction": "d"}),
        )
        .map(|_| ())
    }

    /// Session → VideoRoom handle → create room (up to 10,000 subscribers' worth of
    /// publishers: 1) → destroy room → destroy session.
    pub fn room_smoke(&self) -> Result<Value, BenchError> {
        let info = self.info()?;
        let s = self.create_session()?;
        let h = self.attach_videoroom(s)?;
        let room = 4242u64;
        let created = self.videoroom(
            s,
            h,
            json!({"request": "create", "room": room, "publishers": 1, "videocodec": "vp8",
                   "audiocodec": "opus", "bitrate": 2_000_000}),
        )?;
        let destroyed = self.videoroom(s, h, json!({"request": "destroy", "room": room}))?;
        self.destroy_session(s)?;
        Ok(
            json!({"version": info["version"], "plugins": info["plugins"],
                  "room": created["room"], "created": created["videoroom"],
                  "destroyed": destroyed["videoroom"]}),
        )
    }
}
