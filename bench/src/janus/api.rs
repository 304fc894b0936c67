//! Janus's HTTP API calls the benchmark makes (Janus "RESTful API": `POST /janus` creates a
//! session, `POST /janus/<session>` attaches a plugin, `POST /janus/<session>/<handle>` sends a
//! plugin message, `GET /janus/<session>` long-polls events).

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
