//! One client message → one operation of the peer's room (docs/protocol.md "Client → server").

use std::sync::Arc;

use super::{error, Peer};
use crate::limits::{Bucket, Refusal};
use crate::room::{Actor, PublishTrack, RoomEventKind, SimulcastLayer};
use crate::server::actor::{BoxFuture, ControlOp, ModeReply, RoomCtx};
use crate::server::error::ApiError;
use crate::server::media::{LayerCap, OneShot, PendingTrack};
use crate::server::App;
use crate::signal::{ClientMessage, PcName, Publish, Req, ServerMessage, TrackInfo};

/// Handles one client message: the reply (if any, with the request's `req`) and whether the
/// client left.
/// A connection's rate budgets.
#[derive(Debug)]
pub(super) struct Budget {
    /// `input` events (`limits.input_per_s`).
    pub(super) input: Bucket,
    /// Lines logged on the client's behalf.
    pub(super) log: Bucket,
}

impl Budget {
    pub(super) fn new(app: &App) -> Self {
        Self {
            input: Bucket::new(app.limits.input_per_s),
            log: Bucket::new(2),
        }
    }
}

pub(super) async fn handle(
    app: &Arc<App>,
    peer: &Peer,
    text: &str,
    budget: &mut Budget,
) -> (Option<(ServerMessage, Option<Req>)>, bool) {
    let request = match ClientMessage::parse(text) {
        Ok(r) => r,
        Err(e) => {
            let err = ApiError::invalid(e.field, e.message);
            return (Some((error(&err), e.req)), false);
        }
    };
    let leaving = matches!(request.message, ClientMessage::Leave(_));
    if matches!(request.message, ClientMessage::Input(_))
        && !budget.input.take(std::time::Instant::now())
    {
        app.refusals.count(Refusal::InputRate);
        let e = ApiError::rejected(format!(
            "more than {} input events per second",
            app.limits.input_per_s
        ))
        .with_field("event");
        return (Some((error(&e), request.req)), false);
    }
    if let ClientMessage::ModeFailed(m) = &request.message {
        // Logged clipped and at most a few times a second: the reason is the client's text.
        if budget.log.take(std::time::Instant::now()) {
            let reason: String = m.reason.chars().take(128).collect();
            tracing::info!(room = %peer.room, identity = %peer.identity, id = m.id, reason, "client could not switch");
        }
    }
    match dispatch(app, peer, request.message).await {
        Ok(Some(m)) => (Some((m, request.req)), leaving),
        Ok(None) => (None, leaving),
        Err(e) => (Some((error(&e), request.req)), false),
    }
}

/// Runs `f` on the peer's room with its identity.
async fn on_room<T, F>(app: &Arc<App>, peer: &Peer, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: for<'a> FnOnce(&'a mut RoomCtx, String) -> BoxFuture<'a, Result<T, ApiError>>
        + Send
        + 'static,
{
    let identity = peer.identity.clone();
    app.in_existing_room(&peer.room, move |ctx| f(ctx, identity))
        .await
}

async fn dispatch(
    app: &Arc<App>,
    peer: &Peer,
    message: ClientMessage,
) -> Result<Option<ServerMessage>, ApiError> {
    let none = |r: Result<(), ApiError>| r.map(|()| None);
    match message {
        ClientMessage::Ping(p) => Ok(Some(ServerMessage::Pong { t: p.t })),
        ClientMessage::Offer(m) => {
            expect_pc(m.pc, PcName::Publisher)?;
            let sdp = m.sdp.into_string();
            let answer = on_room(app, peer, move |ctx, me| {
                Box::pin(async move {
                    // A publisher offer to the SFU while the room is P2P: this client needs it.
                    ctx.require_sfu(Some(&me)).await?;
                    Ok(ctx.answer_offer(&me, &sdp, OneShot::Publisher).await?.1)
                })
            })
            .await?;
            Ok(Some(ServerMessage::Answer {
                pc: PcName::Publisher,
                sdp: answer,
            }))
        }
        ClientMessage::Answer(m) => {
            expect_pc(m.pc, PcName::Subscriber)?;
            let sdp = m.sdp.into_string();
            none(
                on_room(app, peer, move |ctx, me| {
                    Box::pin(async move { ctx.subscriber_answer(&me, &sdp).await })
                })
                .await,
            )
        }
        // ICE-lite learns addresses from the checks: candidates are accepted and not needed.
        ClientMessage::Trickle(_) => Ok(None),
        ClientMessage::Publish(p) => publish(app, peer, p).await.map(Some),
        ClientMessage::Unpublish(t) => none(
            on_room(app, peer, move |ctx, me| {
                Box::pin(async move {
                    let name = ctx.name.clone();
                    let events = ctx.rooms.unpublish(&name, &me, &t.track_sid)?;
                    ctx.emit(events);
                    ctx.sync_room_tracks().await;
                    Ok(())
                })
            })
            .await,
        ),
        ClientMessage::Subscribe(s) => none(
            on_room(app, peer, move |ctx, me| {
                Box::pin(async move { ctx.set_subscribed(&me, &s.track_sid, s.subscribe).await })
            })
            .await,
        ),
        ClientMessage::Mute(m) => none(
            on_room(app, peer, move |ctx, me| {
                Box::pin(async move {
                    ctx.mute(Actor::Participant(&me), &m.track_sid, m.muted)
                        .await
                })
            })
            .await,
        ),
        ClientMessage::Layer(l) => {
            let cap = LayerCap {
                max_spatial: l.max_spatial.get(),
                max_temporal: l.max_temporal.map_or(2, |t| t.get()),
            };
            none(
                on_room(app, peer, move |ctx, me| {
                    Box::pin(async move { ctx.set_layer(&me, &l.track_sid, cap).await })
                })
                .await,
            )
        }
        ClientMessage::RequestControl(_) => {
            control(app, peer, ControlOp::Request, String::new()).await
        }
        ClientMessage::GrantControl(t) => {
            control(app, peer, ControlOp::Grant, t.identity.into_string()).await
        }
        ClientMessage::RevokeControl(t) => {
            control(app, peer, ControlOp::Revoke, t.identity.into_string()).await
        }
        ClientMessage::TransferHost(t) => none(
            on_room(app, peer, move |ctx, me| {
                Box::pin(async move {
                    ctx.transfer_host(Actor::Participant(&me), &t.identity)
                        .await
                })
            })
            .await,
        ),
        ClientMessage::Input(i) => none(
            on_room(app, peer, move |ctx, me| {
                Box::pin(async move { ctx.relay_input(&me, i.event) })
            })
            .await,
        ),
        ClientMessage::UpdateMetadata(m) => {
            let metadata = m.metadata.map(|t| t.into_string());
            none(
                on_room(app, peer, move |ctx, me| {
                    Box::pin(async move { ctx.update_metadata(&me, metadata) })
                })
                .await,
            )
        }
        ClientMessage::Resume(_) => none(
            on_room(app, peer, move |ctx, me| {
                Box::pin(async move { ctx.resume(&me).await })
            })
            .await,
        ),
        ClientMessage::Leave(_) => none(
            on_room(app, peer, move |ctx, me| {
                Box::pin(async move { ctx.leave(&me).await })
            })
            .await,
        ),
        ClientMessage::P2pSignal(s) => none(
            on_room(app, peer, move |ctx, me| {
                Box::pin(async move { ctx.relay_p2p(&me, s) })
            })
            .await,
        ),
        ClientMessage::ModeAck(m) => mode_reply(app, peer, ModeReply::Ack, m.id, None).await,
        ClientMessage::ModeReady(m) => {
            mode_reply(app, peer, ModeReply::Ready, m.id, m.audio_gap_ms).await
        }
        ClientMessage::ModeFailed(m) => mode_reply(app, peer, ModeReply::Failed, m.id, None).await,
        ClientMessage::SetMode(m) => none(
            on_room(app, peer, move |ctx, me| {
                Box::pin(async move {
                    if !ctx.is_host(&me) {
                        return Err(ApiError::forbidden("only the host may set the mode")
                            .with_field("mode"));
                    }
                    ctx.set_mode(m.mode).await
                })
            })
            .await,
        ),
        ClientMessage::Join(_) => Err(ApiError::rejected("already joined")),
    }
}

/// `publish`: the track is published in the room now (permission-checked) and waits for the
/// publisher offer that carries it.
async fn publish(app: &Arc<App>, peer: &Peer, p: Publish) -> Result<ServerMessage, ApiError> {
    let layers = p
        .simulcast
        .map(|l| l.into_vec())
        .unwrap_or_default()
        .into_iter()
        .map(|l| SimulcastLayer {
            rid: l.rid.into_string(),
            max_bitrate_bps: l.max_bitrate,
        })
        .collect();
    let track = PublishTrack {
        kind: p.kind,
        source: p.source,
        layers,
        muted: p.muted,
    };
    let (cid, kind) = (p.cid.into_string(), p.kind);
    on_room(app, peer, move |ctx, me| {
        Box::pin(async move {
            let name = ctx.name.clone();
            let events = ctx.rooms.publish(&name, &me, track)?;
            let track = events
                .iter()
                .find_map(|e| match &e.kind {
                    RoomEventKind::TrackPublished { track, .. } => Some(track.clone()),
                    _ => None,
                })
                .expect("publish emits TrackPublished");
            ctx.media_pending(
                &me,
                PendingTrack {
                    cid: cid.clone(),
                    sid: track.id.clone(),
                    kind,
                },
            );
            let psid = ctx
                .rooms
                .participant(&name, &me)
                .map(|p| p.sid.clone())
                .unwrap_or_default();
            ctx.emit(events);
            Ok(ServerMessage::TrackPublished {
                cid: Some(cid),
                participant_sid: None,
                track: TrackInfo::of(&track, &psid),
            })
        })
    })
    .await
}

async fn control(
    app: &Arc<App>,
    peer: &Peer,
    op: ControlOp,
    target: String,
) -> Result<Option<ServerMessage>, ApiError> {
    on_room(app, peer, move |ctx, me| {
        Box::pin(async move { ctx.control(&me, op, &target).await })
    })
    .await
    .map(|()| None)
}

async fn mode_reply(
    app: &Arc<App>,
    peer: &Peer,
    reply: ModeReply,
    id: u64,
    gap: Option<f64>,
) -> Result<Option<ServerMessage>, ApiError> {
    on_room(app, peer, move |ctx, me| {
        Box::pin(async move {
            ctx.mode_reply(&me, reply, id, gap).await;
            Ok(())
        })
    })
    .await
    .map(|()| None)
}

fn expect_pc(pc: PcName, expected: PcName) -> Result<(), ApiError> {
    if pc != expected {
        return Err(ApiError::invalid(
            "pc",
            format!("expected pc {expected:?}, got {pc:?}").to_lowercase(),
        ));
    }
    Ok(())
}
