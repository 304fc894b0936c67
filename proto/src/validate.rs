//! Field-level validation of commands: everything that can be checked without dataplane state
//! (ranges, formats, duplicates inside one command). Failures name the field as a dotted path,
//! so the control daemon can point at the exact SDP line it came from. State checks (unknown
//! session, duplicate id) happen in the dataplane and answer `rejected` / `not_found`.
//!
//! Formats: ICE ufrag/pwd per RFC 8839 §5.4 (ice-char = ALPHA / DIGIT / "+" / "/"; ufrag 4–256,
//! pwd 22–256 chars); payload types per RFC 3550 §5.1 (7 bits); header-extension ids per
//! RFC 8285 §4.2–4.3 (1–255, 0 is padding); rid per RFC 8851 §10 (alphanumerics, "-", "_";
//! we cap it at 16 chars as browsers do); fingerprints per RFC 8122 §5.

use std::collections::HashSet;

use crate::command::{
    AddTrack, Command, CreateSession, SendData, Subscribe, TransportMode, TrunkCrypto,
};
use crate::message::{ErrorBody, ErrorCode};
use crate::vocab::{ExtIds, MediaKind};

/// A command field with a bad value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{field}`: {reason}")]
pub struct Invalid {
    /// Dotted path of the field, e.g. `"ice.ufrag"` or `"layers[1].rtx_ssrc"`.
    pub field: String,
    pub reason: String,
}

impl Invalid {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<Invalid> for ErrorBody {
    fn from(e: Invalid) -> Self {
        ErrorBody {
            code: ErrorCode::Invalid,
            message: e.reason,
            field: Some(e.field),
        }
    }
}

/// Most simulcast layers a track may declare (browsers send at most 3).
pub const MAX_LAYERS: usize = 4;
/// Highest spatial/temporal layer index `SetLayerCap` accepts.
pub const MAX_LAYER_INDEX: u8 = 7;

impl Command {
    /// Checks every field that can be checked without dataplane state.
    pub fn validate(&self) -> Result<(), Invalid> {
        match self {
            Self::CreateSession(c) => create_session(c),
            Self::SetRemote {
                remote_ufrag,
                remote_pwd,
                remote_fingerprint,
                ..
            } => {
                ufrag("remote_ufrag", remote_ufrag)?;
                pwd("remote_pwd", remote_pwd)?;
                opt(remote_fingerprint, |f| fingerprint("remote_fingerprint", f))
            }
            Self::IceRestart {
                ufrag: u,
                pwd: p,
                remote_ufrag,
                remote_pwd,
                ..
            } => {
                ufrag("ufrag", u)?;
                pwd("pwd", p)?;
                opt(remote_ufrag, |u| ufrag("remote_ufrag", u))?;
                opt(remote_pwd, |p| pwd("remote_pwd", p))
            }
            Self::AddTrack(t) => add_track(t),
            Self::Subscribe(s) => subscribe(s),
            Self::RelayTrack(r) => {
                if usize::from(r.layer) >= MAX_LAYERS {
                    return Err(Invalid::new("layer", format!("above {}", MAX_LAYERS - 1)));
                }
                subscribe(&r.as_subscribe())
            }
            Self::SetLayerCap {
                max_spatial,
                max_temporal,
                ..
            } => {
                if *max_spatial > MAX_LAYER_INDEX {
                    return Err(Invalid::new(
                        "max_spatial",
                        format!("above {MAX_LAYER_INDEX}"),
                    ));
                }
                if *max_temporal > MAX_LAYER_INDEX {
                    return Err(Invalid::new(
                        "max_temporal",
                        format!("above {MAX_LAYER_INDEX}"),
                    ));
                }
                Ok(())
            }
            Self::CloseSession { .. }
            | Self::RemoveTrack { .. }
            | Self::Unsubscribe { .. }
            | Self::SetMuted { .. }
            | Self::SetPriority { .. }
            | Self::ListSessions { .. }
            | Self::ListTracks { .. }
            | Self::ListSubscriptions { .. }
            | Self::Ping {}
            | Self::Stats {}
            | Self::Shutdown {}
            | Self::SessionStats { .. } => Ok(()),
            Self::SendData(d) => send_data(d),
            Self::UpdateData(u) => opt(&u.input_to, |t| data_id("input_to", t)),
        }
    }
}

/// The data relay's message limit (`a=max-message-size`), envelope included.
pub const MAX_DATA_MESSAGE: usize = 65_536;
/// Destinations one data message may name.
pub const MAX_DATA_DESTINATIONS: usize = 64;

fn data_id(field: &str, v: &str) -> Result<(), Invalid> {
    if v.is_empty() || v.len() > 128 || v.chars().any(char::is_control) {
        return Err(Invalid::new(
            field,
            "must be 1-128 bytes, no control characters",
        ));
    }
    Ok(())
}

fn send_data(d: &SendData) -> Result<(), Invalid> {
    data_id("room", &d.room)?;
    data_id("from", &d.from)?;
    if d.to.len() > MAX_DATA_DESTINATIONS {
        return Err(Invalid::new(
            "to",
            format!("at most {MAX_DATA_DESTINATIONS} destinations"),
        ));
    }
    for (i, t) in d.to.iter().enumerate() {
        data_id(&format!("to[{i}]"), t)?;
    }
    let envelope = 2 + d.from.len();
    if envelope + d.payload.len() > MAX_DATA_MESSAGE {
        return Err(Invalid::new(
            "payload",
            format!(
                "{} bytes; at most {} with this sender id",
                d.payload.len(),
                MAX_DATA_MESSAGE - envelope
            ),
        ));
    }
    Ok(())
}

fn create_session(c: &CreateSession) -> Result<(), Invalid> {
    ufrag("ice.ufrag", &c.ice.ufrag)?;
    pwd("ice.pwd", &c.ice.pwd)?;
    opt(&c.ice.remote_ufrag, |u| ufrag("ice.remote_ufrag", u))?;
    opt(&c.ice.remote_pwd, |p| pwd("ice.remote_pwd", p))?;
    opt(&c.remote_fingerprint, |f| {
        fingerprint("remote_fingerprint", f)
    })?;
    if let TransportMode::Trunk {
        crypto:
            TrunkCrypto::Srtp {
                local_node,
                remote_node,
                ..
            },
        ..
    } = &c.mode
    {
        node_name("mode.crypto.local_node", local_node)?;
        node_name("mode.crypto.remote_node", remote_node)?;
        if local_node == remote_node {
            return Err(Invalid::new("mode.crypto.remote_node", "equals local_node"));
        }
    }
    if let TransportMode::Trunk {
        silence_ms: Some(ms),
        ..
    } = &c.mode
    {
        if !crate::command::TRUNK_SILENCE_MS.contains(ms) {
            return Err(Invalid::new("mode.silence_ms", "must be 500..=60000"));
        }
    }
    if let TransportMode::PlainRtp { remote, local_port }
    | TransportMode::Trunk {
        remote, local_port, ..
    } = &c.mode
    {
        if remote.port() == 0 {
            return Err(Invalid::new("mode.remote", "port 0"));
        }
        if remote.ip().is_unspecified() || remote.ip().is_multicast() {
            return Err(Invalid::new("mode.remote", "not a unicast address"));
        }
        if *local_port == Some(0) {
            return Err(Invalid::new(
                "mode.local_port",
                "port 0 (use null to let the dataplane pick)",
            ));
        }
    }
    if c.quality.max_bitrate_bps == 0 {
        return Err(Invalid::new("quality.max_bitrate_bps", "must be > 0"));
    }
    if let Some(d) = &c.data {
        if !matches!(c.mode, TransportMode::Webrtc {}) {
            return Err(Invalid::new("data", "data channels need webrtc mode"));
        }
        for (field, v) in [("data.room", &d.room), ("data.participant", &d.participant)] {
            if v.is_empty() || v.len() > 128 || v.chars().any(char::is_control) {
                return Err(Invalid::new(
                    field,
                    "must be 1-128 bytes, no control characters",
                ));
            }
        }
        if d.max_rate == Some(0) {
            return Err(Invalid::new("data.max_rate", "must be > 0"));
        }
        opt(&d.input_to, |t| data_id("data.input_to", t))?;
    }
    Ok(())
}

fn add_track(t: &AddTrack) -> Result<(), Invalid> {
    if t.codec.name.is_empty() || t.codec.name.len() > 32 || !t.codec.name.is_ascii() {
        return Err(Invalid::new("codec.name", "must be 1-32 ASCII chars"));
    }
    payload_type("codec.payload_type", t.codec.payload_type)?;
    if let Some(rtx) = t.codec.rtx_payload_type {
        payload_type("codec.rtx_payload_type", rtx)?;
        if rtx == t.codec.payload_type {
            return Err(Invalid::new(
                "codec.rtx_payload_type",
                "equals codec.payload_type",
            ));
        }
    }
    if t.codec.clock_rate == 0 {
        return Err(Invalid::new("codec.clock_rate", "must be > 0"));
    }
    if t.layers.is_empty() || t.layers.len() > MAX_LAYERS {
        return Err(Invalid::new(
            "layers",
            format!("must have 1-{MAX_LAYERS} entries"),
        ));
    }
    if t.kind == MediaKind::Audio && t.layers.len() > 1 {
        return Err(Invalid::new("layers", "audio has one layer"));
    }
    let mut ssrcs = HashSet::new();
    let mut rids = HashSet::new();
    for (i, layer) in t.layers.iter().enumerate() {
        if let Some(rid_value) = &layer.rid {
            let field = format!("layers[{i}].rid");
            rid(&field, rid_value)?;
            if !rids.insert(rid_value.as_str()) {
                return Err(Invalid::new(field, "duplicate rid"));
            }
        } else if layer.ssrc.is_none() && t.layers.len() > 1 {
            return Err(Invalid::new(
                format!("layers[{i}]"),
                "simulcast layer needs rid or ssrc",
            ));
        }
        for (name, ssrc) in [("ssrc", layer.ssrc), ("rtx_ssrc", layer.rtx_ssrc)] {
            if let Some(ssrc) = ssrc {
                if !ssrcs.insert(ssrc) {
                    return Err(Invalid::new(
                        format!("layers[{i}].{name}"),
                        "duplicate SSRC",
                    ));
                }
            }
        }
        if layer.rtx_ssrc.is_some() && t.codec.rtx_payload_type.is_none() {
            let field = format!("layers[{i}].rtx_ssrc");
            return Err(Invalid::new(field, "set without codec.rtx_payload_type"));
        }
    }
    ext_ids("ext_ids", &t.ext_ids)?;
    if let Some(mid) = &t.mid {
        // RFC 8843 §16.2 / RFC 5888: a token; bounded so it fits the MID extension.
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`{|}~".contains(c);
        if mid.is_empty() || mid.len() > 32 || !mid.chars().all(token) {
            return Err(Invalid::new("mid", "must be 1-32 token characters"));
        }
    }
    let ssrc_less = t.layers.iter().any(|l| l.ssrc.is_none());
    if ssrc_less && t.layers.len() > 1 && t.ext_ids.rid.is_none() && t.ext_ids.mid.is_none() {
        return Err(Invalid::new(
            "ext_ids.rid",
            "needed to tell rid-only layers apart",
        ));
    }
    Ok(())
}

fn subscribe(s: &Subscribe) -> Result<(), Invalid> {
    payload_type("payload_type", s.payload_type)?;
    if let Some(rtx) = s.rtx_payload_type {
        payload_type("rtx_payload_type", rtx)?;
        if rtx == s.payload_type {
            return Err(Invalid::new("rtx_payload_type", "equals payload_type"));
        }
    }
    if s.rtx_ssrc == Some(s.ssrc) {
        return Err(Invalid::new("rtx_ssrc", "duplicate SSRC (equals ssrc)"));
    }
    if s.rtx_ssrc.is_some() != s.rtx_payload_type.is_some() {
        return Err(Invalid::new(
            "rtx_ssrc",
            "rtx_ssrc and rtx_payload_type go together",
        ));
    }
    ext_ids("ext_ids", &s.ext_ids)
}

fn node_name(field: &str, n: &str) -> Result<(), Invalid> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if n.is_empty() || n.len() > 64 || !n.chars().all(ok) {
        return Err(Invalid::new(field, "1-64 of A-Z a-z 0-9 - _ ."));
    }
    Ok(())
}

fn opt<T>(value: &Option<T>, check: impl FnOnce(&T) -> Result<(), Invalid>) -> Result<(), Invalid> {
    value.as_ref().map_or(Ok(()), check)
}

fn is_ice_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '+' || c == '/'
}

fn ice_string(field: &str, value: &str, min: usize) -> Result<(), Invalid> {
    if value.len() < min || value.len() > 256 {
        return Err(Invalid::new(field, format!("length must be {min}-256")));
    }
    if !value.chars().all(is_ice_char) {
        return Err(Invalid::new(
            field,
            "only ALPHA, DIGIT, '+' and '/' allowed",
        ));
    }
    Ok(())
}

fn ufrag(field: &str, value: &str) -> Result<(), Invalid> {
    ice_string(field, value, 4)
}

fn pwd(field: &str, value: &str) -> Result<(), Invalid> {
    ice_string(field, value, 22)
}

fn payload_type(field: &str, pt: u8) -> Result<(), Invalid> {
    if pt > 127 {
        return Err(Invalid::new(field, "payload type above 127"));
    }
    Ok(())
}

fn rid(field: &str, value: &str) -> Result<(), Invalid> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if value.is_empty() || value.len() > 16 || !value.chars().all(ok_char) {
        return Err(Invalid::new(field, "must be 1-16 of [A-Za-z0-9_-]"));
    }
    Ok(())
}

fn ext_ids(prefix: &str, ids: &ExtIds) -> Result<(), Invalid> {
    let mut seen = [false; 256];
    for (name, id) in ids.entries() {
        let Some(id) = id else { continue };
        if id == 0 {
            return Err(Invalid::new(
                format!("{prefix}.{name}"),
                "id 0 is reserved (padding)",
            ));
        }
        if std::mem::replace(&mut seen[usize::from(id)], true) {
            return Err(Invalid::new(
                format!("{prefix}.{name}"),
                format!("id {id} used twice"),
            ));
        }
    }
    Ok(())
}

/// `"<hash-func> <HEX:HEX:...>"`; only hash functions with a known digest length are accepted.
fn fingerprint(field: &str, value: &str) -> Result<(), Invalid> {
    let bad = || Invalid::new(field, "expected \"sha-256 AB:CD:…\" (RFC 8122)");
    let (hash, hex) = value.split_once(' ').ok_or_else(bad)?;
    let digest_len = match hash.to_ascii_lowercase().as_str() {
        "sha-1" => 20,
        "sha-224" => 28,
        "sha-256" => 32,
        "sha-384" => 48,
        "sha-512" => 64,
        _ => {
            return Err(Invalid::new(
                field,
                format!("unsupported hash function `{hash}`"),
            ))
        }
    };
    let mut count = 0;
    for pair in hex.split(':') {
        if pair.len() != 2 || !pair.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        count += 1;
    }
    if count != digest_len {
        return Err(Invalid::new(
            field,
            format!("{hash} digest must be {digest_len} bytes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{IceParams, Layer, Quality};
    use crate::vocab::{Codec, Source};
    use crate::{DtlsRole, SessionId, SubscriptionId, TrackId};

    fn session() -> CreateSession {
        CreateSession {
            session: SessionId(1),
            ice: IceParams {
                ufrag: "abcd".into(),
                pwd: "p".repeat(22),
                remote_ufrag: None,
                remote_pwd: None,
            },
            remote_fingerprint: None,
            dtls_role: DtlsRole::Server,
            shard_hint: None,
            mode: TransportMode::Webrtc {},
            data: None,
            quality: Quality {
                max_bitrate_bps: 1_000_000,
                priority: 0,
            },
        }
    }

    fn track() -> AddTrack {
        AddTrack {
            session: SessionId(1),
            track: TrackId(2),
            kind: MediaKind::Video,
            codec: Codec {
                name: "VP8".into(),
                payload_type: 96,
                clock_rate: 90_000,
                rtx_payload_type: Some(97),
            },
            layers: vec![
                Layer {
                    rid: Some("l".into()),
                    ssrc: Some(1),
                    rtx_ssrc: Some(2),
                },
                Layer {
                    rid: Some("h".into()),
                    ssrc: Some(3),
                    rtx_ssrc: None,
                },
            ],
            ext_ids: ExtIds {
                rid: Some(10),
                transport_cc: Some(3),
                ..ExtIds::default()
            },
            e2ee: false,
            source: Source::Screen,
            mid: None,
        }
    }

    fn subscription() -> Subscribe {
        Subscribe {
            subscription: SubscriptionId(3),
            session: SessionId(4),
            track: TrackId(2),
            ssrc: 7,
            rtx_ssrc: Some(8),
            payload_type: 100,
            rtx_payload_type: Some(101),
            ext_ids: ExtIds::default(),
        }
    }

    fn field_of(cmd: Command) -> String {
        cmd.validate().expect_err("should be invalid").field
    }

    #[test]
    fn valid_builders_pass() {
        assert_eq!(Command::CreateSession(session()).validate(), Ok(()));
        assert_eq!(Command::AddTrack(track()).validate(), Ok(()));
        assert_eq!(Command::Subscribe(subscription()).validate(), Ok(()));
    }

    #[test]
    fn ice_credentials_are_checked() {
        let with = |f: fn(&mut CreateSession)| {
            let mut s = session();
            f(&mut s);
            field_of(Command::CreateSession(s))
        };
        assert_eq!(with(|s| s.ice.ufrag.clear()), "ice.ufrag");
        assert_eq!(with(|s| s.ice.ufrag = "abc".into()), "ice.ufrag");
        assert_eq!(with(|s| s.ice.ufrag = "ab:cd".into()), "ice.ufrag");
        assert_eq!(with(|s| s.ice.pwd = "short".into()), "ice.pwd");
        assert_eq!(
            with(|s| s.ice.remote_pwd = Some("x".repeat(257))),
            "ice.remote_pwd"
        );
        let restart = Command::IceRestart {
            session: SessionId(1),
            ufrag: "abcd".into(),
            pwd: "p".repeat(22),
            remote_ufrag: Some("a b c".into()),
            remote_pwd: None,
        };
        assert_eq!(field_of(restart), "remote_ufrag");
    }

    #[test]
    fn session_fields_are_checked() {
        let mut s = session();
        s.remote_fingerprint = Some("sha-256 AB:CD".into());
        assert_eq!(field_of(Command::CreateSession(s)), "remote_fingerprint");
        let mut s = session();
        s.remote_fingerprint = Some(format!("md5 {}", ["00"; 16].join(":")));
        assert_eq!(field_of(Command::CreateSession(s)), "remote_fingerprint");
        let mut s = session();
        s.remote_fingerprint = Some(format!("SHA-256 {}", ["aF"; 32].join(":")));
        assert_eq!(Command::CreateSession(s).validate(), Ok(()));
        let mut s = session();
        s.mode = TransportMode::PlainRtp {
            remote: "0.0.0.0:5000".parse().unwrap(),
            local_port: None,
        };
        assert_eq!(field_of(Command::CreateSession(s)), "mode.remote");
        let mut s = session();
        s.mode = TransportMode::PlainRtp {
            remote: "127.0.0.1:5000".parse().unwrap(),
            local_port: Some(0),
        };
        assert_eq!(field_of(Command::CreateSession(s)), "mode.local_port");
        let mut s = session();
        s.quality.max_bitrate_bps = 0;
        assert_eq!(
            field_of(Command::CreateSession(s)),
            "quality.max_bitrate_bps"
        );
    }

    #[test]
    fn track_fields_are_checked() {
        let with = |f: fn(&mut AddTrack)| {
            let mut t = track();
            f(&mut t);
            field_of(Command::AddTrack(t))
        };
        assert_eq!(with(|t| t.codec.payload_type = 128), "codec.payload_type");
        assert_eq!(
            with(|t| t.codec.rtx_payload_type = Some(200)),
            "codec.rtx_payload_type"
        );
        assert_eq!(
            with(|t| t.codec.rtx_payload_type = Some(96)),
            "codec.rtx_payload_type"
        );
        assert_eq!(with(|t| t.codec.name.clear()), "codec.name");
        assert_eq!(with(|t| t.codec.clock_rate = 0), "codec.clock_rate");
        assert_eq!(with(|t| t.layers.clear()), "layers");
        assert_eq!(
            with(|t| t.layers = vec![Layer::default(); MAX_LAYERS + 1]),
            "layers"
        );
        assert_eq!(with(|t| t.layers[1].ssrc = Some(2)), "layers[1].ssrc");
        assert_eq!(
            with(|t| t.layers[1].rtx_ssrc = Some(1)),
            "layers[1].rtx_ssrc"
        );
        assert_eq!(
            with(|t| t.layers[1].rid = Some("l".into())),
            "layers[1].rid"
        );
        assert_eq!(
            with(|t| t.layers[0].rid = Some("no spaces".into())),
            "layers[0].rid"
        );
        assert_eq!(
            with(|t| t.codec.rtx_payload_type = None),
            "layers[0].rtx_ssrc"
        );
        assert_eq!(with(|t| t.ext_ids.mid = Some(0)), "ext_ids.mid");
        assert_eq!(
            with(|t| t.ext_ids.abs_send_time = Some(3)),
            "ext_ids.abs_send_time"
        );
        assert_eq!(
            with(|t| {
                t.kind = MediaKind::Audio;
            }),
            "layers"
        );
        assert_eq!(
            with(|t| {
                t.layers[1].rid = None;
                t.layers[1].ssrc = None;
            }),
            "layers[1]"
        );
        assert_eq!(
            with(|t| {
                t.layers[0].ssrc = None;
                t.layers[0].rtx_ssrc = None;
                t.ext_ids.rid = None;
            }),
            "ext_ids.rid"
        );
    }

    #[test]
    fn subscription_and_cap_fields_are_checked() {
        let with = |f: fn(&mut Subscribe)| {
            let mut s = subscription();
            f(&mut s);
            field_of(Command::Subscribe(s))
        };
        assert_eq!(with(|s| s.payload_type = 255), "payload_type");
        assert_eq!(with(|s| s.rtx_payload_type = Some(100)), "rtx_payload_type");
        assert_eq!(with(|s| s.rtx_ssrc = Some(7)), "rtx_ssrc");
        assert_eq!(with(|s| s.rtx_ssrc = None), "rtx_ssrc");
        assert_eq!(
            with(|s| s.ext_ids.dependency_descriptor = Some(0)),
            "ext_ids.dependency_descriptor"
        );
        let cap = |s, t| Command::SetLayerCap {
            subscription: SubscriptionId(1),
            max_spatial: s,
            max_temporal: t,
        };
        assert_eq!(field_of(cap(8, 0)), "max_spatial");
        assert_eq!(field_of(cap(0, 8)), "max_temporal");
        assert_eq!(cap(MAX_LAYER_INDEX, MAX_LAYER_INDEX).validate(), Ok(()));
    }

    #[test]
    fn invalid_becomes_an_invalid_error_body() {
        let body: ErrorBody = Invalid::new("ice.pwd", "too short").into();
        assert_eq!(
            (body.code, body.field.as_deref()),
            (ErrorCode::Invalid, Some("ice.pwd"))
        );
    }

    #[test]
    fn send_data_bounds_name_the_field() {
        let ok = SendData {
            room: "r".into(),
            from: "$server".into(),
            to: vec![],
            reliable: true,
            binary: false,
            payload: vec![0; MAX_DATA_MESSAGE - 2 - 7],
        };
        assert!(Command::SendData(ok.clone()).validate().is_ok());
        let field = |d: SendData| Command::SendData(d).validate().unwrap_err().field;
        let mut big = ok.clone();
        big.payload.push(0);
        assert_eq!(field(big), "payload");
        let many = SendData {
            to: vec!["a".into(); 65],
            payload: vec![],
            ..ok.clone()
        };
        assert_eq!(field(many), "to");
        let bad = SendData {
            to: vec!["a".into(), String::new()],
            payload: vec![],
            ..ok.clone()
        };
        assert_eq!(field(bad), "to[1]");
        let room = SendData {
            room: "a\nb".into(),
            payload: vec![],
            ..ok
        };
        assert_eq!(field(room), "room");
    }

    #[test]
    fn update_data_bounds_its_route() {
        use crate::command::UpdateData;
        let ok = UpdateData {
            session: crate::SessionId(1),
            can_publish: true,
            input_to: Some("host".into()),
        };
        assert!(Command::UpdateData(ok.clone()).validate().is_ok());
        for bad in [String::new(), "h".repeat(129), "a\u{7}".into()] {
            let u = UpdateData {
                input_to: Some(bad),
                ..ok.clone()
            };
            assert_eq!(
                Command::UpdateData(u).validate().unwrap_err().field,
                "input_to"
            );
        }
        let none = UpdateData {
            input_to: None,
            ..ok
        };
        assert!(Command::UpdateData(none).validate().is_ok());
    }
}
