//! P2P mesh relay (docs/protocol.md "Hybrid P2P/SFU"): `p2p_signal` carries offers, answers
//! and ICE candidates between two participants of the same room, with the same auth and
//! grants as the SFU path. The server reads only enough of an SDP to enforce `can_publish`.

use super::RoomCtx;
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
                if !me.grants.can_publish && sends_media(sdp) {
                    return Err(ApiError::new(
                        "forbidden",
                        "no can_publish grant: the SDP may not send media",
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

/// Whether some m= section of `sdp` sends media: direction sendrecv/sendonly (sendrecv when
/// none is given, RFC 8866 §6.7) and a source (`a=ssrc` or `a=msid`).
fn sends_media(sdp: &str) -> bool {
    let mut sections = sdp.split("\nm=").skip(1).peekable();
    if sections.peek().is_none() {
        return false;
    }
    sections.any(|section| {
        let lines = || section.lines().map(str::trim_end);
        let receive_only = lines().any(|l| l == "a=recvonly" || l == "a=inactive");
        let has_source = lines().any(|l| l.starts_with("a=ssrc:") || l.starts_with("a=msid:"));
        !receive_only && has_source
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENDING: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\na=msid:s t\r\na=ssrc:1 cname:x\r\n";
    const RECEIVING: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\n";

    #[test]
    fn detects_sending_sections() {
        assert!(sends_media(SENDING));
        assert!(!sends_media(RECEIVING));
        // No direction attribute means sendrecv.
        assert!(sends_media(&SENDING.replace("a=sendrecv\r\n", "")));
        // Sendonly without any source sends nothing.
        assert!(!sends_media(
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\n"
        ));
    }
}
