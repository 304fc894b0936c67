//! Client → server messages (docs/protocol.md "Client → server"), typed, with their limits in
//! the field types. [`ClientMessage::parse`] reads one WebSocket text frame; a message that does
//! not fit is an error naming the field (`kind`, `simulcast[3]`, `sdp`, …).

use serde::{Deserialize, Serialize};

use super::limits::{Json, LayerIndex, List, Text};
use crate::auth::Source;
use crate::room::{MediaKind, RoomMode, MAX_IDENTITY, MAX_METADATA, MAX_ROOM_NAME};

/// An SDP offer or answer (the SDP parser's own cap).
pub type Sdp = Text<{ crate::sdp::MAX_SDP_LEN }>;
/// A track sid (`TR_n`), a participant sid (`PA_n`).
pub type Sid = Text<64>;
/// An identity.
pub type Identity = Text<MAX_IDENTITY>;
/// A client's id for a track it is about to publish.
pub type Cid = Text<128>;
/// The client's request id, echoed in the reply (any JSON, normally an integer).
pub type Req = Json<128>;
/// An ICE candidate or `null` (RTCIceCandidateInit; a candidate line is ~200 bytes).
pub type CandidateInit = Json<4096>;
/// A P2P SDP relayed between two clients.
pub type P2pSdp = Text<{ 64 * 1024 }>;

/// One message from a client, with the request id it may carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub req: Option<Req>,
    pub message: ClientMessage,
}

/// What a client can send. The `type` field selects the variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    Join(JoinRequest),
    Ping(Ping),
    Offer(SdpMessage),
    Answer(SdpMessage),
    Trickle(Trickle),
    Publish(Publish),
    Unpublish(TrackRef),
    Subscribe(SubscribeTrack),
    Mute(Mute),
    Layer(LayerRequest),
    RequestControl(Empty),
    GrantControl(Target),
    RevokeControl(Target),
    TransferHost(Target),
    Input(Input),
    UpdateMetadata(Metadata),
    Resume(Empty),
    Leave(Empty),
    P2pSignal(P2pSignalRequest),
    ModeAck(ModeId),
    ModeReady(ModeReady),
    ModeFailed(ModeFailed),
    SetMode(SetMode),
}

/// A message without fields (`{"type": "leave"}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JoinRequest {
    #[serde(default)]
    pub token: Option<Text<{ crate::auth::MAX_TOKEN_LEN }>>,
    #[serde(default)]
    pub name: Option<Identity>,
    #[serde(default)]
    pub room: Option<Text<MAX_ROOM_NAME>>,
    #[serde(default)]
    pub capabilities: Option<List<Text<32>, 8>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ping {
    #[serde(default)]
    pub t: Option<Json<256>>,
}

/// Which of a client's two PeerConnections a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PcName {
    Publisher,
    Subscriber,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SdpMessage {
    pub pc: PcName,
    pub sdp: Sdp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trickle {
    pub pc: PcName,
    #[serde(default)]
    pub candidate: Option<CandidateInit>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Publish {
    pub cid: Cid,
    pub kind: MediaKind,
    pub source: Source,
    #[serde(default)]
    pub muted: bool,
    #[serde(default)]
    pub simulcast: Option<List<SimulcastLayer, 3>>,
}

/// One announced simulcast layer (`width`/`height` are accepted and not used).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimulcastLayer {
    pub rid: Text<16>,
    #[serde(default)]
    pub max_bitrate: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackRef {
    pub track_sid: Sid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscribeTrack {
    pub track_sid: Sid,
    pub subscribe: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mute {
    pub track_sid: Sid,
    pub muted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRequest {
    pub track_sid: Sid,
    pub max_spatial: LayerIndex,
    #[serde(default)]
    pub max_temporal: Option<LayerIndex>,
}

/// The participant a host's or controller's request is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub identity: Identity,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Input {
    pub event: Json<4096>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub metadata: Option<Text<MAX_METADATA>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct P2pSignalRequest {
    /// The target's participant sid.
    pub to: Sid,
    pub signal: P2pSignal,
}

/// What one P2P peer sends another through the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum P2pSignal {
    Offer { sdp: P2pSdp },
    Answer { sdp: P2pSdp },
    Candidate { candidate: Option<CandidateInit> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeId {
    pub id: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModeReady {
    pub id: u64,
    /// The client's own measurement of the longest remote-audio gap (metrics only).
    #[serde(default)]
    pub audio_gap_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeFailed {
    pub id: u64,
    #[serde(default)]
    pub reason: Text<1024>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetMode {
    pub mode: RoomMode,
}

/// Why a message was refused: the field to blame and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageError {
    pub field: String,
    pub message: String,
    /// The request id, when the message carried one that could be read.
    pub req: Option<Req>,
}

impl ClientMessage {
    /// The `type` value of each variant (for errors naming an unknown one).
    pub const TYPES: &'static [&'static str] = &[
        "join",
        "ping",
        "offer",
        "answer",
        "trickle",
        "publish",
        "unpublish",
        "subscribe",
        "mute",
        "layer",
        "request_control",
        "grant_control",
        "revoke_control",
        "transfer_host",
        "input",
        "update_metadata",
        "resume",
        "leave",
        "p2p_signal",
        "mode_ack",
        "mode_ready",
        "mode_failed",
        "set_mode",
    ];

    /// Reads one text frame: a JSON object with a known `type`, each field within its type.
    /// Unknown fields are ignored (newer clients may send more).
    pub fn parse(text: &str) -> Result<Request, MessageError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| MessageError {
            field: "type".into(),
            message: format!("not JSON: {e}"),
            req: None,
        })?;
        let serde_json::Value::Object(mut map) = value else {
            return Err(MessageError {
                field: "type".into(),
                message: "expected a JSON object".into(),
                req: None,
            });
        };
        let req = map.remove("req").and_then(Json::new);
        let err = |field: &str, message: String| MessageError {
            field: field.to_owned(),
            message,
            req: req.clone(),
        };
        let ty = match map.get("type") {
            Some(serde_json::Value::String(t)) => t.clone(),
            Some(_) => return Err(err("type", "type must be a string".into())),
            None => return Err(err("type", "missing type".into())),
        };
        if !Self::TYPES.contains(&ty.as_str()) {
            return Err(err("type", format!("unknown message type {ty:?}")));
        }
        // The variant's fields alone, so an error can name the field: deserializing the tagged
        // enum directly buffers the fields first and loses their path.
        map.remove("type");
        let fields = serde_json::Value::Object(map);
        let message = match ty.as_str() {
            "join" => Self::Join(fields_of(fields).map_err(|(f, m)| err(&f, m))?),
            "ping" => Self::Ping(fields_of(fields).map_err(|(f, m)| err(&f, m))?),
            "offer" => Self::Offer(fields_of(fields).map_err(|(f, m)| err(&f, m))?),
            "answer" => Self::Answer(fields_of(fields).map_err(|(f, m)| err(&f, m))?),
            "trickle" => Self::Trickle(fields_of(fields).map_err(|(f, m)| err(&f, m))?),
            "publish" => Self::Publish(fields_of(fields).map_err(|(f, m)| err(&f, m))?),
            "unpublish" => Self::Unpublish(fields_of(fields).map_err(|(f, m)| err(&f, m))?),
            "subscribe" => Self::Subscribe(fields_of(fields).map_err(|(f, m)| err(&f, m))?),
            "mute" => Self::Mute(fields_of(fields).map_err(|(f, m)| err(&f, m))?),
            "layer" => Self::Layer(fields_of(fields).map_err(|(f, m)| err(&f, m))?),
            "request_control" => {
                Self::RequestControl(fields_of(fields).map_err(|(f, m)| err(&f, m))?)
            }
            "grant_control" => Self::GrantControl(fields_of(fields).map_err(|(f, m)| err(&f, m))?),
            "revoke_control" => {
                Self::RevokeControl(fields_of(fields).map_err(|(f, m)| err(&f, m))?)
            }
            "transfer_host" => Self::TransferHost(fields_of(fields).map_err(|(f, m)| err(&f, m))?),
            "input" => Self::Input(fields_of(fields).map_err(|(f, m)| err(&f, m))?),
            "update_metadata" => {
                Self::UpdateMetadata(fields_of(fields).map_err(|(f, m)| err(&f, m))?)
            }
            "resume" => Self::Resume(fields_of(fields).map_err(|(f, m)| err(&f, m))?),
            "leave" => Self::Leave(fields_of(fields).map_err(|(f, m)| err(&f, m))?),
            "p2p_signal" => Self::P2pSignal(fields_of(fields).map_err(|(f, m)| err(&f, m))?),
            "mode_ack" => Self::ModeAck(fields_of(fields).map_err(|(f, m)| err(&f, m))?),
            "mode_ready" => Self::ModeReady(fields_of(fields).map_err(|(f, m)| err(&f, m))?),
            "mode_failed" => Self::ModeFailed(fields_of(fields).map_err(|(f, m)| err(&f, m))?),
            _ => Self::SetMode(fields_of(fields).map_err(|(f, m)| err(&f, m))?),
        };
        Ok(Request { req, message })
    }

    /// The message's `type`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Join(_) => "join",
            Self::Ping(_) => "ping",
            Self::Offer(_) => "offer",
            Self::Answer(_) => "answer",
            Self::Trickle(_) => "trickle",
            Self::Publish(_) => "publish",
            Self::Unpublish(_) => "unpublish",
            Self::Subscribe(_) => "subscribe",
            Self::Mute(_) => "mute",
            Self::Layer(_) => "layer",
            Self::RequestControl(_) => "request_control",
            Self::GrantControl(_) => "grant_control",
            Self::RevokeControl(_) => "revoke_control",
            Self::TransferHost(_) => "transfer_host",
            Self::Input(_) => "input",
            Self::UpdateMetadata(_) => "update_metadata",
            Self::Resume(_) => "resume",
            Self::Leave(_) => "leave",
            Self::P2pSignal(_) => "p2p_signal",
            Self::ModeAck(_) => "mode_ack",
            Self::ModeReady(_) => "mode_ready",
            Self::ModeFailed(_) => "mode_failed",
            Self::SetMode(_) => "set_mode",
        }
    }
}

/// A variant's fields, or (field path, message) of the first that does not fit.
fn fields_of<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        // A missing field is reported at its parent; serde names it in the message.
        let field = if path == "." {
            message
                .split('`')
                .nth(1)
                .filter(|_| message.starts_with("missing field"))
                .unwrap_or("body")
                .to_owned()
        } else {
            path
        };
        (field, message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(text: &str) -> String {
        ClientMessage::parse(text).unwrap_err().field
    }

    #[test]
    fn parses_each_shape() {
        let r = ClientMessage::parse(
            r#"{"type":"publish","cid":"c1","kind":"video","source":"camera","simulcast":[{"rid":"q"},{"rid":"h","max_bitrate":500000}],"req":3}"#,
        )
        .unwrap();
        assert_eq!(
            r.req.as_ref().map(|r| r.value().clone()),
            Some(serde_json::json!(3))
        );
        let ClientMessage::Publish(p) = r.message else {
            panic!("publish")
        };
        assert_eq!(
            (p.kind, p.source, p.muted),
            (MediaKind::Video, Source::Camera, false)
        );
        assert_eq!(p.simulcast.unwrap().iter().count(), 2);
        let r = ClientMessage::parse(r#"{"type":"leave"}"#).unwrap();
        assert_eq!(r.message, ClientMessage::Leave(Empty {}));
        let r = ClientMessage::parse(
            r#"{"type":"p2p_signal","to":"PA_2","signal":{"type":"candidate","candidate":null}}"#,
        )
        .unwrap();
        assert!(matches!(
            r.message,
            ClientMessage::P2pSignal(P2pSignalRequest {
                signal: P2pSignal::Candidate { candidate: None },
                ..
            })
        ));
        // Unknown fields are ignored.
        assert!(ClientMessage::parse(r#"{"type":"ping","t":1,"extra":true}"#).is_ok());
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            field_of(r#"{"type":"mute","track_sid":5,"muted":true}"#),
            "track_sid"
        );
        assert_eq!(
            field_of(r#"{"type":"publish","cid":"c","kind":"smell","source":"camera"}"#),
            "kind"
        );
        assert_eq!(
            field_of(r#"{"type":"publish","kind":"audio","source":"microphone"}"#),
            "cid"
        );
        assert_eq!(field_of(r#"{"type":"nope"}"#), "type");
        assert_eq!(field_of(r#"[1,2]"#), "type");
        assert_eq!(
            field_of(r#"{"type":"offer","pc":"sideways","sdp":"v=0"}"#),
            "pc"
        );
        assert_eq!(
            field_of(r#"{"type":"layer","track_sid":"TR_1","max_spatial":3}"#),
            "max_spatial"
        );
        assert_eq!(field_of(r#"{"type":"set_mode","mode":"mesh"}"#), "mode");
        assert_eq!(
            field_of(r#"{"type":"p2p_signal","to":"PA_1","signal":{"type":"bye"}}"#),
            "signal.type"
        );
        let e = ClientMessage::parse(r#"{"type":"mute","req":9}"#).unwrap_err();
        assert_eq!(e.req.map(|r| r.into_value()), Some(serde_json::json!(9)));
    }

    #[test]
    fn every_limit_is_enforced() {
        let long = |n: usize| "x".repeat(n);
        let cases = [
            (
                serde_json::json!({"type":"offer","pc":"publisher","sdp": long(crate::sdp::MAX_SDP_LEN + 1)}),
                "sdp",
            ),
            (
                serde_json::json!({"type":"publish","cid": long(129),"kind":"audio","source":"microphone"}),
                "cid",
            ),
            (
                serde_json::json!({"type":"publish","cid":"c","kind":"video","source":"camera",
                    "simulcast":[{"rid":"a"},{"rid":"b"},{"rid":"c"},{"rid":"d"}]}),
                "simulcast",
            ),
            (
                serde_json::json!({"type":"publish","cid":"c","kind":"video","source":"camera",
                    "simulcast":[{"rid": long(17)}]}),
                "simulcast[0].rid",
            ),
            (
                serde_json::json!({"type":"mute","track_sid": long(65),"muted":true}),
                "track_sid",
            ),
            (
                serde_json::json!({"type":"grant_control","identity": long(MAX_IDENTITY + 1)}),
                "identity",
            ),
            (
                serde_json::json!({"type":"input","event": long(4096)}),
                "event",
            ),
            (
                serde_json::json!({"type":"update_metadata","metadata": long(MAX_METADATA + 1)}),
                "metadata",
            ),
            (
                serde_json::json!({"type":"mode_failed","id":1,"reason": long(1025)}),
                "reason",
            ),
            (serde_json::json!({"type":"ping","t": long(300)}), "t"),
            (
                serde_json::json!({"type":"trickle","pc":"publisher","candidate": long(4096)}),
                "candidate",
            ),
            (
                serde_json::json!({"type":"p2p_signal","to":"PA_1","signal":{"type":"offer","sdp": long(64 * 1024 + 1)}}),
                "signal",
            ),
            (
                serde_json::json!({"type":"join","capabilities":["a","b","c","d","e","f","g","h","i"]}),
                "capabilities",
            ),
            (
                serde_json::json!({"type":"join","token": long(8 * 1024 + 1)}),
                "token",
            ),
        ];
        for (msg, field) in cases {
            let e = ClientMessage::parse(&msg.to_string()).unwrap_err();
            assert!(
                e.field.starts_with(field),
                "{field}: got {} ({})",
                e.field,
                e.message
            );
        }
        // A request id that is too long is dropped, not echoed.
        let r =
            ClientMessage::parse(&serde_json::json!({"type":"leave","req": long(200)}).to_string())
                .unwrap();
        assert!(r.req.is_none());
    }

    #[test]
    fn round_trips_through_json() {
        let r =
            ClientMessage::parse(r#"{"type":"layer","track_sid":"TR_1","max_spatial":1}"#).unwrap();
        let text = serde_json::to_string(&r.message).unwrap();
        assert_eq!(ClientMessage::parse(&text).unwrap().message, r.message);
    }
}
