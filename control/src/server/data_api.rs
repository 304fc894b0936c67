//! `POST /api/rooms/{room}/data` (issue 17, as LiveKit's `SendData`): an admin sends a server
//! message into the room's data-channel relay, to everyone or to named identities, on
//! `_reliable` or `_lossy`. The dataplane stamps it with [`SERVER_SENDER`], an id no identity
//! can take (identities are `[A-Za-z0-9_.@-]`), so clients tell it from a participant's.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_proto::{Command, SendData, MAX_DATA_DESTINATIONS, MAX_DATA_MESSAGE};

use sluice_proto::SessionId;

use super::api::{admin, body, typed};
use super::error::ApiError;
use super::hub::ClientMsg;
use super::App;
use crate::lock::Locked;
use crate::room::validate_identity;
use crate::signal::ServerMessage;

/// The sender id of server messages.
pub(crate) const SERVER_SENDER: &str = "$server";
/// The largest payload: the relay's message limit less the server envelope.
pub(crate) const MAX_PAYLOAD: usize = MAX_DATA_MESSAGE - 2 - SERVER_SENDER.len();

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new().route("/api/rooms/{room}/data", post(send_data))
}

impl App {
    /// `data_behind` from the dataplane: the participant whose publisher session (the one that
    /// carries its data channels, D72) fell behind is told, if it is a WebSocket client.
    pub(super) async fn data_behind(
        self: &Arc<Self>,
        session: SessionId,
        reliable: bool,
        dropped: u64,
    ) {
        let Some(room) = self.session_rooms.locked().get(&session).cloned() else {
            return;
        };
        let _ = self
            .in_existing_room(&room, move |ctx| {
                Box::pin(async move {
                    let peer = ctx.media.peers.iter().find(|(_, p)| {
                        p.signaling && p.publisher.as_ref().map(|pc| pc.session) == Some(session)
                    });
                    if let Some((identity, _)) = peer {
                        tracing::info!(room = %ctx.name, %identity, reliable, dropped, "data receiver behind");
                        let msg = ServerMessage::DataBehind { reliable, dropped };
                        ctx.app.hub.send_to(&ctx.name, identity, ClientMsg::Msg(msg));
                    }
                    Ok(())
                })
            })
            .await;
    }
}

/// The request body: exactly one of `text` (a text message) and `base64` (a binary one).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataRequest {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    base64: Option<String>,
    /// `_reliable` (default) or `_lossy`.
    #[serde(default)]
    reliable: Option<bool>,
    /// Identities; absent or empty: the whole room.
    #[serde(default)]
    destinations: Vec<String>,
}

async fn send_data(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(room): Path<String>,
    json: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    admin(&app, &headers)?;
    let req: DataRequest = typed(body(json)?)?;
    let (payload, binary, field) = payload(&req)?;
    if payload.len() > MAX_PAYLOAD {
        return Err(ApiError::invalid(
            field,
            format!("{} bytes; at most {MAX_PAYLOAD}", payload.len()),
        ));
    }
    if req.destinations.len() > MAX_DATA_DESTINATIONS {
        return Err(ApiError::invalid(
            "destinations",
            format!("at most {MAX_DATA_DESTINATIONS} identities"),
        ));
    }
    for (i, d) in req.destinations.iter().enumerate() {
        validate_identity(d)
            .map_err(|e| ApiError::invalid(format!("destinations[{i}]"), e.to_string()))?;
    }
    let reliable = req.reliable.unwrap_or(true);
    let bytes = payload.len();
    let to = req.destinations.clone();
    app.in_existing_room(&room, move |ctx| {
        Box::pin(async move {
            let cmd = Command::SendData(SendData {
                room: ctx.name.clone(),
                from: SERVER_SENDER.into(),
                to,
                reliable,
                binary,
                payload,
            });
            ctx.app.dp(cmd).await.map(|_| ())
        })
    })
    .await?;
    Ok(Json(json!({
        "room": room,
        "bytes": bytes,
        "reliable": reliable,
        "binary": binary,
        "destinations": req.destinations,
        "from": SERVER_SENDER,
    })))
}

/// The payload bytes, whether binary, and the field they came from.
fn payload(req: &DataRequest) -> Result<(Vec<u8>, bool, &'static str), ApiError> {
    match (&req.text, &req.base64) {
        (Some(t), None) => Ok((t.clone().into_bytes(), false, "text")),
        (None, Some(b)) => {
            // Standard or URL-safe alphabet, padding optional.
            let url: String = b
                .trim_end_matches('=')
                .chars()
                .map(|c| match c {
                    '+' => '-',
                    '/' => '_',
                    c => c,
                })
                .collect();
            let bytes = crate::auth::base64url_decode(&url)
                .ok_or_else(|| ApiError::invalid("base64", "not base64"))?;
            Ok((bytes, true, "base64"))
        }
        (Some(_), Some(_)) => Err(ApiError::invalid("base64", "give text or base64, not both")),
        (None, None) => Err(ApiError::invalid("text", "text (or base64) is required")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> Result<(Vec<u8>, bool, &'static str), ApiError> {
        payload(&typed::<DataRequest>(v)?)
    }

    #[test]
    fn payload_forms_and_their_errors_name_the_field() {
        assert_eq!(
            req(json!({"text": "hi"})).unwrap(),
            (b"hi".to_vec(), false, "text")
        );
        assert_eq!(
            req(json!({"base64": "AAH/"})).unwrap(),
            (vec![0, 1, 255], true, "base64")
        );
        assert_eq!(req(json!({"base64": "AAH_"})).unwrap().0, vec![0, 1, 255]);
        let field = |v| req(v).unwrap_err().field;
        assert_eq!(field(json!({})), Some("text".into()));
        assert_eq!(
            field(json!({"text": "a", "base64": "AA"})),
            Some("base64".into())
        );
        assert_eq!(field(json!({"base64": "!!"})), Some("base64".into()));
        assert_eq!(field(json!({"txt": "a"})), Some("txt".into()));
        assert!(SERVER_SENDER
            .chars()
            .any(|c| !c.is_ascii_alphanumeric() && !"_.@-".contains(c)));
    }
}
