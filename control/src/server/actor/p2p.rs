//! P2P mesh relay (docs/protocol.md "Hybrid P2P/SFU"): `p2p_signal` carries offers, answers
//! and ICE candidates between two participants of the same room, with the same auth and
//! rules as the SFU path: the role and grants must allow a source of every kind the SDP sends
//! (the server reads only enough of an SDP for that; the source itself is advisory).

use super::RoomCtx;
use crate::auth::Source;
use crate::limits::Refusal;
use crate::server::error::ApiError;
use crate::server::hub::ClientMsg;
use crate::signal::{P2pSignal, P2pSignalRequest, ServerMessage};

impl RoomCtx {
    /// Relays `p2p_signal {to, signal}` from `identity` to the participant whose sid is `to`.
    /// Sizes are bounded by the message's types (an SDP 64 KiB, a candidate 4 KiB).
    pub(crate) fn relay_p2p(
        &mut self,
        identity: &str,
        req: P2pSignalRequest,
    ) -> Result<(), ApiError> {
        let sdp = match &req.signal {
            P2pSignal::Offer { sdp } | P2pSignal::Answer { sdp } => {
                if !sdp.starts_with("v=0") {
                    return Err(ApiError::invalid("sdp", "not an SDP (must start with v=0)"));
                }
                Some(sdp.as_str())
            }
            P2pSignal::Candidate { .. } => None,
        };
        let (from_sid, target) = {
            let room = self
                .room()
                .ok_or_else(|| ApiError::not_found("room not found").with_field("room"))?;
            let me = room
                .participants
                .get(identity)
                .ok_or_else(|| ApiError::not_found("not joined"))?;
            if let Some(sdp) = sdp {
                // The SFU path's rules: the role must allow a source of each kind sent, and the
                // grants must allow that source (#12). Which source (camera or screen) a P2P
                // video is cannot be told from the SDP: the kind is checked, the source is not.
                let allowed = |sources: &[Source]| {
                    sources
                        .iter()
                        .any(|s| me.role.may_publish(*s) && me.grants.allows_source(*s))
                };
                let (audio, video) = sending_kinds(sdp);
                let refused = if audio && !allowed(&[Source::Microphone, Source::Screen]) {
                    Some("audio")
                } else if video && !allowed(&[Source::Camera, Source::Screen]) {
                    Some("video")
                } else {
                    None
                };
                if let Some(kind) = refused {
                    self.app.refusals.count(Refusal::P2pForbidden);
                    return Err(ApiError::new(
                        "forbidden",
                        format!(
                            "a {} with these grants may not send {kind}: the SDP may not send media",
                            me.role.as_str()
                        ),
                    )
                    .with_field("sdp"));
                }
            }
            let to = req.to.as_str();
            let target = room
                .participants
                .values()
                .find(|p| p.sid == to && p.identity != identity)
                .map(|p| p.identity.clone())
                .ok_or_else(|| {
                    ApiError::not_found(format!("no participant {to:?} in this room"))
                        .with_field("to")
                })?;
            (me.sid.clone(), target)
        };
        let allowed = self
            .hybrid
            .policy
            .as_ref()
            .is_some_and(|p| p.relay_allowed());
        if !allowed {
            return Err(
                ApiError::rejected("the room is in sfu mode: no p2p relay").with_field("mode")
            );
        }
        self.app.hub.send_to(
            &self.name,
            &target,
            ClientMsg::Msg(ServerMessage::P2pSignal {
                from: from_sid,
                from_identity: identity.to_owned(),
                signal: req.signal,
            }),
        );
        Ok(())
    }
}

/// Whether some m= section of `sdp` sends audio, and whether one sends video. A section sends
/// unless it is rejected (port 0), `recvonly` or `inactive`, and it either names a source
/// (`a=ssrc` / `a=msid`) or says `sendonly` outright (unsignalled streams name no source). A
/// `sendrecv` section without a source (a browser's transceiver with no track) sends nothing.
fn sending_kinds(sdp: &str) -> (bool, bool) {
    let (mut audio, mut video) = (false, false);
    for section in sdp.split("\nm=").skip(1) {
        let mut head = section.split_whitespace();
        let kind = head.next().unwrap_or("");
        let rejected = head.next() == Some("0");
        let lines = || section.lines().map(str::trim_end);
        let receive_only = lines().any(|l| l == "a=recvonly" || l == "a=inactive");
        let has_source = lines().any(|l| l.starts_with("a=ssrc:") || l.starts_with("a=msid:"));
        let sendonly = lines().any(|l| l == "a=sendonly");
        if rejected || receive_only || !(has_source || sendonly) {
            continue;
        }
        match kind {
            "audio" => audio = true,
            _ => video = true,
        }
    }
    (audio, video)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENDING: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\na=msid:s t\r\na=ssrc:1 cname:x\r\n";
    const RECEIVING: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\n";

    #[test]
    fn detects_sending_sections() {
        let sends = |sdp: &str| sending_kinds(sdp) != (false, false);
        assert_eq!(sending_kinds(SENDING), (true, false));
        assert!(!sends(RECEIVING));
        // No direction attribute means sendrecv.
        assert!(sends(&SENDING.replace("a=sendrecv\r\n", "")));
        // Sendonly without any source: an unsignalled stream, still sending.
        assert_eq!(
            sending_kinds("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\n"),
            (false, true)
        );
        // Sendrecv without a source (a transceiver without a track), or a rejected section.
        assert!(!sends(
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\n"
        ));
        assert!(!sends(&SENDING.replace("m=audio 9", "m=audio 0")));
    }
}
