//! The subscriber session brought in line with the client's answer (`subscribe.rs` plans the
//! rest of the answer): the DTLS role it chose, its ICE credentials, an ICE restart we offered.

use sluice_proto::{Command, CreateSession, DtlsRole, IceParams, SessionId, TransportMode};

use crate::sdp;
use crate::server::actor::RoomCtx;
use crate::server::error::ApiError;

impl RoomCtx {
    /// Brings the subscriber session in line with the answer's transport: a DTLS role other
    /// than the one it was created with recreates it (as client, on the same shard); new remote
    /// credentials are set; an ICE restart we offered is carried out.
    pub(super) async fn settle_subscriber_session(
        &mut self,
        identity: &str,
        remote: &sdp::RemoteTransport,
    ) -> Result<SessionId, ApiError> {
        let role = DtlsRole::from(remote.dtls_role);
        let current = self
            .media
            .peers
            .get(identity)
            .and_then(|p| p.subscriber.as_ref())
            .and_then(|s| s.session);
        if let Some(s) = current {
            if self
                .media
                .sessions
                .get(&s)
                .is_some_and(|spec| spec.dtls_role != role)
            {
                // Created with the offer as DTLS server; the answer made us the client.
                let _ = self.media_dp(s, Command::CloseSession { session: s }).await;
                self.forget_session(s);
                if let Some(sub) = self.sub_mut(identity) {
                    sub.session = None;
                    sub.ice_restart = false;
                }
            }
        }
        let sub = self.sub_mut(identity).expect("checked by the caller");
        let session = match sub.session {
            Some(s) => {
                let cmd = if sub.ice_restart {
                    sub.ice_restart = false;
                    Some(Command::IceRestart {
                        session: s,
                        ufrag: sub.ufrag.clone(),
                        pwd: sub.pwd.clone(),
                        remote_ufrag: Some(remote.ice_ufrag.clone()),
                        remote_pwd: Some(remote.ice_pwd.clone()),
                    })
                } else if sub.remote_ufrag.as_deref() != Some(remote.ice_ufrag.as_str()) {
                    Some(Command::SetRemote {
                        session: s,
                        remote_ufrag: remote.ice_ufrag.clone(),
                        remote_pwd: remote.ice_pwd.clone(),
                        remote_fingerprint: remote.fingerprints.first().map(|f| f.to_string()),
                    })
                } else {
                    None
                };
                let (ufrag, pwd) = (sub.ufrag.clone(), sub.pwd.clone());
                if let Some(cmd) = cmd {
                    self.media_dp(s, cmd).await?;
                    if let Some(spec) = self.media.sessions.get_mut(&s) {
                        spec.ice.ufrag = ufrag;
                        spec.ice.pwd = pwd;
                        spec.ice.remote_ufrag = Some(remote.ice_ufrag.clone());
                        spec.ice.remote_pwd = Some(remote.ice_pwd.clone());
                        if let Some(fp) = remote.fingerprints.first() {
                            spec.remote_fingerprint = Some(fp.to_string());
                        }
                    }
                }
                s
            }
            None => {
                let (ufrag, pwd, shard) = (sub.ufrag.clone(), sub.pwd.clone(), sub.shard);
                let id = SessionId(self.app.next_dp_id());
                let spec = CreateSession {
                    session: id,
                    ice: IceParams {
                        ufrag,
                        pwd,
                        remote_ufrag: Some(remote.ice_ufrag.clone()),
                        remote_pwd: Some(remote.ice_pwd.clone()),
                    },
                    remote_fingerprint: remote.fingerprints.first().map(|f| f.to_string()),
                    dtls_role: role,
                    // The shard the offered candidates name.
                    shard_hint: shard,
                    mode: TransportMode::Webrtc {},
                    data: None,
                    quality: self.participant_tier(identity),
                };
                let offered = self.sub_mut(identity).map(|s| s.candidates.clone());
                let node = self
                    .sub_mut(identity)
                    .map(|s| s.node.clone())
                    .unwrap_or_default();
                let (shard, candidates, node) = self.create_session_at(&node, spec).await?;
                if offered.is_some_and(|o| !o.is_empty() && o != candidates) {
                    tracing::warn!(
                        identity,
                        "subscriber session moved shards: the offered candidates no longer match"
                    );
                }
                if let Some(sub) = self.sub_mut(identity) {
                    sub.candidates = candidates;
                    sub.shard = Some(shard);
                    sub.node = node;
                }
                id
            }
        };
        if let Some(sub) = self.sub_mut(identity) {
            sub.session = Some(session);
            sub.remote_ufrag = Some(remote.ice_ufrag.clone());
        }
        Ok(session)
    }
}
