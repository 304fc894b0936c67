//! Layer caps: the highest simulcast (spatial) and temporal layer a subscriber wants of a
//! track (`layer {track_sid, max_spatial, max_temporal}`), kept until the subscription exists.

use sluice_proto::{Command, SubscriptionId};

use crate::server::actor::RoomCtx;
use crate::server::error::ApiError;

/// A `layer` request: the highest spatial and temporal layer a subscription may receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LayerCap {
    pub(crate) max_spatial: u8,
    pub(crate) max_temporal: u8,
}

impl RoomCtx {
    /// Layer preference for `identity`'s subscription to `track_sid`.
    pub(crate) async fn set_layer(
        &mut self,
        identity: &str,
        track_sid: &str,
        cap: LayerCap,
    ) -> Result<(), ApiError> {
        let known = self
            .media
            .tracks
            .get(track_sid)
            .is_some_and(|t| t.owner != identity);
        let Some(peer) = self.media.peers.get_mut(identity).filter(|_| known) else {
            return Err(
                ApiError::not_found(format!("no track {track_sid:?}")).with_field("track_sid")
            );
        };
        peer.layer_caps.insert(track_sid.to_owned(), cap);
        let sub = peer
            .subscriber
            .as_ref()
            .and_then(|s| s.subscribed.get(track_sid).copied());
        // Not subscribed yet (the answer is still on its way): applied when it is.
        match sub {
            Some(subscription) => self.apply_layer_cap(subscription, cap).await,
            None => Ok(()),
        }
    }

    pub(super) async fn apply_layer_cap(
        &mut self,
        subscription: SubscriptionId,
        cap: LayerCap,
    ) -> Result<(), ApiError> {
        if self.remote_layer_cap(subscription, cap).await? {
            return Ok(());
        }
        self.app
            .dp(Command::SetLayerCap {
                subscription,
                max_spatial: cap.max_spatial,
                max_temporal: cap.max_temporal,
            })
            .await
            .map(drop)
    }
}
