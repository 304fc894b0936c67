//! The edge's side of a relay: the relayed track ingested on the trunk session toward the
//! home, counted per local user (docs/cluster.md "Cascading", D97).

use std::sync::Arc;
use std::time::Instant;

use sluice_proto::{AddTrack, Command, ExtIds, Layer, TrackId};

use super::state::{self, IngestKey, Table};
use super::{http, unavailable, RelaySpec, TrackRef, MAX_RELAYS};
use crate::cluster::NodeInfo;
use crate::server::error::ApiError;
use crate::server::App;

impl App {
    /// On an edge: the local track that carries `r` from `home` (asking the home for the relay
    /// and ingesting it on the trunk session if it is not here yet), one more user counted.
    pub(crate) async fn acquire_ingest(
        self: &Arc<Self>,
        home: &NodeInfo,
        r: &TrackRef,
    ) -> Result<(TrackId, RelaySpec), ApiError> {
        let key = IngestKey {
            home: home.id.clone(),
            track: r.clone(),
        };
        let mut attempt = 0;
        let (spec, mut st, trunk) = loop {
            let spec = http::ask_relay(self, home, r).await?;
            let st = self.cascade.state.lock().await;
            let ours = st.trunks.get(&home.id).cloned();
            match ours {
                Some(t) if t.epoch == spec.epoch => break (spec, st, t),
                // Our side closed (idle) while the home's lived on, or it was re-keyed: set the
                // pair up again from here (a new epoch replaces the home's side), then ask again.
                _ if attempt == 0 => {
                    drop(st);
                    attempt += 1;
                    let _ = http::release_relay(self, home, r).await;
                    if ours.is_none_or(|t| t.epoch < spec.epoch) {
                        self.drop_trunk(&home.id, "rekey").await;
                        self.ensure_trunk(&home.id).await?;
                    }
                }
                _ => {
                    drop(st);
                    let _ = http::release_relay(self, home, r).await;
                    return Err(unavailable("trunk re-keyed during setup; retry"));
                }
            }
        };
        match self.ingest_on(&mut st, key, &trunk, &spec).await {
            Ok(track) => Ok((track, spec)),
            Err(e) => {
                drop(st);
                let _ = http::release_relay(self, home, r).await;
                Err(e)
            }
        }
    }

    /// On an edge: ingests `spec`, a relay of `r` the home already opened for one more user
    /// (a remote subscriber session's subscription, `remote.rs`) → the local track. An error
    /// leaves the home's count to the caller (the home, which asked).
    pub(crate) async fn ingest_given(
        self: &Arc<Self>,
        home: &str,
        r: &TrackRef,
        spec: &RelaySpec,
    ) -> Result<TrackId, ApiError> {
        let mut st = self.cascade.state.lock().await;
        let trunk = match st.trunks.get(home) {
            Some(t) if t.epoch == spec.epoch => t.clone(),
            _ => return Err(unavailable("the trunk toward the home changed; retry")),
        };
        let key = IngestKey {
            home: home.to_owned(),
            track: r.clone(),
        };
        self.ingest_on(&mut st, key, &trunk, spec).await
    }

    /// One more user of the ingest `key` (added to the trunk session if new).
    async fn ingest_on(
        &self,
        st: &mut state::State,
        key: IngestKey,
        trunk: &state::Trunk,
        spec: &RelaySpec,
    ) -> Result<TrackId, ApiError> {
        if let Some(i) = st.ingests.get_mut(&key) {
            if i.spec.ssrc == spec.ssrc {
                i.users = i.users.saturating_add(1);
                i.idle_since = None;
                return Ok(i.track);
            }
        }
        self.cascade.admit(st, Table::Ingests, MAX_RELAYS)?;
        let track = TrackId(self.next_dp_id());
        self.dp(Command::AddTrack(AddTrack {
            session: trunk.session,
            track,
            kind: spec.kind,
            codec: spec.codec.clone(),
            layers: vec![Layer {
                rid: None,
                ssrc: Some(spec.ssrc),
                rtx_ssrc: spec.rtx_ssrc,
            }],
            ext_ids: ExtIds::default(),
            e2ee: spec.e2ee,
            source: spec.source,
            mid: None,
        }))
        .await?;
        if let Some(old) = st
            .ingests
            .insert(key, state::Ingest::new(track, spec.clone()))
        {
            let _ = self.dp(Command::RemoveTrack { track: old.track }).await;
        }
        self.cascade.publish_gauges(st);
        Ok(track)
    }

    /// One user fewer of an ingested relay, the home's count left alone (the home's own
    /// request failed: it releases its relay itself).
    pub(crate) async fn drop_ingest_user(&self, home: &str, r: &TrackRef) {
        let mut st = self.cascade.state.lock().await;
        let key = IngestKey {
            home: home.to_owned(),
            track: r.clone(),
        };
        if let Some(i) = st.ingests.get_mut(&key) {
            i.users = i.users.saturating_sub(1);
            if i.users == 0 {
                i.idle_since = Some(Instant::now());
            }
        }
    }

    /// One user fewer of an ingested relay (and of the home's relay).
    pub(crate) async fn release_ingest(self: &Arc<Self>, home: &str, r: &TrackRef) {
        self.drop_ingest_user(home, r).await;
        if let Ok((node, _)) = self.peer(home).await {
            let _ = http::release_relay(self, &node, r).await;
        }
    }
}
