//! The published-track records a restarted control needs to adopt a running dataplane's calls.
//!
//! Rooms and participants are in the store; what ties a room track (`TR_n`) to the dataplane's
//! `TrackId` and to the codec its publisher negotiated lives in the media state. So every
//! published track is also stored ([`SavedTrack`], with its room), and on the first resync after
//! a start the entries whose `TrackId` the dataplane still holds are adopted back into the media
//! state, with their publisher sessions. This file converts between the two forms.

use sluice_proto::TrackId;

use super::media::MTrack;
use crate::sdp::{Fmtp, NegotiatedCodec};
use crate::store::{SavedCodec, SavedTrack};

/// The stored form of a media track.
pub(crate) fn saved(t: &MTrack) -> SavedTrack {
    let c = &t.codec;
    SavedTrack {
        owner: t.owner.clone(),
        owner_sid: t.owner_sid.clone(),
        dp: t.dp.0,
        kind: t.kind,
        codec: SavedCodec {
            pt: c.pt,
            name: c.name.clone(),
            clock_rate: c.clock_rate,
            channels: c.channels,
            fmtp: c.fmtp.as_ref().map(|f| f.raw.clone()),
            rtx_pt: c.rtx_pt,
            rtcp_fb: c.rtcp_fb.clone(),
        },
    }
}

/// Back to the media state's form.
pub(crate) fn media_track(s: &SavedTrack) -> MTrack {
    let c = &s.codec;
    MTrack {
        owner: s.owner.clone(),
        owner_sid: s.owner_sid.clone(),
        dp: TrackId(s.dp),
        kind: s.kind,
        codec: NegotiatedCodec {
            pt: c.pt,
            name: c.name.clone(),
            clock_rate: c.clock_rate,
            channels: c.channels,
            fmtp: c.fmtp.as_deref().map(Fmtp::parse),
            rtx_pt: c.rtx_pt,
            rtcp_fb: c.rtcp_fb.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proto::MediaKind;

    #[test]
    fn round_trips_through_json() {
        let t = MTrack {
            owner: "alice".into(),
            owner_sid: "PA_1".into(),
            dp: TrackId(7),
            kind: MediaKind::Video,
            codec: NegotiatedCodec {
                pt: 96,
                name: "VP8".into(),
                clock_rate: 90_000,
                channels: None,
                fmtp: Some(Fmtp::parse("max-fs=12288;max-fr=60")),
                rtx_pt: Some(97),
                rtcp_fb: vec!["nack".into(), "nack pli".into()],
            },
        };
        let text = serde_json::to_string(&saved(&t)).unwrap();
        let back: SavedTrack = serde_json::from_str(&text).unwrap();
        let again = media_track(&back);
        assert_eq!(again.codec, t.codec);
        assert_eq!((again.dp, again.kind, again.owner), (t.dp, t.kind, t.owner));
    }
}
