//! What a cascade phase creates on the two dataplanes: its id plan and its sessions — on the
//! receiving side the trunk, the relayed tracks on it and the subscribers; on the publishing side
//! the publishers, their tracks, the local subscribers, the trunk and one relay per track.

use std::net::SocketAddr;

use sluice_proto::{
    Command, CreateSession, DtlsRole, ExtIds, IceParams, Quality, RelayTrack, SessionId, Subscribe,
    SubscriptionId, TrackId, TransportMode, TrunkCrypto,
};

use super::{CascadeConfig, Node, Spec, TrunkCipher};
use crate::fanout::track;
use crate::gen::{self, sub_ssrc, Plan};
use crate::media::{Kind, AUDIO_PT, VIDEO_PT};
use crate::report::BenchError;

/// Pacing cap of the trunk sessions.
const TRUNK_BPS: u64 = 200_000_000;

/// The id plan of one phase (`base` is unique per phase).
#[derive(Debug, Clone, Copy)]
pub(super) struct Ids {
    pub(super) base: u64,
}

impl Ids {
    fn publisher(self, p: u32) -> SessionId {
        SessionId(self.base + u64::from(p))
    }
    fn track(self, stream: u32) -> TrackId {
        TrackId(self.base + u64::from(stream))
    }
    /// The relayed track on the receiving side's trunk session.
    fn relayed(self, stream: u32) -> TrackId {
        TrackId(self.base + 0x800 + u64::from(stream))
    }
    fn subscriber(self, j: u32) -> SessionId {
        SessionId(self.base + 0x1000 + u64::from(j))
    }
    fn subscription(self, j: u32, stream: u32) -> SubscriptionId {
        SubscriptionId(self.base + (u64::from(j) << 8) + u64::from(stream))
    }
    pub(super) fn trunk(self) -> SessionId {
        SessionId(self.base + 0xE0_0000)
    }
    fn relay(self, stream: u32) -> SubscriptionId {
        SubscriptionId(self.base + 0xF0_0000 + u64::from(stream))
    }
}

/// The SSRC (and RTX SSRC) of a relayed stream on the trunk.
fn trunk_ssrc(stream: u32) -> (u32, u32) {
    (0x7000_0000 + stream, 0x7100_0000 + stream)
}
const TRUNK_RTX_PT: u8 = VIDEO_PT + 1;

#[allow(clippy::too_many_arguments)]
pub(super) fn setup(
    x: &mut Node,
    y: &mut Node,
    cfg: &CascadeConfig,
    plan: &Plan,
    spec: Spec,
    ep: &gen::Endpoints,
    ids: Ids,
    (x_name, y_name, epoch): (&str, &str, u64),
    created: &mut (Vec<SessionId>, Vec<SessionId>),
) -> Result<(), BenchError> {
    let cap = cfg.fanout.max_bitrate_bps;
    let pt = |kind| {
        if kind == Kind::Audio {
            AUDIO_PT
        } else {
            VIDEO_PT
        }
    };
    let crypto = |local: &str, remote: &str| match cfg.trunk {
        TrunkCipher::Srtp => TrunkCrypto::Srtp {
            local_node: local.into(),
            remote_node: remote.into(),
            epoch,
        },
        TrunkCipher::Trusted => TrunkCrypto::Trusted {},
    };
    let trunk_mode = |remote, crypto| TransportMode::Trunk {
        remote,
        local_port: None,
        crypto,
        silence_ms: None,
    };
    // The receiving side first: its trunk, the relayed tracks on it, its subscribers.
    if spec.remote > 0 {
        y.req(session(
            ids.trunk(),
            trunk_mode(x.media[0], crypto(y_name, x_name)),
            0,
            TRUNK_BPS,
        ))?;
        created.1.push(ids.trunk());
        for (_, sid, kind) in plan.streams() {
            let Command::AddTrack(mut t) = track(ids.trunk(), ids.relayed(sid), kind, sid) else {
                unreachable!("track() builds an add_track");
            };
            let (ssrc, rtx) = trunk_ssrc(sid);
            t.layers[0].ssrc = Some(ssrc);
            if kind == Kind::Video {
                t.layers[0].rtx_ssrc = Some(rtx);
                t.codec.rtx_payload_type = Some(TRUNK_RTX_PT);
            }
            y.req(Command::AddTrack(t))?;
        }
        for j in spec.local..spec.local + spec.remote {
            let id = ids.subscriber(j);
            let worker = ((j - spec.local) % u32::from(y.workers)) as u16;
            y.req(plain(id, ep.subscribers[j as usize], worker, cap))?;
            created.1.push(id);
            for (_, sid, kind) in plan.streams() {
                y.req(subscribe(
                    ids.subscription(j, sid),
                    id,
                    ids.relayed(sid),
                    sub_ssrc(j, sid),
                    pt(kind),
                ))?;
            }
        }
    }
    // The publishing side: publishers, their tracks, local subscribers, the trunk and relays.
    for (p, &addr) in ep.publishers.iter().enumerate() {
        let worker = (p as u32 % u32::from(x.workers)) as u16;
        x.req(plain(ids.publisher(p as u32), addr, worker, cap))?;
        created.0.push(ids.publisher(p as u32));
    }
    for (p, sid, kind) in plan.streams() {
        x.req(track(ids.publisher(p), ids.track(sid), kind, sid))?;
    }
    for j in 0..spec.local {
        let id = ids.subscriber(j);
        let worker = (j % u32::from(x.workers)) as u16;
        x.req(plain(id, ep.subscribers[j as usize], worker, cap))?;
        created.0.push(id);
        for (_, sid, kind) in plan.streams() {
            x.req(subscribe(
                ids.subscription(j, sid),
                id,
                ids.track(sid),
                sub_ssrc(j, sid),
                pt(kind),
            ))?;
        }
    }
    if spec.remote > 0 {
        x.req(session(
            ids.trunk(),
            trunk_mode(y.media[0], crypto(x_name, y_name)),
            0,
            TRUNK_BPS,
        ))?;
        created.0.push(ids.trunk());
        for (_, sid, kind) in plan.streams() {
            let (ssrc, rtx) = trunk_ssrc(sid);
            let video = kind == Kind::Video;
            x.req(Command::RelayTrack(RelayTrack {
                subscription: ids.relay(sid),
                session: ids.trunk(),
                track: ids.track(sid),
                layer: 0,
                ssrc,
                rtx_ssrc: video.then_some(rtx),
                payload_type: pt(kind),
                rtx_payload_type: video.then_some(TRUNK_RTX_PT),
                ext_ids: ExtIds::default(),
            }))?;
        }
    }
    Ok(())
}

pub(super) fn close(node: &mut Node, sessions: &[SessionId]) {
    for &s in sessions {
        let _ = node.ctl.request(Command::CloseSession { session: s });
    }
}

fn session(id: SessionId, mode: TransportMode, worker: u16, max_bitrate_bps: u64) -> Command {
    Command::CreateSession(CreateSession {
        session: id,
        ice: IceParams {
            ufrag: format!("bench{}", id.0),
            pwd: "0123456789abcdefghijklmn".into(),
            remote_ufrag: None,
            remote_pwd: None,
        },
        remote_fingerprint: None,
        dtls_role: DtlsRole::Server,
        shard_hint: Some(worker),
        mode,
        data: None,
        quality: Quality {
            max_bitrate_bps,
            priority: 1,
        },
    })
}

fn plain(id: SessionId, remote: SocketAddr, worker: u16, max_bitrate_bps: u64) -> Command {
    let mode = TransportMode::PlainRtp {
        remote,
        local_port: None,
    };
    session(id, mode, worker, max_bitrate_bps)
}

fn subscribe(
    subscription: SubscriptionId,
    session: SessionId,
    track: TrackId,
    ssrc: u32,
    payload_type: u8,
) -> Command {
    Command::Subscribe(Subscribe {
        subscription,
        session,
        track,
        ssrc,
        rtx_ssrc: None,
        payload_type,
        rtx_payload_type: None,
        ext_ids: ExtIds::default(),
    })
}
